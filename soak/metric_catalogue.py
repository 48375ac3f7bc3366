"""The catalogue: every `soak_*` metric declared once (name, type, labels, help) and the
histogram bounds, which must hold every latency threshold of the SLO block.

Units are base units (seconds, bytes, ratios 0..1); counters end in `_total`; labels are
bounded names only (target, phase, outcome, provider, source, plan, statistic). Bounds include
the SLO thresholds (`buckets_for_slo`) so an alert counts "requests slower than the threshold"
exactly with `le` = threshold instead of estimating a quantile between buckets. A threshold
that is not a bound is a config error (`check_thresholds_are_buckets`). `soak.metrics` creates
these on a registry and records into them.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

LABEL_VALUE_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
"""What a label value from the config (target, plan, provider, class) may be: a short name."""


def label_value(kind: str, value: str) -> str:
    """`value` checked as a `kind` label value (ValueError naming it otherwise)."""
    if not LABEL_VALUE_RE.match(value):
        raise ValueError(f"{kind} label value {value!r} must match {LABEL_VALUE_RE.pattern}")
    return value


def model_label(model: str) -> str:
    """A workload model name (from the config) as a label value: at most 64 characters of
    `A-Za-z0-9_.-`, others as `_`."""
    return label_value("model", re.sub(r"[^A-Za-z0-9_.-]", "_", model)[:64])


@dataclass(frozen=True, slots=True)
class MetricSpec:
    """One metric of the catalogue: the only place its name, help and labels are written."""

    name: str
    kind: str  # counter | gauge | histogram
    labels: tuple[str, ...]
    help: str

    def exposed(self) -> tuple[str, ...]:
        """Sample names this metric shows on /metrics (what PromQL may reference)."""
        if self.kind == "histogram":
            return tuple(self.name + s for s in ("_bucket", "_count", "_sum", "_created"))
        if self.kind == "counter":
            return (self.name, self.name.removesuffix("_total") + "_created")
        return (self.name,)


# fmt: off
TP = ("target", "phase")
TPR, TPRQ = ("target", "phase", "round"), ("target", "phase", "round", "statistic")
"""Last-run gauges carry `round` (a phase run in rounds, e.g. stress: "1", "2"; "" — no label
in PromQL — for a phase of one run): one dimension per label, `phase` is the name only."""
TPS = ("target", "provider", "source")
C, G, H = "counter", "gauge", "histogram"
REQUEST_DURATION = MetricSpec("soak_request_duration_seconds", H, TP,
    "Client latency from the intended (scheduled) start to the end; includes send lag.")
TTFT = MetricSpec("soak_time_to_first_token_seconds", H, TP,
    "Seconds from the actual send to the first content token (streams).")
OVERHEAD = MetricSpec("soak_gateway_overhead_seconds", H, TP,
    "Per-request overhead: client latency minus the mock's service time (successes, clamped at 0).")
SEND_LAG = MetricSpec("soak_send_lag_seconds", H, TP,
    "Seconds a request was sent behind its open-loop schedule.")
FAILOVER = MetricSpec("soak_failover_seconds", H, TP,
    "Time from the primary's failure to an answer from the fallback, per failed-over request.")
ITL = MetricSpec("soak_inter_token_gap_seconds", H, TP,
    "Seconds between consecutive content chunks of a stream (vLLM ITL, pooled over streams).")
TPOT = MetricSpec("soak_time_per_output_token_seconds", H, TP,
    "Per stream: (end-to-end latency - TTFT) / (output tokens - 1).")
REQUESTS = MetricSpec("soak_requests_total", C, (*TP, "outcome"),
    "Requests ended, by outcome.")
SERVED = MetricSpec("soak_served_requests_total", C, (*TP, "provider"),
    "Successful requests by the mock provider that served them.")
TOKENS = MetricSpec("soak_output_tokens_total", C, TP,
    "Completion tokens received.")
PHASE_RUNNING = MetricSpec("soak_phase_running", G, TP,
    "1 while the phase runs, else 0.")
LAST_RUN = MetricSpec("soak_phase_last_run_timestamp_seconds", G, TPR,
    "Unix time the phase's last run finished.")
LAST_DURATION = MetricSpec("soak_phase_last_duration_seconds", G, TPR,
    "Wall-clock duration of the phase's last run.")
LAST_VERDICT = MetricSpec("soak_phase_last_verdict", G, TPR,
    "Verdict of the last run: 1 passed (or baseline), 0 failed, -1 error.")
LAST_SUCCESS = MetricSpec("soak_phase_last_success_ratio", G, TPR,
    "Success ratio of the last run (per replica; use counters to aggregate).")
LAST_THROUGHPUT = MetricSpec("soak_phase_last_throughput_requests_per_second", G, TPR,
    "Completed requests per second in the last run (additive across replicas).")
LAST_TARGET_RATE = MetricSpec("soak_phase_last_target_requests_per_second", G, TPR,
    "Intended arrival rate of the last run (additive across replicas).")
LAST_LATENCY = MetricSpec("soak_phase_last_latency_seconds", G, TPRQ,
    "Exact latency statistics of the last run (per-run summary: never average replicas).")
LAST_OVERHEAD = MetricSpec("soak_phase_last_overhead_seconds", G, TPRQ,
    "Exact per-request overhead statistics of the last run (per-run: never average replicas).")
LAST_OVERHEAD_DIFF = MetricSpec("soak_phase_last_overhead_percentile_diff_seconds", G, TPRQ,
    "The seeds' overhead: percentile(through gateway) - percentile(direct calibration), last run.")
LAST_ADDED_TTFT = MetricSpec("soak_phase_last_gateway_added_ttft_seconds", G, TPRQ,
    "Streams: client TTFT minus the mock's own time to its first chunk, last run (exact).")
LAST_MEMORY_GROWTH = MetricSpec("soak_phase_last_gateway_memory_growth_ratio", G, TPR,
    "Gateway RSS growth over the last run: final / initial - 1.")
LAST_NEGATIVE_OVERHEAD = MetricSpec("soak_phase_last_negative_overhead_requests", G, TPR,
    "Requests of the last run answered in less than the mock's own service time (overhead < 0, "
    "kept as 0 in the overhead histograms): a clock or a gateway to look at.")
BREAKER_STATE = MetricSpec("soak_breaker_state", G, TPS,
    "Breaker state: 0 closed, 1 half-open, 2 open; source observed (black-box) or reported.")
BREAKER_TRANSITIONS = MetricSpec("soak_breaker_transitions_total", C, TPS,
    "Breaker state changes seen.")
PHASE_MODEL_OVERHEAD = MetricSpec("soak_phase_last_model_overhead_seconds", G,
    ("target", "phase", "model", "statistic"),
    "Per-request overhead (p50, p99) per workload model in each phase's last run with a model "
    "mix; model names from workload.models (at most 32), never from the wire.")
PHASE_MODEL_SUCCESS = MetricSpec("soak_phase_last_model_success_ratio", G,
    ("target", "phase", "model"),
    "Success ratio per workload model in each phase's last run with a model mix.")
PHASE_KEYS_USED = MetricSpec("soak_phase_last_keys_used", G, ("target", "phase"),
    "Keys of workload.keys that sent a request in the phase's last run (no key label: there "
    "may be 100,000; the worst keys are named in the report).")
PHASE_KEYS_FAILING = MetricSpec("soak_phase_last_keys_failing", G, ("target", "phase"),
    "Keys of workload.keys with at least one request not answered well in the phase's last "
    "run: one tenant refused or throttled shows here while the phase's success stays high.")
GW_RSS = MetricSpec("soak_gateway_resident_memory_bytes", G, ("target",),
    "Gateway process resident memory.")
GW_CPU = MetricSpec("soak_gateway_cpu_ratio", G, ("target",),
    "Gateway process CPU use, 1.0 = one core.")
GW_FDS = MetricSpec("soak_gateway_open_fds", G, ("target",),
    "Gateway process open file descriptors.")
GW_THREADS = MetricSpec("soak_gateway_threads", G, ("target",),
    "Gateway process threads.")
GW_RESTARTS = MetricSpec("soak_gateway_restarts_total", C, ("target", "reason"),
    "Restarts of the managed gateway by the daemon, by reason: crash (it died), reload (the "
    "config changed what it runs), phase (a phase asked for a fresh process).")
GW_MEMORY_SLOPE = MetricSpec("soak_gateway_memory_slope_bytes_per_second", G, ("target",),
    "Least-squares slope of the gateway's RSS over the long window (slo.memory.long_window), "
    "from the daemon's continuous samples since the process started.")
GEN_LAG = MetricSpec("soak_generator_event_loop_lag_seconds", G, (),
    "The tester's own event-loop lag (latest probe).")
GEN_CPU = MetricSpec("soak_generator_cpu_ratio", G, (),
    "The tester's own CPU use, 1.0 = one core.")
GEN_DROPS = MetricSpec("soak_generator_dropped_requests_total", C, TP,
    "Requests never sent because the in-flight cap was reached.")
GEN_TRUSTED = MetricSpec("soak_generator_trusted", G, TPR,
    "1 when the generator kept up in the phase's last run, 0 when its own limits skewed it.")
SCHED_MISSED = MetricSpec("soak_scheduler_missed_runs_total", C, ("plan",),
    "Scheduled runs missed (misfire grace exceeded).")
SCHED_SKIPPED = MetricSpec("soak_scheduler_skipped_runs_total", C, ("plan",),
    "Scheduled runs skipped because a run was still in progress.")
PLAN_NEXT_RUN = MetricSpec("soak_plan_next_run_timestamp_seconds", G, ("plan",),
    "Unix time the plan is next due by its schedule (alerts time a run that did not happen).")
PLAN_LAST_RUN = MetricSpec("soak_plan_last_run_timestamp_seconds", G, ("plan",),
    "Unix time the plan's last scheduled run finished.")
PLAN_RUNS = MetricSpec("soak_plan_runs_total", C, ("plan", "status"),
    "Scheduled runs finished, by status: passed, failed, aborted, error.")
RELOAD_OK = MetricSpec("soak_config_last_reload_successful", G, (),
    "1 when the last config (re)load succeeded, else 0.")
RELOAD_TS = MetricSpec("soak_config_last_reload_success_timestamp_seconds", G, (),
    "Unix time of the last successful config load.")
HISTORY_WRITE_ERRORS = MetricSpec("soak_history_write_errors_total", C, ("reason",),
    "Run history writes the disk refused, by reason: disk_full, read_only, other (the runs "
    "are still measured and kept in memory until a write succeeds).")
BUILD_INFO = MetricSpec("soak_build_info", G, ("version", "python"),
    "Always 1; labels say which llm-soak runs.")
del C, G, H, TPR, TPRQ, TPS
CATALOGUE: tuple[MetricSpec, ...] = tuple(
    v for v in tuple(globals().values()) if isinstance(v, MetricSpec)
)
"""Every soak_* metric, in declaration order."""

BASE_BUCKETS: dict[str, tuple[float, ...]] = {
    REQUEST_DURATION.name: (
        0.005,
        0.01,
        0.025,
        0.05,
        0.1,
        0.25,
        0.5,
        1,
        2,
        3,
        5,
        10,
        20,
        30,
        60,
        120,
        300,
    ),
    TTFT.name: (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60),
    OVERHEAD.name: (
        5e-05,
        0.0001,
        0.00025,
        0.0005,
        0.001,
        0.0025,
        0.005,
        0.01,
        0.02,
        0.05,
        0.1,
        0.2,
        0.25,
        0.5,
        1,
        2.5,
        5,
        10,
    ),
    SEND_LAG.name: (0.0001, 0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 10),
    FAILOVER.name: (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 20, 30, 60),
    ITL.name: (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
    TPOT.name: (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
}
"""Default bounds per histogram (overhead from 50 µs, latency to 5 min); they already hold the
seeds' default thresholds."""
# fmt: on

