"""The daemon soaks: its managed gateway lives across scheduled runs, is restarted once when
killed mid-run (counted as a crash on /metrics, noted in the next run's report, which passes),
is sampled continuously, carries a background load between runs, and dies with the daemon.

`soak run` as a user runs it (a subprocess on loopback) with tests/proxy_gateway.py started by
`gateway.managed.command`; the gateway's PIDs are read from the process table, independent of
what the daemon says.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
from once_helpers import proxy_gateway
from test_daemon import SoakDaemon, get_json, wait_for

pytestmark = pytest.mark.integration


@pytest.fixture
def daemons() -> Iterator[list[SoakDaemon]]:
    started: list[SoakDaemon] = []
    yield started
    for d in started:
        if d.proc.poll() is None:
            d.stop(signal.SIGKILL)


def gateway_pids(daemon: SoakDaemon) -> set[int]:
    """PIDs of the daemon's children running tests/proxy_gateway.py."""
    found = set()
    for child in psutil.Process(daemon.proc.pid).children(recursive=False):
        try:
            if any(part.endswith("proxy_gateway.py") for part in child.cmdline()):
                found.add(child.pid)
        except psutil.Error:
            continue
    return found


def runs_total(daemon: SoakDaemon) -> float:
    return sum(daemon.metric("soak_plan_runs_total", plan="tick", status=s) or 0.0
               for s in ("passed", "failed", "error", "aborted"))  # fmt: skip


def config() -> dict:
    return {
        "version": 1,
        "gateway": proxy_gateway(),
        "phases": {"overhead": {"rate": 10, "duration": "2s", "latency": "20ms", "warmup": "0s"}},
        # A shared CI host: the verdict must hinge on the gateway being up, not on its speed.
        "slo": {
            "memory": {"long_window": "1m"},
            "overhead": {"mean": "1s", "p50": "1s", "p90": "1s", "p95": "1s", "p99": "1s"},
        },
        "schedule": [
            {
                "name": "tick",
                "interval": "1s",
                "run_on_start": True,
                "phases": ["overhead"],
                "background": {"rate": 5, "latency": "10ms"},
            }
        ],
        "server": {"grace": "10s"},
    }


def test_the_gateway_lives_across_runs_and_a_crash_is_restarted_once(
    tmp_path: Path, daemons: list[SoakDaemon]
) -> None:
    daemon = SoakDaemon(tmp_path, config())
    daemons.append(daemon)
    seen: set[int] = set()

    def runs_at_least(n: int) -> bool:
        seen.update(gateway_pids(daemon))
        return runs_total(daemon) >= n

    wait_for("5 scheduled runs", lambda: runs_at_least(5), 40, every=0.1)
    assert len(seen) == 1, f"one gateway process for five runs, saw {sorted(seen)}"
    (first,) = seen
    assert daemon.metric("soak_plan_runs_total", plan="tick", status="passed") >= 5
    assert daemon.metric("soak_gateway_restarts_total", target="proxy", reason="crash") == 0
    # Sampled between runs too, and loaded between them: the background series counts.
    assert (daemon.metric("soak_gateway_resident_memory_bytes", target="proxy") or 0) > 1e6
    background = daemon.metric("soak_requests_total", target="proxy", phase="background",
                               outcome="ok")  # fmt: skip
    assert background is not None and background > 0

    # A run read on its own says what the long-window memory alert reads (1m window: 6 s of
    # warm-up left out, a point per 10 s, judged from 30 s of points).
    def long_window_note() -> str | None:
        for run in get_json(f"{daemon.url}/runs")["runs"]:
            if run["finished_at"]:
                report = get_json(f"{daemon.url}/runs/{run['id']}")["report"]
                for note in report.get("notes", []):
                    if note.startswith("gateway memory over the long window: "):
                        return note
        return None

    note = wait_for("a run with the long-window memory note", long_window_note, 40, every=0.5)
    assert " MB/h from " in note and "(window 60s)" in note, note

    # Kill the gateway while a phase sends through it.
    wait_for("a phase running", lambda: daemon.metric(
        "soak_phase_running", target="proxy", phase="overhead") == 1, 20, every=0.05)  # fmt: skip
    before = runs_total(daemon)
    killed_at = time.time()
    os.kill(first, signal.SIGKILL)
    wait_for("the crash counted", lambda: daemon.metric(
        "soak_gateway_restarts_total", target="proxy", reason="crash") == 1, 20)  # fmt: skip
    second = wait_for("a new gateway process", lambda: gateway_pids(daemon) - {first}, 20)
    assert len(second) == 1

    # The next run after the killed one passes, on the restarted process, and notes the crash.
    wait_for("two more runs", lambda: runs_total(daemon) >= before + 2, 30, every=0.2)
    done = sorted((r for r in get_json(f"{daemon.url}/runs")["runs"] if r["finished_at"]),
                  key=lambda r: r["started_at"])  # fmt: skip
    (hit,) = [i for i, r in enumerate(done) if r["started_at"] <= killed_at <= r["finished_at"]]
    killed, after = done[hit], done[hit + 1]  # the run the kill hit, and the one right after
    assert after["status"] == "passed", (killed, after)
    reports = [get_json(f"{daemon.url}/runs/{r['id']}")["report"] for r in (killed, after)]
    notes = [note for report in reports for note in report.get("notes", [])]
    assert any("exited with code -9" in n for n in notes), notes
    assert daemon.metric("soak_gateway_restarts_total", target="proxy", reason="crash") == 1
    assert gateway_pids(daemon) == second

    # SIGTERM: the daemon stops within its grace and takes the gateway with it.
    (pid,) = second
    code, took = daemon.stop()
    assert code == 0 and took < 10
    assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE


def test_a_sigkilled_daemon_leaves_no_gateway(tmp_path: Path, daemons: list[SoakDaemon]) -> None:
    """PR_SET_PDEATHSIG: the managed gateway dies with soak however soak ends."""
    daemon = SoakDaemon(tmp_path, config())
    daemons.append(daemon)
    pids = wait_for("the gateway", lambda: gateway_pids(daemon), 30, every=0.1)
    daemon.stop(signal.SIGKILL)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and any(psutil.pid_exists(p) for p in pids):
        time.sleep(0.1)
    assert not any(psutil.pid_exists(p) for p in pids), sys.platform
