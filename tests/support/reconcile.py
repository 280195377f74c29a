"""The app's reconcile job as it would run later: its clock moved past the hold deadline (an injected clock,
never a sleep), so holds and PENDING bookings that are stale by then are settled now."""

from __future__ import annotations

import copy
import time

from chalicelib.services.reconcile import Reconciler


def reconciler_later(reconciler: Reconciler, seconds: float, bookings: object = None) -> Reconciler:
    """A copy of `reconciler` whose clock reads `seconds` ahead (and, if given, over another MySQL store)."""
    later = copy.copy(reconciler)
    later._clock = lambda: time.time() + seconds
    if bookings is not None:
        later._bookings = bookings
    return later


def past_the_deadline(reconciler: Reconciler) -> float:
    return reconciler.hold_deadline_seconds + 60
