"""The live seat state of a performance in Redis: publishing it, rebuilding it from MySQL, reading the map."""

from __future__ import annotations

from chalicelib.domain.models import Performance, SeatStatus
from chalicelib.services.ports import BookingStore, SeatStore


class SeatStateService:
    def __init__(self, seat_store: SeatStore, bookings: BookingStore) -> None:
        self._seats = seat_store
        self._bookings = bookings

    def publish(self, performance: Performance) -> bool:
        """Load the performance's seats into Redis from MySQL (the truth) unless they are there already."""
        holders = self._bookings.active_seat_holders(performance.performance_id)
        return self._seats.load_performance(performance.performance_id, performance.seat_ids, holders)

    def statuses(self, performance: Performance) -> dict[int, SeatStatus]:
        statuses = self._seats.seat_statuses(performance.performance_id)
        if statuses is None:
            self.publish(performance)
            statuses = self._seats.seat_statuses(performance.performance_id) or {}
        return statuses

    def seat_map(self, performance: Performance) -> dict:
        statuses = self.statuses(performance)
        sections = []
        for section in performance.sections:
            seats = []
            available = 0
            for seat_id in range(section.first_seat_id, section.last_seat_id + 1):
                status = statuses.get(seat_id, SeatStatus.AVAILABLE)
                available += status is SeatStatus.AVAILABLE
                row, number = section.position_of(seat_id)
                seats.append({"seat_id": seat_id, "row": row, "number": number, "status": status.value})
            sections.append(
                {
                    "section_id": section.section_id,
                    "name": section.name,
                    "price": section.price,
                    "available": available,
                    "seats": seats,
                }
            )
        return {
            "performance_id": performance.performance_id,
            "strategy": performance.strategy,
            "version": self._seats.version(performance.performance_id),
            "sections": sections,
        }
