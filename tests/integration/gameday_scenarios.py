"""The game day's scenarios: a fault, the alerts it must (and must not) raise, the clean-up.

Each scenario starts from a quiet stage (no alert pending or firing), injects its fault,
waits for the notifications it expects (keeping the fault one run longer, so a fault that
notifies once per run shows), clears the fault and waits until every alert has resolved and
every notified group has been told so. Everything that fired at Prometheus or reached the
webhook between the fault and that end belongs to the scenario; any alert it did not expect
(`Expect.notify` must reach the receiver, `Expect.muted` may fire but must be inhibited) is a
failure, as is an expected one missing or notified more than once.

One exception, checked on the daemon's own output: SoakGeneratorUntrusted when the daemon's
run reports in the scenario show phases whose generator flagged itself untrusted. The alert
told the truth (the machine starved the tester; a shared CI machine can); the stage was
disturbed (`Outcome.disturbed`), and those phases' alerts were muted by design, so a caller
may play the scenario again.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from gameday import CpuLimit, GameDay, alerts_firing
from test_daemon import get_json, wait_for

Say = Callable[[str], None]
UNTRUSTED = "SoakGeneratorUntrusted"


@dataclass(frozen=True, slots=True)
class Expect:
    """What a scenario's fault must do to the receiver."""

    notify: tuple[str, ...] = ()
    """Alert names that must reach the webhook: one firing notification per group."""
    muted: tuple[str, ...] = ()
    """Alert names that may fire at Prometheus but must never reach the webhook (inhibited)."""


@dataclass(slots=True)
class Outcome:
    """What one scenario did, in seconds relative to its fault and to its clearing."""

    name: str
    expect: Expect
    fault_at: float
    cleared_at: float
    ended_at: float
    fired: dict[str, float] = field(default_factory=dict)
    """Alert name → first firing at Prometheus, seconds after the fault."""
    resolved: dict[str, float | None] = field(default_factory=dict)
    """Alert name → last resolution at Prometheus, seconds after the clearing."""
    firing_notes: dict[str, int] = field(default_factory=dict)
    resolved_notes: dict[str, int] = field(default_factory=dict)
    first_note: dict[str, float] = field(default_factory=dict)
    """Alert name → first firing notification at the webhook, seconds after the fault."""
    groups: dict[str, int] = field(default_factory=dict)
    """Alert name → Alertmanager groups (incidents) it was notified in."""
    visible_after: float | None = None
    """Seconds from the fault to the end of the first run that could see it (None: at once)."""
    problems: list[str] = field(default_factory=list)
    facts: list[str] = field(default_factory=list)
    disturbed: list[str] = field(default_factory=list)
    """Phases (with reasons) whose generator flagged itself untrusted, when
    SoakGeneratorUntrusted fired unexpected: the alert was true, the stage was not quiet."""

    @property
    def ok(self) -> bool:
        return not self.problems

    @property
    def justified(self) -> set[str]:
        """Unexpected alerts the daemon's own reports show were true (see the module doc)."""
        return {UNTRUSTED} if self.disturbed else set()

    @property
    def notifications(self) -> int:
        return sum(self.firing_notes.values()) + sum(self.resolved_notes.values())


def collect(g: GameDay, o: Outcome) -> Outcome:
    """Fill `o` from the alert watch and the webhook, and judge it against `o.expect`."""
    for e in g.watch.episodes:
        if e.firing_at is None or not o.fault_at <= e.firing_at <= o.ended_at:
            continue
        o.fired[e.name] = min(o.fired.get(e.name, 1e9), e.firing_at - o.fault_at)
        end = None if e.resolved_at is None else e.resolved_at - o.cleared_at
        last = o.resolved.get(e.name, -1e9)
        o.resolved[e.name] = None if end is None or last is None else max(last, end)
    threads: dict[str, list[tuple[str, dict[str, str]]]] = {}  # group → (status, alerts)
    for n in g.hook.since(o.fault_at):
        if n.at > o.ended_at:
            continue
        alerts = {a["fingerprint"]: a["status"] for a in n.body["alerts"]}
        threads.setdefault(n.body["groupKey"], []).append((n.status, alerts))
        for name in n.alertnames:
            book = o.firing_notes if n.status == "firing" else o.resolved_notes
            book[name] = book.get(name, 0) + 1
            if n.status == "firing":
                o.first_note.setdefault(name, n.at - o.fault_at)
    o.groups = {}
    for key, thread in threads.items():
        name = key.rpartition('alertname="')[2].partition('"')[0]
        o.groups[name] = o.groups.get(name, 0) + 1
        o.problems += group_problems(name, thread)
    allowed = set(o.expect.notify) | set(o.expect.muted)
    if UNTRUSTED not in allowed and UNTRUSTED in set(o.fired) | set(o.firing_notes):
        # its `for:` spans two runs before it fires: look back as far for their reports
        o.disturbed = g.daemon.untrusted(o.fault_at - 3 * g.comp.interval, o.ended_at)
        if o.disturbed:
            allowed.add(UNTRUSTED)
            o.facts.append(f"disturbed: {len(o.disturbed)} phases untrusted by the daemon's "
                           f"own reports, e.g. {o.disturbed[0]}")  # fmt: skip
    o.problems += [f"{name} fired (not expected)" for name in sorted(set(o.fired) - allowed)]
    o.problems += [f"{name} notified (expected muted)" for name in sorted(
        set(o.firing_notes) & (set(o.expect.muted) - set(o.expect.notify)))]  # fmt: skip
    o.problems += [f"{name} notified (not expected)" for name in sorted(
        set(o.firing_notes) - allowed)]  # fmt: skip
    o.problems += [f"{name} never notified" for name in o.expect.notify
                   if name not in o.firing_notes]  # fmt: skip
    if o.expect.notify:  # detected within the rule's `for:` + scrape + evaluation of the run
        o.facts.append(f"first affected run ended {o.visible_after or 0:.0f}s after the fault")
    return o


