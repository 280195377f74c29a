"""docs/configuration.md's settings table lists exactly the environment variables `Settings.from_env` reads,
so the page cannot fall behind the code (a new setting without a row fails here, as does a stale row)."""

from __future__ import annotations

import re
from pathlib import Path

from chalicelib.config import Settings
from tests.support.environment import ReadRecorder

PAGE = Path(__file__).resolve().parents[2] / "docs" / "configuration.md"


def _settings_table_rows() -> set[str]:
    """The first column of the page's first table (the one under "## Settings")."""
    section = PAGE.read_text().split("## Settings", 1)[1].split("\n## ", 1)[0]
    return {match for match in re.findall(r"^\| `([A-Z][A-Z0-9_]*)` \|", section, re.MULTILINE)}


def test_the_settings_table_lists_every_variable_settings_reads_and_no_other() -> None:
    environment = ReadRecorder()
    Settings.from_env(environment)
    assert environment.read, "from_env read nothing: the recording environment is not being used"
    rows = _settings_table_rows()
    assert sorted(environment.read - rows) == [], "settings without a row in docs/configuration.md"
    assert sorted(rows - environment.read) == [], "rows for variables Settings does not read"
