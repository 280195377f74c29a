"""Every relative link in README.md and docs/*.md points at a file that exists, and every #anchor into a
markdown page at one of its headings (GitHub's slugs: lower case, punctuation dropped, spaces to hyphens,
repeats numbered -1, -2 …). The README is the front door: a dead link there is a broken promise."""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import unquote

import pytest

ROOT = Path(__file__).resolve().parents[2]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\]]*\])*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")
SCHEME = re.compile(r"^[a-z][a-z0-9+.-]*:")


def _outside_code_fences(path: Path) -> list[tuple[int, str]]:
    lines, fenced = [], False
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if line.lstrip().startswith("```"):
            fenced = not fenced
        elif not fenced:
            lines.append((number, line))
    return lines


def _slug(heading: str) -> str:
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def _anchors(path: Path) -> set[str]:
    counts: dict[str, int] = {}
    names = set()
    for _, line in _outside_code_fences(path):
        heading = re.match(r"^#{1,6}\s+(.*?)\s*#*\s*$", line)
        if heading:
            base = _slug(heading.group(1))
            repeat = counts.get(base, 0)
            names.add(base if repeat == 0 else f"{base}-{repeat}")
            counts[base] = repeat + 1
    return names


def _relative_links(path: Path) -> list[tuple[int, str]]:
    return [
        (number, target)
        for number, line in _outside_code_fences(path)
        for target in LINK.findall(line)
        if not SCHEME.match(target)
    ]


@pytest.mark.parametrize("page", PAGES, ids=lambda page: str(page.relative_to(ROOT)))
def test_every_relative_link_resolves(page: Path) -> None:
    broken = []
    for number, target in _relative_links(page):
        path, _, anchor = target.partition("#")
        destination = (page.parent / unquote(path)).resolve() if path else page
        if not destination.exists():
            broken.append(f"{number}: no file {target}")
        elif anchor and destination.suffix == ".md" and anchor not in _anchors(destination):
            broken.append(f"{number}: no heading for {target}")
    assert broken == []


def test_the_readme_links_into_every_docs_page() -> None:
    linked = {target.partition("#")[0] for _, target in _relative_links(ROOT / "README.md")}
    pages = {f"docs/{page.name}" for page in (ROOT / "docs").glob("*.md")}
    assert sorted(pages - linked) == []
