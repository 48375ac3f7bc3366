"""Damage to the daemon's history file, as disks and operators cause it: cut short, garbage over
the header, garbage over the middle pages, emptied, a stale WAL. Each is survived: the history
opens (a damaged file set aside), lists runs, records new ones. Never an exception at startup."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path

import pytest

from soak.history import FILE_NAME, RunHistory

RUNS = 60


def filled(data: Path) -> int:
    """A history of `RUNS` finished runs with reports, checkpointed; returns the file size."""
    h = RunHistory(data)
    report = json.dumps({"phases": [{"name": "overhead", "notes": ["x" * 500]}]})
    for i in range(RUNS):
        h.start(f"r{i}", "p", float(i))
        h.finish(f"r{i}", "passed", finished_at=i + 0.5, report_json=report)
    h.close()
    return (data / FILE_NAME).stat().st_size


def cut_in_half(db: Path, size: int) -> None:
    os.truncate(db, size // 2)


def garbage_header(db: Path, size: int) -> None:
    with db.open("r+b") as f:
        f.write(os.urandom(100))


def garbage_middle(db: Path, size: int) -> None:
    with db.open("r+b") as f:
        f.seek(4096)  # past the header page: the tables' pages
        f.write(b"\xff" * (size - 8192))


def emptied(db: Path, size: int) -> None:
    os.truncate(db, 0)


def stale_wal(db: Path, size: int) -> None:
    db.with_name(FILE_NAME + "-wal").write_bytes(os.urandom(5000))


DAMAGE: dict[str, Callable[[Path, int], None]] = {
    "cut-in-half": cut_in_half,
    "garbage-header": garbage_header,
    "garbage-middle": garbage_middle,
    "emptied": emptied,
    "stale-wal": stale_wal,
}


@pytest.mark.parametrize("damage", sorted(DAMAGE))
def test_a_damaged_history_is_survived(tmp_path: Path, damage: str) -> None:
    size = filled(tmp_path)
    DAMAGE[damage](tmp_path / FILE_NAME, size)
    h = RunHistory(tmp_path, clock=lambda: 777.0)
    kept = h.runs(limit=1000)
    if h.set_aside is not None:
        assert h.set_aside.name == f"{FILE_NAME}.corrupt-777" and h.set_aside.exists()
        assert kept == []
    else:  # what SQLite still reads is intact: every run whole, or none (an emptied file)
        assert len(kept) in (0, RUNS)
        for run in kept:
            assert h.get(run["id"])["report"]["phases"][0]["name"] == "overhead"
    assert h.recover() == 0
    h.start("fresh", "p", 1000.0)
    h.finish("fresh", "passed", finished_at=1001.0)
    assert h.runs(limit=1)[0]["id"] == "fresh"
    h.close()
    again = RunHistory(tmp_path)
    assert again.set_aside is None and again.get("fresh")["status"] == "passed"
    again.close()


def test_damage_that_only_shows_on_read_is_set_aside_at_open(tmp_path: Path) -> None:
    """The integrity check at open catches broken pages, not the first query of the day."""
    size = filled(tmp_path)
    garbage_middle(tmp_path / FILE_NAME, size)
    h = RunHistory(tmp_path, clock=lambda: 5.0)
    assert h.set_aside is not None
    h.close()
