"""The daemon's own series on `SoakMetrics`: the gateway process it watches and restarts, the
tester's health, the scheduler's plans, config reloads and history writes.

A mixin of `SoakMetrics` (the one writer of every `soak_*` series), kept apart from what phase
reports and requests feed so each file holds one kind of series. Label values are checked
against the catalogue's bounded vocabulary (`label_value`).
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from soak.metric_catalogue import (
    GEN_CPU,
    GEN_LAG,
    GW_CPU,
    GW_FDS,
    GW_MEMORY_SLOPE,
    GW_RESTARTS,
    GW_RSS,
    GW_THREADS,
    HISTORY_WRITE_ERRORS,
    PLAN_LAST_RUN,
    PLAN_NEXT_RUN,
    PLAN_RUNS,
    RELOAD_OK,
    RELOAD_TS,
    SCHED_MISSED,
    SCHED_SKIPPED,
    MetricSpec,
)
from soak.metric_catalogue import label_value as _label

if TYPE_CHECKING:
    from soak.procwatch import Sample


class DaemonSeries:
    """What the daemon writes between and around runs (see the module docstring)."""

    def __getitem__(self, spec: MetricSpec) -> Any:  # SoakMetrics: the prometheus object
        raise NotImplementedError

    def set_gateway_process(
        self, *, target: str, rss_bytes: float, cpu_ratio: float, open_fds: int, threads: int
    ) -> None:
        """One sample of the watched gateway process."""
        target = _label("target", target)
        for spec, value in ((GW_RSS, rss_bytes), (GW_CPU, cpu_ratio), (GW_FDS, open_fds)):
            self[spec].labels(target).set(value)
        self[GW_THREADS].labels(target).set(threads)

    def count_gateway_restart(self, reason: str, *, target: str) -> None:
        """The daemon restarted the managed gateway (`reason`: crash, reload or phase)."""
        self[GW_RESTARTS].labels(_label("target", target), reason).inc()

    def init_gateway_restarts(self, *, target: str, reasons: Sequence[str]) -> None:
        """Expose the restart counters at 0 once the daemon manages a gateway."""
        for reason in reasons:
            self[GW_RESTARTS].labels(_label("target", target), reason)

    def set_memory_slope(self, bytes_per_second: float | None, *, target: str) -> None:
        """The long-window RSS slope of the gateway (the long-window memory verdict's figure);
        None removes the series (a new process: no trend to judge yet)."""
        if bytes_per_second is None:
            with contextlib.suppress(KeyError):
                self[GW_MEMORY_SLOPE].remove(_label("target", target))
            return
        self[GW_MEMORY_SLOPE].labels(_label("target", target)).set(bytes_per_second)

    def set_generator(self, *, loop_lag_s: float, cpu_ratio: float) -> None:
        """The tester's own health, from its self-watch."""
        self[GEN_LAG].set(loop_lag_s)
        self[GEN_CPU].set(cpu_ratio)

    def init_plan(self, plan: str) -> None:
        """Expose a plan's scheduler counters at 0 before anything is missed or skipped."""
        self[SCHED_MISSED].labels(_label("plan", plan))
        self[SCHED_SKIPPED].labels(plan)

    def count_missed_run(self, plan: str) -> None:
        """A scheduled run that did not start (misfire grace exceeded, daemon busy)."""
        self[SCHED_MISSED].labels(_label("plan", plan)).inc()

    def count_skipped_run(self, plan: str) -> None:
        """A scheduled run skipped because the previous run of its plan was still going."""
        self[SCHED_SKIPPED].labels(_label("plan", plan)).inc()

    def config_loaded(self, success: bool, *, at: float) -> None:
        """Result of a config (re)load; `at` is Unix time."""
        self[RELOAD_OK].set(1 if success else 0)
        if success:
            self[RELOAD_TS].set(at)

    def forget_plan(self, plan: str) -> None:
        """A plan left the schedule (reload): drop its next/last-run timestamps."""
        for spec in (PLAN_NEXT_RUN, PLAN_LAST_RUN):
            with contextlib.suppress(KeyError):  # never set: nothing to drop
                self[spec].remove(plan)

    def set_plan_next_run(self, plan: str, at: float) -> None:
        """When a plan is next due (Unix time)."""
        self[PLAN_NEXT_RUN].labels(plan).set(at)

    def count_plan_run(self, plan: str, status: str, *, at: float) -> None:
        """A scheduled run of `plan` ended with `status` at `at` (Unix time)."""
        self[PLAN_RUNS].labels(plan, status).inc()
        self[PLAN_LAST_RUN].labels(plan).set(at)

    def gateway_sample(self, sample: Sample, *, target: str) -> None:
        """A live 1 Hz sample of the gateway process while a phase watches it."""
        self.set_gateway_process(
            target=target,
            rss_bytes=sample.rss,
            cpu_ratio=(sample.cpu_percent or 0.0) / 100.0,
            open_fds=sample.fds,
            threads=sample.threads,
        )

    def count_history_write_error(self, reason: str | None) -> None:
        """A run-history write the disk refused (`reason`: disk_full, read_only, other);
        None only exposes the three series at 0, so increase() sees the first refusal."""
        for known in ("disk_full", "read_only", "other"):
            self[HISTORY_WRITE_ERRORS].labels(known)
        if reason is not None:
            known = reason if reason in ("disk_full", "read_only") else "other"
            self[HISTORY_WRITE_ERRORS].labels(known).inc()
