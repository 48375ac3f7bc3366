"""The daemon's history writes on a disk that refuses them: the run is measured all the same,
its row is held in memory and written whole by the next write that succeeds (no row stays
`running`), one error line names why, every refusal is counted; memory stays bounded. Then a
real daemon whose data dir is full when its scheduled run starts."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from disk_faults import READ_ONLY, Disk, fault
from soak.mock.app import MockConfig, MockServer
from soak.mock.profile import parse_profile

from soak.daemon import ConfigSource, Daemon
from soak.history import RunHistory
from soak.history_writer import HistoryWriter

LOGGER = "soak.history_writer"


@pytest.fixture
def disk(tmp_path: Path) -> Iterator[Disk]:
    d = Disk(tmp_path)
    try:
        yield d
    finally:
        d.close()


def writer(history: RunHistory, errors: list[str | None], **kw: int) -> HistoryWriter:
    return HistoryWriter(history, on_error=errors.append, **kw)


def errors_logged(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]


def test_a_run_on_a_full_disk_is_held_and_lands_whole_once_freed(
    disk: Disk, caplog: pytest.LogCaptureFixture
) -> None:
    h = disk.attach(RunHistory(disk.data))
    errors: list[str | None] = []
    w = writer(h, errors)
    assert errors == [None]  # the metric's series exist at 0 from the start
    w.start("r1", "hourly", 10.0)  # written before the disk filled: `running` in the file
    disk.fill()
    with caplog.at_level(logging.INFO, logger=LOGGER):
        w.update("r1", json.dumps({"phases": ["overhead"]}))
        w.finish("r1", "passed", finished_at=20.0, report_json=json.dumps({"passed": True}))
        w.start("r2", "hourly", 30.0)  # the next run starts although nothing can be written
        assert w.retry() is False
        assert h.get("r1")["status"] == "running" and h.get("r2") is None
        assert w.pending == 2 and w.outage == f"disk full: {h.path}"
        assert errors[1:] == ["disk_full"] * 4  # update, finish, start, retry
        assert errors_logged(caplog) == [
            f"run history disk full: {h.path}: runs are still measured and exported, "
            "and recorded once it takes writes again"
        ]  # one line for the whole outage
        disk.free()
        assert w.retry() is True
    done = h.get("r1")
    assert (done["status"], done["finished_at"]) == ("passed", 20.0)
    assert done["report"] == {"passed": True}
    assert h.get("r2")["status"] == "running"  # still going: finished by its own finish
    assert "run history takes writes again" in caplog.text and w.outage is None
    w.finish("r2", "failed", finished_at=40.0, reason="slo")
    assert h.get("r2")["status"] == "failed" and w.pending == 0
    w.close()


def test_recovery_refused_at_start_runs_first_once_writable(disk: Disk) -> None:
    """Runs a killed daemon left `running` are aborted before any newer row is written, so the
    recovery never aborts the run that started while the disk was full."""
    old = RunHistory(disk.data)
    old.start("killed", "p", 1.0)
    old.close()
    h = disk.attach(RunHistory(disk.data))
    disk.fill()
    w = writer(h, [])
    assert w.recover() is None  # refused: deferred
    w.start("new", "p", 2.0)
    disk.free()
    assert w.retry() is True
    assert (h.get("killed")["status"], h.get("killed")["reason"]) == ("aborted", "daemon restarted")
    assert h.get("new")["status"] == "running"
    w.close()


def test_a_read_only_history_is_reopened_when_writable_again(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    h = RunHistory(tmp_path)
    state: dict[str, str | None] = {"error": READ_ONLY}
    fault(h, lambda: state["error"])
    errors: list[str | None] = []
    w = writer(h, errors)
    with caplog.at_level(logging.ERROR, logger=LOGGER):
        w.start("r1", "p", 1.0)
        w.finish("r1", "passed", finished_at=2.0)
    assert errors[1:] == ["read_only", "read_only"]
    assert errors_logged(caplog)[0].startswith(f"run history read-only: {h.path}: ")
    first = h._db
    state["error"] = None
    assert w.retry() is True
    assert h._db is not first  # SQLite keeps a connection read-only: a fresh one was opened
    assert h.get("r1")["status"] == "passed"
    w.close()


def test_held_runs_are_bounded(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    h = RunHistory(tmp_path)
    state: dict[str, str | None] = {"error": "database or disk is full"}
    fault(h, lambda: state["error"])
    w = writer(h, [], max_pending=2)
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        for i in range(4):
            w.start(f"r{i}", "p", float(i))
            w.finish(f"r{i}", "passed", finished_at=i + 0.5, report_json="x" * 1000)
    assert w.pending == 2
    assert "run r0 dropped unrecorded: more than 2 runs wait" in caplog.text
    state["error"] = None
    w.close()  # the last attempt, at exit, lands what is held
    again = RunHistory(tmp_path)
    assert [r["id"] for r in again.runs()] == ["r3", "r2"]
    again.close()


async def test_the_daemon_measures_on_a_full_disk_and_records_the_run_later(disk: Disk) -> None:
    """The whole loop: the data dir is full when the scheduled run starts; the run sends its
    load and is exported, the refusal is counted by reason, and once space returns the run
    appears in the history, finished, with its report (no row left `running`)."""
    profile = parse_profile({}, "providers.primary")
    providers = {"primary": profile, "fallback": profile}
    async with MockServer(MockConfig(providers=providers)) as mock:
        path = disk.mount.parent / "soak.yaml"
        path.write_text(yaml.safe_dump({
            "version": 1,
            "gateway": {"name": "direct", "url": mock.url,
                        "chat_path": "/p/primary/v1/chat/completions"},
            "mock": {"url": mock.url},
            "phases": {"overhead": {"rate": 20, "duration": "250ms", "latency": "5ms"}},
            "schedule": [{"name": "tiny", "interval": "1h", "phases": ["overhead"],
                          "run_on_start": True}],
        }))  # fmt: skip
        source = ConfigSource(path)
        daemon = Daemon(source, source.load(), listen="127.0.0.1:0", data_dir=disk.data)
        disk.attach(daemon.history)
        daemon.self_watch_window = 0.05  # the writer retries on this beat
        reg = daemon.registry
        refused = {"reason": "disk_full"}
        assert reg.get_sample_value("soak_history_write_errors_total", refused) == 0
        disk.fill()
        task = asyncio.create_task(daemon.run())
        for _ in range(400):
            if reg.get_sample_value("soak_plan_runs_total", {"plan": "tiny", "status": "passed"}):
                break
            await asyncio.sleep(0.025)
        labels = {"target": "direct", "phase": "overhead", "outcome": "ok"}
        assert reg.get_sample_value("soak_requests_total", labels) == 5  # measured all the same
        assert reg.get_sample_value("soak_history_write_errors_total", refused) >= 3
        assert daemon.history.runs() == []
        disk.free()
        for _ in range(200):
            if daemon.history.runs():
                break
            await asyncio.sleep(0.025)
        (run,) = daemon.history.runs()
        assert run["status"] == "passed"
        assert daemon.history.get(run["id"])["report"]["phases"][0]["sent"] == 5
        daemon.request_stop()
        assert await asyncio.wait_for(task, 10) == 0
