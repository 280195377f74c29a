"""Reconcile: find drift between the Redis seat maps and MySQL, and repair it with MySQL as the truth.

Per performance, every seat of the Redis seat hash ("0" free, "H:<booking>" held by a PENDING booking,
"B:<booking>" booked) is compared with MySQL's active `booking_seats` rows and the status of the bookings
Redis names. The repairs, each counted in the summary under its kind:

  seats_booked            MySQL has the seat CONFIRMED for booking x, Redis shows it free or someone
                          else's -> "B:x"
  seats_held              MySQL has the seat held by booking x, still PENDING (redis_async's journaled hold),
                          Redis shows it free or someone else's -> "H:x"
                          (both: replace_seats.lua, a compare-and-set on the state just read, so a cancel,
                          a confirm or a sale that lands meanwhile is never undone)
  seats_released          Redis shows x on a seat x does not hold in MySQL (x CANCELLED, REJECTED or FAILED,
                          or x holds other seats) -> free (release_seats.lua: only while it still shows x)
  stale_holds_failed      Redis holds seats for x, MySQL has never heard of x (a take whose journal write
                          failed, or a take Redis ran after its client had given up on it), and x was made
                          longer ago than ABANDONED_TAKE_SECONDS: no 202 leaves before the journal row is
                          committed, and the request path gives up on MySQL long before that ->
                          the asynchronous strategy's give_up: a FAILED row claims the booking id in MySQL
                          (nothing can confirm it later), then the seats are released — only if FAILED won
  stale_pending_failed    any strategy: a booking MySQL has PENDING, accepted longer ago than the hold
                          deadline (its message lost, parked in a DLQ, or never sent) -> give_up: PENDING ->
                          FAILED by compare-and-set (a consumer that settled it first wins), seats released
                          in Redis and, for stream_state, in the ledger
  ledger_releases_resent  stream_state: a cancel whose release never reached the seat ledger (reconcile_log
                          action `ledger_release_pending`) -> the release is put on the request stream again

Race safety: a repair re-reads the booking in MySQL and the seats in Redis right before it acts, and acts
through owner-checked Lua, so a booking confirmed, cancelled or re-sold between the comparison and the repair
is left as live traffic made it (the next pass looks again). Every repair writes one reconcile_log row,
deduplicated by action and booking: a rerun, or two runs at once, log it once.

The hold deadline: an accepted booking is legitimately PENDING while its message waits in its queue (or its
request on the stream). Each delivery takes at most the visibility timeout plus the backoff the consumer
then sets, and after MAX_RECEIVE_COUNT deliveries the consumer gives up by itself, so past
`MAX_RECEIVE_COUNT x QUEUE_VISIBILITY_TIMEOUT_SECONDS + sum of the backoffs` (the queue's retry window) no
delivery can still settle it — unless MySQL was away for its last ones. The deadline must exceed that window
by the worst backlog one expects; a shorter configured deadline is raised to the window plus a margin.
Failing too early still sells no seat twice: the settling is a compare-and-set, so a late consumer finds the
booking FAILED and changes nothing (the client, told FAILED, may retry).

Which performances a full run checks: seat maps whose version changed since this job last found them clean
(or that it never found clean: holds in flight, repairs to confirm), performances with bookings written in
MySQL within the activity window, and those with a ledger release pending.
"""

from __future__ import annotations

import logging
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from functools import partial
from typing import TypeVar

from chalicelib.domain.booking_ids import timestamp_of
from chalicelib.domain.errors import NotFound
from chalicelib.domain.messages import BookingRequested
from chalicelib.domain.models import (
    LEDGER_RELEASE_PENDING_ACTION,
    LEDGER_RELEASE_RESENT_ACTION,
    SEAT_BOOKED_ACTION,
    SEAT_HELD_ACTION,
    SEAT_RELEASED_ACTION,
    Booking,
    BookingStatus,
    ReconcileEntry,
)
from chalicelib.domain.seat_map import holder_state, shown_booking
from chalicelib.services.ports import (
    CatalogueStore,
    HoldCompensator,
    LedgerReleases,
    ReconcileStore,
    SeatMapAudit,
    SeatRepairs,
)

log = logging.getLogger(__name__)
T = TypeVar("T")