def group_problems(name: str, thread: list[tuple[str, dict[str, str]]]) -> list[str]:
    """What is wrong with one Alertmanager group's notifications (`thread`: each call's status
    and its alerts' statuses by fingerprint). A group is one incident: it opens once, may be
    updated when an alert joins or leaves it (a statistic that crossed its bound later, one
    that recovered first), and ends resolved. A firing call after the group resolved is a
    flap; one that changes nothing is a repeat: both notify a person twice."""
    problems: list[str] = []
    known: dict[str, str] = {}
    resolved = False
    for status, alerts in thread:
        if status == "firing" and resolved:
            problems.append(f"{name}: fired again after it resolved (flapping)")
        elif status == "firing" and all(known.get(k) == v for k, v in alerts.items()):
            problems.append(f"{name}: notified again with nothing new (a repeat)")
        known.update(alerts)
        resolved = status == "resolved"
    if not resolved:
        problems.append(f"{name}: its group was never notified resolved")
    return problems


def play(
    g: GameDay, name: str, expect: Expect, inject: Callable[[], object],
    clear: Callable[[], object], *, say: Say, settle_runs: int = 1, fire_timeout: float,
    resolve_timeout: float, facts: Callable[[], list[str]] | None = None,
    until: Callable[[], bool] | None = None,
) -> Outcome:  # fmt: skip
    """Run one scenario on a quiet stage; see the module docstring. `until`: the fault also
    lasts until it holds (e.g. a muted alert has fired), at most `fire_timeout`."""
    if not g.quiet(resolve_timeout):
        say(f"{name}: stage not quiet before the fault: {[e.labels for e in g.watch.active()]}")
    fault_at = time.time()
    say(f"{name}: fault")
    inject()
    if expect.notify:
        try:
            g.wait_for_notes(expect.notify, fault_at, fire_timeout)
        except AssertionError as exc:
            say(f"{name}: {exc}")
    if until is not None:
        try:
            wait_for(f"{name}: the fault's last condition", until, fire_timeout, every=0.5)
        except AssertionError as exc:
            say(f"{name}: {exc}")
    runs_at, late = time.time(), []
    try:  # the fault goes on for `settle_runs` more runs: nothing more may notify
        g.wait_runs(settle_runs, runs_at, fire_timeout)
    except AssertionError as exc:
        late.append(f"during the fault: {exc}")
    seen = facts() if facts else []
    cleared_at = time.time()
    say(f"{name}: cleared")
    clear()
    quiet = g.quiet(resolve_timeout)
    g.wait_resolved_notes(fault_at, g.comp.span("5m") + 5)
    outcome = Outcome(name, expect, fault_at, cleared_at, time.time(), facts=seen)
    affected = [r for r in g.daemon.runs(fault_at) if r["started_at"] >= fault_at]
    if affected:
        outcome.visible_after = min(r["finished_at"] for r in affected) - fault_at
    outcome.problems += late
    if not quiet:
        outcome.problems.append("alerts still active: " + ", ".join(
            sorted({e.name for e in g.watch.active()})))  # fmt: skip
    collect(g, outcome)
    say(f"{name}: {'ok' if outcome.ok else 'FAILED: ' + '; '.join(outcome.problems)}")
    return outcome


