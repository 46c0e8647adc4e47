"""Every relative link and image in README.md and docs/*.md points at a file or folder that exists,
and every ``#anchor`` into a Markdown page names one of its headings (GitHub's slugs)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]

# Pages another change is writing at the same time: a link to one of these is allowed only while
# the page is absent; once it exists it is checked like any other. Remove an entry once it lands.
PENDING: dict = {}

# [text](target) and ![alt](target), skipping code spans and fenced code blocks.
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")
FENCE = re.compile(r"^```.*?^```", re.M | re.S)
CODE_SPAN = re.compile(r"`[^`\n]*`")


def relative_links(page: Path) -> list[str]:
    text = CODE_SPAN.sub("", FENCE.sub("", page.read_text()))
    targets = [m.group(1) for m in LINK.finditer(text)]
    return [t for t in targets if not re.match(r"^[a-z][a-z0-9+.-]*:", t)]


def anchors(page: Path) -> set[str]:
    """GitHub's heading ids: lowercase, punctuation dropped, spaces become hyphens."""
    headings = re.findall(r"^#+ (.+)$", FENCE.sub("", page.read_text()), re.M)
    return {re.sub(r"[^\w\- ]", "", h.strip().lower()).replace(" ", "-") for h in headings}


def test_the_pages_have_links():
    assert len(PAGES) >= 7
    assert sum(len(relative_links(p)) for p in PAGES) >= 30  # the parser finds them at all


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_resolve(page):
    broken = []
    for target in relative_links(page):
        file_part, _, anchor = target.partition("#")
        path = (page.parent / file_part).resolve() if file_part else page
        if not path.exists():
            if path not in PENDING:
                broken.append(target)
        elif anchor and path.suffix == ".md" and anchor not in anchors(path):
            broken.append(target)
    assert not broken, f"{page.relative_to(ROOT)}: links to missing files or headings: {broken}"


def test_link_parser_sees_through_code():
    page_text = "[a](x.md) `[b](y.md)` ![c](img.png) [d](https://e.org) [f](#g)\n```\n[h](z.md)\n```\n"
    text = CODE_SPAN.sub("", FENCE.sub("", page_text))
    assert [m.group(1) for m in LINK.finditer(text)] == ["x.md", "img.png", "https://e.org", "#g"]


def test_anchor_slugs(tmp_path):
    page = tmp_path / "p.md"
    page.write_text("# The parity proof\n## Client runtime (`stateport.runtime`: numpy)\n```\n# not a heading\n```\n")
    assert anchors(page) == {"the-parity-proof", "client-runtime-stateportruntime-numpy"}
