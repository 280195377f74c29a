"""The in-memory booking store (tests/support/fakes.py) against the BookingStore contract; MariaDB's
repository runs the same tests in tests/integration/test_booking_store_contract.py."""

from __future__ import annotations

import pytest

from chalicelib.domain.models import Section
from tests.support.booking_store_contract import BookingStoreContract, HoldsContract
from tests.support.fakes import InMemoryBookings


class TestInMemoryBookings(BookingStoreContract, HoldsContract):
    @pytest.fixture()
    def store(self) -> InMemoryBookings:
        return InMemoryBookings()

    @pytest.fixture()
    def seats(self) -> tuple[int, tuple[int, ...]]:
        return 1, (11, 12, 13, 14)

    @pytest.fixture()
    def section(self, store) -> Section:
        store.sections[1] = section = Section(1, 1, "S", 0, 1, 4, first_seat_id=11)
        return section
