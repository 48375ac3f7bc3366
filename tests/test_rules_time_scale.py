"""`AlertOptions.time_scale`: the rules in compressed time, for a game day.

A game day runs a 15-minute schedule every 30 s. Schedule-derived windows shrink by
themselves, but the nominal ones (a 1 h burn-rate window, 5 m margins, a 6 h memory low, the
`for:` durations) would stay hours long: a fault could never be seen to fire and resolve in
minutes. time_scale divides every nominal duration, so the compressed rules keep production's
proportions; promtool replays scheduled traffic at that pace to prove they fire once and
resolve.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from soak.phases import load_config
from soak.rules import AlertOptions, build_rules

SLO = load_config(None, env={}).slo
PHASES = {"calibration": 30.0, "overhead": 30.0, "stress": 30.0}
"""A game day's plan: every 30 s instead of every 15 min (time_scale 30)."""


def alerts(rules: dict) -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = {}
    for group in rules["groups"]:
        for rule in group["rules"]:
            if "alert" in rule:
                out.setdefault(rule["alert"], []).append(rule)
    return out


def test_scale_one_is_production() -> None:
    assert build_rules(SLO, phases=PHASES, options=AlertOptions(time_scale=1)) == build_rules(
        SLO, phases=PHASES
    )


def test_every_nominal_duration_is_divided_and_schedule_intervals_are_not() -> None:
    rules = alerts(build_rules(SLO, phases=PHASES, options=AlertOptions(time_scale=30)))
    assert {r["for"] for r in rules["SoakGatewayOverheadHigh"]} == {"10s"}  # 5m / 30
    assert rules["SoakPhaseFailed"][0]["for"] == "12s"  # 6m / 30
    # overhead window: the interval (30 s, real) + the 5 m margin / 30
    assert "[40s]" in rules["SoakGatewayOverheadHigh"][0]["expr"]
    fast, slow = rules["SoakErrorBudgetFastBurn"][0], rules["SoakErrorBudgetSlowBurn"][0]
    # 1h / 30 long; the short window still covers the gap between runs: 30 s + 10 s
    assert "ratio_rate2m > 0.144" in fast["expr"] and "ratio_rate40s > 0.144" in fast["expr"]
    assert "ratio_rate12m > 0.06" in slow["expr"] and "ratio_rate1m > 0.06" in slow["expr"]
    assert fast["for"] == "4s" and slow["for"] == "30s"
    memory = rules["SoakGatewayMemoryGrowth"][0]
    assert (
        "[12m]" in memory["expr"]
        and "deriv(soak_gateway_resident_memory_bytes[2m])" in (memory["expr"])
    )
    assert memory["for"] == "1m"  # 30m / 30
    assert rules["SoakPlanOverdue"][0]["expr"].endswith("> 20")  # 600 s / 30
    assert "[2m]" in rules["SoakSchedulerSkippedRuns"][0]["expr"]  # the 1 h look-back
    # SoakPhaseNotRunning stays timed by the schedule itself (2 intervals of 30 s)
    schedule = "phase:soak_schedule_interval_seconds:config"
    assert f"2 * {schedule}" in rules["SoakPhaseNotRunning"][0]["expr"]


def test_durations_never_reach_zero() -> None:
    options = AlertOptions(time_scale=3600)
    rules = alerts(build_rules(SLO, phases={"overhead": 1.0}, options=options))
    fors = {r["for"] for rs in rules.values() for r in rs}
    assert "0s" not in fors and "1s" in fors


@pytest.mark.parametrize("bad", [0, 0.5, -3, float("nan"), float("inf"), True, "30"])
def test_bad_time_scale_is_a_value_error_naming_it(bad: object) -> None:
    with pytest.raises(ValueError, match=r"^time_scale: expected"):
        AlertOptions(time_scale=bad)  # type: ignore[arg-type]


def _run(start: int, seconds: int, ok: bool) -> dict[int, tuple[int, int]]:
    """Per second: (ok, errors) added by a run of 20 requests per second for `seconds`."""
    return {t: (20, 0) if ok else (0, 20) for t in range(start, start + seconds)}


def _series(until: int, fault: range) -> list[dict[str, str]]:
    """Overhead counters of a plan every 30 s (2 s of 20 req/s), errors while in `fault`."""
    added: dict[int, tuple[int, int]] = {}
    for start in range(0, until, 30):
        added.update(_run(start, 2, start not in fault))
    ok = err = 0
    oks, errs = [], []
    for t in range(until + 1):
        a, e = added.get(t, (0, 0))
        ok, err = ok + a, err + e
        oks.append(str(ok))
        errs.append(str(err))
    labels = 'target="gw", phase="overhead", job="soak"'
    return [
        {"series": f'soak_requests_total{{{labels}, outcome="ok"}}', "values": " ".join(oks)},
        {"series": f'soak_requests_total{{{labels}, outcome="http_5xx"}}',
         "values": " ".join(errs)},
    ]  # fmt: skip


def _firing(alert: str, at: int, firing: bool) -> dict:
    return {
        "expr": f'count(ALERTS{{alertname="{alert}", alertstate="firing"}})',
        "eval_time": f"{at}s",
        "exp_samples": [{"labels": "{}", "value": 1}] if firing else [],
    }


def test_compressed_burn_rate_fires_once_for_a_steady_fault_and_resolves(tmp_path: Path) -> None:
    """Healthy runs for 10 min, then every run fails for 3 min (6 runs), then healthy again:
    in compressed time the fast burn fires within a run, stays firing across the gaps between
    runs (no flapping), and resolves once its short window has passed the last failed run."""
    rules = build_rules(SLO, phases=PHASES, options=AlertOptions(time_scale=30, min_requests=20))
    (tmp_path / "rules.yml").write_text(yaml.safe_dump(rules))
    fault = range(600, 780)  # runs starting at 600 s .. 750 s fail
    steady = [_firing("SoakErrorBudgetFastBurn", t, True) for t in range(615, 790, 5)]
    tests = {
        "rule_files": ["rules.yml"],
        "evaluation_interval": "1s",
        "tests": [{
            "interval": "1s",
            "input_series": _series(900, fault),
            "promql_expr_test": [
                _firing("SoakErrorBudgetFastBurn", 595, False),  # healthy: quiet
                *steady,  # from the first failed run (+ for: 4 s) to past the last one
                _firing("SoakErrorBudgetFastBurn", 830, False),  # 40 s short window passed
            ],
        }],
    }  # fmt: skip
    (tmp_path / "t.test.yml").write_text(yaml.safe_dump(tests, sort_keys=False))
    promtool = shutil.which("promtool") or "/usr/bin/promtool"
    done = subprocess.run([promtool, "test", "rules", "t.test.yml"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=120)  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
