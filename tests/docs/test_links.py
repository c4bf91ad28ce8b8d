"""Every relative link in README.md and docs/ points at a file that exists, and every #anchor at a heading of it."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.support import REPO_ROOT

LINK = re.compile(r"\]\(([^)\s]+)\)")
FENCE = re.compile(r"^```.*?^```", re.MULTILINE | re.DOTALL)
PAGES = [REPO_ROOT / "README.md", *sorted((REPO_ROOT / "docs").rglob("*.md"))]


def heading_anchors(markdown: str) -> set[str]:
    """The ids Python-Markdown's toc extension (MkDocs' default) gives the headings of a page."""
    anchors = set()
    for line in FENCE.sub("", markdown).splitlines():
        match = re.match(r"^#{1,6}\s+(.*?)\s*#*\s*$", line)
        if match:
            text = re.sub(r"[`*_]", "", match.group(1))
            slug = re.sub(r"[^\w\s-]", "", text).strip().lower()
            anchors.add(re.sub(r"[-\s]+", "-", slug))
    return anchors


def relative_links(page: Path) -> list[str]:
    text = FENCE.sub("", page.read_text(encoding="utf-8"))
    return [
        target
        for target in LINK.findall(text)
        if not re.match(r"^[a-z][a-z0-9+.-]*:", target) and not target.startswith("/")
    ]


def test_the_pages_are_found():
    names = {page.name for page in PAGES}
    assert {"README.md", "index.md", "install.md", "troubleshooting.md"} <= names


def broken_links(page: Path) -> list[str]:
    broken = []
    for target in relative_links(page):
        path, _, anchor = target.partition("#")
        resolved = (page.parent / path).resolve() if path else page
        if not resolved.exists():
            broken.append(f"{target} (no file {resolved})")
        elif anchor and resolved.suffix == ".md" and anchor not in heading_anchors(resolved.read_text("utf-8")):
            broken.append(f"{target} (no heading #{anchor} in {resolved.name})")
    return broken


@pytest.mark.parametrize("page", PAGES, ids=lambda page: str(page.relative_to(REPO_ROOT)))
def test_every_relative_link_resolves(page):
    broken = broken_links(page)
    assert not broken, f"{page.name}: broken links: {'; '.join(broken)}"


def test_the_anchor_rule_matches_headings():
    anchors = heading_anchors("# Performance and scaling\n## Scaling\n### Where UNPG's share goes\n```\n# no\n```\n")
    assert anchors == {"performance-and-scaling", "scaling", "where-unpgs-share-goes"}


def test_broken_links_and_anchors_are_found(tmp_path):
    page = tmp_path / "page.md"
    page.write_text(
        "# Top\n[ok](page.md#top) [gone](missing.md) [no anchor](page.md#nowhere) [web](https://example.org)\n"
        "```\n[code](x.md)\n```\n"
    )
    assert relative_links(page) == ["page.md#top", "missing.md", "page.md#nowhere"]
    found = broken_links(page)
    assert len(found) == 2 and found[0].startswith("missing.md (no file") and "no heading #nowhere" in found[1]