SEATS_BOOKED = "seats_booked"
SEATS_HELD = "seats_held"
SEATS_RELEASED = "seats_released"
STALE_HOLDS_FAILED = "stale_holds_failed"
STALE_PENDING_FAILED = "stale_pending_failed"
LEDGER_RELEASES_RESENT = "ledger_releases_resent"
REPAIR_KINDS = (
    SEATS_BOOKED,
    SEATS_HELD,
    SEATS_RELEASED,
    STALE_HOLDS_FAILED,
    STALE_PENDING_FAILED,
    LEDGER_RELEASES_RESENT,
)

HOLDER_REPAIRS = {
    BookingStatus.CONFIRMED: (SEATS_BOOKED, SEAT_BOOKED_ACTION),
    BookingStatus.PENDING: (SEATS_HELD, SEAT_HELD_ACTION),
}

# A take MySQL has not heard of this long after it was made is abandoned: the request path journals a hold
# within its MySQL timeouts (connect + statement + settling an uncertain commit: well under a minute) or
# gives up on it, and no 202 leaves before the journal row is committed.
ABANDONED_TAKE_SECONDS = 120.0
# A configured hold deadline at or below the queue's retry window is raised to the window plus this.
HOLD_DEADLINE_MARGIN_SECONDS = 60.0
DEFAULT_COMPENSATOR = "redis_async"


@dataclass
class ReconcileSummary:
    dry_run: bool
    performances_checked: int = 0
    # kind -> seats (seats_*) or bookings (stale_holds_failed, ledger_releases_resent) repaired; in a dry
    # run, what would have been repaired.
    repairs: Counter = field(default_factory=Counter)
    holds_in_flight: int = 0  # PENDING holds younger than the deadline, left alone
    holds_of_unknown_age: int = 0  # holds of a booking id that is not a ULID: no age to judge, left alone
    changed_meanwhile: int = 0  # drift that live traffic resolved between the comparison and the repair
    not_loaded: int = 0  # performances without a seat map in Redis (the next read builds it from MySQL)
    left_for_next_run: int = 0  # performances not reached within the time budget
    errors: int = 0
    duration_seconds: float = 0.0

    @property
    def total_repairs(self) -> int:
        return sum(self.repairs.values())

    def to_dict(self) -> dict:
        return {
            "dry_run": self.dry_run,
            "performances_checked": self.performances_checked,
            "repairs": {kind: self.repairs.get(kind, 0) for kind in REPAIR_KINDS},
            "holds_in_flight": self.holds_in_flight,
            "holds_of_unknown_age": self.holds_of_unknown_age,
            "changed_meanwhile": self.changed_meanwhile,
            "not_loaded": self.not_loaded,
            "left_for_next_run": self.left_for_next_run,
            "errors": self.errors,
            "duration_seconds": round(self.duration_seconds, 3),
        }


@dataclass
class _Findings:
    """One performance's drift, booking id -> seat ids."""

    to_book: dict[str, list[int]] = field(default_factory=lambda: defaultdict(list))
    to_hold: dict[str, list[int]] = field(default_factory=lambda: defaultdict(list))
    to_release: dict[str, list[int]] = field(default_factory=lambda: defaultdict(list))
    unknown_to_mysql: dict[str, list[int]] = field(default_factory=lambda: defaultdict(list))


def accepted_at(booking_id: str) -> float | None:
    """When the booking was accepted (epoch seconds): booking ids are ULIDs (domain/booking_ids.py), whose
    first 48 bits are the creation time. None for an id that is not a ULID."""
    return timestamp_of(booking_id)


def _unsettled(summary: ReconcileSummary) -> tuple[int, ...]:
    """What, if it grew while checking a performance, means the performance must be looked at again."""
    return (summary.changed_meanwhile, summary.errors, summary.holds_in_flight, summary.holds_of_unknown_age)