class Threshold(NamedTuple):
    """A latency bound of the SLO block that alerts count exactly: it must be a bucket bound
    of `histogram`. Phases declare theirs (`PhaseSpec.thresholds`); tiers map below."""

    histogram: str
    path: str
    """The config key it came from, e.g. `slo.overhead.p95`."""
    seconds: float


TIER_HISTOGRAMS = {"failover_time": FAILOVER.name} | dict.fromkeys(
    ("p50", "p90", "p95", "p99"), REQUEST_DURATION.name
)
"""Latency tiers (`slo.tiers.<metric>`) → the histogram their bounds are counted in."""


def tier_thresholds(tiers: Mapping[str, Any]) -> list[Threshold]:
    """The latency tiers' target and acceptable bounds (objects with those two attributes)."""
    out = []
    for metric, histogram in TIER_HISTOGRAMS.items():
        tier = tiers.get(metric)
        if tier is not None:
            for level in ("target", "acceptable"):
                path = f"slo.tiers.{metric}.{level}"
                out.append(Threshold(histogram, path, float(getattr(tier, level))))
    return out


def slo_thresholds(thresholds: Iterable[Threshold]) -> dict[str, dict[str, float]]:
    """Thresholds per histogram: {metric: {"slo.overhead.p95": 0.02}}."""
    found: dict[str, dict[str, float]] = {}
    for t in thresholds:
        found.setdefault(t.histogram, {})[t.path] = t.seconds
    return found


