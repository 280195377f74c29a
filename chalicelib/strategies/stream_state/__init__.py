"""`stream_state`: the Kafka Streams + RocksDB design on AWS — a stream processor owns each section's seats
in an embedded store and decides bookings without touching MySQL; MySQL is written afterwards.

Request path:   a seat the map already shows taken -> 409 at once; otherwise the booking is journaled in
                MySQL (PENDING, waiting in line, no seats held) and the request is put on the request stream
                (Kinesis, partition key = the section of the lowest seat) -> 202 PENDING: a place in line.
Processor:      per shard, in order (one invocation per shard at a time): catch the ledger up with the
                changelog, then for each request: are its seats free in the ledger (RocksDB)? take them :
                refuse; then append the batch's decisions to the changelog (Kinesis PutRecords, in runs of
                entries that commute: ledger.commuting_runs). No MySQL, no Redis, no lock.
Persister:      a second consumer reads the changelog and settles each decision in MySQL (PENDING ->
                CONFIRMED/REJECTED, a compare-and-set: idempotent), then updates the Redis seat map and the
                booking's record. Its event source retries a failing batch until MySQL takes it (no batch is
                parked); a booking the persister never settles is failed by the reconcile job.
Cancel:         MySQL first (as for every strategy), then a release command on the request stream, behind
                the booking's request in the same partition, so the ledger frees the seats in order.

The ledger is a cache of the changelog, as a Kafka Streams store is of its changelog topic: a consumer that
starts with an empty or stale directory replays the changelog from where its store left off before deciding
anything, and it catches up again before every batch, since Lambda may hand a shard to another container
between batches. Every state change is an entry applied the same way live and in replay, so replay is
idempotent; a request whose booking the ledger already decided re-emits the same decision (an at-least-once
redelivery after a crash between deciding and checkpointing changes nothing).

Where it breaks: a booking that spans sections is ordered only within its lowest seat's section. Two such
clashing bookings decided by different processors can both be "confirmed" by their ledgers; MySQL's unique
guard lets one in, the persister marks the other REJECTED and sends the ledger a release that names the real
holders. Clients see only what the persister stored, so nobody is told CONFIRMED and then REJECTED.

Where each part lives: strategy.py (the request path, and the release a cancel sends the ledger),
ledger.py (the processor's state), persister.py (changelog -> MySQL -> Redis); the Lambda batch handlers
that drive the processor and the persister are entrypoints/kinesis_batch.py (partial batch failures), and the
finishing shared with the other asynchronous strategies is strategies/async_common.py.
"""

from chalicelib.strategies.stream_state.ledger import SeatLedger
from chalicelib.strategies.stream_state.persister import DecisionPersister
from chalicelib.strategies.stream_state.strategy import NAME, StreamStateStrategy

__all__ = ["NAME", "DecisionPersister", "SeatLedger", "StreamStateStrategy"]
