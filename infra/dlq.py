"""Inspect and redrive the dead-letter queues: the booking queue's DLQ (redis_async) and the FIFO request
queue's DLQ (fifo_partition).

    python -m infra.dlq list                       every dead letter of both DLQs (nothing is consumed)
    python -m infra.dlq show MESSAGE_ID            one dead letter in full
    python -m infra.dlq redrive MESSAGE_ID ...     back to the queue it came from
    python -m infra.dlq redrive --all              all of them (--queue booking|fifo narrows any command)

Looking does not consume: messages are received with a short visibility timeout, to page through the queue,
and made visible again at once. Each look adds one to a message's ApproximateReceiveCount (a DLQ has no
redrive policy, so that changes nothing); the listed count leaves the current look out. A FIFO queue
returns no further message of a group while one is in flight, so a look shows at most ten per group.

Redrive sends each message to its source queue with the same body and attributes (FIFO: the same
MessageGroupId and a new deduplication id, `redrive-<message id>` — the original id may still be inside
SQS's five-minute deduplication window, and a redrive that is retried after a crash is then not sent twice),
then deletes it from the DLQ; a message whose send failed stays. The consumer processes a redriven message
idempotently: a booking already FAILED stays FAILED (logged once), one MySQL has CONFIRMED changes nothing,
a poison message is compensated (once) and returns to the DLQ after maxReceiveCount receives.

SQS's own StartMessageMoveTask would move a whole DLQ back without this tool's receive/send/delete, but it
cannot pick messages and the local emulator (moto 5.2) does not implement it; one code path serves all.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from infra.local.stage import apply_stage_environment
from infra.text_table import format_table

BATCH = (
    10  # SQS's limit for ReceiveMessage, SendMessageBatch, DeleteMessageBatch, ChangeMessageVisibilityBatch
)
LOOK_VISIBILITY_SECONDS = 60  # long enough to page through a queue and redrive what was picked
DEFAULT_LIMIT = 1_000
SUMMARY_WIDTH = 60


@dataclass(frozen=True)
class DeadLetter:
    queue: str  # "booking" or "fifo"
    message_id: str
    body: str
    attributes: dict[str, str]
    message_attributes: dict[str, Any] = field(default_factory=dict)

    @property
    def booking_id(self) -> str | None:
        with contextlib.suppress(ValueError, TypeError, AttributeError):
            booking_id = json.loads(self.body).get("booking_id")
            return booking_id if isinstance(booking_id, str) else None
        return None

    @property
    def receive_count(self) -> int:
        """Receives before the look that fetched it (SQS counts that look too)."""
        return max(0, int(self.attributes.get("ApproximateReceiveCount", 1)) - 1)

    @property
    def first_sent(self) -> datetime | None:
        sent = self.attributes.get("SentTimestamp")
        return datetime.fromtimestamp(int(sent) / 1000, UTC) if sent else None

    @property
    def group_id(self) -> str | None:
        return self.attributes.get("MessageGroupId")

    def summary(self, width: int = SUMMARY_WIDTH) -> str:
        text = " ".join(self.body.split())
        return text if len(text) <= width else text[: width - 1] + "…"


@dataclass
class _Loan:
    """Messages received from a DLQ for a while, and the receipt handles of those deleted meanwhile."""

    messages: list[dict[str, Any]] = field(default_factory=list)
    deleted: set[str] = field(default_factory=set)


@dataclass
class RedriveResult:
    moved: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)


class DeadLetterQueue:
    """One DLQ and the source queue its messages go back to."""

    def __init__(self, sqs: Any, label: str, dlq_url: str, source_url: str, wait_seconds: int = 1) -> None:
        self._sqs = sqs
        self.label = label
        self.dlq_url = dlq_url
        self.source_url = source_url
        self._fifo = dlq_url.endswith(".fifo")
        # A short long-poll: SQS then asks all its servers (a zero wait may answer empty while messages wait).
        self._wait_seconds = wait_seconds

    @classmethod
    def named(cls, sqs: Any, label: str, dlq_name: str, source_name: str, **kwargs: Any) -> DeadLetterQueue:
        def url(name: str) -> str:
            return sqs.get_queue_url(QueueName=name)["QueueUrl"]

        return cls(sqs, label, url(dlq_name), url(source_name), **kwargs)

    def peek(self, limit: int = DEFAULT_LIMIT) -> list[DeadLetter]:
        """The dead letters, oldest receive first, without consuming any."""
        with self._borrowed(limit) as loan:
            return [self._dead_letter(message) for message in loan.messages]

    def find(self, message_id: str) -> DeadLetter | None:
        return next((letter for letter in self.peek() if letter.message_id == message_id), None)

    def redrive(self, message_ids: set[str] | None = None, limit: int = DEFAULT_LIMIT) -> RedriveResult:
        """Send the chosen dead letters (all if `message_ids` is None) back to the source queue."""
        result = RedriveResult()
        with self._borrowed(limit) as loan:
            chosen = [m for m in loan.messages if message_ids is None or m["MessageId"] in message_ids]
            for start in range(0, len(chosen), BATCH):
                self._redrive_batch(loan, chosen[start : start + BATCH], result)
        return result

    # internals ------------------------------------------------------------------------------------------
    @contextlib.contextmanager
    def _borrowed(self, limit: int) -> Iterator[_Loan]:
        """Receive up to `limit` messages (each once); on exit, every one not deleted is visible again."""
        loan = _Loan()
        received: list[dict[str, Any]] = []
        try:
            while len(loan.messages) < limit:
                batch = self._sqs.receive_message(
                    QueueUrl=self.dlq_url,
                    MaxNumberOfMessages=min(BATCH, limit - len(loan.messages)),
                    VisibilityTimeout=LOOK_VISIBILITY_SECONDS,
                    WaitTimeSeconds=self._wait_seconds,
                    AttributeNames=["All"],
                    MessageSystemAttributeNames=["All"],
                    MessageAttributeNames=["All"],
                ).get("Messages", [])
                received.extend(batch)
                known = {message["MessageId"] for message in loan.messages}
                fresh = [message for message in batch if message["MessageId"] not in known]
                if not fresh:
                    break  # empty, or only messages seen already (a duplicate delivery): the end
                loan.messages.extend(fresh)
            yield loan
        finally:
            self._make_visible([m for m in received if m["ReceiptHandle"] not in loan.deleted])

    def _make_visible(self, messages: Sequence[dict[str, Any]]) -> None:
        for start in range(0, len(messages), BATCH):
            entries = [
                {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"], "VisibilityTimeout": 0}
                for i, m in enumerate(messages[start : start + BATCH])
            ]
            self._sqs.change_message_visibility_batch(QueueUrl=self.dlq_url, Entries=entries)

    def _redrive_batch(self, loan: _Loan, messages: Sequence[dict[str, Any]], result: RedriveResult) -> None:
        entries = []
        for i, message in enumerate(messages):
            entry: dict[str, Any] = {"Id": str(i), "MessageBody": message["Body"]}
            if message.get("MessageAttributes"):
                entry["MessageAttributes"] = message["MessageAttributes"]
            if self._fifo:
                entry["MessageGroupId"] = message["Attributes"]["MessageGroupId"]
                entry["MessageDeduplicationId"] = f"redrive-{message['MessageId']}"
            entries.append(entry)
        sent = self._sqs.send_message_batch(QueueUrl=self.source_url, Entries=entries)
        ok = {int(entry["Id"]) for entry in sent.get("Successful", [])}
        moved = [message for i, message in enumerate(messages) if i in ok]
        result.failed += [message["MessageId"] for i, message in enumerate(messages) if i not in ok]
        for start in range(0, len(moved), BATCH):
            chunk = moved[start : start + BATCH]
            self._sqs.delete_message_batch(
                QueueUrl=self.dlq_url,
                Entries=[{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(chunk)],
            )
            loan.deleted.update(m["ReceiptHandle"] for m in chunk)
        result.moved += [message["MessageId"] for message in moved]

    def _dead_letter(self, message: dict[str, Any]) -> DeadLetter:
        return DeadLetter(
            queue=self.label,
            message_id=message["MessageId"],
            body=message["Body"],
            attributes=dict(message.get("Attributes", {})),
            message_attributes=dict(message.get("MessageAttributes", {})),
        )


def dead_letter_queues(
    sqs: Any, settings: Any, only: str | None = None, **kwargs: Any
) -> list[DeadLetterQueue]:
    pairs = {
        "booking": (settings.booking_dlq_name, settings.booking_queue_name),
        "fifo": (settings.fifo_dlq_name, settings.fifo_queue_name),
    }
    return [
        DeadLetterQueue.named(sqs, label, dlq, source, **kwargs)
        for label, (dlq, source) in pairs.items()
        if only in (None, label)
    ]


# --- the command ------------------------------------------------------------------------------------------
def render_list(letters: Sequence[DeadLetter]) -> str:
    rows = [
        (
            letter.queue,
            letter.message_id,
            letter.booking_id or "-",
            letter.receive_count,
            letter.first_sent.isoformat(timespec="seconds") if letter.first_sent else "-",
            letter.group_id or "-",
            letter.summary(),
        )
        for letter in letters
    ]
    headers = ("queue", "message id", "booking id", "receives", "first sent (UTC)", "group", "body")
    return format_table(headers, rows) + f"\n{len(letters)} dead letter(s)"


def render_one(letter: DeadLetter) -> str:
    try:
        body = json.dumps(json.loads(letter.body), indent=2, sort_keys=True)
    except ValueError:
        body = letter.body
    lines = [
        f"queue:       {letter.queue}",
        f"message id:  {letter.message_id}",
        f"booking id:  {letter.booking_id or '-'}",
        f"receives:    {letter.receive_count}",
        f"first sent:  {letter.first_sent.isoformat() if letter.first_sent else '-'}",
        "attributes:  " + json.dumps(letter.attributes, sort_keys=True),
    ]
    if letter.message_attributes:
        lines.append("message attributes: " + json.dumps(letter.message_attributes, sort_keys=True))
    return "\n".join([*lines, "body:", body])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--stage", default="local", help="the .chalice stage whose settings to use")
    parser.add_argument("--queue", choices=("booking", "fifo"), help="only this DLQ (default: both)")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("list", help="list the dead letters without consuming them")
    show = commands.add_parser("show", help="one dead letter in full")
    show.add_argument("message_id")
    redrive = commands.add_parser("redrive", help="send dead letters back to their source queue")
    redrive.add_argument("message_ids", nargs="*", metavar="MESSAGE_ID")
    redrive.add_argument("--all", action="store_true", help="every dead letter")
    args = parser.parse_args(argv)
    if args.command == "redrive" and bool(args.all) == bool(args.message_ids):
        parser.error("redrive takes either --all or message ids")
    apply_stage_environment(args.stage)

    from chalicelib.adapters import aws
    from chalicelib.config import settings

    queues = dead_letter_queues(aws.client("sqs", settings), settings, args.queue)
    if args.command == "list":
        print(render_list([letter for queue in queues for letter in queue.peek()]))
        return 0
    if args.command == "show":
        for queue in queues:
            letter = queue.find(args.message_id)
            if letter is not None:
                print(render_one(letter))
                return 0
        print(f"no dead letter {args.message_id}", file=sys.stderr)
        return 1
    wanted = None if args.all else set(args.message_ids)
    moved: list[str] = []
    failed: list[str] = []
    for queue in queues:
        result = queue.redrive(wanted)
        moved += result.moved
        failed += result.failed
        print(f"{queue.label}: {len(result.moved)} redriven, {len(result.failed)} failed")
    missing = sorted((wanted or set()) - set(moved) - set(failed))
    if missing:
        print(f"not found: {', '.join(missing)}", file=sys.stderr)
    return 1 if failed or missing else 0


if __name__ == "__main__":
    sys.exit(main())