def healthy(g: GameDay, runs: int, *, say: Say) -> Outcome:
    """Scenario 1: `runs` scheduled runs of every phase of the plan, no fault: nothing fires."""
    start = g.started_at
    say(f"healthy: waiting for {runs} runs")
    o = Outcome("1 healthy stretch", Expect(), start, 0.0, 0.0)
    try:
        g.wait_runs(runs, start, runs * g.comp.interval * 1.5 + 60)
    except AssertionError as exc:
        o.problems.append(str(exc))
    done = g.daemon.runs(start)
    o.cleared_at = o.ended_at = time.time()
    o.facts.append(f"{len(done)} runs of {', '.join(g.load.phases)} "
                   f"({sum(r['status'] == 'passed' for r in done)} passed)")  # fmt: skip
    collect(g, o)
    say(f"healthy: {'ok' if o.ok else 'FAILED: ' + '; '.join(o.problems)}")
    return o


def slowdown(g: GameDay, *, say: Say) -> Outcome:
    """Scenario 2: the gateway adds 50 ms to every request (overhead SLO: p50 < 5 ms)."""
    expect = Expect(("SoakGatewayOverheadHigh",), ("SoakPhaseFailed",))
    return play(g, "2 gateway slowdown", expect,
                lambda: g.gateway(delay=0.05), lambda: g.gateway(delay=0.0), say=say,
                fire_timeout=g.comp.interval * 4 + 30,
                resolve_timeout=g.comp.interval * 6 + 60)  # fmt: skip


def outage_with_fallback(g: GameDay, *, say: Say, runs: int = 3) -> Outcome:
    """Scenario 3a: the primary provider is unreachable for `runs` runs; the gateway fails
    over: no alert at all."""
    before = g.gateway()["served"]["fallback"]

    def served() -> list[str]:
        now = g.gateway()["served"]["fallback"]
        return [f"fallback served {now - before} requests while the primary was down"]

    return play(g, "3a primary outage, fallback", Expect(),
                lambda: g.gateway(primary="down", fallback=True), lambda: g.gateway(primary="up"),
                say=say, settle_runs=runs, fire_timeout=g.comp.interval * (runs + 2) + 30,
                resolve_timeout=g.comp.interval * 6 + 60, facts=served)  # fmt: skip


def outage_without_fallback(g: GameDay, *, say: Say) -> Outcome:
    """Scenario 3b: the primary is unreachable and nothing fails over: the error budget pages."""
    expect = Expect(("SoakErrorBudgetFastBurn",),
                    ("SoakPhaseFailed", "SoakStressRequestsFailed", "SoakErrorBudgetSlowBurn",
                     "SoakErrorBudgetTicketBurn"))  # fmt: skip
    return play(g, "3b primary outage, no fallback", expect,
                lambda: g.gateway(primary="down", fallback=False),
                lambda: g.gateway(primary="up", fallback=True), say=say,
                fire_timeout=g.comp.interval * 4 + 30,
                resolve_timeout=g.comp.span("6h") + g.comp.interval * 2)  # fmt: skip


def leak(g: GameDay, *, say: Say, growth: float = 0.35, kb: int = 32) -> Outcome:
    """Scenario 4: the gateway keeps `kb` KB per request until its RSS grew by `growth` (between
    the target and acceptable tiers, 20% and 50%), then stops leaking; clearing frees it."""
    base = g.gateway_rss()

    def inject() -> None:
        g.gateway(leak_kb=kb)
        deadline = time.monotonic() + g.comp.interval * 6
        while g.gateway_rss() < base * (1 + growth) and time.monotonic() < deadline:
            time.sleep(0.2)
        g.gateway(leak_kb=0)
        say(f"leak: RSS {base / 2**20:.0f} → {g.gateway_rss() / 2**20:.0f} MiB, leak stopped")

    return play(g, "4 gateway memory leak", Expect(("SoakGatewayMemoryGrowth",)), inject,
                lambda: g.gateway(release=True), say=say, settle_runs=1,
                fire_timeout=g.comp.span("1h") + g.comp.interval * 2,
                resolve_timeout=g.comp.span("1h") + g.comp.interval * 2)  # fmt: skip


def daemon_killed(g: GameDay, *, say: Say, down_runs: int = 2) -> Outcome:
    """Scenario 5: SIGKILL the daemon, keep it down `down_runs` intervals, restart it."""

    def inject() -> None:
        g.daemon.kill()

    def clear() -> None:
        g.daemon.start()

    def hold_down() -> list[str]:
        time.sleep(down_runs * g.comp.interval)
        return [f"down {down_runs * g.comp.interval:.0f}s, restarted on the same port and data dir"]

    expect = Expect(("SoakDaemonDown",), ("SoakPhaseNotRunning", "SoakPhaseNeverRan"))
    outcome = play_down(g, "5 daemon killed", expect, inject, clear, hold_down, say=say)
    return outcome


