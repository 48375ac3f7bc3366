"""Run history: persists across reopen, a crash's `running` run becomes aborted, a corrupt
file is set aside (never a crash), retention keeps the newest runs, whole-row saves, and one
history (one daemon) per data dir."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from soak.history import FILE_NAME, LOCK_NAME, HistoryError, RunHistory


def test_runs_persist_across_restarts(tmp_path: Path) -> None:
    h = RunHistory(tmp_path, clock=lambda: 1000.0)
    h.start("r1", "hourly", 10.0)
    h.update("r1", json.dumps({"phases": [{"name": "overhead"}]}))
    h.finish("r1", "passed", finished_at=20.0, report_json=json.dumps({"passed": True}))
    h.start("r2", "quick", 30.0)
    h.finish("r2", "failed", finished_at=40.0)
    h.close()

    again = RunHistory(tmp_path)
    assert again.recover() == 0
    assert [r["id"] for r in again.runs()] == ["r2", "r1"]  # newest first
    assert again.runs(limit=1) == [
        {"id": "r2", "plan": "quick", "started_at": 30.0, "finished_at": 40.0,
         "status": "failed", "reason": None},
    ]  # fmt: skip
    assert again.get("r1")["report"] == {"passed": True}
    assert again.get("r2")["report"] is None  # no phase ever reported
    assert again.get("nope") is None
    again.close()


def test_a_run_left_running_is_aborted_at_startup(tmp_path: Path) -> None:
    h = RunHistory(tmp_path)
    h.start("crashed", "hourly", 50.0)
    h.update("crashed", json.dumps({"phases": ["half"]}))
    h._db.close()  # the daemon died: no finish, no checkpoint;
    os.close(h._lock)  # and the kernel dropped its lock

    again = RunHistory(tmp_path)
    assert again.recover() == 1
    run = again.get("crashed")
    assert (run["status"], run["reason"], run["finished_at"]) == (
        "aborted",
        "daemon restarted",
        50.0,
    )
    assert run["report"] == {"phases": ["half"]}  # what was measured is kept
    assert again.recover() == 0
    again.close()


def test_a_corrupt_file_is_set_aside_with_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    (tmp_path / FILE_NAME).write_bytes(b"this is not an SQLite database" * 100)
    (tmp_path / (FILE_NAME + "-wal")).write_bytes(b"junk")
    with caplog.at_level(logging.WARNING, logger="soak.history"):
        h = RunHistory(tmp_path, clock=lambda: 1234.0)
    assert h.set_aside == tmp_path / f"{FILE_NAME}.corrupt-1234"
    assert h.set_aside.read_bytes().startswith(b"this is not")
    assert "moved to history.db.corrupt-1234" in caplog.text
    h.start("fresh", "p", 1.0)  # the fresh history works
    assert [r["id"] for r in h.runs()] == ["fresh"]
    h.close()


def test_retention_keeps_the_newest_runs(tmp_path: Path) -> None:
    h = RunHistory(tmp_path, keep=3)
    for i in range(6):
        h.start(f"r{i}", "p", float(i))
        h.finish(f"r{i}", "passed", finished_at=i + 0.5)
    assert [r["id"] for r in h.runs()] == ["r5", "r4", "r3"]
    assert h.count() == 3
    with pytest.raises(ValueError, match="unknown run status 'running'"):
        h.finish("r5", "running", finished_at=1.0)
    h.close()


def test_wal_mode_and_an_unusable_data_dir(tmp_path: Path) -> None:
    h = RunHistory(tmp_path / "nested" / "dir")
    assert h._db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    h.close()
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(HistoryError, match="data dir"):
        RunHistory(blocker / "sub")


def test_save_writes_a_whole_row_and_keeps_a_report_it_is_not_given(tmp_path: Path) -> None:
    h = RunHistory(tmp_path, keep=2)
    h.save("r1", "p", 1.0, "running", report_json='{"phases": [1]}')
    assert h.get("r1")["status"] == "running" and h.get("r1")["report"] == {"phases": [1]}
    h.save("r1", "p", 1.0, "failed", finished_at=2.0, reason="slo")  # no report: kept
    assert h.get("r1") == {"id": "r1", "plan": "p", "started_at": 1.0, "finished_at": 2.0,
                           "status": "failed", "reason": "slo", "report": {"phases": [1]}}
    h.save("r0", "p", 0.5, "passed", finished_at=0.7)  # a held-back older run lands whole
    h.save("r2", "p", 3.0, "passed", finished_at=3.5)  # retention applies to saves too
    assert [r["id"] for r in h.runs()] == ["r2", "r1"]
    with pytest.raises(ValueError, match="unknown run status 'done'"):
        h.save("r3", "p", 4.0, "done")
    h.close()


def test_one_history_per_data_dir(tmp_path: Path) -> None:
    first = RunHistory(tmp_path)
    with pytest.raises(HistoryError) as refused:
        RunHistory(tmp_path)
    assert str(refused.value) == f"data dir {tmp_path} is in use by pid {os.getpid()}"
    first.close()
    again = RunHistory(tmp_path)  # released by close
    again.close()
    assert (tmp_path / LOCK_NAME).exists()


HOLDER = """
import sys, time
from soak.history import RunHistory
h = RunHistory(sys.argv[1])
print("held", flush=True)
time.sleep(60)
"""


def test_another_process_is_refused_until_the_holder_dies(tmp_path: Path) -> None:
    """A second daemon is told who holds the dir; a SIGKILLed holder frees it (kernel lock)."""
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(tmp_path)],
                              stdout=subprocess.PIPE, text=True)  # fmt: skip
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "held\n"
        with pytest.raises(HistoryError) as refused:
            RunHistory(tmp_path)
        assert str(refused.value) == f"data dir {tmp_path} is in use by pid {holder.pid}"
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.communicate(timeout=10)
    h = RunHistory(tmp_path)
    assert h.recover() == 0
    h.close()
