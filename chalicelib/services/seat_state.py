"""The live seat state of a performance in Redis: publishing it, rebuilding it from MySQL, reading the map."""

from __future__ import annotations

from chalicelib.adapters.redis_seats import FREE, RedisSeatStore, seat_status_of
from chalicelib.domain.models import BookingStatus, Performance, SeatStatus
from chalicelib.services.ports import BookingStore


def holder_state(booking_id: str, status: BookingStatus) -> str:
    return f"{'B' if status is BookingStatus.CONFIRMED else 'H'}:{booking_id}"


class SeatStateService:
    def __init__(self, seat_store: RedisSeatStore, bookings: BookingStore) -> None:
        self._seats = seat_store
        self._bookings = bookings

    def publish(self, performance: Performance) -> bool:
        """Load the performance's seats into Redis from MySQL (the truth) unless they are there already."""
        holders = {
            seat_id: holder_state(booking_id, status)
            for seat_id, (booking_id, status) in self._bookings.active_seat_holders(
                performance.performance_id
            ).items()
        }
        return self._seats.load_performance(performance.performance_id, performance.seat_ids, holders)

    def states(self, performance: Performance) -> dict[int, str]:
        states = self._seats.seat_states(performance.performance_id)
        if states is None:
            self.publish(performance)
            states = self._seats.seat_states(performance.performance_id) or {}
        return states

    def seat_map(self, performance: Performance) -> dict:
        states = self.states(performance)
        sections = []
        for section in performance.sections:
            seats = []
            available = 0
            for seat_id in range(section.first_seat_id, section.last_seat_id + 1):
                status = seat_status_of(states.get(seat_id, FREE))
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
