"""The waiting rooms' queues in Redis (chalicelib/services/waiting_room.py decides what they mean).

Per performance three keys under a hash tag of its own (`{w<id>}`: the room's traffic does not land on the
shard of the performance's seat map): the room (issued, serving, the time it was advanced to), the tickets
(id -> number, user, turn, collected) and the users' tickets. Each script advances the serving number and
reads or writes atomically, so two processes never issue one number twice nor admit out of order.
"""

from __future__ import annotations

from pathlib import Path

import redis

from chalicelib.domain.waiting_room import TicketState

LUA_DIR = Path(__file__).resolve().parent / "lua"
ADVANCE = (LUA_DIR / "waiting_room_advance.lua").read_text()


def _script(client: redis.Redis, name: str):
    return client.register_script(ADVANCE + (LUA_DIR / name).read_text())


class RedisWaitingRooms:
    def __init__(self, client: redis.Redis, key_prefix: str) -> None:
        self._prefix = key_prefix
        self._join = _script(client, "waiting_room_join.lua")
        self._read = _script(client, "waiting_room_ticket.lua")

    def _keys(self, performance_id: int) -> list[str]:
        tag = f"{self._prefix}:{{w{performance_id}}}"
        return [f"{tag}:room", f"{tag}:tickets", f"{tag}:users"]

    def join(
        self,
        performance_id: int,
        user_id: str,
        new_ticket: str,
        now_ms: int,
        rate: int,
        collect_ms: int,
        lifetime_ms: int,
        admission_ms: int,
    ) -> TicketState:
        ticket, number, serving, turn, collected, new, now = self._join(
            keys=self._keys(performance_id),
            args=[now_ms, rate, user_id, new_ticket, collect_ms, lifetime_ms, admission_ms],
        )
        return _ticket_state(_text(ticket), number, serving, turn, collected, now, new=bool(int(new)))

    def read(
        self,
        performance_id: int,
        ticket: str,
        user_id: str,
        now_ms: int,
        rate: int,
        collect_ms: int,
        admission_ms: int,
    ) -> TicketState | None:
        answer = self._read(
            keys=self._keys(performance_id)[:2],
            args=[now_ms, rate, ticket, user_id, collect_ms, admission_ms],
        )
        if answer is None:
            return None
        number, serving, turn, collected, lapsed, now = answer
        return _ticket_state(ticket, number, serving, turn, collected, now, lapsed=bool(int(lapsed)))


def _ticket_state(ticket: str, number, serving, turn, collected, now, **flags: bool) -> TicketState:
    """A script's answer (numbers as Redis returns them: integers, or text for the fractional ones)."""
    return TicketState(
        ticket=ticket,
        number=int(number),
        serving=float(serving),
        turn_ms=int(float(turn)),
        collected_ms=int(float(collected)) if _text(collected) else None,
        now_ms=int(float(now)),
        **flags,
    )


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
