"""The game day in CI (short): a healthy stretch, a gateway slowdown, a primary outage with and
without a fallback, and the daemon killed, through the real alerting path.

The real daemon (`soak run`) measures tests/game_gateway.py in front of soak's mock; a real
Prometheus evaluates the rules `soak rules --config` generated for that config, compressed
(`AlertOptions(time_scale=60)`: the plan runs every 15 s instead of every 15 min); the deploy
example's Alertmanager (waits compressed alike) notifies a local webhook. Each scenario must
raise exactly its alerts, notify each incident once and resolve; any other alert fails it.
bench/game_day.py runs all seven scenarios with a 20-run healthy stretch (docs/RELIABILITY.md).

Needs the Debian packages `prometheus` and `prometheus-alertmanager`.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from gameday import Compression, GameDay, Load
from gameday_scenarios import (
    Outcome,
    daemon_killed,
    healthy,
    outage_with_fallback,
    outage_without_fallback,
    slowdown,
)

pytestmark = [pytest.mark.integration, pytest.mark.timeout(420)]

COMPRESSION = Compression(interval=15.0)
"""A 15-minute schedule every 15 s: time_scale 60 (a 5m `for:` is 5 s, a 1h window 1 min)."""
LOAD = Load(phases=("calibration", "overhead"), rate=50.0, duration=4.0)
"""200 requests per phase: a p99 that is not one or two requests."""


@pytest.fixture(scope="module")
def outcomes(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Outcome]]:
    """One stage for every scenario, played in order (each starts from a quiet stage)."""
    lines: list[str] = []
    work: Path = tmp_path_factory.mktemp("gameday")
    with GameDay(work, COMPRESSION, LOAD, say=lines.append) as g:
        plays = {
            "1": lambda: healthy(g, 3, say=lines.append),
            "2": lambda: slowdown(g, say=lines.append),
            "3a": lambda: outage_with_fallback(g, say=lines.append, runs=2),
            "3b": lambda: outage_without_fallback(g, say=lines.append),
            "5": lambda: daemon_killed(g, say=lines.append, down_runs=1),
        }
        out = {}
        for key, play in plays.items():
            out[key] = play()
            if out[key].disturbed and not out[key].ok:  # the machine starved the tester
                lines.append(f"{key}: replayed, disturbed: {out[key].disturbed}")
                out[key] = play()
        yield out


def check(o: Outcome, notify: set[str]) -> None:
    """Only the expected alerts notified, each in one incident, fired and resolved."""
    assert o.ok, (o.name, o.problems, o.disturbed)
    assert set(o.firing_notes) - o.justified == notify, o.firing_notes
    assert all(o.groups[name] == 1 for name in notify), o.groups
    assert all(o.resolved_notes.get(name, 0) >= 1 for name in notify), o.resolved_notes
    assert all(t is not None for t in o.resolved.values()), o.resolved


def test_a_healthy_stretch_raises_nothing(outcomes: dict[str, Outcome]) -> None:
    o = outcomes["1"]
    check(o, set())
    assert set(o.fired) <= o.justified, o.fired
    assert set(o.firing_notes) | set(o.resolved_notes) <= o.justified, o.firing_notes


def test_a_slowdown_notifies_the_overhead_alert_once(outcomes: dict[str, Outcome]) -> None:
    o = outcomes["2"]
    check(o, {"SoakGatewayOverheadHigh"})
    # seen by the first run after the fault, within `for:` (5 s) + scrape (2 s) + evaluation
    # (2 s) + group_wait (1 s) of its end, a few seconds for a loaded machine
    assert o.visible_after is not None
    assert o.first_note["SoakGatewayOverheadHigh"] <= o.visible_after + 5 + 2 + 2 + 1 + 5
    assert set(o.fired) <= {"SoakGatewayOverheadHigh", "SoakPhaseFailed"}


def test_an_outage_with_a_fallback_pages_nobody(outcomes: dict[str, Outcome]) -> None:
    o = outcomes["3a"]
    check(o, set())
    served = int(o.facts[0].split("fallback served ")[1].split()[0])
    assert served >= 100, o.facts  # the fallback really carried the traffic


def test_an_outage_without_a_fallback_pages_once(outcomes: dict[str, Outcome]) -> None:
    o = outcomes["3b"]
    check(o, {"SoakErrorBudgetFastBurn"})
    assert o.firing_notes["SoakErrorBudgetFastBurn"] == 1  # one page, not one per run


def test_a_killed_daemon_is_daemon_down_and_no_storm(outcomes: dict[str, Outcome]) -> None:
    o = outcomes["5"]
    check(o, {"SoakDaemonDown"})
    # up == 0 for `for:` (5 s), seen within a scrape (2 s) and an evaluation (2 s), + the
    # group wait (1 s), a few seconds for a loaded machine
    assert o.first_note["SoakDaemonDown"] <= 5 + 2 + 2 + 1 + 5
