"""MariaDB's booking repository against the BookingStore contract, the same tests the in-memory fake the unit
tests use passes (tests/unit/test_booking_store_contract.py): what the fake promises, MySQL does."""

from __future__ import annotations

import pytest

from chalicelib.adapters.mysql_reconcile import ReconcileRepository
from chalicelib.domain.models import Section
from tests.support.booking_store_contract import BookingStoreContract, HoldsContract


class TestMariaDbBookings(BookingStoreContract, HoldsContract):
    @pytest.fixture()
    def store(self, services) -> ReconcileRepository:
        return ReconcileRepository(services.db)

    @pytest.fixture()
    def seats(self, new_performance) -> tuple[int, tuple[int, ...]]:
        performance = new_performance(rows=1, seats_per_row=4)
        first = performance["sections"][0]["first_seat_id"]
        return performance["performance_id"], tuple(range(first, first + 4))

    @pytest.fixture()
    def section(self, services, seats) -> Section:
        return services.catalogue.performance(seats[0]).sections[0]
