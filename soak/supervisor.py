"""The daemon's stack: the mock and a managed gateway started once and kept up across runs.

A soak exists to catch what only time shows, so the daemon never restarts what it soaks
without a reason, and counts every reason (`soak_gateway_restarts_total{target,reason}`):
`reload` (a new config changes what the mock or the gateway runs), `crash` (it died: seen by
the 1 Hz monitor between and during runs, logged with its exit code, noted in the next run's
report) and `phase` (a phase asked for a fresh process, `restart_between_phases`). The gateway
is sampled at 1 Hz for the daemon's whole life (`soak_gateway_*` gauges, one series over
days) and its RSS kept one point per 10 s over `slo.memory.long_window`: the long-window
slope. `soak once` keeps its per-run stack (`soak.stack.start_stack`).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import tempfile
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

from soak.background import Background
from soak.config.fields import Secret, span
from soak.config.schema import Config
from soak.gateway.process import GatewayStartError
from soak.metrics import SoakMetrics
from soak.procwatch import LongTrend, ProcessWatch, Sample
from soak.stack import Stack, StackError, start_stack

log = logging.getLogger(__name__)

REASONS = ("crash", "reload", "phase")
MIN_SPAN = 0.5
"""The long-window slope is exported once its samples span this share of the window."""
WARMUP_SHARE, WARMUP_MAX = 0.1, 600.0
"""Seconds after a gateway start left out of the long window: a tenth of it, at most 10 min
(LiteLLM grows ~160 MB in its first minute: with a 30 min window that start-up alone read as
61 MB/h at minute 16)."""
TREND_STEP = 10.0
"""Seconds between two points of the long-window RSS ring."""


CLIENT_SIDE = frozenset({"name", "chat_path", "headers", "timeout"})
"""`gateway` keys only the tester reads (label, path, headers, timeout): changing them by a
reload restarts nothing; every run builds its target from the config of the moment."""


def what_runs(config: Config) -> Any:
    """What the stack's processes depend on: the `mock` section and the `gateway` section but
    its client-side keys, secrets by value (a reload that changes neither keeps the processes)."""

    def plain(value: Any) -> Any:
        if isinstance(value, Secret):
            return ("secret", value.reveal())
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            return tuple(plain(getattr(value, f.name)) for f in dataclasses.fields(value))
        if isinstance(value, dict):
            return tuple(sorted((k, plain(v)) for k, v in value.items()))
        if isinstance(value, list | tuple):
            return tuple(plain(v) for v in value)
        return value

    gateway = config.gateway
    runs = {f.name: getattr(gateway, f.name) for f in dataclasses.fields(gateway)}
    return (plain(config.mock), plain({k: v for k, v in runs.items() if k not in CLIENT_SIDE}))


def long_trend(window: float) -> LongTrend:
    """The long-window ring for `window` seconds, its warm-up after each start left out."""
    return LongTrend(window, TREND_STEP, warmup=min(window * WARMUP_SHARE, WARMUP_MAX))


class StackSupervisor:
    """Owns the long-lived `Stack`; `acquire(config)` hands it to each run."""

    def __init__(self, metrics: SoakMetrics, *, interval: float = 1.0) -> None:
        self.metrics, self.interval = metrics, interval
        self.stack: Stack | None = None
        self.background = Background(metrics)
        self._config: Config | None = None
        self._key: Any = None
        self._exits: AsyncExitStack | None = None
        self._lock = asyncio.Lock()
        self._watch: ProcessWatch | None = None
        self._watched_pid: int | None = None
        self._trend = long_trend(6 * 3600.0)
        self._monitor: asyncio.Task[None] | None = None
        self._notes: list[str] = []
        self.restarts: dict[str, int] = dict.fromkeys(REASONS, 0)

    @property
    def target(self) -> str:
        return self._config.gateway.name if self._config is not None else ""

    async def acquire(self, config: Config) -> Stack:
        """The live stack for `config`: the running one, or (re)started when the config changes
        what runs or a process died. Raises `StackError` when it cannot start."""
        async with self._lock:
            key = what_runs(config)
            if self.stack is not None and key != self._key:
                await self._restart(config, "reload")
            elif self.stack is not None and (why := self._dead()) is not None:
                await self._recover(config, why)
            elif self.stack is None:
                await self._start(config)
            self._config = config  # SLO or schedule changes need no restart
            self.metrics.init_gateway_restarts(target=config.gateway.name, reasons=REASONS)
            self._trend_window(config)
            if self._monitor is None:
                self._monitor = asyncio.create_task(self._watch_loop(), name="stack-monitor")
            assert self.stack is not None
            return self.stack

    def take_notes(self) -> list[str]:
        """What happened to the stack since the last run (a crash and its exit code)."""
        notes, self._notes = self._notes, []
        return notes

    async def restart_for_phase(self) -> None:
        """A phase asks for a fresh gateway process (`restart_between_phases`)."""
        async with self._lock:
            if self.stack is None or self.stack.gateway is None:
                return
            self._unwatch()
            await self.stack.restart_gateway()
            self._count("phase")

    def _dead(self) -> str | None:
        """Which process died ('gateway (code N)', 'mock provider (code N)'), or None."""
        stack = self.stack
        if stack is None:
            return None
        for what, proc in (("gateway", stack.gateway), ("mock provider", stack.mock)):
            if proc is not None and not proc.alive:
                return f"{what} exited with code {proc.returncode}"
        return None

    async def _start(self, config: Config) -> None:
        exits = AsyncExitStack()
        try:
            workdir = Path(exits.enter_context(tempfile.TemporaryDirectory(prefix="soak-")))
            self.stack = await start_stack(config, workdir, exits)
        except BaseException:
            await exits.aclose()
            self.stack = None
            raise
        self._exits, self._key, self._config = exits, what_runs(config), config
        # At 0 from the first run (a gateway soak does not start stays there): a panel or a
        # rule on the counter sees a series, not an absence.
        self.metrics.init_gateway_restarts(target=config.gateway.name, reasons=REASONS)
        self._trend.reset()

    async def _stop(self) -> None:
        self._unwatch()
        exits, self._exits, self.stack = self._exits, None, None
        if exits is not None:
            await exits.aclose()

    async def _restart(self, config: Config, reason: str, why: str | None = None) -> None:
        managed = self.stack is not None and self.stack.gateway is not None
        old_target = self.target
        if why is not None:
            log.error("stack: %s; restarting it", why)
            self._notes.append(f"the {why} since the last run; soak restarted it")
        else:
            log.info("stack: the config changed what runs; restarting it (%s)", reason)
        self.background.pause_now()
        await self._stop()
        if managed and old_target:
            self.metrics.count_gateway_restart(reason, target=old_target)
            self.restarts[reason] += 1
        await self._start(config)

    async def _recover(self, config: Config, why: str) -> None:
        """A process died: a gateway alone is started again on its port (a run in progress
        goes on against it); a dead mock takes the whole stack down and up."""
        stack = self.stack
        if (
            stack is None
            or stack.gateway is None
            or (stack.mock is not None and not stack.mock.alive)
        ):
            await self._restart(config, "crash", why)
            return
        log.error("stack: %s; restarting it", why)
        self._notes.append(f"the {why}; soak restarted it")
        self._unwatch()
        try:
            await stack.restart_gateway()
        except GatewayStartError as exc:  # retried by the monitor and at the next run
            raise StackError(f"gateway restart after a crash: {exc}") from None
        self._count("crash")

    def _count(self, reason: str) -> None:
        self.restarts[reason] += 1
        self.metrics.count_gateway_restart(reason, target=self.target)
        self._trend.reset()

    def _trend_window(self, config: Config) -> None:
        window = config.slo.memory.long_window
        if window != self._trend.window:
            self._trend = long_trend(window)

    async def _watch_loop(self) -> None:
        """1 Hz: keep the gateway's process watch on the live PID; restart a dead process."""
        while True:
            await asyncio.sleep(self.interval)
            try:
                await self._tick()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # a restart that fails is retried by the next run
                log.error("stack: %s", str(exc).splitlines()[0] if str(exc) else type(exc))

    async def _tick(self) -> None:
        if self.stack is None or self._config is None:
            return
        if self._dead() is not None and not self._lock.locked():
            async with self._lock:
                why = self._dead()
                if why is not None and self._config is not None:
                    await self._recover(self._config, why)
        pid = self.stack.gateway_pid() if self.stack is not None else None
        if pid != self._watched_pid:
            self._unwatch()
            if pid is not None:
                self._watch = ProcessWatch(pid, self.interval, on_sample=self._sample, keep=False)
                self._watch.start()
                self._watched_pid = pid

    def _unwatch(self) -> None:
        if self._watch is not None:
            self._watch.cancel()
        self._watch, self._watched_pid = None, None
        self._trend.reset()
        if self.target:
            self.metrics.set_memory_slope(None, target=self.target)

    def _sample(self, sample: Sample) -> None:
        target = self.target
        if not target:
            return
        self.metrics.gateway_sample(sample, target=target)
        self._trend.add(sample)
        slope = self._trend.slope()
        # Judged once the samples span half the window: a fresh process's start-up is no trend.
        if slope is not None and self._trend.span() >= self._trend.window * MIN_SPAN:
            self.metrics.set_memory_slope(slope, target=target)

    def long_slope(self) -> tuple[float | None, float]:
        """(bytes per second, seconds spanned) of the long-window trend so far."""
        return self._trend.slope(), self._trend.span()

    def long_slope_note(self, config: Config) -> str | None:
        """The long-window memory verdict as a line of the run report: the alert's figure
        (`soak_gateway_memory_slope_bytes_per_second`) where the run is read. None without
        samples (the gateway is not managed, or was just restarted)."""
        slope, spanned = self.long_slope()
        if slope is None:
            return None
        slo = config.slo.memory
        line = (f"gateway memory over the long window: {slope * 3600 / 2**20:+.1f} MB/h from"
                f" {spanned / 60:.0f} min of samples (window {span(slo.long_window)})")  # fmt: skip
        if spanned < slo.long_window * MIN_SPAN:
            return f"{line}; judged from {span(slo.long_window * MIN_SPAN)} of samples on"
        above = slope > slo.long_slope_bytes_per_second
        verdict = "ABOVE" if above else "within"
        return f"{line}, {verdict} the {slo.long_slope_mb_per_hour:g} MB/h limit"

    async def close(self, grace: float = 10.0) -> None:
        """Stop the background load, the monitor and the processes (the daemon is stopping),
        within about `grace` seconds: a process ignoring SIGTERM is SIGKILLed."""
        await self.background.close(bound=grace / 3)
        if self._monitor is not None:
            self._monitor.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._monitor
            self._monitor = None
        stack = self.stack
        if stack is not None:
            for proc in (stack.gateway, stack.mock):
                if proc is not None:
                    await proc.stop(grace=grace / 3)
        await self._stop()
