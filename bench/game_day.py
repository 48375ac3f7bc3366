"""The game day, in full: seven faults, one after another, through the real alerting path.

The real daemon (`soak run`) measures tests/game_gateway.py in front of soak's mock; a real
Prometheus scrapes it every 2 s and evaluates the rules `soak rules --config` generated for
that config; the deploy example's Alertmanager routes and inhibits; a local webhook records
every notification. Time is compressed: the plan runs every `--interval` seconds instead of
every 15 minutes, and every nominal duration of the rules and the Alertmanager routes is
divided by 900 / interval (tests/integration/gameday.py says how). Scenarios (expected alerts
in tests/integration/gameday_scenarios.py), in this order: 1 healthy stretch, 2 gateway
slowdown, 3 primary outage with and without a fallback, 5 daemon killed, 6 scheduler blocked,
7 generator starved, 4 memory leak (last: see `scenarios`).

Prints a table and, unless --no-write, writes it under `## Game day` in docs/RELIABILITY.md
(the rest of the file untouched). Exit 1 when a scenario failed. Loopback only; every process
is ended by PID; takes 30-40 minutes with the defaults.

    python bench/game_day.py [--interval 30] [--healthy-runs 20] [--only 2,5] [--no-write]
"""

from __future__ import annotations

import argparse
import re
import signal
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests" / "integration"))

from gameday import Compression, GameDay, Load  # noqa: E402
from gameday_scenarios import (  # noqa: E402
    Outcome,
    daemon_killed,
    healthy,
    leak,
    outage_with_fallback,
    outage_without_fallback,
    scheduler_blocked,
    slowdown,
    starved,
)

DOC = ROOT / "docs" / "RELIABILITY.md"
HEADING = "## Game day"


def say(line: str) -> None:
    print(f"{time.strftime('%H:%M:%S')} {line}", flush=True)


def scenarios(healthy_runs: int) -> dict[str, Callable[[GameDay], Outcome]]:
    """The scenarios in the order they are played."""
    return {
        "1": lambda g: healthy(g, healthy_runs, say=say),
        "2": lambda g: slowdown(g, say=say),
        "3a": lambda g: outage_with_fallback(g, say=say),
        "3b": lambda g: outage_without_fallback(g, say=say),
        "5": lambda g: daemon_killed(g, say=say),
        "6": lambda g: scheduler_blocked(g, say=say),
        "7": lambda g: starved(g, say=say),
        # last: the leaked memory stays above the memory window's low for that window (glibc
        # keeps the pages), so any later climb at a leak's pace (requests held open in 6 grew
        # RSS 1.6 MB in 70 s, 35 nominal minutes) rightly re-fires the memory alert
        "4": lambda g: leak(g, say=say),
    }


def _secs(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f}"


def row(o: Outcome) -> str:
    expected = ", ".join(o.expect.notify) or "none"
    if o.expect.muted:
        expected += " (muted if firing: " + ", ".join(o.expect.muted) + ")"
    observed = ", ".join(f"{name} @{_secs(t)}s" for name, t in sorted(o.fired.items(),
                         key=lambda kv: kv[1])) or "none"  # fmt: skip
    notes = ", ".join(f"{name} {o.groups.get(name, 0)}: {o.firing_notes[name]}+"
                      f"{o.resolved_notes.get(name, 0)}"
                      for name in sorted(o.firing_notes)) or "0"  # fmt: skip
    to_fire = ", ".join(f"{_secs(t)}" for _, t in sorted(o.first_note.items())) or "-"
    if o.visible_after is not None and o.first_note:
        to_fire += f" (run ended {o.visible_after:.0f})"
    resolved = list(o.resolved.values())
    last = max((t for t in resolved if t is not None), default=None)
    to_resolve = "never" if None in resolved else _secs(last)
    bad = "0" if o.ok else f"**{len(o.problems)}**: " + "; ".join(o.problems)
    facts = "; ".join(o.facts)
    return (f"| {o.name} | {expected} | {observed} | {notes} | {to_fire} | {to_resolve} | {bad} "
            f"| {facts} |")  # fmt: skip


