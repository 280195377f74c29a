"""Booking ids that carry their performance (domain/booking_ids.py), and the Redis key layout they allow:
every key a script or transaction touches together lives in one Redis Cluster hash slot."""

from __future__ import annotations

import threading
import time

import pytest
import redis
from redis.cluster import key_slot
from ulid import ULID

from chalicelib.adapters.bloom import RedisBloomFilter
from chalicelib.adapters.redis_seats import RedisSeatStore
from chalicelib.domain import booking_ids
from chalicelib.domain.booking_ids import made_with_key, mint, performance_of, timestamp_of
from chalicelib.strategies.redis_async import TAKE_SCRIPT
from chalicelib.strategies.redis_lock import RedisLockStrategy


def slot(key: str) -> int:
    return key_slot(key.encode())


def test_an_id_is_a_ulid_carrying_time_performance_and_randomness() -> None:
    before = time.time()
    booking_id = mint(42)
    parsed = ULID.from_str(booking_id)  # python-ulid reads it as a ULID: 26 Crockford characters
    assert len(booking_id) == 26 and str(parsed) == booking_id
    assert before - 0.001 <= parsed.timestamp == timestamp_of(booking_id) <= time.time() + 0.001
    assert performance_of(booking_id) == 42
    assert parsed.bytes[6:10] == (42).to_bytes(4, "big")
    assert mint(42) != booking_id  # 48 random bits


def test_the_codec_round_trips_every_byte_pattern_and_refuses_what_is_not_a_ulid() -> None:
    for raw in (bytes(16), b"\xff" * 16, bytes(range(16)), ULID().bytes):
        text = booking_ids.encode(raw)
        assert text == str(ULID.from_bytes(raw)) and booking_ids.decode(text) == raw
        assert booking_ids.decode(text.lower()) == raw
    for bad in ("", "8" + "0" * 25, "0" * 25, "0" * 27, "0" * 25 + "U", "0" * 25 + "é", "../" + "0" * 23):
        with pytest.raises(ValueError):
            booking_ids.decode(bad)
        assert performance_of(bad) is None and timestamp_of(bad) is None
        assert not made_with_key(bad, "ann", "k")


def test_ids_sort_by_creation_time() -> None:
    ids = [mint(7, now_ms=ms) for ms in (1_700_000_000_000, 1_700_000_000_001, 1_800_000_000_000)]
    assert ids == sorted(ids)
    assert [timestamp_of(i) for i in ids] == [1_700_000_000.0, 1_700_000_000.001, 1_800_000_000.0]


def test_a_keyed_id_is_recognised_by_its_user_and_key_only() -> None:
    booking_id = mint(9, "ann", "key-1")
    assert made_with_key(booking_id, "ann", "key-1")
    assert not made_with_key(booking_id, "bob", "key-1")
    assert not made_with_key(booking_id, "ann", "key-2")
    assert not made_with_key(mint(9), "ann", "key-1")
    # One key in one millisecond: one id (the service answers both attempts with one booking).
    assert mint(9, "ann", "key-1", now_ms=5) == mint(9, "ann", "key-1", now_ms=5)
    assert mint(9, "ann", "key-1", now_ms=5) != mint(10, "ann", "key-1", now_ms=5)


def test_a_keyed_id_of_the_layout_before_is_still_recognised() -> None:
    """Before: 6 bytes of milliseconds, then the 10-byte digest of (user, key)."""
    old = str(ULID.from_bytes((1_700_000_000_000).to_bytes(6, "big") + booking_ids.key_digest("ann", "k")))
    assert made_with_key(old, "ann", "k") and not made_with_key(old, "bob", "k")
    assert timestamp_of(old) == 1_700_000_000.0


def test_performance_ids_beyond_32_bits_keep_their_low_bits() -> None:
    assert performance_of(mint(2**32 + 5)) == 5


def test_minting_takes_no_lock_and_threads_never_collide() -> None:
    minted: list[list[str]] = [[] for _ in range(8)]

    def run(index: int) -> None:
        minted[index] = [mint(1) for _ in range(2_000)]

    threads = [threading.Thread(target=run, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    every = [booking_id for batch in minted for booking_id in batch]
    assert len(set(every)) == len(every) == 16_000


# --- the key layout -----------------------------------------------------------------------------------------
@pytest.fixture()
def store() -> RedisSeatStore:
    # register_script does not connect: the keys are all this test reads.
    return RedisSeatStore(redis.Redis(port=1), 60, "bk", take_script=TAKE_SCRIPT)


@pytest.mark.parametrize("performance_id", [1, 42, 123_456, 2**32 - 1])
def test_every_key_of_a_performance_lives_in_one_slot(store: RedisSeatStore, performance_id: int) -> None:
    booking_id = mint(performance_id, "ann", "k")
    lock = RedisLockStrategy(None, None, None, "bk")  # type: ignore[arg-type]
    keys = [
        store.seats_key(performance_id),
        store.version_key(performance_id),
        store.changes_key(performance_id),
        store.rendered_key(performance_id, 17),
        store.frame_key(performance_id),
        store.record_key(booking_id),  # derived from the id alone
        store.record_key(booking_id, performance_id),
        f"{store.seats_key(performance_id)}:loading:abc",  # load_performance's scratch hash
        lock.lease_name(performance_id, 5),
    ]
    assert store.record_key(booking_id) == store.record_key(booking_id, performance_id)
    assert {slot(key) for key in keys} == {slot(store.seats_key(performance_id))}


def test_a_performance_id_beyond_32_bits_needs_its_id_to_find_the_record(store: RedisSeatStore) -> None:
    """Writers always pass the performance (one slot with its seats); the id alone names another key."""
    performance_id = 2**32 + 7
    booking_id = mint(performance_id)
    assert slot(store.record_key(booking_id, performance_id)) == slot(store.seats_key(performance_id))
    assert store.record_key(booking_id) != store.record_key(booking_id, performance_id)


def test_the_bloom_filters_scratch_key_shares_its_slot() -> None:
    bloom = RedisBloomFilter(redis.Redis(port=1), "bk", 1_000, 0.01)
    assert slot(f"{bloom.key}:merging:0123abcd") == slot(bloom.key)
