"""moto's SQS hands a message to one receiver at a time, and keeps deleted what it deleted, once
infra.local.emulator has serialised its receives and deletes (the emulator `make run` and the tests use).
Two receives that meet between moto's check that a message is visible and its marking it received, and two
deletes that meet while each copies the queue's message list, are forced here, deterministically, by holding
each at that point until the other arrives. And a long poll still waits outside the lock: it gets what is
sent meanwhile, and other receives of its queue go on while it waits."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from moto.sqs import models

from infra.local.emulator import serialise_sqs_deletes, serialise_sqs_receives

QUEUE = "seat-bookings"
VISIBILITY_TIMEOUT = 30


@pytest.fixture()
def restore_moto_receive(monkeypatch) -> None:
    """Whatever a test does to moto's receive is undone afterwards (this process's moto server may have
    serialised it already, and keeps it so)."""
    monkeypatch.setattr(models.SQSBackend, "receive_message", models.SQSBackend.receive_message)


@pytest.fixture()
def receives_that_meet(monkeypatch) -> Iterator[threading.Barrier]:
    """Each receive, having found a message visible, waits before marking it received until a second receive
    has found one too (or 1 s has passed: with receives serialised, the second can only look once the first
    has marked its message)."""
    meeting = threading.Barrier(2, timeout=1.0)
    mark_received = models.Message.mark_received

    def held_mark(self: models.Message, *args: Any, **kwargs: Any) -> None:
        with contextlib.suppress(threading.BrokenBarrierError):
            meeting.wait()  # between moto's `message.visible` check and its marking the message in flight
        mark_received(self, *args, **kwargs)

    monkeypatch.setattr(models.Message, "mark_received", held_mark)
    yield meeting


def backend_with_messages(*bodies: str) -> models.SQSBackend:
    backend = models.SQSBackend("eu-west-1", "123456789012")
    backend.create_queue(QUEUE, VisibilityTimeout=str(VISIBILITY_TIMEOUT))
    for body in bodies:
        backend.send_message(QUEUE, body)
    return backend


def receive(backend: models.SQSBackend, wait_seconds: int = 0) -> list[str]:
    """One ReceiveMessage of one message, as moto's server makes it; returns the bodies."""
    messages = backend.receive_message(QUEUE, 1, wait_seconds, VISIBILITY_TIMEOUT)
    return [message.body for message in messages]


def two_receives_at_once(backend: models.SQSBackend) -> list[list[str]]:
    received: list[list[str]] = []
    receives = [threading.Thread(target=lambda: received.append(receive(backend))) for _ in range(2)]
    for thread in receives:
        thread.start()
    for thread in receives:
        thread.join(timeout=10)
    return received


def test_unserialised_moto_hands_one_message_to_two_receives_that_meet(
    receives_that_meet, restore_moto_receive, monkeypatch
) -> None:
    """The fault itself, so the test below is known to be able to see it: both get the first message, within
    its visibility timeout, and the second message is left where it was."""
    # moto's own receive, even where this process's moto server has serialised it already (undone afterwards)
    receive_message = models.SQSBackend.receive_message
    unsafe_receive = getattr(receive_message, "unsafe", receive_message)
    monkeypatch.setattr(models.SQSBackend, "receive_message", unsafe_receive)
    backend = backend_with_messages("first", "second")

    received = two_receives_at_once(backend)

    assert received == [["first"], ["first"]]
    [first] = [message for message in backend.get_queue(QUEUE)._messages if message.body == "first"]
    assert first.approximate_receive_count == 2
    assert [message.body for message in backend.get_queue(QUEUE).messages] == ["second"]  # still visible


def test_serialised_moto_hands_each_message_to_one_receive(receives_that_meet, restore_moto_receive) -> None:
    serialise_sqs_receives()
    backend = backend_with_messages("first", "second")

    received = two_receives_at_once(backend)

    assert sorted(received) == [["first"], ["second"]]
    assert receives_that_meet.broken, "the second receive could not reach the mark while the first was there"
    assert [message.approximate_receive_count for message in backend.get_queue(QUEUE)._messages] == [1, 1]
    assert backend.get_queue(QUEUE).messages == [], "both in flight"


@pytest.fixture()
def restore_moto_delete(monkeypatch) -> None:
    monkeypatch.setattr(models.Queue, "delete_message", models.Queue.delete_message)


class DeletesThatMeet(set):
    """A queue's deleted receipt handles. moto adds to them while it copies the message list, having come to
    the message it deletes: each delete waits there until a second has come to its message too (or 1 s has
    passed: with deletes serialised, the second can only copy the list once the first has put its copy in)."""

    def __init__(self, handles: set[str]) -> None:
        super().__init__(handles)
        self.meeting = threading.Barrier(2, timeout=1.0)

    def update(self, *handles: Any) -> None:
        super().update(*handles)
        with contextlib.suppress(threading.BrokenBarrierError):
            self.meeting.wait()  # in the middle of moto's copy of the list, before it replaces the list


