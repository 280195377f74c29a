"""Kinesis: `stream_state`'s request stream (partitioned by section) and its decision changelog.

Records are written through a PutRecordsBatcher (kinesis_batcher.py): concurrent puts of a process share
PutRecords calls, and each put returns only once its own record is in the stream."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence

from chalicelib.adapters.kinesis_batcher import PutRecordsBatcher

READ_LIMIT = 1000


class KinesisStream:
    def __init__(
        self, kinesis_client, stream_name: str, *, linger_seconds: float = 0.0, deadline_seconds: float = 5.0
    ) -> None:
        self._kinesis = kinesis_client
        self.name = stream_name
        self.writer = PutRecordsBatcher(
            kinesis_client, stream_name, linger_seconds=linger_seconds, deadline_seconds=deadline_seconds
        )

    def put(self, data: str, partition_key: str) -> str:
        """Append one record; -> its sequence number, once it is in the stream. A put that returned is ahead
        of every later put of the same partition key; concurrent puts share a PutRecords call (in no promised
        order among themselves). Raises StreamWriteError if the record may not be in the stream."""
        return self.writer.put(data, partition_key).sequence_number

    def put_many(self, records: Sequence[tuple[str, str]]) -> list[str]:
        """Append (data, partition key) records in one go (no order among them); -> their sequence numbers."""
        return [written.sequence_number for written in self.writer.put_many(records)]

    def read_since(self, positions: Mapping[str, str]) -> Iterator[tuple[str, str, str]]:
        """Every record after `positions` (shard id -> last sequence number read), up to each shard's tip;
        yields (shard id, sequence number, data) in order within each shard."""
        for shard_id in self._shard_ids():
            yield from self._read_shard(shard_id, positions.get(shard_id))

    def ping(self) -> bool:
        self._kinesis.describe_stream_summary(StreamName=self.name)
        return True

    def _shard_ids(self) -> list[str]:
        shards, token = [], None
        while True:
            page = (
                self._kinesis.list_shards(NextToken=token)
                if token
                else self._kinesis.list_shards(StreamName=self.name)
            )
            shards += [shard["ShardId"] for shard in page["Shards"]]
            token = page.get("NextToken")
            if not token:
                return shards

    def _read_shard(self, shard_id: str, after: str | None) -> Iterator[tuple[str, str, str]]:
        start = (
            {"ShardIteratorType": "AFTER_SEQUENCE_NUMBER", "StartingSequenceNumber": after}
            if after
            else {"ShardIteratorType": "TRIM_HORIZON"}
        )
        iterator = self._kinesis.get_shard_iterator(StreamName=self.name, ShardId=shard_id, **start)[
            "ShardIterator"
        ]
        while iterator:
            page = self._kinesis.get_records(ShardIterator=iterator, Limit=READ_LIMIT)
            for record in page["Records"]:
                yield shard_id, record["SequenceNumber"], record["Data"].decode()
            if not page["Records"] and not page.get("MillisBehindLatest"):
                return  # at the tip
            iterator = page.get("NextShardIterator")  # None: a closed shard, read to its end