def buckets_with(base: Iterable[float], thresholds: Iterable[float]) -> tuple[float, ...]:
    """`base` bounds plus every threshold, sorted, without duplicates."""
    return tuple(sorted({float(b) for b in base} | {float(t) for t in thresholds}))


def buckets_for_slo(
    thresholds: Iterable[Threshold], base: Mapping[str, Sequence[float]] = BASE_BUCKETS
) -> dict[str, tuple[float, ...]]:
    """Histogram bounds for a config: `base` plus each SLO latency threshold of that histogram."""
    wanted = slo_thresholds(thresholds)
    return {name: buckets_with(b, wanted.get(name, {}).values()) for name, b in base.items()}


def check_thresholds_are_buckets(
    buckets: Mapping[str, Sequence[float]], thresholds: Iterable[Threshold]
) -> None:
    """Raise ValueError naming the first SLO latency threshold that is not a bucket bound."""
    for metric, paths in slo_thresholds(thresholds).items():
        bounds = {float(b) for b in buckets.get(metric, BASE_BUCKETS[metric])}
        for path, value in paths.items():
            if value not in bounds:
                raise ValueError(
                    f"{path}: threshold {value:g}s is not a bucket bound of {metric}; "
                    "alerts could not count requests above it exactly (use buckets_for_slo)"
                )


def exposed_names(catalogue: Iterable[MetricSpec] = CATALOGUE) -> frozenset[str]:
    """Every sample name SoakMetrics can expose (for checking PromQL against the catalogue)."""
    return frozenset(n for spec in catalogue for n in spec.exposed())