def two_deletes_at_once(backend: models.SQSBackend) -> list[str]:
    """Receives both messages, then deletes them, each in a thread of its own; returns the bodies left."""
    received = backend.receive_message(QUEUE, 10, 0, VISIBILITY_TIMEOUT)
    queue = backend.get_queue(QUEUE)
    queue.deleted_messages = DeletesThatMeet(queue.deleted_messages)
    deleted: list[str] = []

    def delete(message: models.Message) -> None:
        backend.delete_message(QUEUE, message.receipt_handle)
        deleted.append(message.body)

    deletes = [threading.Thread(target=delete, args=(message,)) for message in received]
    for thread in deletes:
        thread.start()
    for thread in deletes:
        thread.join(timeout=10)
    assert sorted(deleted) == ["first", "second"], "both deletes succeed"
    return [message.body for message in queue._messages]


def test_unserialised_moto_puts_back_one_of_two_deletes_that_meet(restore_moto_delete, monkeypatch) -> None:
    """The fault itself: both deletes succeed, and one of the two messages is on the queue again (in flight:
    it would come again when its visibility timeout ran out)."""
    delete_message = models.Queue.delete_message
    monkeypatch.setattr(models.Queue, "delete_message", getattr(delete_message, "unsafe", delete_message))
    backend = backend_with_messages("first", "second")

    left = two_deletes_at_once(backend)

    assert len(left) == 1


def test_serialised_moto_keeps_both_deletes(restore_moto_delete) -> None:
    serialise_sqs_deletes()
    backend = backend_with_messages("first", "second")

    assert two_deletes_at_once(backend) == []
    assert backend.get_queue(QUEUE).deleted_messages.meeting.broken, "the second waited for the first"


def test_serialising_again_changes_nothing(restore_moto_receive, restore_moto_delete) -> None:
    serialise_sqs_receives()
    serialise_sqs_deletes()
    receive, delete = models.SQSBackend.receive_message, models.Queue.delete_message
    serialise_sqs_receives()
    serialise_sqs_deletes()
    assert (models.SQSBackend.receive_message, models.Queue.delete_message) == (receive, delete)
    assert receive.unsafe.__qualname__ == "SQSBackend.receive_message", "moto's own, wrapped once"
    assert delete.unsafe.__qualname__ == "Queue.delete_message", "moto's own, wrapped once"


class LongPoll(threading.Thread):
    """A receive that long-polls the queue for `wait_seconds`."""

    def __init__(self, backend: models.SQSBackend, wait_seconds: int) -> None:
        super().__init__(daemon=True)
        self.backend, self.wait_seconds = backend, wait_seconds
        self.received: list[str] | None = None
        self.returned_at = 0.0

    def run(self) -> None:
        self.received = receive(self.backend, self.wait_seconds)
        self.returned_at = time.monotonic()


@pytest.fixture()
def waiting(monkeypatch) -> threading.Event:
    """Set when a receive starts waiting on its queue (moto's Queue.wait_for_messages)."""
    event = threading.Event()
    wait_for_messages = models.Queue.wait_for_messages

    def noted_wait(self: models.Queue, timeout: float) -> None:
        event.set()
        wait_for_messages(self, timeout)

    monkeypatch.setattr(models.Queue, "wait_for_messages", noted_wait)
    return event


def test_a_long_poll_gets_a_message_sent_while_it_waits_and_holds_up_no_other_receive(
    restore_moto_receive, waiting
) -> None:
    serialise_sqs_receives()
    backend = backend_with_messages()
    long_poll = LongPoll(backend, wait_seconds=10)
    long_poll.start()
    assert waiting.wait(timeout=5), "the long poll waits for a message"

    started = time.monotonic()
    assert receive(backend) == [], "another receive of the queue, meanwhile: nothing there yet"
    backend.send_message(QUEUE, "sent while it waits")
    sent = time.monotonic()
    assert sent - started < 1, "neither that receive nor the send waited for the long poll"

    long_poll.join(timeout=5)
    assert long_poll.received == ["sent while it waits"]
    assert long_poll.returned_at - sent < 1, "the send woke the long poll (its wait is 10 s)"


def test_a_long_poll_of_an_empty_queue_returns_nothing_when_its_wait_is_over(restore_moto_receive) -> None:
    serialise_sqs_receives()
    backend = backend_with_messages()

    started = time.monotonic()
    assert receive(backend, wait_seconds=1) == []
    assert 0.9 < time.monotonic() - started < 2
