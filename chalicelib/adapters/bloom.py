"""The catalogue's Bloom filter in Redis: which event, performance and seat ids surely do not exist, shared by
every process, so a lookup of an unknown id is answered 404 without MySQL.

Layout (one Redis string used as a bitmap; the sizing is part of the key, so a new sizing builds afresh):
    bk:{catalogue-filter}:m<m>:k<k>   bits [0, m) the filter; bit m "built": every id MySQL had is in it
    bk:{catalogue-filter}:m<m>:k<k>:merging:<uuid>   a build's scratch bitmap (same hash tag, same slot)

An id is `"<kind>:<id>"` hashed once with MurmurHash3 (x64, 128 bits, the `mmh3` package); its k bit
positions are h1 + i·h2 mod m (Kirsch–Mitzenmacher double hashing, as good as k independent hashes). A lookup
reads all its bits with one BITFIELD_RO. A few ids are added with BITFIELD SETs; many (a build from MySQL) are
set in a local copy of the bitmap that is OR-ed into the live one (BITOP OR, atomic): no bit is ever cleared,
so adds from concurrent event creations are never lost.

The filter only ever says "surely absent" for an id whose bits are not all set in a filter whose built bit is
set. Unbuilt (a new Redis, a lost key) or unreachable, it answers "cannot tell" and callers ask MySQL.
"""

from __future__ import annotations

import logging
import math
import uuid
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from itertools import islice

import mmh3
import redis

from chalicelib.domain.errors import ServiceUnavailable

log = logging.getLogger(__name__)
# Redis strings hold at most 512 MiB: bit offsets below 2**32.
MAX_BITS = 2**32 - 1
BITFIELD_BATCH = 7_000  # bit positions per BITFIELD command
# Past m/2000 bit positions (default sizing: ~1,400 ids) the whole bitmap (m/8 bytes) is cheaper to send
# than the positions one by one (measured here: 2.4 MB merged in ~20 ms; 10,000 ids as BITFIELDs: 250 ms).
SPARSE_SHARE = 2_000


def filter_size(expected_items: int, false_positive_rate: float) -> tuple[int, int]:
    """-> (m bits, k hashes) for a filter of `expected_items` ids with the given false-positive rate:
    m = -n·ln p / (ln 2)², k = (m / n)·ln 2 (e.g. n = 1,000,000 and p = 1 % give 9,585,059 bits and k = 7)."""
    if expected_items < 1 or not 0 < false_positive_rate < 1:
        raise ValueError("a Bloom filter needs expected items >= 1 and a false-positive rate in (0, 1)")
    bits = math.ceil(-expected_items * math.log(false_positive_rate) / math.log(2) ** 2)
    if bits >= MAX_BITS:
        raise ValueError(f"a filter of {bits} bits does not fit in a Redis string")
    return bits, max(1, round(bits / expected_items * math.log(2)))


def _batches(offsets: Iterable[int], size: int) -> Iterator[list[int]]:
    iterator = iter(offsets)
    while batch := list(islice(iterator, size)):
        yield batch


@contextmanager
def _unavailable_as_503() -> Iterator[None]:
    try:
        yield
    except ServiceUnavailable:
        raise  # already the contract's answer (a guarded client's own error)
    except redis.RedisError as exc:
        raise ServiceUnavailable("the catalogue filter (Redis) is unavailable") from exc


def _set_bit(bitmap: bytearray, offset: int) -> None:
    bitmap[offset >> 3] |= 0x80 >> (offset & 7)  # Redis numbers bits from the most significant one


class RedisBloomFilter:
    def __init__(
        self, client: redis.Redis, key_prefix: str, expected_items: int, false_positive_rate: float
    ) -> None:
        self._client = client
        self.bits, self.hashes = filter_size(expected_items, false_positive_rate)
        # Hash-tagged: the merge's scratch key (`<key>:merging:<uuid>`) shares the key's cluster slot, as the
        # BITOP that ORs one into the other needs.
        self.key = f"{key_prefix}:{{catalogue-filter}}:m{self.bits}:k{self.hashes}"

    def _offsets(self, kind: str, item_id: int) -> list[int]:
        h1, h2 = mmh3.hash64(f"{kind}:{item_id}", signed=False)
        return [(h1 + i * h2) % self.bits for i in range(self.hashes)]

    def add(self, items: Iterable[tuple[str, int]]) -> None:
        """Set the bits of (kind, id) pairs. Raises ServiceUnavailable if Redis cannot take them."""
        offsets: list[int] = []
        bitmap: bytearray | None = None
        for kind, item_id in items:
            if bitmap is not None:
                for offset in self._offsets(kind, item_id):
                    _set_bit(bitmap, offset)
                continue
            offsets.extend(self._offsets(kind, item_id))
            if len(offsets) > self.bits // SPARSE_SHARE:
                bitmap = bytearray((self.bits + 7) // 8)
                for offset in offsets:
                    _set_bit(bitmap, offset)
        with _unavailable_as_503():
            if bitmap is None:
                self._set_bits(offsets)
            else:
                self._merge(bitmap)

    def _set_bits(self, offsets: list[int]) -> None:
        for batch in _batches(offsets, BITFIELD_BATCH):
            operations: list[str | int] = []
            for offset in batch:
                operations.extend(("SET", "u1", offset, 1))
            self._client.execute_command("BITFIELD", self.key, *operations)

    def _merge(self, bitmap: bytearray) -> None:
        scratch = f"{self.key}:merging:{uuid.uuid4().hex}"
        merge = self._client.pipeline(transaction=True)
        merge.set(scratch, bytes(bitmap))
        # As a plain command: redis-py's cluster pipeline refuses its `bitop` method outright (a BITOP's keys
        # may span slots), though this one's two keys share the filter's hash tag (`make bench` found it).
        merge.execute_command("BITOP", "OR", self.key, self.key, scratch)
        merge.delete(scratch)
        merge.execute()

    def absent(self, kind: str, ids: Sequence[int]) -> set[int] | None:
        """The ids surely absent; None if the filter is not built. Unreachable: set() (nothing is proven)."""
        offsets = [self._offsets(kind, item_id) for item_id in ids]
        reads = [("u1", offset) for positions in offsets for offset in positions]
        try:
            built, *bits = self._client.bitfield_ro(self.key, "u1", self.bits, items=reads)
        except redis.RedisError as exc:
            log.debug("catalogue filter unreadable (%s): asking MySQL", exc)
            return set()
        if not built:
            return None
        k = self.hashes
        return {item_id for i, item_id in enumerate(ids) if not all(bits[i * k : (i + 1) * k])}

    def is_built(self) -> bool:
        with _unavailable_as_503():
            return bool(self._client.getbit(self.key, self.bits))

    def mark_built(self) -> None:
        with _unavailable_as_503():
            self._client.setbit(self.key, self.bits, 1)
