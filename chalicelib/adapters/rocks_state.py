"""The embedded key-value store of `stream_state`'s seat ledger: RocksDB through `rocksdict`.

Local to one consumer process (on Lambda: the container's /tmp), like a Kafka Streams state store. It is a
cache of the decision changelog, never the truth: a fresh or wiped directory is rebuilt from the changelog.
RocksDB allows one opener per directory, so each process opens it once and its threads share it.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping

from rocksdict import Rdict, WriteBatch


class RocksKeyValueStore:
    def __init__(self, path: str) -> None:
        os.makedirs(path, exist_ok=True)
        self.path = path
        self._db = Rdict(path)

    def get(self, key: str) -> str | None:
        return self._db.get(key)

    def write(self, puts: Mapping[str, str], deletes: Iterable[str] = ()) -> None:
        """Apply every put and delete atomically (one RocksDB write batch)."""
        batch = WriteBatch()
        for key in deletes:
            batch.delete(key)
        for key, value in puts.items():
            batch.put(key, value)
        self._db.write(batch)

    def close(self) -> None:
        self._db.close()
