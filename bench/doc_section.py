"""Replaces one generated section of docs/performance.md, kept between marker comments."""

from __future__ import annotations

from pathlib import Path

DOC = Path(__file__).resolve().parents[1] / "docs" / "performance.md"


def replace_section(name: str, body: str, doc: Path = DOC) -> None:
    """Put `body` between `<!-- name: begin -->` and `<!-- name: end -->`, appending if absent.

    Everything outside the markers is hand-written and left untouched, so a re-run
    replaces only its own table.
    """
    begin, end = f"<!-- {name}: begin -->", f"<!-- {name}: end -->"
    text = doc.read_text() if doc.exists() else "# Performance\n"
    block = f"{begin}\n{body.strip()}\n{end}"
    if begin in text and end in text:
        head, rest = text.split(begin, 1)
        text = head + block + rest.split(end, 1)[1]
    else:
        text = text.rstrip("\n") + "\n\n" + block + "\n"
    doc.write_text(text)
