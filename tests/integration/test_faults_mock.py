"""The mock and its control API failing under the breaker phase, and the tester killed while a
fault is injected. The phase must end as a clean error (no traceback, a report on disk, exit 1);
a fault the tester could not clear must expire by its TTL at the mock."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest
import yaml
from once_helpers import SOAK, free_port, run_once

pytestmark = pytest.mark.integration

BAD_GATEWAY = Path(__file__).resolve().parents[1] / "bad_gateway.py"
TOKEN = "mock-token-planted-81c4e2"
BREAKER = {"rate": 10, "duration": "6s", "latency": "10ms", "lead": "1s", "fault": "3s"}


class Mock:
    """`soak mock` as its own process, optionally guarding its control API with a token."""

    def __init__(self, token: str | None = None) -> None:
        env = dict(os.environ)
        argv = [*SOAK, "mock", "--port", "0", "--providers", "primary,fallback"]
        if token is not None:
            env["FAULT_MOCK_TOKEN"] = token
            argv += ["--token-env", "FAULT_MOCK_TOKEN"]
        self.token = token
        self.proc = subprocess.Popen(
            [*argv, "--log-level", "warning"],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        assert self.proc.stdout is not None
        m = re.search(r"127\.0\.0\.1:(\d+)", self.proc.stdout.readline())
        assert m, "the mock did not say where it listens"
        self.url = f"http://127.0.0.1:{m[1]}"

    def control(self, method: str, path: str, token: str | None = None) -> tuple[int, Any]:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        req = urllib.request.Request(f"{self.url}/_mock/{path}", method=method, headers=headers)
        try:
            with urllib.request.urlopen(req, timeout=5) as resp:
                return resp.status, json.loads(resp.read())
        except urllib.error.HTTPError as err:
            return err.code, json.loads(err.read())

    def active_faults(self) -> list[dict[str, Any]]:
        status, stats = self.control("GET", "stats", self.token)
        assert status == 200
        return [f for p in stats["providers"].values() for f in p["active_faults"]]

    def injected_total(self) -> int:
        _, stats = self.control("GET", "stats", self.token)
        return sum(p["faults_injected"] for p in stats["providers"].values())

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=10)
        assert self.proc.stdout is not None
        self.proc.stdout.close()


@pytest.fixture
def mocks() -> Iterator[list[Mock]]:
    started: list[Mock] = []
    yield started
    for m in started:
        m.stop()


def direct_config(mock_url: str, **mock: Any) -> dict[str, Any]:
    """The mock is also the 'gateway' (its primary): no gateway process in these tests."""
    return {
        "version": 1,
        "gateway": {
            "name": "direct",
            "url": mock_url,
            "timeout": "2s",
            "chat_path": "/p/primary/v1/chat/completions",
        },
        "mock": {"url": mock_url, **mock},
        "phases": {"breaker": dict(BREAKER)},
    }


def test_a_control_api_refusing_the_token_is_a_clean_phase_error(
    tmp_path: Path, mocks: list[Mock], monkeypatch: pytest.MonkeyPatch
) -> None:
    mock = Mock(token=TOKEN)
    mocks.append(mock)
    monkeypatch.setenv("FAULT_WRONG_TOKEN", "not-the-token")
    config = direct_config(mock.url, control_token_env="FAULT_WRONG_TOKEN")
    done = run_once(tmp_path, config, "--phases", "breaker", timeout=60)
    assert done.code == 1 and "Traceback" not in done.stderr + done.stdout
    breaker = done.phase("breaker")
    assert breaker["status"] == "error"
    assert "mock control API" in breaker["error"] and "HTTP 401" in breaker["error"]
    assert mock.active_faults() == [] and mock.injected_total() == 0
    everything = done.stdout + done.stderr + "".join(p.read_text() for p in done.out.iterdir())
    assert TOKEN not in everything and "not-the-token" not in everything


def test_the_mock_killed_mid_breaker_phase_is_a_clean_phase_error(tmp_path: Path) -> None:
    """soak starts the mock itself here; the test SIGKILLs it while the fault is injected."""
    port = free_port()
    config = {
        "version": 1,
        "gateway": {
            "name": "direct",
            "url": f"http://127.0.0.1:{port}",
            "timeout": "2s",
            "chat_path": "/p/primary/v1/chat/completions",
        },
        "mock": {"port": port},
        "phases": {"breaker": dict(BREAKER)},
    }
    (tmp_path / "soak.yaml").write_text(yaml.safe_dump(config))
    proc = subprocess.Popen(
        [*SOAK, "once", "--config", "soak.yaml", "--out", "out", "--phases", "breaker"],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    mock_pid = _child_running(proc.pid, "soak.mock", timeout=30)
    _wait_for_fault(f"http://127.0.0.1:{port}", timeout=20)
    os.kill(mock_pid, signal.SIGKILL)
    out, err = proc.communicate(timeout=120)  # stops a hang only: the run ends in ~7 s
    assert proc.returncode == 1 and "Traceback" not in out + err, err[-2000:]
    (breaker,) = json.loads((tmp_path / "out" / "report.json").read_text())["phases"]
    assert breaker["status"] == "error"
    assert breaker["error"].startswith("mock control API: ")
    assert "\n" not in breaker["error"]


def test_the_tester_killed_mid_fault_leaves_a_fault_that_expires_by_its_ttl(
    tmp_path: Path, mocks: list[Mock]
) -> None:
    mock = Mock()
    mocks.append(mock)
    (tmp_path / "soak.yaml").write_text(yaml.safe_dump(direct_config(mock.url)))
    proc = subprocess.Popen(
        [*SOAK, "once", "--config", "soak.yaml", "--out", "out", "--phases", "breaker"],
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    (fault,) = _wait_for_fault(mock.url, timeout=20)
    proc.kill()  # SIGKILL: no finally, no clear
    proc.wait(timeout=10)
    time.sleep(0.5)
    (left,) = mock.active_faults()
    assert left["id"] == fault["id"]  # nobody cleared it
    ttl_left = left["expires_at"] - time.time()
    assert 0 < ttl_left <= 3 + 10  # fault + the 10 s margin (TTL_MARGIN)
    # gone at its expiry (poll 0.25 s) vs never, or kept past it: 5 s of slack is 20 polls
    deadline = time.time() + ttl_left + 5
    while mock.active_faults() and time.time() < deadline:
        time.sleep(0.25)
    assert mock.active_faults() == []
    assert time.time() >= left["expires_at"] - 0.5  # gone by expiry, not earlier


def _wait_for_fault(mock_url: str, timeout: float) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"{mock_url}/_mock/stats", timeout=2) as resp:
                stats = json.loads(resp.read())
            faults = [f for p in stats["providers"].values() for f in p["active_faults"]]
            if faults:
                return faults
        except OSError:
            pass
        time.sleep(0.1)
    raise AssertionError(f"no fault injected at {mock_url} within {timeout}s")


def _child_running(pid: int, needle: str, timeout: float) -> int:
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


def test_a_control_api_that_never_answers_is_a_bounded_phase_error(tmp_path: Path) -> None:
    """The 'mock' accepts and never answers (tests/bad_gateway.py hang): the breaker phase
    ends on the control client's timeout, and the run ends; nothing waits forever."""
    hang = subprocess.Popen(
        [sys.executable, str(BAD_GATEWAY), "--port", "0", "--mode", "hang"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert hang.stdout is not None
        url = "http://127.0.0.1:" + re.search(r":(\d+)", hang.stdout.readline())[1]
        # the control client's 10 s timeouts end it (~22 s in all); 120 s only stops a hang
        done = run_once(tmp_path, direct_config(url), "--phases", "breaker", timeout=120)
    finally:
        hang.terminate()
        hang.wait(timeout=10)
        hang.stdout.close()
    assert done.code == 1 and "Traceback" not in done.stderr + done.stdout
    breaker = done.phase("breaker")
    assert breaker["status"] == "error"
    assert breaker["error"].startswith("mock control API: ")
    assert "no answer within the timeout" in breaker["error"]
