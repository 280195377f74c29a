"""Which results folder `make bench-readme` reads by default (loadtests/bench/runner.latest_results_dir)."""

from __future__ import annotations

import json
from pathlib import Path

from loadtests.bench import scenarios as sc
from loadtests.bench.runner import latest_results_dir


def folder(root: Path, name: str, bench: str, scenarios: tuple[str, ...]) -> Path:
    path = root / name
    path.mkdir()
    runs = [{"scenario": scenario} for scenario in scenarios]
    (path / "results.json").write_text(json.dumps({"bench": bench, "runs": runs}))
    return path


def test_the_newest_full_bench_that_ran_every_scenario_is_the_tables_source(tmp_path: Path) -> None:
    every = folder(tmp_path, "20261201T000000Z", "full", sc.SCENARIOS)
    folder(tmp_path, "20261202T000000Z", "full", (sc.BASELINE, sc.HOT_SEAT))  # --scenarios: a few
    folder(tmp_path, "20261203T000000Z", "smoke", sc.SCENARIOS)
    (tmp_path / "20261204T000000Z").mkdir()  # no results.json: an interrupted run
    assert latest_results_dir(tmp_path) == every
    newer = folder(tmp_path, "20261205T000000Z", "full", sc.SCENARIOS)
    assert latest_results_dir(tmp_path) == newer
