"""`soak once`: run the phase plan once and write the reports.

Reports are rewritten after every phase, so an interrupted or failed run still leaves what it
measured. SIGINT / SIGTERM stop the sending; in-flight requests drain; faults are cleared.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import signal
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

from soak.baseline import compare_runs
from soak.config.schema import Config
from soak.phases import PlanError
from soak.phases import markdown_sections as phase_sections
from soak.phases import select as select_phases
from soak.reports import FILES, ReportWriteError, StepSummary, write_reports
from soak.reports.progress import Progress
from soak.runner import run_plan
from soak.stack import bind_problem
from soak.summary import RunReport

log = logging.getLogger(__name__)


class OnceError(Exception):
    """`soak once` could not run as asked (usage: exit 2)."""

    def __init__(self, message: str, exit_code: int = 2) -> None:
        super().__init__(message)
        self.exit_code = exit_code


def new_run_id(now: float | None = None) -> str:
    """A short, sortable, label-safe run id: base-36 seconds plus random hex."""
    seconds = int(time.time() if now is None else now)
    digits = "0123456789abcdefghijklmnopqrstuvwxyz"
    stamp = ""
    while seconds:
        seconds, rem = divmod(seconds, 36)
        stamp = digits[rem] + stamp
    return f"{stamp or '0'}-{secrets.token_hex(3)}"


def new_run(config: Config) -> RunReport:
    """An empty run of `config`'s gateway, started now (soak once and the daemon)."""
    return RunReport(
        run_id=new_run_id(),
        started_at=time.time(),
        finished_at=0.0,
        target=config.gateway.name,
        kind=config.gateway.kind,
        profile=config.profile,
    )


async def run_once(
    config: Config,
    *,
    out_dir: Path | None = None,
    only: Sequence[str] | None = None,
    progress: Progress | None = None,
    baseline: tuple[RunReport, str] | None = None,
    repeat: int | None = None,
) -> tuple[RunReport, dict[str, Path]]:
    """Run the selected phases once; return the run and the report files written.

    `baseline` (a previous run's report and where it came from): the finished run is compared
    with it under `slo.regression`, and a regression beyond tolerance fails the run. The phases
    `slo.regression` gates run `repeat` times (default: its `runs`), here and in the baseline's
    run alike, so each side of a comparison has runs to judge the least disturbed of."""
    if only is not None and not all(name.strip() for name in only):
        raise OnceError(f"--phases: an empty phase name in {','.join(only)!r} (e.g. --phases "
                        "calibration,overhead; leave --phases out to run them all)")  # fmt: skip
    try:
        names = select_phases(only)
    except PlanError as exc:
        raise OnceError(f"--phases: {exc}") from None
    out = Path(out_dir or config.report.out)
    preflight(config, out, "--out" if out_dir is not None else "report.out")
    sections = phase_sections()
    progress = progress or Progress()
    run = new_run(config)
    stop = asyncio.Event()
    summary = StepSummary.from_env()  # one part of $GITHUB_STEP_SUMMARY, rewritten in place

    def partial(_report: object) -> None:
        try:
            write_reports(run, out, sections=sections, summary=summary, final=False)
        except (ReportWriteError, OSError) as exc:  # the run goes on; the final write says it
            log.warning("partial reports not written: %s", exc)

    rules = config.slo.regression
    times = rules.runs if repeat is None else repeat
    repeats = {name: times for name in rules.phases}
    with _signals(stop):
        await run_plan(config, run, names, progress=progress, stop=stop, on_phase=partial,
                       repeats=repeats)  # fmt: skip
    run.finished_at = time.time()
    if baseline is not None:
        run.comparison = compare_runs(baseline[0], run, config.slo.regression, source=baseline[1])
    paths = write_reports(run, out, sections=sections, summary=summary)
    progress.run_finished(run)
    return run, paths


def preflight(config: Config, out: Path, key: str) -> None:
    """What a run will write or bind, checked before any load: the report directory is created
    and takes a test write, no report file's name is taken by a directory, the step summary
    opens for writing, a configured mock port is free. OnceError naming the key otherwise."""
    try:
        if out.exists() and not out.is_dir():
            raise NotADirectoryError(0, "it is a file, not a directory")
        out.mkdir(parents=True, exist_ok=True)
        probe = out / f".soak-write-test-{os.getpid()}"
        fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.write(fd, b"ok\n")
            os.fsync(fd)
        finally:
            os.close(fd)
            probe.unlink(missing_ok=True)
        for name, _render in FILES.values():
            if (out / name).is_dir():
                raise IsADirectoryError(0, f"{name} there is a directory")
    except OSError as exc:
        raise OnceError(f"{key} {out}: cannot write reports: {exc.strerror or exc}") from None
    summary = os.environ.get("GITHUB_STEP_SUMMARY")
    if summary:
        try:
            os.close(os.open(summary, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o666))
        except OSError as exc:
            raise OnceError(
                f"GITHUB_STEP_SUMMARY {summary}: cannot write: {exc.strerror or exc}"
            ) from None
    port = config.mock.port
    if config.mock.url is None and port is not None and (problem := bind_problem(port)):
        raise OnceError(f"mock.port {port}: {problem}")


@contextlib.contextmanager
def _signals(stop: asyncio.Event) -> Iterator[None]:
    """SIGINT / SIGTERM set `stop` (the engine stops sending and drains) instead of killing us."""
    loop = asyncio.get_running_loop()
    installed = []
    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            loop.add_signal_handler(sig, stop.set)
            installed.append(sig)
        except (NotImplementedError, RuntimeError):
            pass
    try:
        yield
    finally:
        for sig in installed:
            loop.remove_signal_handler(sig)
