"""Compare the Redis seat maps with MySQL (the truth) and repair the drift; prints what was done.

    python -m infra.reconcile                      every performance with recent activity
    python -m infra.reconcile --performance 42     one performance
    python -m infra.reconcile --dry-run            only report what would be repaired

The same use case (chalicelib/services/reconcile.py) runs every five minutes as the scheduled handler
`reconcile_seat_maps` of app.py (locally: the worker's scheduler). Exit status 1 if a repair failed.
"""

from __future__ import annotations

import argparse
import sys

from infra.local.stage import apply_stage_environment
from infra.text_table import format_table

REPAIR_LABELS = {
    "seats_booked": "seats set booked, as MySQL has them CONFIRMED",
    "seats_released": "seats released (their booking holds them no more)",
    "stale_holds_failed": "stale pending holds failed, seats released",
    "ledger_releases_resent": "stream_state ledger releases resent",
}
LEFT_ALONE_LABELS = {
    "holds_in_flight": "pending holds younger than the deadline",
    "holds_of_unknown_age": "holds of a booking id with no age (not a ULID)",
    "changed_meanwhile": "drift live traffic resolved before the repair",
    "not_loaded": "performances without a seat map in Redis",
    "left_for_next_run": "performances left for the next run (time budget)",
    "errors": "errors (see the log)",
}


def render(summary: dict) -> str:
    mode = "dry run: nothing changed, " if summary["dry_run"] else ""
    rows: list[tuple[str, str, object]] = [
        ("repaired", label, summary["repairs"][kind]) for kind, label in REPAIR_LABELS.items()
    ]
    rows += [("not repaired", label, summary[key]) for key, label in LEFT_ALONE_LABELS.items()]
    header = (
        f"reconcile ({mode}{summary['performances_checked']} performance(s) checked"
        f" in {summary['duration_seconds']:.2f} s)"
    )
    return header + "\n" + format_table(("", "what", "count"), rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--performance", type=int, help="check only this performance")
    parser.add_argument("--dry-run", action="store_true", help="report, change nothing")
    parser.add_argument("--stage", default="local", help="the .chalice stage whose settings to use")
    args = parser.parse_args(argv)
    apply_stage_environment(args.stage)

    from chalicelib.bootstrap import container
    from chalicelib.domain.errors import NotFound

    try:
        summary = container().reconciler.run(args.performance, dry_run=args.dry_run)
    except NotFound as exc:
        print(exc, file=sys.stderr)
        return 2
    print(render(summary.to_dict()))
    return 1 if summary.errors else 0


if __name__ == "__main__":
    sys.exit(main())
