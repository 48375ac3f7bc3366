"""What the gateway says about each answer, next to what the mock saw, per phase.

The client keeps a bounded set of the gateway's own response headers per request (the kinds'
`self_headers`, see `soak.client.gateway_headers`); the gateway's kind reads from them which
provider it says served (`served_by`) and how many extra attempts it made (`retries`). The mock's
marker in the answer says which provider really served. `GatewaySaid` tallies both per phase, and
after the phase it reads the gateway's self-report once (reported breaker state per provider, e.g.
LiteLLM's deployment state). A request where the two name different providers is a disagreement: a
note in the phase report says so, since one of them is wrong about the route.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from soak.breaker import STATE_NAMES
from soak.gateway.kind import GatewayKind
from soak.gateway.selfreport import SelfReport
from soak.results import Result
from soak.summary import PhaseReport

NONE = "-"
"""Stands for "not said" / "no marker" in the tallies."""

Observe = Callable[[Result, str], None]


@dataclass(slots=True)
class _Tally:
    said: Counter[str] = field(default_factory=Counter)
    saw: Counter[str] = field(default_factory=Counter)
    pairs: Counter[tuple[str, str]] = field(default_factory=Counter)
    retries: int = 0
    retried: int = 0

    def merge(self, other: _Tally) -> None:
        self.said += other.said
        self.saw += other.saw
        self.pairs += other.pairs
        self.retries += other.retries
        self.retried += other.retried


class GatewaySaid:
    """Tallies per phase name; `observe` wraps the run's own per-result callback."""

    def __init__(self, kind: GatewayKind, primary: str, fallback: str) -> None:
        self.kind = kind
        self.primary, self.fallback = primary, fallback
        self.phases: dict[str, _Tally] = {}

    def add(self, result: Result, phase: str) -> None:
        """Count one result that carried gateway headers (others say nothing about the route)."""
        if result.gateway_headers is None:
            return
        headers = dict(result.gateway_headers)
        said = self.kind.served_by(headers, primary=self.primary, fallback=self.fallback)
        saw = result.provider if result.ok else None
        tally = self.phases.get(phase)
        if tally is None:
            tally = self.phases[phase] = _Tally()
        tally.said[said or NONE] += 1
        tally.saw[saw or NONE] += 1
        tally.pairs[(said or NONE, saw or NONE)] += 1
        retries = self.kind.retries(headers)
        if retries:
            tally.retries += retries
            tally.retried += 1

    def observe(self, forward: Observe | None) -> Observe:
        """A per-result callback that tallies, then calls `forward` (the daemon's metrics)."""

        def both(result: Result, phase: str) -> None:
            self.add(result, phase)
            if forward is not None:
                forward(result, phase)

        return both

    def take(self, name: str) -> dict[str, Any] | None:
        """The tally of phase `name` (and its steps, `name …`) as plain data, removed."""
        keys = [k for k in self.phases if k == name or k.startswith(name + " ")]
        if not keys:
            return None
        total = _Tally()
        for key in keys:
            total.merge(self.phases.pop(key))
        known = {pair: n for pair, n in total.pairs.items() if NONE not in pair}
        disagreements = {f"{a}->{b}": n for (a, b), n in sorted(known.items()) if a != b}
        return {
            "said": dict(sorted(total.said.items())),
            "saw": dict(sorted(total.saw.items())),
            "agree": sum(n for (a, b), n in known.items() if a == b),
            "disagree": sum(disagreements.values()),
            "disagreements": disagreements,
            "retries": total.retries,
            "retried_requests": total.retried,
        }

    async def attach(
        self,
        report: PhaseReport,
        self_report: Callable[[], Awaitable[SelfReport | None]] | None = None,
    ) -> None:
        """Put the phase's tally (and the gateway's reported state now) into
        `report.gateway_said`; a disagreement becomes a note."""
        data = self.take(report.name)
        if data is None:
            return
        if self_report is not None:
            try:
                reported = await self_report()
            except Exception:  # a scrape that raises is "not reported", never the phase's end
                reported = None
            if reported is not None and reported.breaker:
                data["reported_state"] = {
                    p: STATE_NAMES.get(s, str(s)) for p, s in sorted(reported.breaker.items())
                }
        report.gateway_said = data
        for pair, n in data["disagreements"].items():
            said, saw = pair.split("->")
            report.notes.append(
                f"gateway and mock disagree on {n} request(s): the gateway says {said} served,"
                f" the mock's marker says {saw}"
            )
