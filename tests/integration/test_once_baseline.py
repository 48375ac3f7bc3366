"""`soak once --baseline` and `soak compare` as a CI job runs them: the real CLI, a managed
gateway (tests/proxy_gateway.py) in front of soak's mock, the step summary file of a step that
already holds a line, and the exit codes a workflow acts on.

A run with 10 ms added to every request is judged against a run without: the gate fails
(exit 1), and every report says why. The false-alarm and detection rates at 2 ms are measured
by bench/bench_regression.py (docs/BENCHMARKS.md), not here: a test on a shared machine must
not depend on its load.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
import yaml
from once_helpers import SOAK, proxy_gateway, run_once

from soak.compare import Histogram

pytestmark = pytest.mark.integration


def config(*proxy_args: str) -> dict:
    return {
        "version": 1,
        "gateway": proxy_gateway(*proxy_args),
        "phases": {"overhead": {"rate": 20, "duration": "4s", "latency": "20ms"}},
        # absolute limits far away: only the comparison with the baseline can fail the run
        "slo": {"overhead": {s: "200ms" for s in ("mean", "p50", "p90", "p95", "p99")},
                # judge every run even if this machine's host steals CPU (the rule that leaves
                # such runs out is tested in tests/test_compare.py): the gate is the point here
                "regression": {"max_steal": 1.0}},
    }


def test_a_slower_gateway_fails_against_its_baseline(tmp_path: Path) -> None:
    # main's job and this one run the gated phase twice each (--repeat), as the example does
    base = run_once(tmp_path / "main", config(), "--phases", "overhead", "--repeat", "2")
    assert base.code == 0, base.stderr
    baseline = base.out / "report.json"
    assert [p["name"] for p in base.report["phases"]] == ["overhead", "overhead#2"]
    for phase in base.report["phases"]:
        hist = phase["histograms"]["overhead_per_request"]
        assert sum(hist["counts"]) == phase["completed"] == 80
        assert phase["details"]["verification"]["checked"] == 80

    summary = tmp_path / "step.md"
    summary.write_text("earlier command\n")
    env = {**os.environ, "GITHUB_STEP_SUMMARY": str(summary)}
    path = tmp_path / "slow.yaml"
    path.write_text(yaml.safe_dump(config("--delay", "0.010")))
    out = tmp_path / "slow"
    done = subprocess.run(
        [*SOAK, "once", "--config", str(path), "--out", str(out), "--phases", "overhead",
         "--baseline", str(baseline), "--repeat", "2"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=240,
    )  # fmt: skip
    assert done.returncode == 1, done.stderr
    assert f"vs baseline {json.loads(baseline.read_text())['run_id']}: regressed beyond" \
        " tolerance: overhead p50 +" in done.stdout  # fmt: skip
    report = json.loads((out / "report.json").read_text())
    assert report["schema"] == "llm-soak/run/v2" and report["passed"] is False
    (compared,) = report["comparison"]["phases"]
    assert (compared["baseline_runs"], compared["current_runs"]) == (2, 2)
    assert compared["baseline_count"] == compared["current_count"] == 160
    (p50,) = [s for s in compared["stats"] if s["stat"] == "p50"]
    assert p50["verdict"] == "regressed" and p50["low"] > 0.001 and p50["gated"]
    current = [p for p in report["phases"] if p["name"] in ("overhead", "overhead#2")]
    p50s = [Histogram.from_json(p["histograms"]["overhead_per_request"]).stat("p50")
            for p in current]  # fmt: skip
    assert p50["current"] == p50s[p50["current_run"] - 1] == min(p50s)  # the least disturbed
    assert all(p["status"] == "passed" for p in current)  # absolute SLO still met: only the gate
    assert "overhead: 160 vs 160 requests in 2 vs 2 runs" in (out / "report.md").read_text()
    step = summary.read_text()
    assert step.startswith("earlier command\n### ❌ llm-soak FAIL: proxy")
    assert step.count("llm-soak") == 1 and "INCOMPLETE" not in step
    junit = (out / "junit.xml").read_text()
    assert 'type="Regression"' in junit

    same = subprocess.run([*SOAK, "compare", str(baseline), str(baseline), "--format", "json"],
                          capture_output=True, text=True, timeout=60)  # fmt: skip
    assert same.returncode == 0, same.stderr
    assert json.loads(same.stdout)["verdict"] == "no significant change"
    # judged by the same slo.regression as the run (max_steal 1.0): without --config the
    # default 2 % steal rule leaves stolen runs out, and a CI runner's host stole more once
    slow = subprocess.run([*SOAK, "compare", str(baseline), str(out / "report.json"),
                           "--config", str(path)],
                          capture_output=True, text=True, timeout=60)  # fmt: skip
    assert slow.returncode == 1 and "**Verdict: regressed beyond tolerance" in slow.stdout


def test_a_baseline_that_cannot_be_read_is_a_usage_error(tmp_path: Path) -> None:
    bad = tmp_path / "report.json"
    bad.write_text('{"schema": "something/else"}')
    for argv in (["once", "--baseline", str(tmp_path / "missing.json")],
                 ["once", "--baseline", str(bad)], ["compare", str(bad), str(bad)]):  # fmt: skip
        done = subprocess.run([*SOAK, *argv], capture_output=True, text=True, timeout=60,
                              cwd=tmp_path)  # fmt: skip
        assert done.returncode == 2, (argv, done.stderr)
        lines = done.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("soak: "), done.stderr
    assert not (tmp_path / "soak-results").exists()  # nothing ran