def play_down(
    g: GameDay, name: str, expect: Expect, inject: Callable[[], object],
    clear: Callable[[], object], hold: Callable[[], list[str]], *, say: Say,
) -> Outcome:  # fmt: skip
    """`play` for a fault that stops the daemon itself (no runs to wait for meanwhile)."""
    g.quiet(g.comp.interval * 6)
    fault_at = time.time()
    say(f"{name}: fault")
    inject()
    try:
        g.wait_for_notes(expect.notify, fault_at, g.comp.span("5m") + 30)
    except AssertionError as exc:
        say(f"{name}: {exc}")
    seen = hold()
    cleared_at = time.time()
    say(f"{name}: cleared")
    clear()
    quiet = g.quiet(g.comp.interval * 6 + 60)
    g.wait_resolved_notes(fault_at, g.comp.span("5m") + 5)
    outcome = Outcome(name, expect, fault_at, cleared_at, time.time(), facts=seen)
    if not quiet:
        outcome.problems.append("alerts still active")
    collect(g, outcome)
    say(f"{name}: {'ok' if outcome.ok else 'FAILED: ' + '; '.join(outcome.problems)}")
    return outcome


def scheduler_blocked(g: GameDay, *, say: Say) -> Outcome:
    """Scenario 6: the gateway holds the stress phase's requests (a long client timeout keeps
    them open), so the run does not end, later runs are skipped, and the daemon still answers
    every scrape; releasing them lets the run finish."""
    expect = Expect(("SoakSchedulerSkippedRuns",), ("SoakPhaseNotRunning", "SoakPhaseNeverRan"))

    since = time.time()

    def facts() -> list[str]:
        scrapes = g.query(f'min_over_time(up{{job="soak"}}[{time.time() - since:.0f}s])')
        return [f"{g.gateway()['held']} stress requests held; every scrape answered: "
                f"{'yes' if scrapes == 1 else 'no'}"]  # fmt: skip

    def stale() -> bool:  # the staleness alert itself has fired (muted by the skipped runs)
        return "SoakPhaseNotRunning" in set(alerts_firing(g.watch))

    return play(g, "6 scheduler blocked", expect,
                lambda: g.gateway(hold_match=r"-stress-\d+:\d+\]", hold=300.0),
                lambda: g.gateway(hold=0.0), say=say, settle_runs=0, facts=facts, until=stale,
                fire_timeout=g.comp.interval * 4 + g.comp.span("5m") + 30,
                resolve_timeout=g.comp.span("1h") + g.comp.interval * 3)  # fmt: skip


CPU_SHARE = 0.05
"""Scenario 7's CPU limit on the daemon: 5% of one CPU, about what it uses at this load, so
its bursts are throttled (send lag p99 150-360 ms) while its runs still keep the schedule; 3%
made runs overrun the interval and skip (SoakSchedulerSkippedRuns, rightly, but not this
scenario's fault)."""


def starved(g: GameDay, *, say: Say, share: float = CPU_SHARE) -> Outcome:
    """Scenario 7: the daemon under a CPU limit below its need (`CpuLimit`, a CFS quota of
    `share` of one CPU, as a Kubernetes limit set too low does): its sends wait for the next
    quota period, so the tester is starved and must say so. Busy loops beside it did not do
    this at any niceness (docs/RELIABILITY.md, Game day). Clearing lifts the limit."""
    assert g.daemon.proc is not None
    limit = CpuLimit(g.daemon.proc.pid, share)

    def inject() -> None:
        limit.apply()

    def clear() -> None:
        limit.undo()

    def facts() -> list[str]:
        runs = get_json(f"{g.daemon.url}/runs?limit=1")["runs"]
        last = runs[0]["status"] if runs else "?"
        return [f"daemon limited to {share:.0%} of a CPU, throttled {limit.throttled():.0f} s; "
                f"last run {last}"]  # fmt: skip

    expect = Expect(
        ("SoakGeneratorUntrusted",),
        ("SoakGatewayOverheadHigh", "SoakPhaseFailed", "SoakLatencyHigh"),
    )
    # fires `untrusted_for` (2 intervals + 2 margins) after the first starved run ended
    return play(g, "7 generator starved", expect, inject, clear, say=say, facts=facts,
                fire_timeout=g.comp.interval * 6 + 30,
                resolve_timeout=g.comp.interval * 6 + 60)  # fmt: skip
