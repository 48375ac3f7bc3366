"""The daemon's part of a config: the `schedule` (phase plans) and `server` sections.

Parsed here, not in `soak.config`, so the daemon's keys evolve without touching the phases'
config; `load_config` calls `parse_daemon` once. Same strictness as the rest: unknown keys,
wrong types and bad values are one `ConfigError` line naming the file and dotted key.
A config without these sections gets `DEFAULT_DAEMON`: calibration + overhead every two minutes,
the first run right away, so `soak run` with no config shows live metrics within a minute.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from soak.config.cron import cron_problem, fire_times, parse_cron
from soak.config.fields import MAX_RATE, RATE_HINT, Secret, Section

_PLAN_NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,31}")
_PLAN_HINT = "lowercase letters, digits, '_', '-'; at most 32 characters"
_LISTEN = re.compile(r"(?P<host>\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.-]*):(?P<port>\d{1,5})")
DEFAULT_LISTEN = "127.0.0.1:9105"
MAX_INTERVAL_S = 366 * 86400.0
"""Longest plan interval (and misfire grace): a year and a day, far inside what the scheduler's
date arithmetic holds (an interval of 99999999h overflowed it on reload)."""
MAX_JITTER_S = 86400.0
MAX_GRACE_S = 3600.0
MAX_KEEP_RUNS = 1_000_000
DEFAULT_DATA_DIR = "soak-data"


@dataclass(frozen=True, slots=True)
class BackgroundConfig:
    """Steady load through the gateway between a plan's phases and runs (the duty cycle):
    paused while a phase measures, counted under `phase="background"`."""

    rate: float
    """Requests per second."""
    latency: float
    """The mock's answer time for these requests (seconds)."""


@dataclass(frozen=True, slots=True)
class PlanConfig:
    """One scheduled phase plan: which phases, on which trigger (exactly one of cron/interval)."""

    name: str
    """Bounded label value (`plan`) for the scheduler metrics."""
    phases: tuple[str, ...]
    cron: str | None = None
    """Five-field crontab expression, evaluated in UTC (so replicas align on the same clock)."""
    interval: float | None = None
    """Seconds between runs."""
    jitter: float = 0.0
    """Up to this many seconds of random delay per run (spreads replicas)."""
    run_on_start: bool = False
    """Also run once as soon as the daemon starts."""
    coalesce: bool = True
    """Several missed fire times (daemon suspended) collapse into one run."""
    misfire_grace_time: float = 300.0
    """A run that could not start within this many seconds of its time is missed (counted)."""
    background: BackgroundConfig | None = None
    """Steady load kept running between phases and runs (None: the gateway idles between)."""


@dataclass(frozen=True, slots=True)
class ServerConfig:
    """The daemon's HTTP server, data directory and shutdown bound."""

    listen: str = DEFAULT_LISTEN
    """host:port of /metrics, /-/healthy, /-/ready, /-/reload, /runs."""
    reload_token_env: str | None = None
    reload_token: Secret | None = None
    """When set, POST /-/reload requires `Authorization: Bearer <token>`."""
    data_dir: Path = Path(DEFAULT_DATA_DIR)
    """Where the run history (history.db) lives."""
    keep_runs: int = 500
    """Run history retention: the newest N runs are kept."""
    grace: float = 30.0
    """SIGTERM: bound on stopping, draining and cleaning up before the daemon exits."""


@dataclass(frozen=True, slots=True)
class DaemonConfig:
    """What `soak run` adds to a config."""

    schedule: tuple[PlanConfig, ...]
    server: ServerConfig


DEFAULT_PLAN = PlanConfig(
    name="default", phases=("calibration", "overhead"), interval=120.0, run_on_start=True
)
DEFAULT_DAEMON = DaemonConfig(schedule=(DEFAULT_PLAN,), server=ServerConfig())
"""Without `schedule` / `server` sections: one quick plan every 2 minutes, first run at start."""


def split_listen(value: str) -> tuple[str, int]:
    """(host, port) of a `host:port` listen address; ValueError with the reason otherwise."""
    match = _LISTEN.fullmatch(value)
    if match is None:
        raise ValueError(f"invalid listen address {value!r} (use host:port, e.g. {DEFAULT_LISTEN})")
    port = int(match["port"])
    if port > 65535:
        raise ValueError(f"invalid listen address {value!r}: port must be at most 65535")
    return match["host"].strip("[]") or "0.0.0.0", port


