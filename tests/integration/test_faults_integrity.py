"""Gateways that try to fool or rob the tester, through `soak once` as a CI job runs it (the
real CLI in a subprocess, a config file, exit code and reports read back): a gateway that
never calls the mock and forges the mock's marker, one that serves from a cache (with or
without calling the mock), one that rewrites the marker's service time, one that redirects to
another port. Each is counted in its own outcome and fails the run; the redirect target never
sees the secret header. A forwarding proxy is verified clean (no false alarm). Helper:
tests/hostile_gateway.py."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest
from once_helpers import proxy_gateway, run_once

pytestmark = pytest.mark.integration

HOSTILE = Path(__file__).resolve().parents[1] / "hostile_gateway.py"
SECRET = "s3cr3t-header-value-17"
PHASES = ("--phases", "calibration,overhead")


def hostile(mode: str, *args: str) -> dict[str, Any]:
    """A managed `openai`-kind gateway: tests/hostile_gateway.py in `mode`."""
    return {
        "name": "hostile",
        "kind": "openai",
        "chat_path": "/p/primary/v1/chat/completions",
        "model": "soak-model",
        "timeout": "5s",
        "headers": {"x-api-key": "${SOAK_TEST_GATEWAY_SECRET}"},
        "managed": {
            "command": [
                *(sys.executable, str(HOSTILE), "--port", "{port}", "--mode", mode),
                *("--upstream", "{mock_url}", *args),
            ],
            "ready_log": "hostile gateway listening",
            "ready_timeout": "30s",
        },
    }


def config(gateway: dict[str, Any]) -> dict[str, Any]:
    """Calibration then overhead, 20 requests each at a 20 ms mock latency."""
    shape = {"rate": 10, "duration": "2s", "latency": "20ms"}
    return {"version": 1, "gateway": gateway,
            "phases": {"calibration": dict(shape), "overhead": dict(shape)}}  # fmt: skip


@pytest.fixture(autouse=True)
def secret(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SOAK_TEST_GATEWAY_SECRET", SECRET)


def failed_for(done: Any, outcome: str) -> dict[str, Any]:
    """The overhead phase of a run that must have failed on `outcome` answers."""
    assert done.code == 1, done.stdout[-2000:] + done.stderr[-2000:]
    assert "Traceback" not in done.stderr + done.stdout
    assert "verdict: FAIL" in done.stdout
    assert done.phase("calibration")["status"] == "baseline"  # straight to the mock: unchecked
    overhead = done.phase("overhead")
    assert overhead["status"] == "failed"
    assert overhead["outcomes"].get(outcome, 0) >= 18, overhead["outcomes"]
    assert sum(overhead["outcomes"].values()) == overhead["sent"] >= 19
    (case,) = [c for c in done.junit().findall(".//testcase") if c.get("name") == "overhead"]
    assert case.find("failure") is not None
    return overhead


@pytest.mark.parametrize("forge", ["content", "header", "plausible"])
def test_a_gateway_that_never_calls_the_mock_fails_untraced(tmp_path: Path, forge: str) -> None:
    """`[mock:primary:999999999999]`, a 15-digit `x-soak-service-us`, or a marker of exactly
    the mock's latency: each answer's nonce has no attempt at the mock (it used to PASS)."""
    gateway = hostile("forge", "--forge", forge, "--service-us", "20000")
    done = run_once(tmp_path, config(gateway), *PHASES, timeout=120)
    overhead = failed_for(done, "untraced")
    tally = overhead["details"]["verification"]
    assert tally["untraced"] == overhead["outcomes"]["untraced"] == tally["checked"]
    assert tally["reasons"] == {"no attempt at the mock": tally["untraced"]}
    assert overhead["completed"] == 0 and "overhead_per_request" not in overhead["distributions"]
    (check,) = [c for c in overhead["checks"] if c["name"] == "untraced or forged answers"]
    assert check["passed"] is False and check["value"] == tally["untraced"]
    md = (done.out / "report.md").read_text()
    assert "untraced" in md and "cache in the gateway" in md


def test_a_caching_gateway_fails_untraced_after_its_first_answer(tmp_path: Path) -> None:
    """Forwards the first request, replays that answer (the mock's real marker) afterwards."""
    done = run_once(tmp_path, config(hostile("cache")), *PHASES, timeout=120)
    overhead = failed_for(done, "untraced")
    assert overhead["outcomes"].get("ok", 0) <= 2  # what really reached the mock
    assert overhead["details"]["verification"]["untraced"] >= 18
    assert any("cache in the gateway" in n for n in overhead["notes"])


def test_a_gateway_replaying_its_first_answer_while_calling_the_mock_fails_forged(
    tmp_path: Path,
) -> None:
    """Every nonce reaches the mock, every answer is the first one: the body names the first
    request's nonce (and the marker its service time)."""
    done = run_once(tmp_path, config(hostile("replay")), *PHASES, timeout=120)
    overhead = failed_for(done, "forged")
    assert overhead["outcomes"].get("ok", 0) <= 1
    reasons = overhead["details"]["verification"]["reasons"]
    assert reasons == {"answer to another request": overhead["outcomes"]["forged"]}


def test_a_gateway_rewriting_the_service_time_fails_forged(tmp_path: Path) -> None:
    """Calls the mock but reports 1 µs of mock time: what it added would vanish in overhead."""
    done = run_once(tmp_path, config(hostile("retime", "--service-us", "1")), *PHASES, timeout=120)
    overhead = failed_for(done, "forged")
    assert overhead["details"]["verification"]["reasons"] == {
        "marker service time differs": overhead["outcomes"]["forged"]
    }


@pytest.mark.parametrize("status", ["302", "307"])
def test_a_redirect_is_an_outcome_and_the_secret_stays_home(tmp_path: Path, status: str) -> None:
    seen = tmp_path / "seen.jsonl"
    gateway = hostile("redirect", "--status", status, "--seen", str(seen))
    done = run_once(tmp_path, config(gateway), *PHASES, timeout=120)
    # the redirect's target, another loopback port, saw no request: no header, no secret
    # (it saw the secret header once per request before: redirects were followed)
    assert not seen.exists() or SECRET not in seen.read_text()
    assert not seen.exists(), seen.read_text()[:500]
    assert failed_for(done, "http_3xx")["outcomes"] == {"http_3xx": done.phase("overhead")["sent"]}


def test_a_forwarding_proxy_is_verified_clean(tmp_path: Path) -> None:
    """Every answer through an honest proxy matches its attempt at the mock: no false alarm."""
    gateway = proxy_gateway()
    done = run_once(tmp_path, config(gateway), *PHASES, timeout=120)
    assert done.code == 0, done.stdout[-2000:] + done.stderr[-2000:]
    overhead = done.phase("overhead")
    tally = overhead["details"]["verification"]
    assert tally == {"checked": overhead["completed"], "untraced": 0, "forged": 0, "reasons": {}}
    assert overhead["completed"] == overhead["sent"] >= 19
    assert json.dumps(done.report).count(SECRET) == 0
