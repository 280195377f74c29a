from __future__ import annotations

from chalicelib.domain.best_available import choose_seats, free_runs
from chalicelib.domain.models import Section


def section(rows: int, seats_per_row: int) -> Section:
    return Section(1, 1, "Stalls", 100, rows, seats_per_row, first_seat_id=101)


def seat(row: int, number: int, per_row: int = 6) -> int:
    return 101 + (row - 1) * per_row + number - 1


def free_but(s: Section, *taken: tuple[int, int]) -> set[int]:
    taken_ids = {seat(row, number, s.seats_per_row) for row, number in taken}
    return {sid for sid in range(s.first_seat_id, s.last_seat_id + 1) if sid not in taken_ids}


def test_runs_are_found_row_by_row() -> None:
    s = section(2, 6)
    assert free_runs(s, free_but(s, (1, 3), (2, 1), (2, 6))) == [(1, 1, 2), (1, 4, 3), (2, 2, 4)]


def test_side_by_side_in_the_front_row_from_the_left_on_an_empty_section() -> None:
    s = section(3, 6)
    assert choose_seats(s, free_but(s), 3) == (seat(1, 1), seat(1, 2), seat(1, 3))


def test_never_a_single_seat_stranded_when_another_choice_exists() -> None:
    s = section(2, 6)
    # Row 1: seat 1 taken, 2..6 free (5 seats). Taking 2 at its left end leaves 3, not 1; taking 4 at the
    # left leaves 1 stranded at the row's end, so 4 go to row 2 (6 free: leaves 2).
    free = free_but(s, (1, 1))
    assert choose_seats(s, free, 2) == (seat(1, 2), seat(1, 3))
    assert choose_seats(s, free, 4) == (seat(2, 1), seat(2, 2), seat(2, 3), seat(2, 4))
    # Only row 1 has room for 4 (row 2 full): stranding is then the only way, and side by side still wins.
    free = free_but(s, (1, 1), *((2, n) for n in range(1, 7)))
    assert choose_seats(s, free, 4) in {
        (seat(1, 2), seat(1, 3), seat(1, 4), seat(1, 5)),
        (seat(1, 3), seat(1, 4), seat(1, 5), seat(1, 6)),
    }


def test_a_run_of_exactly_n_plus_two_is_taken_from_an_end_never_the_middle_seat_alone() -> None:
    s = section(1, 6)
    free = free_but(s, (1, 1))  # 2..6 free
    chosen = choose_seats(s, free, 3)
    assert chosen == (seat(1, 2), seat(1, 3), seat(1, 4)), "leaves 5-6 together, not 2 alone"


def test_fewest_rows_when_no_row_has_them_side_by_side() -> None:
    s = section(3, 4)
    # Row 1: 2 free; row 2: 3 free; row 3: 1 free. Four seats: row 2's three and one of row 1's two.
    free = {seat(1, 1, 4), seat(1, 2, 4), seat(2, 2, 4), seat(2, 3, 4), seat(2, 4, 4), seat(3, 4, 4)}
    assert choose_seats(s, free, 4) == (seat(1, 1, 4), seat(2, 2, 4), seat(2, 3, 4), seat(2, 4, 4))


def test_none_when_the_section_has_fewer_free_seats() -> None:
    s = section(1, 4)
    assert choose_seats(s, {seat(1, 2, 4)}, 2) is None
    assert choose_seats(s, set(), 1) is None
    assert choose_seats(s, {seat(1, 2, 4)}, 1) == (seat(1, 2, 4),)
