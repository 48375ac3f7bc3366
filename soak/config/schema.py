"""The parsed config: frozen dataclasses every other module reads (durations in float seconds).

Built only by `soak.config.load_config`, after strict validation, so the fields can be trusted:
rates are > 0, ratios in 0..1, URLs are http(s) with a host, secrets are `Secret`s.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from soak.config.capacity import DEFAULT_CAPACITY, DEFAULT_CAPACITY_SLO, CapacityPhase, CapacitySlo
from soak.config.daemon import DEFAULT_DAEMON, DaemonConfig
from soak.config.fields import Secret
from soak.config.shard import UNSHARDED, ShardConfig
from soak.config.streaming import (
    DEFAULT_STREAMING,
    DEFAULT_STREAMING_SLO,
    StreamingPhase,
    StreamingSlo,
)

Arrival = Literal["constant", "poisson"]

ARRIVALS: tuple[Arrival, ...] = ("constant", "poisson")
SLO_STATS = ("mean", "p50", "p90", "p95", "p99")


@dataclass(frozen=True, slots=True)
class ManagedConfig:
    """A gateway soak starts, watches and stops itself."""

    command: tuple[str, ...]
    """argv with `{config}` / `{port}` placeholders; empty: the gateway kind's default command."""
    ready_url: str | None
    """Path (or full URL) that answers 2xx once the gateway is ready; None with ready_log None:
    the kind's default."""
    ready_log: str | None
    """A line fragment in the gateway's output that means it is ready (instead of ready_url)."""
    ready_timeout: float
    restart_between_phases: bool
    env: Mapping[str, Secret]
    """Extra environment for the gateway process; values are secrets (may hold keys)."""


@dataclass(frozen=True, slots=True)
class ProcessTarget:
    """The gateway process of an unmanaged gateway: exactly one of pid, pid_file, match."""

    pid: int | None = None
    pid_file: Path | None = None
    match: str | None = None
    """A regular expression searched in each process's command line (oldest match wins)."""


@dataclass(frozen=True, slots=True)
class GatewayConfig:
    """The gateway under test."""

    name: str
    """Bounded label value for metrics and reports."""
    kind: str
    """A name in `soak.gateway.registry.kind_names()` (validated by the loader)."""
    url: str | None
    """Base URL without trailing slash; None only when managed (soak picks a loopback port)."""
    chat_path: str
    model: str
    api_key: Secret | None
    """Resolved from api_key_env or api_key_file; None when neither is set."""
    api_key_env: str | None
    api_key_file: Path | None
    generate_key: bool
    """Managed only: when no key resolves (api_key_env unset is then no error), soak generates
    a random key and hands it to the gateway it starts."""
    headers: Mapping[str, Secret]
    """Extra request headers, `${ENV}` expanded; every value is treated as a secret."""
    timeout: float
    """Per-request client timeout."""
    managed: ManagedConfig | None
    primary_api: str = "openai"
    process: ProcessTarget | None = None
    """How to find the gateway's process when soak did not start it (for psutil)."""
    """litellm only: the wire of the primary deployment soak writes (`openai` or `bedrock`)."""


@dataclass(frozen=True, slots=True)
class MockSettings:
    """The mock provider: one soak starts (url None) or one already running."""

    url: str | None
    port: int | None
    """Port for a soak-started mock (None: a free loopback port); only when url is None."""
    control_token: Secret | None
    control_token_env: str | None
    primary: str
    fallback: str

    @property
    def managed(self) -> bool:
        return self.url is None


@dataclass(frozen=True, slots=True)
class RequestConfig:
    """What each soak request asks for."""

    stream: bool
    max_tokens: int
    prompt: str


@dataclass(frozen=True, slots=True)
class CalibrationPhase:
    """Load straight to the mock: the baseline the seed subtracts."""

    rate: float
    duration: float
    latency: float
    """Mock latency for this phase (seconds)."""


@dataclass(frozen=True, slots=True)
class OverheadPhase:
    """The same load through the gateway: what it adds."""

    rate: float
    duration: float
    latency: float
    warmup: float = 0.0
    """Seconds of the same load through the gateway before measuring, not recorded (a gateway's
    first requests after a start pay for lazy imports, pools and caches)."""


@dataclass(frozen=True, slots=True)
class StressPhase:
    """rate × latency requests in flight, `rounds` times with an idle `gap` between."""

    rate: float
    duration: float
    latency: float
    rounds: int
    gap: float
    timeout: float
    """Per-request client timeout in this phase."""

    @property
    def in_flight(self) -> float:
        """Expected concurrent requests (the seed's ~rate × latency)."""
        return self.rate * self.latency


@dataclass(frozen=True, slots=True)
class SustainedPhase:
    """The seed's 1000 requests per minute, held for `duration`."""

    rate: float
    duration: float
    latency: float


@dataclass(frozen=True, slots=True)
class BreakerPhase:
    """One load of `duration`: healthy for `lead`, the primary faulted for `fault`, then healthy
    again while the primary's breaker should close."""

    rate: float
    duration: float
    latency: float
    lead: float
    """Healthy seconds before the fault (the breaker reads CLOSED first)."""
    fault: float
    """Seconds the primary answers every request with HTTP 500."""
    window: float
    """Sliding window of the observed breaker (seconds of client requests)."""
    closed_share: float
    """Share of requests still trying the primary at or above which it reads CLOSED."""
    scrape_interval: float
    """How often the gateway's self-reported breaker state is read."""


