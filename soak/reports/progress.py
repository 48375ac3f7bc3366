"""Live progress while phases run: a redrawn bar on a terminal, plain lines in CI logs.

`update` is called often from the load loop, so it only compares the clock until the output
interval has passed. On a TTY one line is redrawn with `\\r`; elsewhere (CI logs, files) plain
lines like the seed's `Progress: 100 requests sent, 95 completed, 15.8 RPS` appear at most
every `interval` seconds, so a long soak does not flood the log.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import TextIO

from soak.reports.formatting import (
    key_figures,
    one_line,
    overall_word,
    reasons_text,
    status_word,
    untrusted_phases,
)
from soak.summary import PhaseReport, RunReport

TTY_INTERVAL = 0.2
PLAIN_INTERVAL = 10.0
_BAR = 24


class Progress:
    """Progress reporter for one `soak once` run; time comes from `clock` so tests need no sleep."""

    def __init__(
        self,
        stream: TextIO | None = None,
        tty: bool | None = None,
        clock: Callable[[], float] = time.monotonic,
        interval: float | None = None,
    ) -> None:
        self.stream = stream if stream is not None else sys.stderr
        if tty is None:
            isatty = getattr(self.stream, "isatty", None)
            tty = bool(isatty()) if callable(isatty) else False
        self.tty = tty
        self.clock = clock
        default = TTY_INTERVAL if tty else PLAIN_INTERVAL
        self.interval = default if interval is None else interval
        self._name = ""
        self._expected = 0
        self._duration = 0.0
        self._started = clock()
        self._last = self._started
        self._width = 0
        self._counts = (0, 0, 0)

    def _write(self, text: str) -> None:
        self.stream.write(text)
        self.stream.flush()

    def _clear_bar(self) -> None:
        if self.tty and self._width:
            self._write("\r" + " " * self._width + "\r")
            self._width = 0

    def phase_started(self, name: str, expected_requests: int, duration: float) -> None:
        """A phase begins: print its plan and restart the rate clock."""
        self._clear_bar()
        self._name = one_line(name, 60)
        self._expected = max(int(expected_requests), 0)
        self._duration = max(float(duration), 0.0)
        self._started = self._last = self.clock()
        self._counts = (0, 0, 0)
        rate = f", {self._expected / self._duration:.1f} RPS" if self._duration > 0 else ""
        plan = f"~{self._expected} requests over {self._duration:.0f}s{rate}"
        self._write(f"=== {self._name}: {plan} ===\n")

    def update(self, sent: int, completed: int, failed: int) -> None:
        """Counts so far in this phase: sent, completed (ok, as `PhaseReport.completed`), failed.

        RPS is completed per second since the phase started (the seed's throughput figure).
        """
        self._counts = (sent, completed, failed)
        now = self.clock()
        if now - self._last < self.interval:
            return
        self._last = now
        elapsed = now - self._started
        rps = completed / elapsed if elapsed > 0 else 0.0
        if self.tty:
            self._draw(sent, completed, failed, rps, elapsed)
        else:
            self._write(
                f"  Progress: {sent} requests sent, {completed} completed, {failed} failed, "
                f"{rps:.1f} RPS\n"
            )

    def _draw(self, sent: int, completed: int, failed: int, rps: float, elapsed: float) -> None:
        if self._expected:
            done = sent / self._expected
        elif self._duration:
            done = elapsed / self._duration
        else:
            done = 0.0
        done = min(max(done, 0.0), 1.0)
        filled = int(done * _BAR)
        bar = "#" * filled + "-" * (_BAR - filled)
        line = (
            f"{self._name} [{bar}] {done * 100:3.0f}% {sent} sent, {completed} completed, "
            f"{failed} failed, {rps:.1f} RPS, {elapsed:.0f}/{self._duration:.0f}s"
        )
        pad = max(self._width - len(line), 0)
        self._write("\r" + line + " " * pad)
        self._width = len(line)

    def phase_finished(self, report: PhaseReport) -> None:
        """One line with the phase's verdict and key figures."""
        self._clear_bar()
        word = status_word(report.status)
        self._write(f"{word} {report.name}: {key_figures(report)} ({report.duration_s:.1f}s)\n")

    def run_finished(self, run: RunReport) -> None:
        """The overall verdict, with a loud line for any untrusted phase."""
        self._clear_bar()
        tally: dict[str, int] = {}
        for phase in run.phases:
            word = status_word(phase.status)
            tally[word] = tally.get(word, 0) + 1
        counts = ", ".join(f"{n} {word}" for word, n in tally.items()) or "no phases"
        self._write(f"Overall: {overall_word(run)} ({counts}), run {run.run_id}\n")
        if run.error:
            self._write(f"  Run error: {one_line(run.error)}\n")
        for phase in untrusted_phases(run):
            reasons = reasons_text(phase.generator)
            self._write(f"  WARNING untrusted results in {phase.name}: {one_line(reasons)}\n")
