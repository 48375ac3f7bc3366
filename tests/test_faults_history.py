"""Damage to the daemon's history file, as disks and operators cause it: cut short, garbage over
the header, garbage over the middle pages, emptied, a stale WAL. Each is survived: the history
opens (a damaged file set aside), lists runs, records new ones. Never an exception at startup.

Then the disk under it: full (a real small tmpfs where mounting is permitted) and read-only
(an immutable file, a read-only mount, a 0444 file for non-root): each a named
`HistoryUnavailable` ("disk full: <path>", "read-only: <path>"), never a file set aside."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from disk_faults import Disk, mount

from soak.history import FILE_NAME, HistoryUnavailable, RunHistory

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


# --- The disk under the history: full, read-only (tests/test_history.py has the lock) ---------


@pytest.fixture
def disk(tmp_path: Path) -> Iterator[Disk]:
    d = Disk(tmp_path)
    try:
        yield d
    finally:
        d.close()


def test_a_full_disk_is_named_and_the_history_writes_again_once_freed(disk: Disk) -> None:
    h = disk.attach(RunHistory(disk.data))
    h.start("before", "p", 1.0)
    disk.fill()
    with pytest.raises(HistoryUnavailable) as refused:
        h.start("during", "p", 2.0)
    assert (str(refused.value), refused.value.reason) == (f"disk full: {h.path}", "disk_full")
    assert [r["id"] for r in h.runs()] == ["before"]  # reads go on
    disk.free()
    h.start("during", "p", 2.0)
    h.finish("during", "passed", finished_at=3.0)
    assert h.get("during")["status"] == "passed"
    h.close()


def test_a_fresh_history_on_a_full_disk_is_named_not_set_aside(disk: Disk) -> None:
    if not disk.real:
        pytest.skip("needs a real full filesystem (mount, as root)")
    disk.data.mkdir()
    disk.fill()
    with pytest.raises(HistoryUnavailable, match=r"^run history disk full: .*/history\.db$"):
        RunHistory(disk.data)
    assert not list(disk.data.glob("*.corrupt-*"))
    disk.free()
    RunHistory(disk.data).close()  # the lock was released with the failed open


READ_ONLY = ("immutable-file", "read-only-mount")


@pytest.mark.parametrize("how", READ_ONLY)
def test_a_read_only_history_is_named_at_open(tmp_path: Path, how: str) -> None:
    """Root (CI) ignores file modes: the file is made immutable (chattr +i) or its filesystem
    remounted read-only."""
    data = tmp_path / "disk" / "data"
    data.mkdir(parents=True)
    if how == "read-only-mount" and not mount("tmpfs", data.parent, "size=1m"):
        pytest.skip("mount not permitted")
    data.mkdir(exist_ok=True)
    h = RunHistory(data)
    h.start("r0", "p", 1.0)
    h.close()
    db = data / FILE_NAME
    before = db.read_bytes()
    undo: list[str] = []
    try:
        if how == "immutable-file":
            if os.geteuid() != 0 or subprocess.run(["chattr", "+i", str(db)]).returncode:
                pytest.skip("chattr +i needs root and a filesystem that supports it")
            undo = ["chattr", "-i", str(db)]
        else:
            subprocess.run(["mount", "-o", "remount,ro", str(data.parent)], check=True)
        with pytest.raises(HistoryUnavailable) as refused:
            RunHistory(data)
        assert str(refused.value) == f"run history read-only: {db}"
        assert refused.value.reason == "read_only"
        assert db.read_bytes() == before and not list(data.glob("*.corrupt-*"))
    finally:
        if undo:
            subprocess.run(undo, check=True)
        if how == "read-only-mount":
            subprocess.run(["umount", "-l", str(data.parent)], check=False)
        elif data.exists():
            data.chmod(0o755)


def test_soak_run_on_a_read_only_history_is_one_line_and_exit_2(tmp_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root for chattr +i")
    data = tmp_path / "data"
    RunHistory(data).close()
    db = data / FILE_NAME
    if subprocess.run(["chattr", "+i", str(db)]).returncode:
        pytest.skip("no chattr +i on this filesystem")
    config = tmp_path / "soak.yaml"
    config.write_text("version: 1\ngateway: {url: 'http://127.0.0.1:9'}\n")
    try:
        done = subprocess.run(
            [str(Path(sys.executable).with_name("soak")), "run", "--config", str(config),
             "--listen", "127.0.0.1:0", "--data-dir", str(data)],
            capture_output=True, text=True, timeout=30,
        )  # fmt: skip
    finally:
        subprocess.run(["chattr", "-i", str(db)], check=True)
    assert done.returncode == 2, done.stderr
    assert done.stderr == f"soak: --data-dir: run history read-only: {db}\n"


def test_a_second_soak_run_on_a_data_dir_in_use_is_one_line_and_exit_2(tmp_path: Path) -> None:
    """Two daemons on one data dir used to run side by side and overwrite each other's rows."""
    config = tmp_path / "soak.yaml"
    config.write_text("version: 1\ngateway: {url: 'http://127.0.0.1:9'}\n")
    data = tmp_path / "data"
    first = RunHistory(data)  # what a running daemon holds
    try:
        done = subprocess.run(
            [str(Path(sys.executable).with_name("soak")), "run", "--config", str(config),
             "--listen", "127.0.0.1:0", "--data-dir", str(data)],
            capture_output=True, text=True, timeout=30,
        )  # fmt: skip
    finally:
        first.close()
    assert done.returncode == 2, done.stderr
    assert done.stderr == f"soak: --data-dir: data dir {data} is in use by pid {os.getpid()}\n"
