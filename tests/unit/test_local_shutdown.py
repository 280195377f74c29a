"""`make run`'s shutdown (infra/local/run.py stop_all): the children stop in reverse start order, each gone
before the next is asked, so the worker's pollers never call an emulator that has already stopped."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

from infra.local.run import stop_all
from tests.support.waiting import wait_for

CHILD = textwrap.dedent(
    """
    import signal, sys, time
    name, journal = sys.argv[1], sys.argv[2]

    def note(what):
        with open(journal, "a") as f:
            f.write(f"{name}:{what}\\n")

    def on_term(*_):
        note("asked")
        time.sleep(0.3)  # finishing its in-flight work: were the next child asked meanwhile, it would show
        note("gone")
        sys.exit(0)

    signal.signal(signal.SIGTERM, on_term)
    note("up")
    while True:
        time.sleep(60)
    """
)


def test_children_stop_in_reverse_order_each_gone_before_the_next_is_asked(tmp_path: Path) -> None:
    journal = tmp_path / "journal"
    names = ["emulator", "server", "worker"]
    children = [
        subprocess.Popen([sys.executable, "-c", CHILD, name, str(journal)], start_new_session=True)
        for name in names
    ]
    # Every child has installed its handler before it is asked to stop.
    wait_for(lambda: journal.exists() and journal.read_text().count(":up") == len(names), 10, "the children")

    stop_all(children)

    stops = [line for line in journal.read_text().splitlines() if not line.endswith(":up")]
    assert stops == [f"{name}:{what}" for name in reversed(names) for what in ("asked", "gone")]
    assert all(child.returncode == 0 for child in children)
