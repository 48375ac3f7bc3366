"""`soak run`: the long-running daemon. Composition root: registry, metrics, history,
scheduler and HTTP server, wired together; each scheduled run is one `run_plan`.

Lifecycle, Prometheus-exporter style: the config is validated then swapped on SIGHUP or
`POST /-/reload` (a bad file keeps the old config, sets `soak_config_last_reload_successful 0`
and says why); a reload never interrupts a run, the next run uses the new config. SIGTERM or
SIGINT: stop firing, tell the run to stop sending, let in-flight requests drain within
`server.grace` (cancel after that: the run's exit stack still stops the gateway and clears the
mock's faults), mark the run aborted, checkpoint the history, exit 0.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from soak import phases
from soak.config import ConfigError
from soak.config.daemon import BackgroundConfig, PlanConfig, split_listen
from soak.config.schema import Config
from soak.daemon_run import LogLines, PhaseMetricsFeed, release_memory, run_status
from soak.history import RunHistory
from soak.history_writer import HistoryWriter
from soak.logjson import mask
from soak.metric_catalogue import buckets_for_slo, check_thresholds_are_buckets
from soak.metrics import SoakMetrics, new_registry
from soak.once import new_run
from soak.phases import load_config
from soak.reports import render_json
from soak.reports.progress import Progress
from soak.runner import run_plan
from soak.scheduler import PlanScheduler, ScheduleError
from soak.selfwatch import SelfWatch
from soak.server import Controls, DaemonServer
from soak.summary import PhaseReport, RunReport
from soak.supervisor import StackSupervisor

log = logging.getLogger(__name__)


SELF_WATCH_WINDOW = 5.0
"""Seconds per reading of the daemon's own loop lag and CPU (soak_generator_* gauges)."""


class DaemonError(RuntimeError):
    """The daemon cannot start (address taken, data dir unusable): exit 1."""


@dataclass(frozen=True, slots=True)
class ConfigSource:
    """Where the config comes from, so a reload re-reads the same thing."""

    path: Path | None
    profile: str | None = None

    def load(self) -> Config:
        return load_config(self.path, profile=self.profile)


def _background(config: Config, plan: PlanConfig) -> BackgroundConfig | None:
    """The background load to keep up after a run of `plan`: its own, else the first plan's
    of the schedule that has one (a plan without any leaves the load of the schedule on)."""
    if plan.background is not None:
        return plan.background
    return next((p.background for p in config.daemon.schedule if p.background), None)


