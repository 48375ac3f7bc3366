"""`soak once` with a managed Portkey gateway (`kind: portkey`, the kind's default command):
overhead, stress, failover through Portkey's fallback strategy, and a capacity search, with
what Portkey says about each answer next to what the mock saw.

Needs node/npm and the npm registry or a pre-filled $SOAK_CACHE (see test_portkey_gateway.py).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from once_helpers import run_once, small_phases

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]


def test_managed_portkey_runs_overhead_stress_failover_and_capacity(tmp_path: Path) -> None:
    config = {
        "version": 1,
        "gateway": {
            "name": "portkey",
            "kind": "portkey",
            "timeout": "10s",
            "managed": {"command": [], "ready_timeout": "60s"},
        },
        "phases": {
            **small_phases(rate=20, duration="3s", latency="20ms"),
            "failover": {"requests": 10, "rate": 5, "latency": "20ms"},
            "capacity": {
                "start": 40,
                "factor": 2.5,
                "max_rate": 250,
                "step_duration": "2s",
                "budget": "40s",
                "latency": "20ms",
                "timeout": "5s",
                "bisect": 0,
                "pause": "500ms",
            },
        },
    }
    phases = "calibration,overhead,stress,failover,capacity"
    done = run_once(tmp_path, config, "--phases", phases, timeout=220)
    assert done.code in (0, 1), done.stderr[-2000:]  # 1: an SLO verdict, not a crash
    report = done.report
    assert report["error"] is None and report["kind"] == "portkey"
    assert [p["name"] for p in report["phases"]] == [
        "calibration", "overhead", "stress-1", "stress-2", "failover", "capacity",
    ]  # fmt: skip

    overhead = done.phase("overhead")
    assert overhead["success_ratio"] == 1.0
    per_request = overhead["distributions"]["overhead_per_request"]
    print(
        f"portkey overhead p50 {per_request['p50'] * 1e3:.2f} ms p99 {per_request['p99'] * 1e3:.2f}"
    )
    assert per_request["p50"] > 0  # how much is a speed figure: docs/BENCHMARKS.md
    said = overhead["details"]["gateway_said"]
    assert said["said"] == {"primary": overhead["completed"]} and said["disagree"] == 0
    assert overhead["process"]["rss_peak"] > 20 * 2**20  # node watched by PID

    assert all(done.phase(f"stress-{i}")["success_ratio"] == 1.0 for i in (1, 2))

    failover = done.phase("failover")
    d = failover["details"]
    assert d["failed_over"] == 10 and d["timed"] == 10  # no breaker: every request tries primary
    assert failover["details"]["gateway_said"]["said"] == {"fallback": 10}
    assert failover["details"]["gateway_said"]["saw"] == {"fallback": 10}
    assert failover["status"] == "passed"

    capacity = done.phase("capacity")
    cap = capacity["details"]
    print(f"portkey capacity: knee {cap['knee']} stopped by {cap['stopped_by']}: {cap['reasons']}")
    assert cap["steps"] and cap["steps"][0]["rate"] == 40
    assert cap["stopped_by"] in ("slo", "runaway", "generator", "max_rate", "budget")
    if cap["steps"][0]["held"]:
        assert cap["knee"] >= 40
    md = (done.out / "report.md").read_text()
    assert "## Capacity" in md and "## What the gateway said" in md
