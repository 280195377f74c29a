"""The embedded AWS emulator: moto's server in a thread of this process.

`python -m infra.local.emulator --port 5000` serves until Ctrl-C or SIGTERM (`make run` starts it so).
Moto keeps its state in memory: a restart starts with no queues (infra/provision.py creates them again).
"""

from __future__ import annotations

import argparse
import logging
import signal
import threading
from typing import Any

from moto.server import ThreadedMotoServer


def serialise_kinesis_puts() -> None:
    """Make moto's Kinesis keep every record it acknowledges.

    moto's `Shard.put_record` reads the shard's last sequence number and stores the record under the next one
    with no lock (its own comment: "this function is not safe for concurrency"). Its server is threaded, so
    two puts at once can get the same number: the second record replaces the first, and both callers are told
    theirs was stored. Real Kinesis never loses an acknowledged record; a stream_state race of 500 threads on
    a loaded machine lost one request here (its booking journaled PENDING, never decided). One lock around
    the put makes moto do what Kinesis promises; reads are untouched."""
    from moto.kinesis import models

    if getattr(models.Shard.put_record, "serialised", False):
        return
    unsafe_put = models.Shard.put_record
    lock = threading.Lock()

    def put_record(self: Any, *args: Any, **kwargs: Any) -> str:
        with lock:
            return unsafe_put(self, *args, **kwargs)

    put_record.serialised = True  # type: ignore[attr-defined]
    put_record.unsafe = unsafe_put  # type: ignore[attr-defined]  (what tests/unit/test_moto_kinesis.py shows)
    models.Shard.put_record = put_record


def serialise_sqs_receives() -> None:
    """Make moto's SQS hand a message to one receiver at a time, as SQS does within a visibility timeout.

    moto's `SQSBackend.receive_message` picks a message that is visible (`message.visible`) and only later
    marks it received (`mark_received` hides it for the visibility timeout), with no lock. Its server is
    threaded, so two ReceiveMessage calls at once can both pick the same message before either has marked
    it: both callers get it, each with a receipt handle of its own. Real SQS does not deliver a message again
    within its visibility timeout; two poller workers draining one queue here had a message handled twice
    (and, with the receives that took it twice, another one not handled yet when fifty records had arrived).

    Holding the queue's own lock (moto's `_messages_lock`, which a send appends under) across moto's
    pick-and-mark makes it atomic. A receive may long-poll (WaitTimeSeconds, up to 20 s), and a lock held
    through that wait would hold up every other receive and send of the queue, so the lock is held only for
    a try, moto's own receive with no wait, and the waiting between tries is done here, outside the lock, as
    moto does it: on that lock's condition, which a send wakes, at most a second at a time (nothing wakes it
    when a message's visibility timeout or delay runs out), until a try gets messages or the wait is over.
    What a receive does (visibility timeout, FIFO message groups, moves to the dead-letter queue) is still
    moto's own, under the lock. One difference, in SQS's direction: moto reads which FIFO groups are in
    flight once per call, a long poll here once per try, so a group whose message is deleted during the
    wait can be delivered before the wait is over."""
    from moto.sqs import models

    if getattr(models.SQSBackend.receive_message, "serialised", False):
        return
    unsafe_receive = models.SQSBackend.receive_message

    def receive_message(
        self: Any,
        queue_name: str,
        count: int,
        wait_seconds_timeout: int,
        visibility_timeout: int,
        message_attribute_names: list[str] | None = None,
    ) -> list[Any]:
        queue = self.get_queue(queue_name)  # an unknown queue fails as in moto's receive
        polling_end = models.unix_time() + wait_seconds_timeout
        while True:
            with queue._messages_lock:
                messages = unsafe_receive(
                    self, queue_name, count, 0, visibility_timeout, message_attribute_names
                )
            remaining = polling_end - models.unix_time()
            if messages or remaining <= 0:
                return messages
            queue.wait_for_messages(min(1, remaining))  # type: ignore[arg-type]  (moto's hint says int)

    receive_message.serialised = True  # type: ignore[attr-defined]
    receive_message.unsafe = unsafe_receive  # type: ignore[attr-defined]  (what tests/unit/test_moto_sqs.py shows)
    models.SQSBackend.receive_message = receive_message


