"""docs/configuration.md's settings table has a row for exactly the environment variables Settings reads
(each field's variable, read from the field's metadata), and each field's row shows its default in code, so
the page cannot fall behind the code: a new setting without a row fails here, as do a stale row and a
changed default."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from chalicelib.config import Settings

PAGE = Path(__file__).resolve().parents[2] / "docs" / "configuration.md"


def _settings_table() -> dict[str, str]:
    """The first table of the page's "## Settings" section: variable (first column) -> default (second)."""
    section = PAGE.read_text().split("## Settings", 1)[1].split("\n## ", 1)[0]
    return dict(re.findall(r"^\| `([A-Z][A-Z0-9_]*)` \| ([^|]*) \|", section, re.MULTILINE))


def _as_documented(default: object) -> str:
    """How the page writes a default: `5` for 5.0, `0.01`, `2000000`, `bk`, `0` for False; an empty or None
    one as empty."""
    if isinstance(default, bool):
        return f"`{int(default)}`"
    if default in ("", None):
        return "empty"
    return f"`{default:g}`" if isinstance(default, float) else f"`{default}`"


def test_the_settings_table_lists_every_variable_settings_reads_and_no_other() -> None:
    rows = set(_settings_table())
    read = set(Settings.env_names())
    assert len(read) == len(Settings.model_fields) + 1  # AWS_REGION's alternative, AWS_DEFAULT_REGION
    assert sorted(read - rows) == [], "settings without a row in docs/configuration.md"
    assert sorted(rows - read) == [], "rows for variables Settings does not read"


@pytest.mark.parametrize("field", list(Settings.model_fields))
def test_each_settings_row_shows_its_default(field: str) -> None:
    documented = _settings_table()[Settings.env_name(field)]
    default = Settings.model_fields[field].default
    # A stage's own value may follow ("`30` (prod: `180`)"); the code's default must be there as a whole word.
    assert re.search(rf"(^|\W){re.escape(_as_documented(default))}(\W|$)", documented), (field, documented)
