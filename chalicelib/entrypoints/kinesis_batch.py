"""Kinesis batches as Lambda delivers them -> `stream_state`'s processor and persister.

Both report partial batch failures (FunctionResponseTypes=ReportBatchItemFailures): Lambda then checkpoints
just before the lowest reported sequence number and retries from there, so a failure never loses a record.
"""

from __future__ import annotations

import logging
from typing import Any

from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.data_classes.kinesis_stream_event import KinesisStreamRecord

from chalicelib.adapters.observability import correlated
from chalicelib.domain.messages import InvalidMessage, LedgerEntry, parse_stream_command
from chalicelib.services.metrics import Metrics, count_settled
from chalicelib.services.ports import RecordStream
from chalicelib.strategies.stream_state import DecisionPersister, SeatLedger
from chalicelib.strategies.stream_state.ledger import commuting_runs

log = logging.getLogger(__name__)


def _failed_from(record: KinesisStreamRecord) -> dict:
    return {"batchItemFailures": [{"itemIdentifier": record.kinesis.sequence_number}]}


class LedgerBatchHandler:
    """The processor. Not Powertools' BatchProcessor: it carries on after a failed record, and a ledger
    must not decide a later request of the partition before an earlier one (order is the whole point), so
    this stops at the first failure and reports it; Lambda retries from there.

    The batch's decisions are made in order, then appended to the changelog in as few PutRecords as order
    allows: runs of entries that commute (ledger.commuting_runs), one run after the other. A run that cannot
    be written is reported from its first record: the redelivery re-emits decisions already made."""

    def __init__(self, ledger: SeatLedger, changelog: RecordStream) -> None:
        self._ledger = ledger
        self._changelog = changelog

    def __call__(self, event: dict, context: Any) -> dict:
        records = [KinesisStreamRecord(raw) for raw in event.get("Records", [])]
        if not records:
            return {"batchItemFailures": []}
        try:
            self._ledger.catch_up()
        except Exception:
            log.exception("could not catch the ledger up with the changelog; the batch is retried")
            return _failed_from(records[0])
        decided: list[tuple[KinesisStreamRecord, LedgerEntry | None]] = []
        failed: KinesisStreamRecord | None = None
        for record in records:
            outcome = self._decide(record)
            if outcome is False:
                failed = record
                break
            decided.append((record, outcome))
        unwritten = self._append(decided)
        if unwritten is not None:
            return _failed_from(unwritten)
        if failed is not None:
            return _failed_from(failed)
        return {"batchItemFailures": []}

    def _decide(self, record: KinesisStreamRecord) -> LedgerEntry | bool | None:
        """-> the entry to append (None: nothing to record), or False if the record failed."""
        try:
            command = parse_stream_command(record.kinesis.data_as_text())
        except (InvalidMessage, UnicodeDecodeError) as exc:
            # Retrying cannot repair it, and stopping here would block the whole partition.
            log.error("skipping malformed record %s: %s", record.kinesis.sequence_number, exc)
            return None
        with correlated(command.booking_id):
            try:
                return self._ledger.decide(command)
            except Exception:
                log.exception("record %s failed; it and the rest of the batch are retried", record.event_id)
                return False

    def _append(
        self, decided: list[tuple[KinesisStreamRecord, LedgerEntry | None]]
    ) -> KinesisStreamRecord | None:
        """Append the entries run by run -> the first record of the run that could not be written (None:
        all written)."""
        for run in commuting_runs(decided, lambda item: item[1]):
            entries = [(entry.to_json(), record.kinesis.partition_key) for record, entry in run if entry]
            if not entries:
                continue
            try:
                self._changelog.put_many(entries)
            except Exception:
                log.exception(
                    "%d changelog entries from record %s on may not be written; retried from there",
                    len(entries),
                    run[0][0].kinesis.sequence_number,
                )
                return run[0][0]
        return None


class PersisterBatchHandler:
    """The persister: Powertools' BatchProcessor is right here — each entry is persisted idempotently
    (by booking id) and independently of the others, so later entries may go on after a failed one."""

    def __init__(self, persister: DecisionPersister, metrics: Metrics) -> None:
        self._persister = persister
        self._metrics = metrics

    def __call__(self, event: dict, context: Any) -> dict:
        processor = BatchProcessor(
            event_type=EventType.KinesisDataStreams, raise_on_entire_batch_failure=False
        )
        return process_partial_response(
            event=event, record_handler=self._persist, processor=processor, context=context
        )

    def _persist(self, record: KinesisStreamRecord) -> str | None:
        try:
            entry = LedgerEntry.from_json(record.kinesis.data_as_text())
        except (InvalidMessage, UnicodeDecodeError) as exc:
            log.error("skipping malformed changelog entry %s: %s", record.kinesis.sequence_number, exc)
            return None
        with correlated(entry.booking_id):
            status = self._persister.persist(entry)
        # The ledger decided in order; this is where its decision becomes the booking's final status.
        count_settled(self._metrics, status, self._persister.name)
        return status.value if status else None
