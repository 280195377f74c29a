"""Best available seats: which N free seats of a section a request for `{"section_id", "count"}` gets.

The rules (docs/api.md "Best available"), in order:
1. N seats side by side in one row whenever any row has them;
2. else the fewest rows (the longest runs of free seats first);
3. among the choices left, never a single free seat stranded between taken ones (or a row's end) when
   another choice leaves none; then the row nearest the stage (row 1), then the leftmost seat.

Pure: every strategy runs it where it decides (db_lock in its transaction, fifo_partition's consumer in
line, stream_state's ledger); redis_async's take runs the same rules in Lua
(strategies/redis_async/reserve_seats.lua), tested against this one.
"""

from __future__ import annotations

from collections.abc import Collection

from chalicelib.domain.models import Section

Run = tuple[int, int, int]  # (row, first seat number of the run, its length)


def free_runs(section: Section, free: Collection[int]) -> list[Run]:
    """Each row's runs of consecutive free seats, row by row, left to right."""
    runs: list[Run] = []
    for row in range(1, section.rows + 1):
        start = None
        for number in range(1, section.seats_per_row + 2):  # one past the end closes the last run
            is_free = number <= section.seats_per_row and _seat_id(section, row, number) in free
            if is_free and start is None:
                start = number
            elif not is_free and start is not None:
                runs.append((row, start, number - start))
                start = None
    return runs


def choose_seats(section: Section, free: Collection[int], count: int) -> tuple[int, ...] | None:
    """The seat ids `count` free seats of `section` should be, or None if the section has fewer free."""
    runs = free_runs(section, free)
    if count < 1 or sum(length for _, _, length in runs) < count:
        return None
    side_by_side = [
        (_strands(length, offset, count), row, start + offset)
        for row, start, length in runs
        for offset in range(length - count + 1)
    ]
    if side_by_side:
        _, row, first = min(side_by_side)
        return tuple(_seat_id(section, row, number) for number in range(first, first + count))
    return _across_rows(section, runs, count)


def _strands(length: int, offset: int, count: int) -> int:
    """How many single free seats taking `count` seats at `offset` of a run of `length` leaves alone."""
    return (offset == 1) + (length - offset - count == 1)


def _across_rows(section: Section, runs: list[Run], count: int) -> tuple[int, ...]:
    """The longest runs first (fewest rows), each taken from its left end; the last one only in part, where
    it leaves a single seat alone only if every run would."""
    chosen: list[int] = []
    for row, start, length in sorted(runs, key=lambda run: (-run[2], run[0], run[1])):
        wanted = count - len(chosen)
        if wanted <= 0:
            break
        take = min(wanted, length)
        chosen.extend(_seat_id(section, row, number) for number in range(start, start + take))
    return tuple(sorted(chosen))


def _seat_id(section: Section, row: int, number: int) -> int:
    return section.first_seat_id + (row - 1) * section.seats_per_row + number - 1
