"""If-None-Match against the seat map's ETag (chalicelib/conditional.py): weak comparison, lists, `*`."""

from __future__ import annotations

import pytest

from chalicelib.conditional import is_not_modified, seat_map_etag

ETAG = seat_map_etag(7, 1_700_000_000_042)


def test_the_etag_names_the_performance_and_the_maps_version() -> None:
    assert ETAG == 'W/"7-1700000000042"'


def test_each_representation_of_a_version_has_its_own_etag() -> None:
    tags = {
        seat_map_etag(7, 1_700_000_000_042, view, coding)
        for view in ("full", "compact")
        for coding in (None, "gzip")
    }
    assert tags == {
        ETAG,
        'W/"7-1700000000042-gzip"',
        'W/"7-1700000000042-compact"',
        'W/"7-1700000000042-compact-gzip"',
    }


@pytest.mark.parametrize(
    "if_none_match",
    [ETAG, '"7-1700000000042"', f'"7-1", {ETAG}', f' W/"x" ,{ETAG} ', "*"],
)
def test_a_matching_if_none_match_means_not_modified(if_none_match: str) -> None:
    assert is_not_modified(if_none_match, ETAG)


@pytest.mark.parametrize(
    "if_none_match", [None, "", 'W/"7-1700000000041"', 'W/"8-1700000000042"', "7-1700000000042", ", ,"]
)
def test_anything_else_gets_the_map(if_none_match: str | None) -> None:
    assert not is_not_modified(if_none_match, ETAG)