def table(outcomes: list[Outcome], comp: Compression, load: Load, took: float) -> str:
    waits = comp.alertmanager()
    lines = [
        HEADING,
        "",
        f"`python bench/game_day.py` ({datetime.now(UTC):%Y-%m-%d}, {took / 60:.0f} min, "
        "2 shared cores). Compression: the plan "
        f"({', '.join(load.phases)}) runs every {comp.interval:g} s instead of every 15 min, so "
        f"time_scale = {comp.scale:g} divides every nominal duration of the rules "
        "(`AlertOptions(time_scale=...)`: `for:` 5m → "
        f"{comp.span('5m'):g} s, the fast burn's 1h/5m windows → {comp.span('1h'):g} s / "
        f"{comp.interval + comp.span('5m'):g} s (the short one covers the gap between runs), "
        f"the 6h memory low → {comp.span('6h'):g} s) and of the example Alertmanager routes "
        f"(group_wait {waits['group_wait']}, group_interval {waits['group_interval']}, "
        f"repeat_interval {waits['repeat_intervals']['soak-page']} page / "
        f"{waits['repeat_intervals']['soak-ticket']} ticket; nothing below 1 s). `for:` is "
        "scaled, not overridden (`for_override`), so the order in which alerts fire, which "
        "the inhibitions depend on, is production's; "
        f"`min_requests` is {comp.min_requests}; each run sends "
        f"{load.rate * load.duration:.0f} requests a phase (production ~1,200); Prometheus "
        f"scrapes and evaluates every {comp.scrape:g} s.",
        "",
        "A stage can be disturbed: on a shared machine the tester may be starved during a "
        "scenario that does not starve it on purpose. Then SoakGeneratorUntrusted fires, "
        "truthfully, and the starved phases' own alerts are muted for their window (by "
        "design). The harness checks such an alert against the daemon's own run reports "
        "(`/runs/<id>`, each phase's `generator`): when they show untrusted phases it is "
        "counted true, not unexpected, the scenario's facts say \"disturbed\" with the "
        "reasons, and the CI cut plays a disturbed scenario that failed once more. An "
        "untrusted alert that the reports do not back is still a failure. (A CI run on "
        "2026-12-02 saw it in 3a, the outage with a fallback.)",
        "",
        "Notifications: per alert, `groups: firing+resolved` webhook calls (a group is one "
        "incident; a second firing call in a group is an update, when another statistic or "
        "phase joins it, never a repeat: the bench fails a repeat or a group that fires again "
        "after it resolved). Times are seconds: to fire "
        "= first firing notification after the fault (and when the first run that could see "
        "the fault ended); to resolve = last resolution at Prometheus after the fault was "
        "cleared.",
        "",
        "| scenario | expected alerts | observed (firing at Prometheus, s after fault) "
        "| notifications | to fire (s) | to resolve (s) | unexpected | facts |",
        "|---|---|---|---|---|---|---|---|",
        *[row(o) for o in outcomes],
        "",
    ]
    return "\n".join(lines)


def write_doc(section: str) -> None:
    text = DOC.read_text()
    pattern = re.compile(rf"^{re.escape(HEADING)}\n.*?(?=^## |\Z)", re.S | re.M)
    if pattern.search(text):
        text = pattern.sub(lambda _m: section + "\n", text)
    else:
        text = text.rstrip("\n") + "\n\n" + section
    DOC.write_text(text)


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--interval", type=float, default=30.0, help="seconds between runs")
    p.add_argument("--healthy-runs", type=int, default=20)
    p.add_argument("--only", default="", help="scenarios to run, e.g. 1,2,5 (default: all)")
    p.add_argument("--keep", help="work directory to keep (default: a temporary one)")
    p.add_argument("--no-write", action="store_true", help="print only")
    args = p.parse_args(argv)
    plays = scenarios(args.healthy_runs)
    chosen = [s for s in (args.only.split(",") if args.only else plays) if s]
    unknown = [s for s in chosen if s not in plays]
    if unknown:
        p.error(f"--only: unknown scenario {unknown[0]!r} (use {', '.join(plays)})")
    comp, load = Compression(interval=args.interval), Load()
    # SIGTERM unwinds like Ctrl-C, so every process the stage started is ended by PID
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    t0 = time.time()
    with tempfile.TemporaryDirectory(prefix="soak-gameday-") as tmp:
        work = Path(args.keep) if args.keep else Path(tmp)
        with GameDay(work, comp, load, say=say) as g:
            outcomes = [plays[s](g) for s in chosen]
    section = table(outcomes, comp, load, time.time() - t0)
    print(section)
    if not args.no_write:
        write_doc(section)
    return 0 if all(o.ok for o in outcomes) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
