"""Command line: `soak once | check | mock`. The only place that prints errors and picks exit codes."""

from __future__ import annotations


def main(argv: list[str] | None = None) -> int:
    return 0
