"""docs/configuration.md's settings table lists exactly the environment variables `Settings.from_env` reads,
so the page cannot fall behind the code (a new setting without a row fails here, as does a stale row)."""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from pathlib import Path

from chalicelib.config import Settings

PAGE = Path(__file__).resolve().parents[2] / "docs" / "configuration.md"


class _Recording(Mapping[str, str]):
    """An empty environment that remembers every name asked of it."""

    def __init__(self) -> None:
        self.asked: set[str] = set()

    def __getitem__(self, name: str) -> str:
        self.asked.add(name)
        raise KeyError(name)

    def get(self, name: str, default=None):  # type: ignore[override]
        self.asked.add(name)
        return default

    def __contains__(self, name: object) -> bool:
        if isinstance(name, str):
            self.asked.add(name)
        return False

    def __iter__(self) -> Iterator[str]:
        return iter(())

    def __len__(self) -> int:
        return 0


def _settings_table_rows() -> set[str]:
    """The first column of the page's first table (the one under "## Settings")."""
    section = PAGE.read_text().split("## Settings", 1)[1].split("\n## ", 1)[0]
    return {match for match in re.findall(r"^\| `([A-Z][A-Z0-9_]*)` \|", section, re.MULTILINE)}


def test_the_settings_table_lists_every_variable_settings_reads_and_no_other() -> None:
    environment = _Recording()
    Settings.from_env(environment)
    assert environment.asked, "from_env read nothing: the recording environment is not being used"
    rows = _settings_table_rows()
    assert sorted(environment.asked - rows) == [], "settings without a row in docs/configuration.md"
    assert sorted(rows - environment.asked) == [], "rows for variables Settings does not read"