def serialise_sqs_deletes() -> None:
    """Make moto's SQS keep deleted a message whose deletion it has acknowledged.

    moto's `Queue.delete_message` copies the queue's message list without the deleted message, then puts the
    copy in place of the list, with no lock. Two deletes at once (two poller workers settling their batches)
    can copy the same list: the one that puts its copy in place last puts back what the other deleted, and
    that message, in flight, comes again when its visibility timeout runs out, though its DeleteMessage was
    answered with success. (A message sent between a copy and its putting in place is lost the same way.)
    Real SQS does neither; a run of the two-worker drain test was left with ten messages on the queue, a
    whole batch, after every message had been handled once and every DeleteMessageBatch had succeeded.

    Holding the queue's own lock (moto's `_messages_lock`, which a send appends under and a receive holds
    once serialise_sqs_receives has run) across the delete makes sends, receives and deletes of a queue take
    turns. A delete does not wait for anything, so it holds the lock only briefly."""
    from moto.sqs import models

    if getattr(models.Queue.delete_message, "serialised", False):
        return
    unsafe_delete = models.Queue.delete_message

    def delete_message(self: Any, receipt_handle: str) -> None:
        with self._messages_lock:
            unsafe_delete(self, receipt_handle)

    delete_message.serialised = True  # type: ignore[attr-defined]
    delete_message.unsafe = unsafe_delete  # type: ignore[attr-defined]  (what tests/unit/test_moto_sqs.py shows)
    models.Queue.delete_message = delete_message


LISTEN_BACKLOG = 4096


def start_moto_server(host: str = "127.0.0.1", port: int = 0) -> tuple[ThreadedMotoServer, str]:
    """Start moto's server; port 0 takes a free port. Returns the server and its endpoint URL.

    Port 0 goes to the OS as is and the bound port is read back afterwards: picking a "free" port first and
    binding it later would race with every other process doing the same (parallel test runs)."""
    serialise_kinesis_puts()
    serialise_sqs_receives()
    serialise_sqs_deletes()
    server = ThreadedMotoServer(ip_address=host, port=port, verbose=False)
    server.start()  # returns once the socket is bound
    # werkzeug listens with a backlog of 128: a burst of more connections than that (the 500-thread races,
    # each its own connection) had the kernel drop the rest's SYNs, and a client whose retransmits (1, 3, 7,
    # 15 s ...) outlasted its connect timeout failed with ConnectTimeoutError while moto was merely busy. A
    # second listen() on a listening socket only resizes its queue (Linux); the kernel caps it at somaxconn.
    server._server.socket.listen(LISTEN_BACKLOG)  # type: ignore[union-attr]  (moto keeps its server private)
    bound_host, bound_port = server.get_host_and_port()
    return server, f"http://{_url_host(bound_host)}:{bound_port}"


def stop_moto_server(server: ThreadedMotoServer) -> None:
    server.stop()


def _url_host(host: str) -> str:
    if host in ("0.0.0.0", "::"):
        return "127.0.0.1"  # the wildcard address is for binding; clients connect to loopback
    return f"[{host}]" if ":" in host else host


def main() -> None:
    # One access-log line per request drowns `make run`'s output (the worker long-polls continuously).
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=5000)
    args = parser.parse_args()

    stopping = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stopping.set())
    server, endpoint = start_moto_server(args.host, args.port)
    print(f"[emulator] moto server at {endpoint} — Ctrl-C stops it", flush=True)
    try:
        while not stopping.wait(0.5):  # a timed wait, so signals are handled promptly
            pass
    finally:
        stop_moto_server(server)
        print("[emulator] stopped", flush=True)


if __name__ == "__main__":
    main()
