"""One incident, one notification: the timing the rules hold so the Alertmanager's inhibitions
work (they hold only while their source fires). Found on the game day (bench/game_day.py);
the promtool cases in dashboards/tests/ replay each incident."""

from __future__ import annotations

import pytest

from soak.phases import load_config
from soak.promql import seconds
from soak.rules import DEFAULT_PHASE_INTERVALS, _top_level_or, build_rules

RULES = build_rules(load_config(None, env={}).slo, phases=DEFAULT_PHASE_INTERVALS)
ALERTS = [r for g in RULES["groups"] for r in g["rules"] if "alert" in r]
PHASE_GROUP = next(g for g in RULES["groups"] if g["name"] == "soak.slo")["rules"]
EXPLAINS_A_VERDICT = {"SoakGatewayOverheadHigh", "SoakLatencyHigh", "SoakSuccessRatioLow",
                      "SoakStressRequestsFailed", "SoakFailoverSlow", "SoakFailoverMaxExceeded",
                      "SoakErrorBudgetFastBurn"}  # fmt: skip
"""Not the slow burn (`for: 15m`): a verdict failed by 6-14% errors is a ticket before that
page, a limit the game day did not cover (its outage was a fast burn)."""


def by_name(name: str) -> list[dict]:
    return [r for r in ALERTS if r["alert"] == name]


def test_a_failed_verdict_waits_for_every_alert_that_explains_it() -> None:
    (failed,) = by_name("SoakPhaseFailed")
    explaining = [r for r in ALERTS if r["alert"] in EXPLAINS_A_VERDICT]
    assert {r["alert"] for r in explaining} == EXPLAINS_A_VERDICT
    assert all(seconds(failed["for"]) > seconds(r["for"]) for r in explaining)
    assert "unless on (target, phase, round)\nsoak_generator_trusted == 0" in failed["expr"]


def test_phase_alerts_are_quiet_while_an_untrusted_run_is_in_their_window() -> None:
    skip = ("SoakErrorBudget", "SoakGatewayMemory")
    phase_alerts = [r for r in PHASE_GROUP if "labels" in r and "phase" in r["expr"]
                    and not r["alert"].startswith(skip)]  # fmt: skip
    assert len(phase_alerts) > 10
    for rule in phase_alerts:
        assert "unless on (target, phase)\nmin_over_time(soak_generator_trusted[" in rule["expr"]
    (overhead, *_) = by_name("SoakGatewayOverheadHigh")
    assert "min_over_time(soak_generator_trusted[20m]) == 0" in overhead["expr"]  # 15m + 5m


def test_slower_burns_and_failed_request_alerts_defer_to_a_burn_that_fired() -> None:
    fast, slow, *tickets = (r for r in ALERTS if r["alert"].startswith("SoakErrorBudget"))
    assert "ALERTS" not in fast["expr"]
    assert (
        'ALERTS{alertname=~"SoakErrorBudgetFastBurn", alertstate="firing"}[30m]' in (slow["expr"])
    )
    for ticket, short in zip(tickets, ("2h", "6h"), strict=True):
        assert (
            'alertname=~"SoakErrorBudgetFastBurn|SoakErrorBudgetSlowBurn", alertstate="firing"}'
            f"[{short}]"
        ) in ticket["expr"]
    for name in ("SoakStressRequestsFailed", "SoakSuccessRatioLow"):
        assert all("SoakErrorBudgetFastBurn|SoakErrorBudgetSlowBurn" in r["expr"]
                   for r in by_name(name))  # fmt: skip


def test_the_untrusted_alert_is_per_gateway_and_waits_two_runs() -> None:
    (untrusted,) = by_name("SoakGeneratorUntrusted")
    # a flag in the last phase window (15m + 5m), so one trusted run between starved ones does
    # not reset it (game day, scenario 7); one run holds it 35m, two in a row 50m
    assert untrusted["expr"] == (
        "count by (target) (\nmin_over_time(soak_generator_trusted[20m]) == 0\n) > 0"
    )
    assert untrusted["for"] == "40m"


def test_memory_growth_needs_a_pace_not_any_slope() -> None:
    for rule in by_name("SoakGatewayMemoryGrowth"):
        assert "deriv(soak_gateway_resident_memory_bytes[1h])\n> " in rule["expr"]
        assert "deriv(soak_gateway_resident_memory_bytes[1h]) > 0" not in rule["expr"]


@pytest.mark.parametrize(
    ("expr", "top"),
    [("a or b", True), ("sum(a or b)", False), ('x{l="or"} > 1', False),
     ("sum(a) or b", True), ("a and b unless c", False), ("rate(x[5m]) > 0\nor\ny", True)],
)  # fmt: skip
def test_an_unless_clause_wraps_only_a_top_level_or(expr: str, top: bool) -> None:
    assert _top_level_or(expr) is top
