"""Failover time per request, read from the mock's attempt trail (black-box, one clock).

Definition: for a request whose trail starts at the primary and ends in a successful attempt at
the fallback, failover time = (serving attempt's arrival + its service time) − the first primary
attempt's arrival. Both ends are on the mock's clock, so no clock mapping is needed; it covers
the failed primary attempt(s), the gateway's decision and retry, and the fallback's own answer,
but not the legs client → gateway and gateway → client (those are overhead, measured elsewhere).
The client-side alternative (client latency − fallback service time) would fold that overhead
in and mix two clocks; it is not used.

A request the gateway sent straight to the fallback (its breaker already open) has failed over
without a failover time: it is counted as `direct`, not timed.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from soak.breaker import Attempt
from soak.results import Result


def failover_time(trail: Sequence[Attempt], primary: str, fallback: str) -> float | None:
    """Seconds from the first primary attempt to the end of the successful fallback attempt
    after it; None when the trail does not show that path."""
    first = next((a for a in trail if a.provider == primary), None)
    if first is None:
        return None
    served = next(
        (a for a in trail if a.provider == fallback and a.ok and a.arrival >= first.arrival), None
    )
    if served is None:
        return None
    return max(0.0, served.arrival + served.service_s - first.arrival)


def served_by(trail: Sequence[Attempt]) -> str | None:
    """The provider of the last successful attempt (the one whose answer reached the client)."""
    ok = [a for a in trail if a.ok]
    return ok[-1].provider if ok else None


@dataclass(slots=True)
class FailoverStats:
    """Failover over a set of requests sent while the primary failed."""

    requests: int = 0
    failed_over: int = 0
    """Client succeeded and the fallback served it (timed or direct)."""
    timed: list[float] = field(default_factory=list)
    """Failover times of requests that tried the primary first (seconds)."""
    direct: int = 0
    """Served by the fallback without trying the primary (breaker open)."""
    served_by_primary: int = 0
    """Client succeeded but the primary served it (the fault did not hit this request)."""
    client_errors: int = 0
    """Requests the client saw fail: the fault leaked through the gateway."""
    untraced: int = 0
    """Requests with no attempt in the mock's traces (never reached a provider)."""

    @property
    def ratio(self) -> float:
        return self.failed_over / self.requests if self.requests else 0.0

    @property
    def mean(self) -> float | None:
        return sum(self.timed) / len(self.timed) if self.timed else None

    @property
    def min(self) -> float | None:
        return min(self.timed) if self.timed else None

    @property
    def max(self) -> float | None:
        return max(self.timed) if self.timed else None


def failover_stats(
    results: Sequence[Result],
    trails: Mapping[str, Sequence[Attempt]],
    primary: str,
    fallback: str,
) -> FailoverStats:
    """Classify every result by its trail: timed failover, direct to fallback, primary, error."""
    stats = FailoverStats(requests=len(results))
    for result in results:
        trail = trails.get(result.nonce or "", ())
        if not trail:
            stats.untraced += 1
        if not result.ok:
            stats.client_errors += 1
            continue
        server = served_by(trail) or result.provider
        if server == primary:
            stats.served_by_primary += 1
        elif server == fallback:
            stats.failed_over += 1
            seconds = failover_time(trail, primary, fallback)
            if seconds is None:
                stats.direct += 1
            else:
                stats.timed.append(seconds)
    return stats
