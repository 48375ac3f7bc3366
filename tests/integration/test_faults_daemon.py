"""`soak run` under faults: a gateway that is down at start, hangs, floods, answers HTML, or
is SIGKILLed in the middle of a run; the daemon itself SIGKILLed mid-run; its history file
damaged. The daemon keeps serving, every run lands in the history with a status, the next
scheduled run works.

(test_daemon.py covers SIGTERM mid-fault and a bad reload.)
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from once_helpers import PROXY, free_port
from test_daemon import SoakDaemon, daemons, get_json, http, mock, mock_only, wait_for

pytestmark = pytest.mark.integration
__all__ = ["daemons", "mock"]  # fixtures shared with test_daemon.py

BAD_GATEWAY = Path(__file__).resolve().parents[1] / "bad_gateway.py"
LOOSE_SLO = {"overhead": {k: "1s" for k in ("mean", "p50", "p90", "p95", "p99")}}
"""The verdict of a healthy run through a Python proxy on a busy machine is not this test's."""


class Gateway:
    """The gateway under test on a fixed port the daemon's config names; swapped per stage."""

    def __init__(self, port: int, mock_url: str) -> None:
        self.port, self.mock_url = port, mock_url
        self.proc: subprocess.Popen[str] | None = None

    def start(self, mode: str) -> float:
        """Run `mode` (a tests/bad_gateway.py mode, or `good`: the forwarding proxy)."""
        self.stop()
        if mode == "good":
            argv = [str(PROXY), "--upstream", self.mock_url]
        else:
            argv = [str(BAD_GATEWAY), "--mode", mode, "--mb", "50"]
        self.proc = subprocess.Popen(
            [sys.executable, *argv, "--port", str(self.port)],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        assert self.proc.stdout is not None
        assert "listening" in self.proc.stdout.readline()
        return time.time()

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc is not None:
            if self.proc.poll() is None:
                self.proc.send_signal(sig)
            self.proc.wait(timeout=10)
            assert self.proc.stdout is not None
            self.proc.stdout.close()
            self.proc = None


def run_after(daemon: SoakDaemon, since: float, timeout: float = 40) -> dict[str, Any]:
    """The first run that started after `since` and finished, with its report."""
    found = wait_for(
        f"a run started after {since:.1f} to finish",
        lambda: [r for r in daemon.runs() if r["started_at"] > since and r["status"] != "running"],
        timeout,
        every=0.2,
    )
    return get_json(f"{daemon.url}/runs/{found[-1]['id']}")


def outcomes(run: dict[str, Any]) -> dict[str, int]:
    (overhead,) = run["report"]["phases"]
    return overhead["outcomes"]


def test_bad_gateways_do_not_stop_the_daemon_and_the_next_run_works(
    tmp_path: Path, daemons: list[SoakDaemon], mock: str
) -> None:
    port = free_port()
    gateway = Gateway(port, mock)
    config = mock_only(
        mock,
        [{"name": "fast", "interval": "2s", "phases": ["overhead"], "run_on_start": True}],
        overhead={"rate": 10, "duration": "2s", "latency": "10ms"},
    )
    config["gateway"].update(url=f"http://127.0.0.1:{port}", timeout="1s")
    config["slo"] = LOOSE_SLO
    try:
        since = time.time()  # no gateway yet: down at the daemon's start
        daemon = SoakDaemon(tmp_path, config)
        daemons.append(daemon)
        seen = {"down": outcomes(run_after(daemon, since))}
        for mode in ("hang", "huge", "html", "good"):
            since = gateway.start(mode)
            seen[mode] = outcomes(run_after(daemon, since))
        assert set(seen["down"]) == {"connect"}
        assert set(seen["hang"]) == {"timeout"}
        assert set(seen["huge"]) == {"bad_response"}
        assert set(seen["html"]) == {"bad_response"}
        assert set(seen["good"]) == {"ok"}

        # SIGKILL the gateway in the middle of a run, then bring it back
        since = time.time()
        wait_for(
            "a run in progress",
            lambda: [
                r for r in daemon.runs() if r["started_at"] > since and r["status"] == "running"
            ],
            10,
            every=0.05,
        )
        time.sleep(0.8)
        gateway.stop(signal.SIGKILL)
        killed = run_after(daemon, since)
        assert killed["status"] == "failed"
        assert killed["reason"] is None or "Traceback" not in killed["reason"]
        got = outcomes(killed)
        assert got.get("ok", 0) > 0 and got.get("connect", 0) + got.get("stream_broken", 0) > 0
        since = gateway.start("good")
        after = run_after(daemon, since)
        assert (after["status"], set(outcomes(after))) == ("passed", {"ok"})
    finally:
        gateway.stop()

    assert http(f"{daemon.url}/-/healthy")[0] == 200 and http(f"{daemon.url}/-/ready")[0] == 200
    statuses = {r["status"] for r in daemon.runs()}
    assert statuses <= {"passed", "failed", "running"}, statuses  # no run ended as an error
    assert (
        daemon.metric("soak_requests_total", target="direct", phase="overhead", outcome="timeout")
        > 0
    )
    code, _ = daemon.stop()
    assert code == 0
    log = (tmp_path / "daemon.log").read_text()
    assert "Traceback" not in log


def test_sigkill_mid_run_marks_the_run_aborted_and_a_damaged_history_is_set_aside(
    tmp_path: Path, daemons: list[SoakDaemon], mock: str
) -> None:
    plan = {"name": "slow", "interval": "1h", "phases": ["overhead"], "run_on_start": True}
    config = mock_only(mock, [plan], overhead={"rate": 10, "duration": "1s", "latency": "10ms"})
    first = SoakDaemon(tmp_path, config)
    daemons.append(first)
    done = first.finished_run(timeout=30)
    assert first.stop()[0] == 0  # one complete run on disk

    long = {**config, "phases": {"overhead": {"rate": 10, "duration": "30s", "latency": "10ms"}}}
    second = SoakDaemon(tmp_path, long)
    daemons.append(second)
    wait_for(
        "the second run to have a phase running",
        lambda: second.metric("soak_phase_running", target="direct", phase="overhead") == 1,
        20,
    )
    (running,) = [r for r in second.runs() if r["status"] == "running"]
    second.stop(signal.SIGKILL)  # no drain, no checkpoint: the WAL holds the last writes

    quiet = {**config, "schedule": [{**plan, "run_on_start": False}]}
    third = SoakDaemon(tmp_path, quiet)
    daemons.append(third)
    runs = {r["id"]: r for r in third.runs()}
    assert set(runs) == {done["id"], running["id"]}  # intact, nothing lost
    # the finished run exactly as it ended (its verdict is not this test's: a 1 s run on a
    # loaded machine may fail its SLO, and a fresh-clone run with one core busy saw that)
    assert runs[done["id"]]["status"] == done["status"] in ("passed", "failed")
    assert (runs[running["id"]]["status"], runs[running["id"]]["reason"]) == (
        "aborted",
        "daemon restarted",
    )
    assert get_json(f"{third.url}/runs/{done['id']}")["report"] == done["report"]
    assert third.stop()[0] == 0

    db = tmp_path / "data" / "history.db"
    size = db.stat().st_size
    with db.open("r+b") as f:  # garbage over the header, then cut the file short
        f.write(b"\xde\xad\xbe\xef" * 32)
        f.truncate(size // 2)
    fourth = SoakDaemon(tmp_path, config)
    daemons.append(fourth)
    assert http(f"{fourth.url}/-/ready")[0] == 200
    fresh = fourth.finished_run(timeout=30)
    assert fresh["status"] == "passed" and len(fourth.runs()) == 1
    aside = list((tmp_path / "data").glob("history.db.corrupt-*"))
    assert len(aside) == 1 and aside[0].stat().st_size == size // 2
    assert fourth.stop()[0] == 0
    log = (tmp_path / "daemon.log").read_text()
    assert "unreadable" in log and aside[0].name in log
    assert "Traceback" not in log
