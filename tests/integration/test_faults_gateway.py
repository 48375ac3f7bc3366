"""Gateway faults through `soak once` (a subprocess of the real CLI): a gateway that hangs,
sends 50 MB, answers HTML or non-JSON events, never starts, or is killed with SIGKILL in the
middle of a phase. Each is classified per request, reported (JSON, Markdown, JUnit), and sets
the verdict; none is a traceback, none is lost. (tests/integration/test_once.py covers HTTP
status answers, non-JSON bodies, truncated streams, an unreachable URL and a proxy exiting.)"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import psutil
import pytest
import yaml
from once_helpers import SOAK, run_once

pytestmark = pytest.mark.integration

BAD_GATEWAY = Path(__file__).resolve().parents[1] / "bad_gateway.py"


def bad_gateway(mode: str, *args: str) -> dict[str, Any]:
    """A managed `openai`-kind gateway: tests/bad_gateway.py in `mode`."""
    return {
        "name": "bad",
        "kind": "openai",
        "model": "soak-model",
        "timeout": "1s",
        "managed": {
            "command": [
                sys.executable,
                str(BAD_GATEWAY),
                "--port",
                "{port}",
                "--mode",
                mode,
                *args,
            ],
            "ready_log": "bad gateway listening",
            "ready_timeout": "30s",
        },
    }


def overhead_only(gateway: dict[str, Any], stream: bool = False) -> dict[str, Any]:
    return {
        "version": 1,
        "gateway": gateway,
        "request": {"stream": stream},
        "phases": {"overhead": {"rate": 10, "duration": "1s", "latency": "10ms"}},
    }


CASES = [
    ("hang", [], False, "timeout"),
    ("huge", ["--mb", "50"], False, "bad_response"),
    ("huge-stream", ["--mb", "50"], True, "bad_response"),
    ("html", [], False, "bad_response"),
    ("json-to-stream", [], True, "bad_response"),
    ("sse-garbage", [], True, "bad_response"),
]


@pytest.mark.parametrize(("case", "args", "stream", "outcome"), CASES, ids=[c[0] for c in CASES])
def test_a_bad_gateway_is_classified_reported_and_fails_the_verdict(
    tmp_path: Path, case: str, args: list[str], stream: bool, outcome: str
) -> None:
    mode = {"huge-stream": "huge", "json-to-stream": "json"}.get(case, case)
    done = run_once(tmp_path, overhead_only(bad_gateway(mode, *args), stream), "--phases",
                    "overhead", timeout=60)  # fmt: skip
    assert done.code == 1, done.stderr[-2000:]
    assert "Traceback" not in done.stderr + done.stdout
    assert "verdict: FAIL" in done.stdout
    overhead = done.phase("overhead")
    assert overhead["status"] == "failed"
    assert set(overhead["outcomes"]) == {outcome}
    assert sum(overhead["outcomes"].values()) == overhead["sent"] >= 9  # none lost
    (case_xml,) = done.junit().findall(".//testcase")
    assert case_xml.find("failure") is not None
    assert outcome in (done.out / "report.md").read_text()


def test_a_50mb_answer_does_not_grow_the_testers_memory(tmp_path: Path) -> None:
    """Ten 50 MB answers in flight would be 500 MB; the client stops reading each at 4 MiB."""
    config = overhead_only(bad_gateway("huge", "--mb", "50"))
    config["phases"]["overhead"] = {"rate": 10, "duration": "2s", "latency": "10ms"}
    config_path = tmp_path / "soak.yaml"

    config_path.write_text(yaml.safe_dump(config))
    proc = subprocess.Popen(
        [*SOAK, "once", "--config", str(config_path), "--out", str(tmp_path / "out"),
         "--phases", "overhead"],
        cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    watched, peak = psutil.Process(proc.pid), 0
    while proc.poll() is None:
        try:
            peak = max(peak, watched.memory_info().rss)
        except psutil.NoSuchProcess:
            break
        time.sleep(0.02)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 1 and "Traceback" not in err
    assert peak < 150 * 2**20, f"soak once peaked at {peak / 2**20:.0f} MiB"


def test_a_managed_gateway_that_never_starts_is_a_run_error(tmp_path: Path) -> None:
    gateway = {
        "name": "dead",
        "kind": "openai",
        "managed": {
            "command": [sys.executable, "-c", "print('boom: no config'); raise SystemExit(3)"],
            "ready_log": "never",
            "ready_timeout": "120s",  # the slow side of the bound below
        },
    }
    started = time.monotonic()
    done = run_once(tmp_path, overhead_only(gateway), "--phases", "overhead", timeout=60)
    # the exit noticed (0.8 s here) vs the 120 s ready_timeout: 20 s is 25x and 6x
    assert time.monotonic() - started < 20
    assert done.code == 1 and "Traceback" not in done.stderr
    report = done.report
    assert report["passed"] is False and report["phases"] == []
    assert "exited" in report["error"] and "boom: no config" in report["error"]
    assert "\n" not in report["error"]
    assert "verdict: FAIL" in done.stdout


def test_a_gateway_killed_mid_phase_is_an_error_with_what_was_measured(tmp_path: Path) -> None:
    """SIGKILL from outside (the OOM killer, an operator) while the load runs."""
    proxy = Path(__file__).resolve().parents[1] / "proxy_gateway.py"
    config = {
        "version": 1,
        "gateway": {
            "name": "victim",
            "kind": "openai",
            "chat_path": "/p/primary/v1/chat/completions",
            "model": "soak-model",
            "timeout": "2s",
            "managed": {
                "command": [
                    sys.executable,
                    str(proxy),
                    "--port",
                    "{port}",
                    "--upstream",
                    "{mock_url}",
                ],
                "ready_log": "proxy listening",
            },
        },
        "phases": {"overhead": {"rate": 20, "duration": "4s", "latency": "10ms"}},
    }

    (tmp_path / "soak.yaml").write_text(yaml.safe_dump(config))
    proc = subprocess.Popen(
        [*SOAK, "once", "--config", "soak.yaml", "--out", "out", "--phases", "overhead"],
        cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    victim = _wait_for_child(proc.pid, str(proxy), timeout=30)
    time.sleep(1.5)  # into the phase
    os.kill(victim, signal.SIGKILL)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 1 and "Traceback" not in err, err[-2000:]
    assert "verdict: FAIL" in out

    (overhead,) = json.loads((tmp_path / "out" / "report.json").read_text())["phases"]
    assert overhead["status"] == "error"
    assert "the gateway exited (code -9) during overhead" in overhead["error"]
    assert overhead["outcomes"].get("ok", 0) > 5  # measured before the kill: kept
    assert overhead["outcomes"].get("connect", 0) > 5
    assert sum(overhead["outcomes"].values()) == overhead["sent"]


def _wait_for_child(pid: int, needle: str, timeout: float) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for child in psutil.Process(pid).children(recursive=True):
            try:
                if any(needle in part for part in child.cmdline()):
                    return child.pid
            except psutil.NoSuchProcess:
                continue
        time.sleep(0.1)
    raise AssertionError(f"no child running {needle} within {timeout}s")
