"""`SoakMetrics`: the catalogue's metrics on a given registry, and the recorder feeding them.

All metrics live on a registry the caller passes (never the global one). Units are base units
(seconds, bytes, ratios 0..1); counters end in `_total`; label values are bounded: target and
phase names from the config, the `Outcome` vocabulary, provider names, breaker sources,
scheduler plan names and statistics. Never a URL, prompt, nonce or error text.

Histogram bounds include every latency threshold of the SLO block (`buckets_for_slo`), so an
alert counts "requests slower than the threshold" exactly with `le` = threshold instead of
estimating a quantile between buckets. `soak_phase_last_*` gauges are per-run summaries of one
replica: percentiles among them must never be averaged or summed across replicas.
"""

from __future__ import annotations

import platform
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    ProcessCollector,
)
from prometheus_client.gc_collector import GCCollector
from prometheus_client.platform_collector import PlatformCollector

from soak import __version__, phases
from soak.breaker import BreakerState
from soak.metric_batch import FlushFirst, Pending
from soak.metric_batch import apply as apply_batch
from soak.metric_catalogue import (
    BASE_BUCKETS,
    BUILD_INFO,
    CATALOGUE,
    FAILOVER,
    GEN_DROPS,
    GEN_TRUSTED,
    ITL,
    LAST_ADDED_TTFT,
    LAST_DURATION,
    LAST_LATENCY,
    LAST_MEMORY_GROWTH,
    LAST_NEGATIVE_OVERHEAD,
    LAST_OVERHEAD,
    LAST_OVERHEAD_DIFF,
    LAST_RUN,
    LAST_SUCCESS,
    LAST_TARGET_RATE,
    LAST_THROUGHPUT,
    LAST_VERDICT,
    OVERHEAD,
    PHASE_RUNNING,
    REQUEST_DURATION,
    REQUESTS,
    SEND_LAG,
    SERVED,
    TOKENS,
    TPOT,
    TTFT,
    MetricSpec,
    Threshold,
    buckets_for_slo,
    buckets_with,
    check_thresholds_are_buckets,
    slo_thresholds,
)
from soak.metric_catalogue import exposed_names as _exposed_names
from soak.metric_catalogue import label_value as _label
from soak.metrics_daemon import DaemonSeries
from soak.metrics_phases import BREAKER_SOURCES, PhaseSeries, children
from soak.results import Outcome, Result
from soak.summary import LatencySummary, PhaseReport, Status

__all__ = [
    "BASE_BUCKETS",
    "BREAKER_SOURCES",
    "CATALOGUE",
    "BreakerState",
    "MetricSpec",
    "SoakMetrics",
    "buckets_for_slo",
    "buckets_with",
    "check_thresholds_are_buckets",
    "exposed_names",
    "new_registry",
    "register_default_collectors",
    "slo_thresholds",
]


STATISTICS = ("min", "mean", "p50", "p90", "p95", "p99", "max")
"""`statistic` label values of the per-run summary gauges (`LatencySummary` fields). Not
`quantile`: that label belongs to summary-typed metrics (promtool check metrics)."""

VERDICTS = {Status.PASSED: 1, Status.BASELINE: 1, Status.FAILED: 0, Status.ERROR: -1}
"""`soak_phase_last_verdict`: 1 passed (or baseline, nothing to fail), 0 failed, -1 error.
A skipped phase did not run: its gauges are left untouched."""


UNKNOWN_PROVIDER = "unknown"
"""The `provider` label of any provider name that is not configured: a gateway's marker or
header is wire data, and one label value per distinct string would grow without bound."""
DEFAULT_PROVIDERS = ("primary", "fallback")
"""The profiles' `mock.primary` / `mock.fallback`; the daemon passes the configured names."""


def register_default_collectors(registry: CollectorRegistry) -> None:
    """The standard process_*, python_gc_* and python_info collectors, on `registry`."""
    ProcessCollector(registry=registry)
    GCCollector(registry=registry)
    PlatformCollector(registry=registry)


def _round(report: PhaseReport) -> str:
    """The `round` label of a report: its round number for a phase run in rounds, else ""."""
    number = report.params.get("round")
    return "" if number is None else str(number)


class _Bound:
    """The label children of one (target, phase): looked up once, reused per request."""

    __slots__ = ("duration", "itl", "outcomes", "overhead", "send_lag", "served", "tokens",
                 "tpot", "ttft")  # fmt: skip

    def __init__(self, m: SoakMetrics, target: str, phase: str) -> None:
        self.duration = m[REQUEST_DURATION].labels(target, phase)
        self.ttft = m[TTFT].labels(target, phase)
        self.itl = m[ITL].labels(target, phase)
        self.tpot = m[TPOT].labels(target, phase)
        self.overhead = m[OVERHEAD].labels(target, phase)
        self.send_lag = m[SEND_LAG].labels(target, phase)
        self.tokens = m[TOKENS].labels(target, phase)
        # Every outcome exists from the start, so ratios never lack a series.
        self.outcomes = {o: m[REQUESTS].labels(target, phase, o.value) for o in Outcome}
        self.served: dict[str, Counter] = {}
        # Series that are only written when the phase ends exist (at 0) from its first request,
        # so rate() and increase() see the first run after a daemon start too.
        m[GEN_DROPS].labels(target, phase)