@dataclass(frozen=True, slots=True)
class FailoverPhase:
    """`requests` requests at `rate` while the primary fails every request."""

    requests: int
    rate: float
    latency: float


@dataclass(frozen=True, slots=True)
class MemoryPhase:
    """`requests` requests with ~`concurrency` in flight: open loop at concurrency / latency."""

    requests: int
    concurrency: int
    latency: float
    warmup: float
    """Seconds of RSS samples left out of the trend (start-up allocations are no leak)."""

    @property
    def rate(self) -> float:
        return self.concurrency / self.latency

    @property
    def duration(self) -> float:
        return self.requests / self.rate


@dataclass(frozen=True, slots=True)
class ReadinessPhase:
    """The seed's combined production run at a fixed rate."""

    rate: float
    duration: float
    latency: float


@dataclass(frozen=True, slots=True)
class PhasesConfig:
    calibration: CalibrationPhase
    overhead: OverheadPhase
    stress: StressPhase
    sustained: SustainedPhase
    breaker: BreakerPhase
    failover: FailoverPhase
    memory: MemoryPhase
    readiness: ReadinessPhase
    capacity: CapacityPhase = DEFAULT_CAPACITY
    streaming: StreamingPhase = DEFAULT_STREAMING


@dataclass(frozen=True, slots=True)
class EngineConfig:
    arrival: Arrival
    max_inflight: int
    seed: int


@dataclass(frozen=True, slots=True)
class OverheadSlo:
    """Upper bounds (seconds) on the gateway's added latency, per statistic."""

    mean: float
    p50: float
    p90: float
    p95: float
    p99: float

    def get(self, stat: str) -> float:
        return float(getattr(self, stat))


@dataclass(frozen=True, slots=True)
class StressSlo:
    success_ratio: float
    """Minimum share of successful requests in every stress round (1.0 = 100%)."""


@dataclass(frozen=True, slots=True)
class SustainedSlo:
    completed_ratio: float
    """Successful requests / scheduled requests (the seed's 900 of 1000)."""
    throughput_ratio: float
    """Achieved throughput / target rate."""
    p95: float
    success_ratio: float


@dataclass(frozen=True, slots=True)
class BreakerSlo:
    success_ratio: float
    """Clients must not see the fault: share of successful requests over the whole phase."""
    open_within: float
    """Seconds from the fault's start by which the primary must read OPEN."""
    recover_within: float
    """Seconds from the fault's end by which the primary must read CLOSED again."""


@dataclass(frozen=True, slots=True)
class FailoverSlo:
    failed_over_ratio: float
    mean: float
    max: float


@dataclass(frozen=True, slots=True)
class MemorySlo:
    growth: float
    """(final − initial) / initial RSS must stay below this (1.0 = +100%)."""
    peak_ratio: float
    """peak / initial RSS must stay below this."""
    slope_mb_per_min: float
    """RSS trend after the warm-up (least squares) must stay below this many MB per minute."""


@dataclass(frozen=True, slots=True)
class ReadinessSlo:
    success_ratio: float
    throughput_ratio: float
    p95: float
    p99: float


@dataclass(frozen=True, slots=True)
class Tier:
    """The seed's performance table: at or better than `target`, than `acceptable`, else warning."""

    target: float
    acceptable: float


TIER_METRICS = (
    "success_ratio", "throughput", "p50", "p95", "p99", "memory_growth", "failover_time",
)  # fmt: skip
HIGHER_IS_BETTER = frozenset({"success_ratio", "throughput"})


@dataclass(frozen=True, slots=True)
class SloConfig:
    overhead: OverheadSlo
    stress: StressSlo
    sustained: SustainedSlo
    breaker: BreakerSlo
    failover: FailoverSlo
    memory: MemorySlo
    readiness: ReadinessSlo
    tiers: Mapping[str, Tier]
    """Metric (`TIER_METRICS`) → its tier bounds; shown per check, never failing one."""
    capacity: CapacitySlo = DEFAULT_CAPACITY_SLO
    streaming: StreamingSlo = DEFAULT_STREAMING_SLO


@dataclass(frozen=True, slots=True)
class ReportConfig:
    out: Path
    """Directory for reports, relative to the working directory unless absolute."""


@dataclass(frozen=True, slots=True)
class Config:
    """One validated soak config: a built-in profile with the user's file layered on top."""

    version: int
    profile: str
    source: str
    """The file it was read from, or "(embedded default)"."""
    gateway: GatewayConfig
    mock: MockSettings
    request: RequestConfig
    phases: PhasesConfig
    engine: EngineConfig
    slo: SloConfig
    report: ReportConfig
    daemon: DaemonConfig = DEFAULT_DAEMON
    """`soak run`: the schedule of phase plans and the HTTP server (see soak.config.daemon)."""
    shard: ShardConfig = UNSHARDED
    """This replica's slice of the load when N replicas share it (see soak.config.shard)."""
