"""moto's Kinesis keeps every record it acknowledges once infra.local.emulator has serialised its puts (the
emulator `make run` and the tests use): two puts that meet inside moto's read-then-write of the next sequence
number are forced here, deterministically, by holding each at that read until the other arrives."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator

import pytest
from moto.kinesis import models

from infra.local.emulator import serialise_kinesis_puts


@pytest.fixture()
def puts_that_meet(monkeypatch) -> Iterator[threading.Barrier]:
    """Each put, having read moto's last sequence number, waits until a second put has read it too (or 1 s
    has passed: with the puts serialised, the second can only read once the first has stored its record)."""
    meeting = threading.Barrier(2, timeout=1.0)
    last_number = models.Shard.get_max_sequence_number

    def held_read(self: models.Shard) -> int:
        number = last_number(self)
        with contextlib.suppress(threading.BrokenBarrierError):
            meeting.wait()  # between moto's read of the last number and its write of the next
        return number

    monkeypatch.setattr(models.Shard, "get_max_sequence_number", held_read)
    yield meeting


def shard_with_a_record() -> models.Shard:
    """moto reads the last sequence number only when the shard holds a record already."""
    shard = models.Shard(0, 0, 2**128)
    shard.records[1] = models.Record("seed", "seed", 1, "")
    return shard


def two_puts_at_once(shard: models.Shard) -> list[str]:
    numbers: list[str] = []
    puts = [
        threading.Thread(target=lambda n=n: numbers.append(shard.put_record(f"key-{n}", f"data-{n}", None)))
        for n in range(2)
    ]
    for put in puts:
        put.start()
    for put in puts:
        put.join(timeout=10)
    return numbers


def test_unserialised_moto_loses_one_of_two_puts_that_meet(puts_that_meet, monkeypatch) -> None:
    """The fault itself, so the test below is known to be able to see it: both acknowledged, one stored."""
    # moto's own put, even where this process's moto server has serialised it already (undone afterwards)
    monkeypatch.setattr(
        models.Shard, "put_record", getattr(models.Shard.put_record, "unsafe", models.Shard.put_record)
    )
    shard = shard_with_a_record()
    numbers = two_puts_at_once(shard)
    assert numbers == ["2", "2"]
    assert len(shard.records) == 2  # the seed and one of the two


def test_serialised_moto_keeps_both_puts(puts_that_meet, monkeypatch) -> None:
    monkeypatch.setattr(models.Shard, "put_record", models.Shard.put_record)  # restore moto's after the test
    serialise_kinesis_puts()
    shard = shard_with_a_record()
    numbers = two_puts_at_once(shard)
    assert sorted(numbers) == ["2", "3"]
    assert sorted(record.data for record in shard.records.values()) == ["data-0", "data-1", "seed"]
