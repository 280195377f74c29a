"""Waiting rooms (docs/api.md#waiting-rooms): a performance created with `"waiting_room": {"admit_per_second":
N}` lets people book only once admitted, N a second, in the order they joined its queue.

A user joins once (the same ticket back while it lives), reads their ticket until its turn comes, and then
gets an admission token (chalicelib/adapters/tokens.py: `aud` the performance, `sub` the user, `exp`) that
every booking write on the performance must carry. A ticket whose turn came but that was not collected
within WAITING_ROOM_COLLECT_SECONDS lapses (its user may join again, at the back), as the AWS Virtual
Waiting Room's positions do: a place in line is not kept for someone who left.
"""

from __future__ import annotations

import math
import secrets
from collections.abc import Callable
from typing import Any

from chalicelib.domain.errors import NotFound, TicketLapsed
from chalicelib.domain.models import Performance
from chalicelib.domain.waiting_room import TicketState
from chalicelib.services.ports import AdmissionIssuer, QueueStore

MAX_TICKET_LENGTH = 32


class WaitingRooms:
    def __init__(
        self,
        store: QueueStore,
        admissions: AdmissionIssuer,
        clock: Callable[[], float],
        collect_seconds: float,
        lifetime_seconds: float,
        admission_seconds: float,
    ) -> None:
        self._store = store
        self._admissions = admissions
        self.clock = clock
        self._collect_ms = int(collect_seconds * 1000)
        self._lifetime_ms = int(lifetime_seconds * 1000)
        self._admission_ms = int(admission_seconds * 1000)

    def join(self, performance: Performance, user_id: str) -> tuple[dict[str, Any], bool]:
        """-> (the user's ticket, whether it is new). Joining again answers the same ticket while it lives."""
        rate = _rate(performance)
        now_ms = self._now_ms()
        state = self._store.join(
            performance.performance_id,
            user_id,
            f"t{secrets.token_hex(8)}",
            now_ms,
            rate,
            self._collect_ms,
            self._lifetime_ms,
            self._admission_ms,
        )
        return self._answer(performance, user_id, state), state.new

    def ticket(self, performance: Performance, ticket: str, user_id: str) -> dict[str, Any]:
        """The user's ticket, with the admission token once its turn has come. 404 for a ticket that is not
        theirs (or none), 410 TICKET_LAPSED for one not collected in time."""
        rate = _rate(performance)
        if not 0 < len(ticket) <= MAX_TICKET_LENGTH or not (ticket.isascii() and ticket.isalnum()):
            raise NotFound(f"ticket {ticket[:MAX_TICKET_LENGTH]!r} not found")
        now_ms = self._now_ms()
        state = self._store.read(
            performance.performance_id, ticket, user_id, now_ms, rate, self._collect_ms, self._admission_ms
        )
        if state is None:
            raise NotFound(f"ticket {ticket} not found")
        if state.lapsed:
            why = (
                "its admission has expired"
                if state.collected_ms is not None
                else f"it was not collected within {self._collect_ms // 1000} s of its turn"
            )
            raise TicketLapsed(f"ticket {ticket} has lapsed: {why}; join the queue again")
        return self._answer(performance, user_id, state)

    def _answer(self, performance: Performance, user_id: str, state: TicketState) -> dict[str, Any]:
        """What the queue told, as of the room's own time (a caller's clock may lag it)."""
        now_ms = state.now_ms
        admitted = now_ms >= state.turn_ms
        token = None
        if admitted and state.collected_ms is not None:
            # Signed from the collection time: the same token at every read.
            token = self._admissions.admission_token(
                user_id, performance.performance_id, issued_at=state.collected_ms / 1000
            )
        return {
            "ticket": state.ticket,
            "performance_id": performance.performance_id,
            "position": 0 if admitted else max(1, state.number - math.floor(state.serving)),
            "serving": math.floor(state.serving),
            "eta_seconds": 0.0 if admitted else math.ceil((state.turn_ms - now_ms) / 100) / 10,
            "admission_token": token["token"] if token else None,
            "admission_expires_at": token["expires_at"] if token else None,
        }

    def _now_ms(self) -> int:
        return int(self.clock() * 1000)


def _rate(performance: Performance) -> int:
    if not performance.admit_per_second:
        raise NotFound(f"performance {performance.performance_id} has no waiting room")
    return performance.admit_per_second
