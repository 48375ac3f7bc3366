"""The parsed config: frozen dataclasses every other module reads (durations in float seconds).

Built only by `soak.config.load_config`, after strict validation, so the fields can be trusted:
rates are > 0, ratios in 0..1, URLs are http(s) with a host, secrets are `Secret`s.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any, Literal, Protocol

from soak.config.daemon import DEFAULT_DAEMON, DaemonConfig
from soak.config.fields import Secret, Section
from soak.config.regression import DEFAULT_REGRESSION, RegressionSlo
from soak.config.shard import UNSHARDED, ShardConfig
from soak.config.workload import DEFAULT_WORKLOAD, WorkloadConfig

Arrival = Literal["constant", "poisson"]

ARRIVALS: tuple[Arrival, ...] = ("constant", "poisson")
Loop = Literal["asyncio", "uvloop", "auto"]
LOOPS: tuple[Loop, ...] = ("asyncio", "uvloop", "auto")
SLO_STATS = ("mean", "p50", "p90", "p95", "p99")


class PhaseSections(Protocol):
    """What the loader needs of a phase (`soak.phases.PhaseSpec` is one): its name and the
    parsers of its `phases.<name>` and `slo.<name>` sections."""

    @property
    def name(self) -> str: ...
    @property
    def settings(self) -> Callable[[Section], Any]: ...
    @property
    def slo(self) -> Callable[[Section], Any] | None: ...


class Sections(Mapping[str, Any]):
    """Phase name → its parsed, frozen section; `sections.overhead` reads `sections["overhead"]`.

    Each phase module owns the type of its section (e.g. `soak.phases.stress.StressPhase`)."""

    __slots__ = ("_items",)

    def __init__(self, items: Mapping[str, Any] | None = None) -> None:
        self._items: Mapping[str, Any] = MappingProxyType(dict(items or {}))

    def __getitem__(self, name: str) -> Any:
        return self._items[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        try:
            return self._items[name]
        except KeyError:
            raise AttributeError(f"no phase section {name!r}") from None

    def __repr__(self) -> str:
        return f"Sections({dict(self._items)!r})"


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
class EngineConfig:
    arrival: Arrival
    max_inflight: int
    seed: int
    workers: int | Literal["auto"] = 1
    """Worker processes sharing each load (`soak.workers`); `auto`: the cores soak may use."""
    loop: Loop = "asyncio"
    """The event loop of soak's process and its workers (`soak.eventloop`), read at start."""









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
    """The SLO block: the tiers every phase grades by, and each judged phase's own section
    (`slo.overhead` reads `slo.phases["overhead"]`)."""

    tiers: Mapping[str, Tier]
    """Metric (`TIER_METRICS`) → its tier bounds; shown per check, never failing one."""
    phases: Sections
    regression: RegressionSlo = DEFAULT_REGRESSION
    """`slo.regression`: how a run is judged against a baseline run (soak.config.regression)."""

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        return getattr(self.phases, name)

    def __getitem__(self, name: str) -> Any:
        return self.phases[name]


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
    phases: Sections
    """Phase name → its parsed `phases.<name>` section, for every registered phase."""
    engine: EngineConfig
    slo: SloConfig
    report: ReportConfig
    daemon: DaemonConfig = DEFAULT_DAEMON
    """`soak run`: the schedule of phase plans and the HTTP server (see soak.config.daemon)."""
    shard: ShardConfig = UNSHARDED
    """This replica's slice of the load when N replicas share it (see soak.config.shard)."""
    workload: WorkloadConfig = DEFAULT_WORKLOAD
    """What every phase's requests look like (see soak.config.workload)."""