class SoakMetrics(PhaseSeries, DaemonSeries):
    """Creates the catalogue on `registry`; records results, phase reports and states.

    `metrics[SPEC]` gives the prometheus_client object of a catalogue entry.
    """

    def __init__(
        self,
        registry: CollectorRegistry,
        *,
        buckets: Mapping[str, Sequence[float]] = BASE_BUCKETS,
        thresholds: Iterable[Threshold] | None = None,
        providers: Iterable[str] = DEFAULT_PROVIDERS,
        specs: Iterable[MetricSpec] | None = None,
    ) -> None:
        if thresholds is not None:
            check_thresholds_are_buckets(buckets, thresholds)
        self._pending = Pending(self._apply)
        registry.register(FlushFirst(self.flush))  # before the metrics: collected first
        self.buckets = {name: tuple(buckets.get(name, b)) for name, b in BASE_BUCKETS.items()}
        self.specs = tuple(phases.catalogue() if specs is None else specs)
        """Every metric it writes: the catalogue and the registered phases' own."""
        self._m: dict[MetricSpec, Any] = {}
        for spec in self.specs:
            kw: dict[str, Any] = {"labelnames": spec.labels, "registry": registry}
            if spec.kind == "histogram":
                kw["buckets"] = self.buckets[spec.name]
            cls = {"histogram": Histogram, "counter": Counter, "gauge": Gauge}[spec.kind]
            self._m[spec] = cls(spec.name, spec.help, **kw)
        self._by_name = {spec.name: self._m[spec] for spec in self.specs}
        self[BUILD_INFO].labels(__version__, platform.python_version()).set(1)
        self._bound: dict[tuple[str, str], _Bound] = {}
        self._breakers: dict[tuple[str, str, str], BreakerState] = {}
        self.providers: frozenset[str] = frozenset()
        self.set_providers(providers)

    def set_providers(self, names: Iterable[str]) -> None:
        """The provider names a `provider` label may hold (the config's `mock.primary` and
        `mock.fallback`); any other name is counted as `unknown`."""
        self.flush()  # results so far keep the names they were observed under
        self.providers = frozenset(_label("provider", n) for n in names)

    def _provider(self, name: str) -> str:
        return name if name in self.providers else UNKNOWN_PROVIDER

    def __getitem__(self, spec: MetricSpec) -> Any:
        return self._m[spec]

    def child(self, spec: MetricSpec, *values: str) -> Any:
        """The child of `spec` with label `values`, each checked against the bounded label
        vocabulary (ValueError naming it): how a phase's `record` hook writes its own metrics
        (`PhaseSpec.metrics`) without reaching past the one writer."""
        if len(values) != len(spec.labels):
            raise ValueError(f"{spec.name} takes labels {spec.labels}, got {len(values)} values")
        checked = [_label(name, v) for name, v in zip(spec.labels, values, strict=True)]
        return self._m[spec].labels(*checked)

    def bind(self, *, target: str, phase: str, histograms: Sequence[str] = ()) -> _Bound:
        """Label children for (target, phase), created (and validated) once; `histograms` are
        the phase's own (target, phase) histograms (`PhaseSpec.histograms`), at 0 from now."""
        bound = self._bound.get((target, phase))
        if bound is None:
            bound = _Bound(self, _label("target", target), _label("phase", phase))
            self._bound[(target, phase)] = bound
        for name in histograms:
            self._by_name[name].labels(target, phase)
        return bound

    def observe(self, result: Result, *, target: str, phase: str) -> None:
        """Record one request. Hot path: queued, applied in batches (`soak.metric_batch`)
        before anything reads the registry."""
        if (target, phase) not in self._bound:
            self.bind(target=target, phase=phase)  # labels checked now, not at the flush
        self._pending.add(result, target, phase)

    def flush(self) -> None:
        """Apply the queued observations now (a registry read does it by itself)."""
        self._pending.flush()

    def _apply(self, target: str, phase: str, results: list[Result]) -> None:
        b = self._bound.get((target, phase)) or self.bind(target=target, phase=phase)

        def served(name: str) -> Any:
            provider = self._provider(name)  # never the wire's string itself
            child = b.served.get(provider)
            if child is None:
                child = b.served[provider] = self[SERVED].labels(target, phase, provider)
            return child

        apply_batch(b, results, served)

    def observe_failover(self, seconds: float, *, target: str, phase: str) -> None:
        """One failed-over request: seconds from the primary's failure to the fallback's answer."""
        self.bind(target=target, phase=phase)
        self[FAILOVER].labels(target, phase).observe(max(0.0, seconds))

    def set_phase_running(self, running: bool, *, target: str, phase: str) -> None:
        """Mark a phase as (not) running; binds its children so counters start at 0."""
        self.bind(target=target, phase=phase)
        self[PHASE_RUNNING].labels(target, phase).set(1 if running else 0)

    def record_phase(self, report: PhaseReport, *, target: str, finished_at: float) -> None:
        """Last-run summary gauges of one phase; `finished_at` is Unix time.

        A skipped phase did not run and leaves them alone. Dropped requests are counted here,
        once per run, so the engine need not report them a second time.
        """
        self.flush()
        if report.status is Status.SKIPPED:
            return
        phase = report.kind  # the registered phase; a round is its own label
        self.bind(target=target, phase=phase)
        self[PHASE_RUNNING].labels(target, phase).set(0)
        self[GEN_DROPS].labels(target, phase).inc(report.drops)
        labels = (target, phase, _round(report))
        for spec, value in (
            (LAST_RUN, finished_at),
            (LAST_DURATION, report.duration_s),
            (LAST_VERDICT, VERDICTS[report.status]),
            (LAST_SUCCESS, report.success_ratio),
            (LAST_THROUGHPUT, report.throughput),
            (LAST_TARGET_RATE, report.target_rate),
        ):
            self[spec].labels(*labels).set(value)
        dist = report.distributions
        self._summary(LAST_LATENCY, labels, report.latency)
        self._summary(LAST_OVERHEAD, labels, dist.get("overhead_per_request"))
        self._summary(LAST_OVERHEAD_DIFF, labels, dist.get("overhead_percentile_diff"))
        self._summary(LAST_ADDED_TTFT, labels, dist.get("added_ttft"))
        proc = report.process
        if proc is not None and proc.rss_initial > 0 and proc.rss_final > 0:
            self[LAST_MEMORY_GROWTH].labels(*labels).set(proc.rss_final / proc.rss_initial - 1)
        if report.generator is not None:
            self[GEN_TRUSTED].labels(*labels).set(1 if report.generator.trusted else 0)
        if "overhead_per_request" in dist:  # 0 is a figure only where overhead was measured
            negative = report.negative_overhead
            self[LAST_NEGATIVE_OVERHEAD].labels(*labels).set(negative.count if negative else 0)
        self.set_breakdown(report.breakdown or {}, target=target, phase=phase)

    def _summary(
        self, spec: MetricSpec, labels: tuple[str, str, str], summary: LatencySummary | None
    ) -> None:
        if summary is None or not summary.count:
            return
        for stat in STATISTICS:
            self[spec].labels(*labels, stat).set(getattr(summary, stat))

    def forget_target(self, name: str) -> int:
        """Remove every series labelled `target=name` (a target renamed by reload): without
        this each old name kept its few hundred series for the daemon's life. Returns how many
        label sets went; the next request under `name` starts them afresh."""
        self.flush()
        removed = 0
        for spec in self.specs:
            if "target" not in spec.labels:
                continue
            metric, at = self._m[spec], spec.labels.index("target")
            for values in children(metric, spec.labels):
                if values[at] == name:
                    metric.remove(*values)
                    removed += 1
        self._bound = {k: b for k, b in self._bound.items() if k[0] != name}
        self._breakers = {k: v for k, v in self._breakers.items() if k[0] != name}
        return removed

    def phase_done(self, report: PhaseReport, *, target: str, finished_at: float) -> None:
        """What every finished phase report feeds: its summary gauges (`record_phase`) and the
        gateway process at its end. A phase's own figures (breaker timelines, failover times,
        the capacity knee) go through its `PhaseSpec.record` hook."""
        self.record_phase(report, target=target, finished_at=finished_at)
        proc = report.process
        if proc is not None and proc.samples:
            self.set_gateway_process(
                target=target,
                rss_bytes=proc.rss_final or proc.rss_peak,
                cpu_ratio=proc.cpu_avg / 100.0,
                open_fds=proc.fds_peak,
                threads=proc.threads_peak,
            )

def exposed_names() -> frozenset[str]:
    """Every sample name SoakMetrics can expose, the registered phases' own metrics included
    (what PromQL in rules and dashboards may reference)."""
    return _exposed_names(phases.catalogue())


def new_registry() -> CollectorRegistry:
    """A fresh registry with the default collectors: the daemon's, served at `/metrics`."""
    registry = CollectorRegistry()
    register_default_collectors(registry)
    return registry
