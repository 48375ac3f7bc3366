"""One bench's section of a docs page: replaced in place under its heading, or appended."""

from __future__ import annotations

from pathlib import Path


def write_section(doc: Path, heading: str, text: str, title: str = "# Benchmarks") -> None:
    """Replace (or append) the section starting at `heading` in `doc`, other headings kept."""
    old = doc.read_text() if doc.exists() else title + "\n"
    start = old.find(heading + "\n")
    if start < 0:
        new = old.rstrip("\n") + "\n\n" + text
    else:
        nxt = old.find("\n## ", start + len(heading))
        new = old[:start] + text + ("\n" + old[nxt + 1 :] if nxt >= 0 else "")
    doc.write_text(new)
