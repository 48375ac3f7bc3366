"""Around one scheduled run of the daemon: its progress lines as log records, the feed of its
results and phase reports into the metrics, its history status, and the heap handed back after.

`soak.daemon` (the composition root) wires these around each `run_plan`.
"""

from __future__ import annotations

import ctypes
import gc
import logging
import time
from collections.abc import Callable

from soak import phases
from soak.metrics import SoakMetrics
from soak.phases.spec import split_round
from soak.results import Result
from soak.summary import PhaseReport, RunReport

log = logging.getLogger("soak.daemon")  # the daemon's own records, as before the split


class LogLines:
    """A text stream for `Progress` that turns its lines into INFO log records."""

    def __init__(self, run_id: str) -> None:
        self.run_id = run_id

    def write(self, text: str) -> int:
        for line in text.splitlines():
            if line.strip():
                log.info(line.strip(), extra={"run_id": self.run_id})
        return len(text)

    def flush(self) -> None:
        pass

    def isatty(self) -> bool:
        return False


def _spec(name: str) -> phases.PhaseSpec | None:
    """The registered phase called `name` (None for a round name such as a warm-up)."""
    return phases.get(name) if name in phases.names() else None


class PhaseMetricsFeed:
    """Feeds one run's results and phase reports into the metrics; tracks the running phase."""

    def __init__(self, metrics: SoakMetrics, target: str) -> None:
        self.metrics, self.target, self.phase = metrics, target, ""

    def observe(self, result: Result, name: str) -> None:
        phase, _round = split_round(name)  # series are per phase; rounds add up in them
        if phase != self.phase:
            self.end()
            spec = _spec(phase)
            self.metrics.bind(
                target=self.target, phase=phase, histograms=spec.histograms if spec else ()
            )
            self.metrics.set_phase_running(True, target=self.target, phase=phase)
            self.phase = phase
        self.metrics.observe(result, target=self.target, phase=phase)

    def phase_done(self, report: PhaseReport) -> None:
        phases.record(report, self.metrics, target=self.target, finished_at=time.time())
        if report.kind == self.phase:  # the next round observes as a new start
            self.phase = ""

    def end(self) -> None:
        if self.phase:
            self.metrics.set_phase_running(False, target=self.target, phase=self.phase)
            self.phase = ""


def _libc_trim() -> Callable[[int], int] | None:
    try:
        return ctypes.CDLL("libc.so.6").malloc_trim  # type: ignore[no-any-return]
    except (OSError, AttributeError):  # not glibc (musl, macOS): nothing to trim
        return None


_MALLOC_TRIM = _libc_trim()


def release_memory() -> None:
    """After a run: collect cycles and hand freed heap pages back to the OS (glibc).

    A run allocates and frees tens of MB (results, sessions, JSON); glibc keeps freed pages
    in its arenas, so without a trim the daemon's RSS climbs run after run although nothing
    leaks (bench/bench_daemon.py: +170% over 200 runs without the trim, under +1% with it),
    which would hide a real leak and trip memory alerts on the tester itself."""
    gc.collect()
    if _MALLOC_TRIM is not None:
        _MALLOC_TRIM(0)


def run_status(run: RunReport) -> str:
    """History status of a finished run."""
    if run.aborted:
        return "aborted"
    if run.error:
        return "error"
    return "passed" if run.passed else "failed"
