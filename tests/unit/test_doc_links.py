"""Every relative link in the project's Markdown leads somewhere.

README.md, BENCHMARKS.md, docs/*.md and loadtest/README.md link to each other, to
images and to folders of the repository; each such link must name an existing
file or folder, and each ``#anchor`` a heading of the file it points at (as
GitHub names headings). README.md must list every guide in docs/.
"""

from __future__ import annotations

import re
from functools import cache
from pathlib import Path
from urllib.parse import unquote

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
PAGES = sorted([ROOT / "README.md", ROOT / "BENCHMARKS.md", ROOT / "loadtest" / "README.md", *DOCS.glob("*.md")])

FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})")
CODE_SPAN = re.compile(r"(`+)(?:(?!\1).)+?\1", re.DOTALL)
LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
HEADING = re.compile(r"^ {0,3}(#{1,6})\s+(.*?)\s*#*\s*$")
EXTERNAL = re.compile(r"^[a-z][a-z0-9+.-]*:", re.IGNORECASE)


def prose(text: str) -> list[str]:
    """The file's lines outside fenced code blocks (those inside become empty)."""
    lines, fence = [], None
    for line in text.split("\n"):
        match = FENCE.match(line)
        if fence is None and match:
            fence = match.group(1)[0] * len(match.group(1))
            lines.append("")
        elif fence is not None:
            if line.strip().startswith(fence) and set(line.strip()) == {fence[0]}:
                fence = None
            lines.append("")
        else:
            lines.append(line)
    return lines


def slug(heading: str) -> str:
    """GitHub's anchor of a heading: inline markup dropped, lower case, punctuation
    removed, each space a hyphen."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)
    text = text.replace("`", "").lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


@cache
def anchors(path: Path) -> frozenset[str]:
    seen: dict[str, int] = {}
    names = set()
    for line in prose(path.read_text(encoding="utf-8")):
        match = HEADING.match(line)
        if not match:
            continue
        base = slug(match.group(2))
        count = seen.get(base, 0)
        seen[base] = count + 1
        names.add(base if count == 0 else f"{base}-{count}")
    return frozenset(names)


def links(path: Path) -> list[str]:
    """Every link target of the file's prose (code blocks and code spans left out)."""
    found = []
    for paragraph in "\n".join(prose(path.read_text(encoding="utf-8"))).split("\n\n"):
        found.extend(LINK.findall(CODE_SPAN.sub("", paragraph)))
    return found


def broken(page: Path, target: str) -> str | None:
    """Why the link is broken, or None."""
    path_part, _, anchor = target.partition("#")
    destination = (page.parent / unquote(path_part)).resolve() if path_part else page
    if not destination.exists():
        return "no such file or folder"
    if ROOT not in destination.parents and destination != ROOT:
        return "outside the repository"
    if anchor:
        if destination.is_dir() or destination.suffix != ".md":
            return "an anchor into something other than a Markdown file"
        if unquote(anchor) not in anchors(destination):
            return f"no heading #{anchor} in {destination.relative_to(ROOT)}"
    return None


def test_pages_are_found():
    assert (ROOT / "README.md") in PAGES and (ROOT / "BENCHMARKS.md") in PAGES
    assert sum(len(links(page)) for page in PAGES) > 50


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_resolve(page: Path):
    problems = []
    for target in links(page):
        if EXTERNAL.match(target):
            continue
        reason = broken(page, target)
        if reason:
            problems.append(f"{target}: {reason}")
    assert not problems, f"{page.relative_to(ROOT)} has broken links:\n" + "\n".join(problems)


def test_readme_lists_every_guide():
    listed = {(ROOT / unquote(t.partition("#")[0])).resolve() for t in links(ROOT / "README.md")}
    missing = [p.name for p in DOCS.glob("*.md") if p.resolve() not in listed]
    assert not missing, f"README.md does not link to docs/{', docs/'.join(missing)}"


def test_slug_follows_github():
    assert slug("Moving in: `gateway import-mlflow` (2026-12-07)") == "moving-in-gateway-import-mlflow-2026-12-07"
    assert slug("Response time apart from the client's parse, and orders on run columns (sql/007)") == (
        "response-time-apart-from-the-clients-parse-and-orders-on-run-columns-sql007")
    assert slug("Locust: 400 training processes, gateway and stock `mlflow server`") == (
        "locust-400-training-processes-gateway-and-stock-mlflow-server")
