"""Resilience phases end to end through `soak once`: a real LiteLLM proxy with the primary
faulted (breaker opens and recovers, failover timed, clients keep succeeding), and a small
gateway that leaks per request failing the memory phase that its leak-free twin passes."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from once_helpers import ROOT, free_port, run_once

pytestmark = pytest.mark.integration

LEAKY = ROOT / "tests" / "leaky_gateway.py"

LITELLM = {
    "name": "litellm",
    "kind": "litellm",
    "generate_key": True,
    "timeout": "30s",
    "managed": {"command": [], "ready_timeout": "90s"},
}


def test_litellm_breaker_opens_and_recovers_and_failover_is_timed(tmp_path: Path) -> None:
    config = {
        "version": 1,
        "gateway": LITELLM,
        "phases": {
            "breaker": {"rate": 10, "duration": "22s", "lead": "2s", "fault": "8s"},
            "failover": {"requests": 16, "rate": 2},
        },
    }
    done = run_once(tmp_path, config, "--phases", "breaker,failover", timeout=150)
    assert "Traceback" not in done.stderr
    assert done.code == (0 if done.report["passed"] else 1), done.stderr[-2000:]

    breaker = done.phase("breaker")
    details = breaker["details"]
    primary = details["observed"]["primary"]
    states = [state for _, state in primary["timeline"]]
    assert states[0] == "CLOSED" and "OPEN" in states and states[-1] == "CLOSED", details
    assert 0 <= primary["time_to_open"] < 5  # allowed_fails: 1 cools it down at once
    assert 0 <= primary["time_to_recover"] < 12  # cooldown_time 5 s, then the next request
    assert details["observed"]["fallback"]["final"] == "CLOSED", details
    assert breaker["success_ratio"] >= 0.99  # the clients never saw the fault
    assert details["client_errors"]["during"] <= 1
    reported = details["reported"]  # LiteLLM's litellm_deployment_state, sampled at 1 Hz
    assert "OPEN" in [s for _, s in reported["primary"]["timeline"]]
    assert breaker["status"] == "passed", breaker["checks"]

    failover = done.phase("failover")
    fo = failover["details"]
    assert fo["failed_over"] == fo["requests"] == 16 and fo["client_errors"] == 0
    assert fo["timed"] >= 2 and fo["timed"] + fo["direct"] == 16
    assert 0 < fo["min"] <= fo["mean"] <= fo["max"] < 2.0
    assert failover["distributions"]["failover_time"]["count"] == fo["timed"] == len(fo["times"])
    assert max(fo["times"]) == pytest.approx(fo["max"], abs=1e-5)
    assert failover["status"] == "passed"
    markdown = (done.out / "report.md").read_text()
    assert "## Circuit Breaker" in markdown and "## Failover Time" in markdown


def _leaky(leak_kb: int) -> dict[str, Any]:
    return {
        "name": "leaky",
        "kind": "openai",
        "model": "soak-model",
        "timeout": "5s",
        "managed": {
            "command": [sys.executable, str(LEAKY), "--port", "{port}",
                        "--upstream", "{mock_url}/p/primary", "--leak-kb", str(leak_kb)],
            "ready_log": "leaky gateway listening",
            "ready_timeout": "30s",
        },
    }  # fmt: skip


@pytest.mark.parametrize(("leak_kb", "passes"), [(0, True), (300, False)])
def test_memory_phase_fails_a_leaking_gateway_only(
    tmp_path: Path, leak_kb: int, passes: bool
) -> None:
    config = {
        "version": 1,
        "gateway": _leaky(leak_kb),
        "phases": {"memory": {"requests": 120, "concurrency": 6, "latency": "500ms",
                              "warmup": "3s"}},
    }  # fmt: skip
    done = run_once(tmp_path, config, "--phases", "memory", timeout=90)
    assert "Traceback" not in done.stderr
    memory = done.phase("memory")
    d = memory["details"]
    assert d["samples"] >= 8 and d["initial"] > 10e6
    assert d["source"] == "process tree (psutil, by PID)"
    checks = {c["name"]: c for c in memory["checks"]}
    slope = checks["RSS slope after warm-up"]
    if passes:
        assert memory["status"] == "passed", memory["checks"]
        assert d["slope_mb_per_min"] < 15 and d["growth"] < 0.5
        assert done.code == 0
    else:
        # 300 KB × 12 req/s ≈ 210 MB/min: the trend fails it even if the ratios might not
        assert memory["status"] == "failed" and not slope["passed"]
        assert d["slope_mb_per_min"] > 100 and d["final"] - d["initial"] > 25e6
        assert done.code == 1


def test_memory_of_a_gateway_soak_did_not_start_comes_from_its_metrics(tmp_path: Path) -> None:
    mock_port, gateway_port = free_port(), free_port()
    upstream = f"http://127.0.0.1:{mock_port}/p/primary"
    argv = [sys.executable, str(LEAKY), "--port", str(gateway_port),
            "--upstream", upstream, "--leak-kb", "300"]  # fmt: skip
    with subprocess.Popen(argv, stdout=subprocess.PIPE, text=True) as gateway:
        try:
            assert gateway.stdout is not None and "listening" in gateway.stdout.readline()
            config = {
                "version": 1,
                "gateway": {"kind": "openai", "url": f"http://127.0.0.1:{gateway_port}",
                            "model": "soak-model", "timeout": "5s"},
                "mock": {"port": mock_port},
                "phases": {"memory": {"requests": 120, "concurrency": 6, "latency": "500ms",
                                      "warmup": "3s"}},
            }  # fmt: skip
            done = run_once(tmp_path, config, "--phases", "memory", timeout=90)
        finally:
            gateway.terminate()  # the with block waits for it and closes its pipe
    memory = done.phase("memory")
    d = memory["details"]
    assert d["source"] == "gateway metrics (process_resident_memory_bytes)"
    assert d["samples"] >= 8 and d["slope_mb_per_min"] > 100
    assert memory["status"] == "failed" and done.code == 1
