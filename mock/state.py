"""The live state of a mock process: providers with their profiles, RNGs, faults and counts."""

from __future__ import annotations

import asyncio
import random
import time
from typing import Any

from .faults import InjectedFaults
from .metrics import MockMetrics
from .profile import MockConfig, Profile
from .timing import PreciseSleeper
from .traces import TraceBuffer


class ProviderState:
    """One named provider: its profile, seeded RNG, injected faults and request counts."""

    __slots__ = ("counts", "faults", "flight_gauge", "in_flight", "name", "profile", "rng")

    def __init__(self, name: str, profile: Profile, metrics: MockMetrics) -> None:
        self.name = name
        self.profile = profile
        self.rng = random.Random(profile.seed)
        self.faults = InjectedFaults(on_change=lambda n: metrics.faults_active(name, n))
        self.flight_gauge = metrics.in_flight(name)
        self.in_flight = 0
        self.counts: dict[tuple[str, str], int] = {}
        metrics.faults_active(name, 0)

    def set_profile(self, profile: Profile) -> None:
        """Replace the profile and reseed, so a run after a replace is reproducible."""
        self.profile = profile
        self.rng = random.Random(profile.seed)

    def stats(self) -> dict[str, Any]:
        requests: dict[str, dict[str, int]] = {}
        for (endpoint, outcome), n in sorted(self.counts.items()):
            requests.setdefault(endpoint, {})[outcome] = n
        return {
            "requests": requests,
            "in_flight": self.in_flight,
            "active_faults": [i.to_dict() for i in self.faults.active()],
            "faults_injected": self.faults.injected_total,
        }


class MockState:
    """Everything the handlers share; one per application."""

    def __init__(self, config: MockConfig, metrics: MockMetrics) -> None:
        self.config = config
        self.metrics = metrics
        self.token = config.token
        self.traces = TraceBuffer(config.trace_capacity)
        self.providers = {
            name: ProviderState(name, prof, metrics) for name, prof in config.providers.items()
        }
        self.started = time.time()
        self.sleeper = PreciseSleeper()
        self.stopping = asyncio.Event()
        """Set when the server stops: hung requests give up at once."""

    def stats(self) -> dict[str, Any]:
        return {
            "uptime_s": round(time.time() - self.started, 3),
            "traces": {"held": len(self.traces), "recorded": self.traces.recorded},
            "providers": {name: p.stats() for name, p in self.providers.items()},
        }
