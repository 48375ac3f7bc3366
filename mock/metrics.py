"""The mock's own Prometheus metrics, on its own registry, with label children cached.

Labels are bounded: provider names come from the configuration (requests for an unknown
provider count as `unknown`), endpoint and outcome from fixed vocabularies.
"""

from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest

UNKNOWN_PROVIDER = "unknown"


class MockMetrics:
    """Counters and gauges of one mock process; `registry` is fresh unless given."""

    content_type = CONTENT_TYPE_LATEST

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        self._requests = Counter(
            "soak_mock_requests",
            "Requests answered by the mock, by provider, endpoint and outcome.",
            ("provider", "endpoint", "outcome"),
            registry=self.registry,
        )
        self._in_flight = Gauge(
            "soak_mock_in_flight",
            "Requests the mock is serving now.",
            ("provider",),
            registry=self.registry,
        )
        self._injected = Counter(
            "soak_mock_faults_injected",
            "Faults injected through the control API.",
            ("provider",),
            registry=self.registry,
        )
        self._active = Gauge(
            "soak_mock_faults_active",
            "Injected faults active now.",
            ("provider",),
            registry=self.registry,
        )
        self._req_children: dict[tuple[str, str, str], Any] = {}
        self._flight_children: dict[str, Any] = {}

    def request(self, provider: str, endpoint: str, outcome: str) -> None:
        """Count one finished request (hot path: one dict lookup, one locked add)."""
        key = (provider, endpoint, outcome)
        child = self._req_children.get(key)
        if child is None:
            child = self._req_children[key] = self._requests.labels(*key)
        child.inc()

    def in_flight(self, provider: str) -> Any:
        """The cached in-flight gauge child of `provider` (callers inc()/dec() it)."""
        child = self._flight_children.get(provider)
        if child is None:
            child = self._flight_children[provider] = self._in_flight.labels(provider)
        return child

    def fault_injected(self, provider: str) -> None:
        self._injected.labels(provider).inc()

    def faults_active(self, provider: str, count: int) -> None:
        self._active.labels(provider).set(count)

    def render(self) -> bytes:
        return generate_latest(self.registry)
