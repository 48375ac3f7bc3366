"""The observed breaker: a provider's circuit state read black-box from the mock's attempt trails.

No gateway has to tell us anything. For every client request we know when it was sent and,
from the mock's traces (matched by nonce), which providers it attempted. A breaker that is
closed lets every request try the provider; an open one lets none; a half-open one lets a
trickle of probes through. So in a sliding window the share of client requests that still
attempted the provider reads as a state: ≥ `high` → CLOSED, 0 → OPEN, in between → HALF_OPEN.

Pure and clock-free: times are arguments (unix seconds, the mock's clock and the client's wall
clock mapped onto it), so tests feed synthetic trails and never sleep.

`BreakerState` (0 closed, 1 half-open, 2 open) is defined here once; the gateways' reported
states, the metrics and the reports all use it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Any, TypeVar


class BreakerState(IntEnum):
    """A circuit breaker's state, observed or reported; its value is what `soak_breaker_state`
    exports and its name what reports and phase details show."""

    CLOSED = 0
    HALF_OPEN = 1
    OPEN = 2

    @classmethod
    def named(cls, name: object) -> BreakerState | None:
        """The state called `name` (`"OPEN"`), None for anything else."""
        return cls.__members__.get(name) if isinstance(name, str) else None


def state_name(state: int) -> str:
    """A state value's name; a value outside the enum (a gateway's surprise) as its number."""
    try:
        return BreakerState(state).name
    except ValueError:
        return str(state)


STATE_NAMES: Mapping[int, str] = {state: state.name for state in BreakerState}
"""State value → name, derived from `BreakerState` (for JSON phase details)."""


@dataclass(frozen=True, slots=True)
class Attempt:
    """One attempt of a request at a provider, as the mock saw it (arrival in unix seconds)."""

    provider: str
    arrival: float
    service_s: float
    ok: bool


@dataclass(frozen=True, slots=True)
class ClientRequest:
    """A client request: its nonce and when it was sent (unix seconds)."""

    nonce: str
    t: float


@dataclass(frozen=True, slots=True)
class WindowRule:
    """How a window of requests reads as a state."""

    window: float = 1.0
    """Seconds of client requests per window (one window starts at every request)."""
    high: float = 0.9
    """Share of requests attempting the provider at or above which it reads CLOSED."""
    min_requests: int = 3
    """Fewer eligible requests in a window say nothing (the state carries on)."""


@dataclass(slots=True)
class BreakerObservation:
    """What the trails say about one provider's breaker over a phase."""

    provider: str
    timeline: list[tuple[float, BreakerState]] = field(default_factory=list)
    """(t, state) at every change, t in unix seconds."""
    time_to_open: float | None = None
    """Seconds from the fault's start to the first OPEN window after it; None: never opened."""
    time_to_recover: float | None = None
    """Seconds from the fault's end to the first CLOSED window after it; None: never closed."""

    @property
    def transitions(self) -> int:
        return max(0, len(self.timeline) - 1)

    @property
    def reached_open(self) -> bool:
        return any(state == BreakerState.OPEN for _, state in self.timeline)

    @property
    def final_state(self) -> BreakerState | None:
        return self.timeline[-1][1] if self.timeline else None

    def states_seen(self) -> list[BreakerState]:
        return sorted({state for _, state in self.timeline})


def parse_trails(traces: Mapping[str, Sequence[Mapping[str, Any]]]) -> dict[str, list[Attempt]]:
    """The mock's `traces/query` answer (nonce → attempt dicts) as `Attempt`s in arrival order."""
    out: dict[str, list[Attempt]] = {}
    for nonce, attempts in traces.items():
        trail = [
            Attempt(
                provider=str(a.get("provider", "")),
                arrival=float(a.get("arrival", 0.0)),
                service_s=float(a.get("service_s") or 0.0),
                ok=a.get("outcome") == "ok" and 200 <= int(a.get("status") or 0) < 300,
            )
            for a in attempts
        ]
        out[nonce] = sorted(trail, key=lambda a: a.arrival)
    return out


def eligible(
    requests: Iterable[ClientRequest],
    trails: Mapping[str, Sequence[Attempt]],
    served_before: Sequence[str] = (),
) -> list[tuple[float, str]]:
    """(t, nonce) per request that needed `provider`: those not already served by
    one of `served_before` (the providers ahead of it in the route). Sorted by time.

    The primary is needed by every request; the fallback only by those the primary did not
    serve, so a healthy phase says nothing about the fallback instead of calling it open."""
    out = []
    for req in requests:
        trail = trails.get(req.nonce, ())
        if any(a.ok and a.provider in served_before for a in trail):
            continue
        out.append((req.t, req.nonce))
    return sorted(out)


def window_states(
    points: Sequence[tuple[float, bool]], rule: WindowRule = WindowRule()
) -> list[tuple[float, BreakerState | None]]:
    """For every request time t, the state its window [t, t + window) reads as (None: too few)."""
    states: list[tuple[float, BreakerState | None]] = []
    hits = 0
    end = 0
    n = len(points)
    for start in range(n):
        t0 = points[start][0]
        while end < n and points[end][0] < t0 + rule.window:
            hits += points[end][1]
            end += 1
        count = end - start
        if count < rule.min_requests:
            states.append((t0, None))
        else:
            share = hits / count
            if share >= rule.high:
                state = BreakerState.CLOSED
            else:
                state = BreakerState.OPEN if hits == 0 else BreakerState.HALF_OPEN
            states.append((t0, state))
        hits -= points[start][1]
    return states


S = TypeVar("S", bound=int)
"""A state: `BreakerState` observed here, or a gateway's reported value."""


def compress(states: Iterable[tuple[float, S | None]]) -> list[tuple[float, S]]:
    """Only the changes: the first point of every run of one state (unknown windows skipped)."""
    out: list[tuple[float, S]] = []
    for t, state in states:
        if state is None or (out and out[-1][1] == state):
            continue
        out.append((t, state))
    return out


def observe(
    provider: str,
    requests: Sequence[ClientRequest],
    trails: Mapping[str, Sequence[Attempt]],
    *,
    fault_start: float | None = None,
    fault_end: float | None = None,
    served_before: Sequence[str] = (),
    rule: WindowRule = WindowRule(),
) -> BreakerObservation:
    """`provider`'s observed breaker over `requests`, with time-to-open after `fault_start` and
    time-to-recover after `fault_end` (both unix seconds; None: not measured)."""
    points = []
    for t, nonce in eligible(requests, trails, served_before):
        attempted = any(a.provider == provider for a in trails.get(nonce, ()))
        points.append((t, attempted))
    states = window_states(points, rule)
    obs = BreakerObservation(provider, compress(states))
    if fault_start is not None:
        obs.time_to_open = _first_after(states, BreakerState.OPEN, fault_start, fault_end)
    if fault_end is not None:
        obs.time_to_recover = _first_after(states, BreakerState.CLOSED, fault_end, None)
    return obs


def _first_after(
    states: Sequence[tuple[float, BreakerState | None]],
    wanted: BreakerState,
    since: float,
    until: float | None,
) -> float | None:
    for t, state in states:
        if t >= since and state == wanted and (until is None or t < until):
            return t - since
    return None

