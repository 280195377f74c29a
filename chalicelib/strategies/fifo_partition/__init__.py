"""`fifo_partition`: no locks at all — requests for a section wait in line on an SQS FIFO queue, and one
consumer at a time decides them in order.

Where each part lives: strategy.py (the request path, and `finish`: the decision in line, made by
BookingStore.decide_in_line in MySQL); line.py (the in-group order within one Lambda batch: nothing behind a
failed message of its group is decided before it; the SQS batch handler asks it). The consumer's retry and
give-up policy is shared with redis_async (services/booking_events.py).
"""

from chalicelib.strategies.fifo_partition.strategy import FifoPartitionStrategy

__all__ = ["FifoPartitionStrategy"]