class Daemon:
    """One `soak run` process."""

    def __init__(
        self,
        source: ConfigSource,
        config: Config,
        *,
        listen: str | None = None,
        data_dir: Path | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.source, self.config, self._clock = source, config, clock
        srv = config.daemon.server
        self.listen = listen or srv.listen
        self.host, self.port = split_listen(self.listen)
        self.registry = new_registry()
        buckets = buckets_for_slo(phases.thresholds(config.slo))
        providers = (config.mock.primary, config.mock.fallback)
        self.metrics = SoakMetrics(self.registry, buckets=buckets, providers=providers)
        self.metrics.config_loaded(True, at=clock())
        self.history = RunHistory(data_dir or srv.data_dir, keep=srv.keep_runs)
        # Runs are written through this: a full or read-only disk never stops a run.
        self.records = HistoryWriter(self.history, on_error=self.metrics.count_history_write_error)
        self.scheduler = PlanScheduler(self._execute, self.metrics, clock=clock)
        # The mock and the managed gateway live as long as the daemon (restarts counted).
        self.stack = StackSupervisor(self.metrics)
        self.controls = Controls(
            registry=self.registry,
            history=self.history,
            not_ready=self._not_ready,
            reload=self.reload,
            reload_token=self._reload_token,
        )
        # Requests in progress get a tenth of the grace when the server stops (capped at 2 s).
        self.server = DaemonServer(self.controls, shutdown_timeout=min(2.0, srv.grace / 10))
        self._current: tuple[RunReport, asyncio.Event] | None = None
        self._stopping = False
        self._shutdown: asyncio.Event | None = None
        self._tasks: set[asyncio.Task[str | None]] = set()
        self._reloads = 0  # reloads begun; a slow one never swaps over a later one
        self._swapped = 0  # the number of the newest reload swapped in
        self.self_watch_window = SELF_WATCH_WINDOW

    def _not_ready(self) -> str | None:
        """Why /-/ready answers 503: stopping, not started, or no plan will ever run."""
        if self._stopping:
            return "the daemon is stopping"
        if not self.scheduler.started:
            return "the scheduler has not started"
        if self.scheduler.running is None and not self.scheduler.scheduled():
            return "no plan is scheduled (see the last config reload)"
        return None

    def _reload_token(self) -> str | None:
        token = self.config.daemon.server.reload_token
        return None if token is None else token.reveal()

    async def run(self, on_listening: Callable[[str, int], None] = lambda _h, _p: None) -> int:
        """Serve and schedule until SIGTERM / SIGINT; returns the exit code (0)."""
        self._shutdown = asyncio.Event()
        try:
            self.scheduler.check(self.config.daemon.schedule)
        except ScheduleError as err:
            self.history.close()
            raise DaemonError(f"config: {err}") from None
        aborted = self.records.recover()
        if aborted:
            log.warning("%d run(s) left running by a previous daemon marked aborted", aborted)
        try:
            port = await self.server.start(self.host, self.port)
        except OSError as err:
            self.history.close()
            raise DaemonError(f"cannot listen on {self.listen}: {err.strerror or err}") from None
        self.scheduler.start(self.config.daemon.schedule)
        log.info("listening on http://%s:%d", self.host, port, extra={"listen": self.listen})
        on_listening(self.host, port)
        watch = asyncio.create_task(self._watch_self(), name="selfwatch")
        with self._signals():
            await self._shutdown.wait()
        watch.cancel()
        await self._stop()
        return 0

    async def _watch_self(self) -> None:
        """The daemon's own event-loop lag and CPU share, per window, into the generator
        gauges: live, idle or not (a starved tester skews every figure it exports)."""
        while True:
            watch = SelfWatch(interval=0.1)
            watch.start()
            try:
                await asyncio.sleep(self.self_watch_window)
            finally:
                reading = await watch.stop()
            self.metrics.set_generator(loop_lag_s=reading.loop_lag_max, cpu_ratio=reading.cpu_ratio)
            self.records.retry()  # runs held back by a full disk land once it takes writes

    def request_stop(self) -> None:
        if self._shutdown is not None:
            self._shutdown.set()

    async def _stop(self) -> None:
        self._stopping = True
        grace = self.config.daemon.server.grace
        log.info("stopping: draining within %gs", grace)
        self.scheduler.pause()
        if self._current is not None:
            self._current[1].set()  # stop sending; in-flight requests drain
        # Leave a fifth of the grace for cleanup after a cancelled run (gateway stop, faults).
        if not await self.scheduler.drain(grace * 0.8):
            log.warning("run did not drain within %gs: cancelled", grace * 0.8)
        self.scheduler.shutdown()
        await self.stack.close(grace * 0.15)  # background, monitor, gateway and mock (by PID)
        await self.server.stop()
        self.records.close()
        log.info("stopped")

    @contextlib.contextmanager
    def _signals(self):  # type: ignore[no-untyped-def]
        loop = asyncio.get_running_loop()
        handlers = {
            signal.SIGTERM: self.request_stop,
            signal.SIGINT: self.request_stop,
            signal.SIGHUP: self._reload_soon,
        }
        installed = []
        for sig, handler in handlers.items():
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(sig, handler)
                installed.append(sig)
        try:
            yield
        finally:
            for sig in installed:
                loop.remove_signal_handler(sig)

    def _reload_soon(self) -> None:
        task = asyncio.get_running_loop().create_task(self.reload())
        self._tasks.add(task)  # a strong reference until it is done
        task.add_done_callback(self._tasks.discard)

    async def reload(self) -> str | None:
        """Validate everything the new config will do (its file, its SLO buckets, its plans on
        a scratch scheduler), then swap; None on success, else the one-line reason the old
        config and plans stay."""
        self._reloads += 1
        number = self._reloads
        try:
            new = await self._read_config()
            if new is None:
                return "reload abandoned: the daemon is stopping"
            self.scheduler.check(new.daemon.schedule)
            check_thresholds_are_buckets(self.metrics.buckets, phases.thresholds(new.slo))
            if number < self._swapped:
                return "superseded by a later reload"
            old, self.config = self.config, new
            try:
                self.scheduler.set_plans(new.daemon.schedule)  # builds every job before a change
            except ScheduleError:
                self.config = old
                raise
        except (ConfigError, ScheduleError) as err:
            return self._reload_failed(mask(str(err)))
        except ValueError as err:
            return self._reload_failed(
                f"{mask(str(err))} (new SLO thresholds need new histogram buckets: "
                "restart the daemon)"
            )
        except Exception as err:  # a bug must not leave the daemon half-swapped or silent
            return self._reload_failed(mask(f"{type(err).__name__}: {err}".splitlines()[0]))
        self._swapped = number
        self.metrics.set_providers((new.mock.primary, new.mock.fallback))
        if old.gateway.name != new.gateway.name:
            self.metrics.forget_target(old.gateway.name)  # a renamed target leaves no series
        self.metrics.config_loaded(True, at=self._clock())
        log.info("config reloaded (%d plan(s))", len(new.daemon.schedule))
        return None

    def _reload_failed(self, problem: str) -> str:
        self.metrics.config_loaded(False, at=self._clock())
        log.error("config reload failed, keeping the old config: %s", problem)
        return problem

    async def _read_config(self) -> Config | None:
        """`source.load()` in a daemon thread, abandoned (never joined) when the daemon stops:
        None then. A read that hangs (a FIFO, a stalled network mount) must not hold SIGTERM
        past the grace, as a worker of asyncio's default executor would at exit."""
        loop = asyncio.get_running_loop()
        done: asyncio.Future[Config] = loop.create_future()

        def deliver(ok: bool, value: object) -> None:
            if not done.done():  # cancelled when abandoned
                if ok:
                    done.set_result(value)  # type: ignore[arg-type]
                else:
                    done.set_exception(value)  # type: ignore[arg-type]

        def work() -> None:
            try:
                outcome: tuple[bool, object] = (True, self.source.load())
            except Exception as exc:
                outcome = (False, exc)
            with contextlib.suppress(RuntimeError):  # the loop has closed: nobody waits
                loop.call_soon_threadsafe(deliver, *outcome)

        threading.Thread(target=work, name="soak-reload", daemon=True).start()
        if self._shutdown is None:  # not serving (tests): nothing to abandon it for
            return await done
        stopping = asyncio.ensure_future(self._shutdown.wait())
        try:
            await asyncio.wait({done, stopping}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopping.cancel()
        if not done.done():
            done.cancel()
            log.warning("config reload abandoned: the daemon is stopping")
            return None
        return done.result()

    async def _execute(self, plan: PlanConfig) -> str:
        """One scheduled run of `plan` with the config of the moment; returns its status."""
        config = self.config
        run = new_run(config)
        ctx = {"run_id": run.run_id, "plan": plan.name}
        stop = asyncio.Event()
        self._current = (run, stop)
        self.records.start(run.run_id, plan.name, run.started_at)
        log.info("run started: %s", ", ".join(plan.phases), extra=ctx)
        feed = PhaseMetricsFeed(self.metrics, config.gateway.name)

        def on_phase(report: PhaseReport) -> None:
            feed.phase_done(report)
            self.records.update(run.run_id, render_json(run))
            log.info("phase %s: %s", report.name, report.status.value,
                     extra={**ctx, "phase": report.name})  # fmt: skip

        reason = None
        try:
            await run_plan(
                config,
                run,
                plan.phases,
                progress=Progress(stream=LogLines(run.run_id), tty=False, interval=30.0),
                stop=stop,
                on_phase=on_phase,
                observe=feed.observe,
                supervisor=self.stack,  # samples the gateway continuously, not per phase
                background=_background(config, plan),
            )
        except asyncio.CancelledError:
            run.aborted, reason = True, "daemon stopping: the run did not drain in time"
            raise
        except Exception as exc:  # a bug in a phase must not kill the daemon
            run.error = mask(f"{type(exc).__name__}: {exc}".splitlines()[0])
            log.exception("run failed", extra=ctx)
        finally:
            feed.end()
            if config.gateway.name != self.config.gateway.name:  # renamed while this ran
                self.metrics.forget_target(config.gateway.name)
            run.finished_at = time.time()
            status = run_status(run)
            if status == "aborted":
                reason = reason or ("daemon stopping (SIGTERM)" if self._stopping else "stopped")
            elif status == "error":
                reason = run.error
            self.records.finish(run.run_id, status, finished_at=run.finished_at,
                                report_json=render_json(run), reason=reason)  # fmt: skip
            self._current = None
            release_memory()
            log.info("run finished", extra={**ctx, "status": status})
        return status