class Reconciler:
    def __init__(
        self,
        bookings: ReconcileStore,
        catalogue: CatalogueStore,
        seat_map: SeatMapAudit,
        seats: SeatRepairs,
        compensators: Mapping[str, HoldCompensator],
        ledger: LedgerReleases | None,
        *,
        hold_deadline_seconds: float,
        queue_retry_window_seconds: float,
        activity_window_seconds: int,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._bookings = bookings
        self._catalogue = catalogue
        self._seat_map = seat_map
        self._seats = seats
        self._compensators = compensators
        self._ledger = ledger
        floor = queue_retry_window_seconds + HOLD_DEADLINE_MARGIN_SECONDS
        if hold_deadline_seconds < floor:
            log.warning(
                "the pending hold deadline (%.0f s) is shorter than the booking queue's retry window (%.0f s)"
                " plus a margin: using %.0f s, or bookings still being retried would be failed",
                hold_deadline_seconds,
                queue_retry_window_seconds,
                floor,
            )
        self.hold_deadline_seconds = max(hold_deadline_seconds, floor)
        self._activity_window = activity_window_seconds
        self._clock = clock

    def run(
        self,
        performance_id: int | None = None,
        dry_run: bool = False,
        time_budget_seconds: float | None = None,
    ) -> ReconcileSummary:
        """Check one performance, or every performance with recent activity, and repair what drifted.

        `dry_run` reports what would be repaired and changes nothing. With a time budget, no further
        performance is started once it is spent (the rest stay candidates for the next run)."""
        started = time.monotonic()
        summary = ReconcileSummary(dry_run=dry_run)
        if performance_id is not None and self._catalogue.get_performance(performance_id) is None:
            raise NotFound(f"performance {performance_id} not found")
        candidates = [performance_id] if performance_id is not None else self._performances_to_check()
        for index, candidate in enumerate(candidates):
            if time_budget_seconds is not None and time.monotonic() - started >= time_budget_seconds:
                summary.left_for_next_run = len(candidates) - index
                break
            try:
                self._check_performance(candidate, summary, dry_run)
            except Exception:
                log.exception("reconcile: checking performance %s failed", candidate)
                summary.errors += 1
            summary.performances_checked += 1
        self._fail_stale_pending(performance_id, summary, dry_run)
        self._resend_ledger_releases(performance_id, summary, dry_run)
        summary.duration_seconds = time.monotonic() - started
        log.info("reconcile: %s", summary.to_dict())
        return summary

    # which performances --------------------------------------------------------------------------------
    def _performances_to_check(self) -> list[int]:
        checked = self._seat_map.checked_versions()
        changed = {
            performance_id
            for performance_id, version in self._seat_map.loaded_performances().items()
            if checked.get(performance_id) != version
        }
        active = set(self._bookings.recently_active_performances(self._activity_window))
        return sorted(changed | active)

    # one performance ------------------------------------------------------------------------------------
    def _check_performance(self, performance_id: int, summary: ReconcileSummary, dry_run: bool) -> None:
        # One atomic read of the map, then MySQL. Whatever live traffic changes in between (or later) is
        # caught by the second look each repair takes before it acts.
        version, states = self._seat_map.snapshot(performance_id)
        if states is None:
            summary.not_loaded += 1
            if not dry_run:
                self._seat_map.remember_checked(performance_id, version)
            return
        findings = self._compare(performance_id, states)
        unsettled_before = _unsettled(summary)
        for what, repair, found in (
            ("booking", partial(self._put_back, status=BookingStatus.CONFIRMED), findings.to_book),
            ("holding", partial(self._put_back, status=BookingStatus.PENDING), findings.to_hold),
            ("releasing", self._release, findings.to_release),
            ("judging the hold", self._judge_hold, findings.unknown_to_mysql),
        ):
            for booking_id, seat_ids in found.items():
                try:
                    repair(performance_id, booking_id, seat_ids, summary, dry_run)
                except Exception:
                    log.exception("reconcile: %s the seats of booking %s failed", what, booking_id)
                    summary.errors += 1
        if _unsettled(summary) == unsettled_before and not dry_run:
            # Nothing left in flight or undone: the map needs no look until its version changes (or MySQL's
            # bookings of the performance do).
            self._seat_map.remember_checked(performance_id, version)

    def _compare(self, performance_id: int, states: Mapping[int, str]) -> _Findings:
        holders = self._bookings.active_seat_holders(performance_id)
        named = {
            booking_id
            for seat, state in states.items()
            if (booking_id := shown_booking(state)) is not None and holders.get(seat, ("",))[0] != booking_id
        }
        statuses = self._bookings.statuses(named)
        findings = _Findings()
        for seat, state in states.items():
            holder = holders.get(seat)
            if holder is not None:
                holder_id, status = holder
                if status is BookingStatus.CONFIRMED and state != f"B:{holder_id}":
                    findings.to_book[holder_id].append(seat)
                elif status is BookingStatus.PENDING and shown_booking(state) != holder_id:
                    findings.to_hold[holder_id].append(seat)  # a journaled hold the map lost
                continue
            shown = shown_booking(state)
            if shown is None:
                continue
            if shown in statuses:
                findings.to_release[shown].append(seat)  # final, or holding other seats only
            else:
                findings.unknown_to_mysql[shown].append(seat)
        return findings

    # the repairs ----------------------------------------------------------------------------------------
    def _put_back(
        self,
        performance_id: int,
        booking_id: str,
        seat_ids: list[int],
        summary: ReconcileSummary,
        dry_run: bool,
        status: BookingStatus,
    ) -> None:
        """Show MySQL's holder (booked if CONFIRMED, held if PENDING) where the map shows something else."""
        kind, action = HOLDER_REPAIRS[status]
        if dry_run:
            summary.repairs[kind] += len(seat_ids)
            return
        booking = self._bookings.get(booking_id)
        if booking is None or booking.status is not status:
            summary.changed_meanwhile += len(seat_ids)  # settled or cancelled meanwhile: the next pass looks
            return
        wanted = holder_state(booking_id, status)
        current = self._seat_map.states_of(performance_id, seat_ids)
        drifted = [s for s in seat_ids if s in booking.seat_ids and current.get(s) not in (None, wanted)]
        if not drifted:
            return  # live traffic (the consumer's own confirm) got there first
        # Compare-and-set on what was just read: a cancel, a confirm or a sale since is newer and wins.
        repaired = self._seats.replace(performance_id, [(s, current[s], wanted) for s in drifted])
        summary.repairs[kind] += repaired
        summary.changed_meanwhile += len(drifted) - repaired
        if repaired:
            self._log_seats(action, booking, drifted, current)

    def _release(
        self,
        performance_id: int,
        booking_id: str,
        seat_ids: list[int],
        summary: ReconcileSummary,
        dry_run: bool,
    ) -> None:
        if dry_run:
            summary.repairs[SEATS_RELEASED] += len(seat_ids)
            return
        booking = self._bookings.get(booking_id)
        if booking is None:
            summary.changed_meanwhile += len(seat_ids)
            return
        if booking.status.holds_seats:
            seat_ids = [s for s in seat_ids if s not in booking.seat_ids]  # seats it holds stay its own
        current = self._seat_map.states_of(performance_id, seat_ids)
        still = [s for s in seat_ids if shown_booking(current.get(s)) == booking_id]
        if not still:
            return
        if not booking.status.holds_seats:
            # The record first, as a cancel does: a late confirm of this booking cannot re-take the seats.
            self._seats.mark_record(booking_id, booking.status, booking.reason, performance_id)
        released = self._seats.release(booking_id, performance_id, still)
        summary.repairs[SEATS_RELEASED] += released
        summary.changed_meanwhile += len(still) - released
        if released:
            self._log_seats(SEAT_RELEASED_ACTION, booking, still, current, mysql_status=booking.status.value)

    def _judge_hold(
        self,
        performance_id: int,
        booking_id: str,
        seat_ids: list[int],
        summary: ReconcileSummary,
        dry_run: bool,
    ) -> None:
        """Seats shown for a booking MySQL does not know: in flight, or a hold nobody will ever finish."""
        created = accepted_at(booking_id)
        if created is None:
            summary.holds_of_unknown_age += 1
            return
        age = self._clock() - created
        if age <= ABANDONED_TAKE_SECONDS:
            summary.holds_in_flight += 1
            return
        if dry_run:
            summary.repairs[STALE_HOLDS_FAILED] += 1
            return
        if self._bookings.get(booking_id) is not None:
            summary.changed_meanwhile += 1  # journaled after all: the next pass aligns the map with it
            return
        reason = f"hold never journaled: not in MySQL {age:.0f} s after it was taken (reconcile)"
        record = self._seats.read_booking(booking_id, performance_id)
        strategy = record.strategy if record is not None else self._strategy_of(performance_id)
        user_id = record.user_id if record is not None else "unknown"
        message = BookingRequested(booking_id, performance_id, user_id, tuple(sorted(seat_ids)), strategy)
        status = self._compensator(strategy).give_up(booking_id, reason, message)
        if status is not BookingStatus.FAILED:
            # MySQL decided it first after all (give_up aligned the map with that): its seats stay its own.
            summary.changed_meanwhile += 1
            return
        # Seats the map shows beyond those the claim names (if any) go back too, owner-checked.
        self._seats.release(booking_id, performance_id, seat_ids)
        summary.repairs[STALE_HOLDS_FAILED] += 1  # give_up logged it (action booking_failed)

    def _sweep(
        self,
        what: str,
        read: Callable[[], Iterable[T]],
        repair: Callable[[T, ReconcileSummary], None],
        counted_as: str,
        summary: ReconcileSummary,
        dry_run: bool,
    ) -> None:
        """One pass over what needs repairing: a failure to read or to repair one item is logged and
        counted in `errors`, and the pass goes on; a dry run counts what it would repair."""
        try:
            items = list(read())
        except Exception:
            log.exception("reconcile: reading the %s failed", what)
            summary.errors += 1
            return
        for item in items:
            if dry_run:
                summary.repairs[counted_as] += 1
                continue
            try:
                repair(item, summary)
            except Exception:
                log.exception("reconcile: repairing %s (%s) failed", item, what)
                summary.errors += 1

    def _fail_stale_pending(
        self, performance_id: int | None, summary: ReconcileSummary, dry_run: bool
    ) -> None:
        """Every accepted booking reaches a final status: one still PENDING past the hold deadline (its
        message lost, parked in a DLQ, its consumer's last give-up made while MySQL was away) is failed."""
        self._sweep(
            "stale PENDING bookings",
            lambda: self._bookings.pending_accepted_before(
                self._clock() - self.hold_deadline_seconds, performance_id
            ),
            self._fail_stale,
            STALE_PENDING_FAILED,
            summary,
            dry_run,
        )

    def _fail_stale(self, booking: Booking, summary: ReconcileSummary) -> None:
        reason = "still PENDING after the hold deadline (reconcile)"
        status = self._compensator(booking.strategy).give_up(booking.booking_id, reason, None)
        if status is BookingStatus.FAILED:
            summary.repairs[STALE_PENDING_FAILED] += 1
        else:
            summary.changed_meanwhile += 1  # settled by its consumer a moment before

    def _compensator(self, strategy: str) -> HoldCompensator:
        return self._compensators.get(strategy) or self._compensators[DEFAULT_COMPENSATOR]

    def _strategy_of(self, performance_id: int) -> str:
        performance = self._catalogue.get_performance(performance_id)
        return performance.strategy if performance is not None else DEFAULT_COMPENSATOR

    def _resend_ledger_releases(
        self, performance_id: int | None, summary: ReconcileSummary, dry_run: bool
    ) -> None:
        ledger = self._ledger
        if ledger is None:
            return
        self._sweep(
            "pending ledger releases",
            lambda: self._bookings.open_reconcile_entries(
                LEDGER_RELEASE_PENDING_ACTION, LEDGER_RELEASE_RESENT_ACTION, performance_id
            ),
            lambda booking_id, summary: self._resend_ledger_release(ledger, booking_id, summary),
            LEDGER_RELEASES_RESENT,
            summary,
            dry_run,
        )

    def _resend_ledger_release(
        self, ledger: LedgerReleases, booking_id: str, summary: ReconcileSummary
    ) -> None:
        booking = self._bookings.get(booking_id)
        if booking is None or booking.status.holds_seats:
            log.warning(
                "reconcile: ledger release pending for %s, which holds its seats in MySQL", booking_id
            )
            summary.changed_meanwhile += 1
            return
        # The ledger frees only seats this booking holds there, so a release sent twice changes nothing.
        ledger.send_ledger_release(booking)
        self._log(LEDGER_RELEASE_RESENT_ACTION, booking, {"seat_ids": list(booking.seat_ids)})
        summary.repairs[LEDGER_RELEASES_RESENT] += 1

    def _log_seats(
        self,
        action: str,
        booking: Booking,
        seat_ids: list[int],
        before: Mapping[int, str | None],
        **extra: str,
    ) -> None:
        redis_before = {str(seat): before.get(seat) for seat in seat_ids}
        self._log(action, booking, {"seat_ids": seat_ids, "redis_before": redis_before, **extra})

    def _log(self, action: str, booking: Booking, detail: dict) -> None:
        self._bookings.log_reconcile(
            ReconcileEntry(
                action=action,
                booking_id=booking.booking_id,
                performance_id=booking.performance_id,
                detail=detail,
            )
        )