def parse_daemon(
    root: Section, env: Mapping[str, str], base_dir: Path, phase_names: Sequence[str]
) -> DaemonConfig:
    """The `schedule` and `server` sections of the merged config at `root`; plans may name
    `phase_names` only (the registered phases)."""
    raw = root.data.get("schedule")
    if raw is None:
        plans: tuple[PlanConfig, ...] = DEFAULT_DAEMON.schedule
    else:
        if not isinstance(raw, list) or not raw:
            root.wrong_type("schedule", "a non-empty list of plans", raw)
        plans = tuple(_plan(root, i, item, phase_names) for i, item in enumerate(raw))
        seen: set[str] = set()
        for i, plan in enumerate(plans):
            if plan.name in seen:
                _item(root, i, {}).fail("name", f"duplicate plan name '{plan.name}'")
            seen.add(plan.name)
    server = root.section("server", optional=True)
    return DaemonConfig(
        schedule=plans, server=ServerConfig() if server is None else _server(server, env, base_dir)
    )


def _item(root: Section, index: int, item: Any) -> Section:
    if not isinstance(item, dict):
        root.fail(f"schedule[{index}]", "expected a mapping (a plan)", "see docs/config.md")
    return Section(item, (*root.path, f"schedule[{index}]"), root.locate)


def _plan(root: Section, index: int, item: Any, phase_names: Sequence[str]) -> PlanConfig:
    s = _item(root, index, item)
    s.only("name", "cron", "interval", "phases", "jitter", "run_on_start", "coalesce",
           "misfire_grace_time", "background")  # fmt: skip
    name = s.string("name", pattern=_PLAN_NAME, hint=_PLAN_HINT)
    if s.has("cron") == s.has("interval"):
        s.fail(
            None, "set exactly one of cron or interval", "e.g. cron: '0 * * * *' or interval: 1h"
        )
    cron = s.string("cron", None)
    if cron is not None and (problem := cron_problem(cron)):
        s.fail("cron", f"invalid cron expression {cron!r}: {problem}", "five fields, in UTC")
    interval = (
        s.duration("interval", None, positive=True, at_least=1.0, at_most=MAX_INTERVAL_S)
        if s.has("interval")
        else None
    )
    phases = s.data.get("phases")
    if not isinstance(phases, list) or not phases or not all(isinstance(p, str) for p in phases):
        s.wrong_type("phases", "a non-empty list of phase names", phases)
    for phase in phases:
        if phase not in phase_names:
            s.fail("phases", f"unknown phase {phase[:40]!r}", f"use {', '.join(phase_names)}")
    if len(set(phases)) != len(phases):
        s.fail("phases", "a phase is listed twice")
    return PlanConfig(
        name=name,
        phases=tuple(phases),
        cron=cron,
        interval=interval,
        jitter=s.duration("jitter", 0.0, at_most=MAX_JITTER_S),
        run_on_start=s.boolean("run_on_start", False),
        coalesce=s.boolean("coalesce", True),
        misfire_grace_time=s.duration(
            "misfire_grace_time", 300.0, positive=True, at_most=MAX_INTERVAL_S
        ),
        background=_background(s.section("background", optional=True)),
    )


def _background(s: Section | None) -> BackgroundConfig | None:
    if s is None:
        return None
    s.only("rate", "latency")
    return BackgroundConfig(
        rate=s.number("rate", positive=True, at_most=MAX_RATE, hint=RATE_HINT),
        latency=s.duration("latency", 0.05, at_most=60.0),
    )


def _server(s: Section, env: Mapping[str, str], base_dir: Path) -> ServerConfig:
    s.only("listen", "reload_token_env", "data_dir", "keep_runs", "grace")
    listen = s.string("listen", DEFAULT_LISTEN)
    try:
        split_listen(listen)
    except ValueError as err:
        s.fail("listen", str(err))
    token_env = s.env_name("reload_token_env", None)
    token = None
    if token_env is not None:
        token = s.from_env("reload_token_env", token_env, env, "export it, or remove the key")
    data_dir = Path(s.string("data_dir", DEFAULT_DATA_DIR)).expanduser()
    return ServerConfig(
        listen=listen,
        reload_token_env=token_env,
        reload_token=token,
        data_dir=data_dir if data_dir.is_absolute() else base_dir / data_dir,
        keep_runs=s.integer("keep_runs", 500, minimum=1, maximum=MAX_KEEP_RUNS),
        grace=s.duration("grace", 30.0, positive=True, at_most=MAX_GRACE_S),
    )


def longest_gap(plan: PlanConfig, fires: int = 200) -> float:
    """Longest time between two runs of `plan` over its next `fires` fire times, plus its jitter:
    how long a phase of it may go unseen (the rules' staleness windows)."""
    if plan.cron is None:
        return float(plan.interval or 0) + plan.jitter
    start = datetime(2026, 1, 5, tzinfo=UTC)  # fixed, so generated files are reproducible
    times = list(itertools.islice(fire_times(parse_cron(plan.cron), start), fires))
    gaps = [(b - a).total_seconds() for a, b in itertools.pairwise(times)]
    return max(gaps, default=0.0) + plan.jitter
