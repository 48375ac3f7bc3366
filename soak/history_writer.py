"""`HistoryWriter`: the daemon's writes to the run history, which never stop a run.

A disk that refuses a write (full, read-only) must not stop the soak: the run is measured and
exported as usual, its row (status, report) is kept in memory and written whole by the next
write that succeeds (a later run's, or `retry()`, which the daemon calls every few seconds), so
no row stays `running` once the disk takes writes again. One error line per outage names why
("disk full", "read-only"), one info line says when it ended; every refused write goes to
`on_error(reason)` (the `soak_history_write_errors_total` counter). At most `max_pending`
finished runs wait: older ones are dropped with a warning (their metrics were exported).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

from soak.history import HistoryUnavailable, RunHistory

log = logging.getLogger(__name__)

MAX_PENDING = 20
"""Finished runs kept in memory while the history refuses writes (each holds its report)."""


@dataclass(slots=True)
class _Row:
    """What the history should hold for one run; `dirty` until written."""

    plan: str
    started_at: float
    status: str = "running"
    report_json: str | None = None
    finished_at: float | None = None
    reason: str | None = None
    dirty: bool = True


class HistoryWriter:
    """Start, update and finish runs in `history`; never raises `HistoryUnavailable`.

    `on_error(None)` is called once at construction (a metric can expose its series at 0),
    then `on_error(reason)` for every refused write.
    """

    def __init__(
        self,
        history: RunHistory,
        *,
        on_error: Callable[[str | None], None] = lambda _reason: None,
        max_pending: int = MAX_PENDING,
    ) -> None:
        self.history, self.max_pending = history, max_pending
        self._on_error = on_error
        self._rows: dict[str, _Row] = {}
        self._recover = False
        self._recovered = 0
        self.outage: str | None = None
        """Why the history refuses writes (e.g. "disk full: <path>"), None while it takes them."""
        on_error(None)

    @property
    def pending(self) -> int:
        """Writes waiting for the disk: runs not (fully) recorded, and the startup recovery."""
        return sum(row.dirty for row in self._rows.values()) + self._recover

    def recover(self) -> int | None:
        """Mark runs a previous daemon left `running` as aborted: how many, or None when the
        disk refused (then done before any later write, so it never aborts a newer run)."""
        self._recover = True
        self._flush()
        return None if self._recover else self._recovered

    def start(self, run_id: str, plan: str, started_at: float) -> None:
        self._rows[run_id] = _Row(plan, started_at)
        self._flush()

    def update(self, run_id: str, report_json: str) -> None:
        """The report so far of a running run (after each phase)."""
        row = self._rows.get(run_id)
        if row is not None:
            row.report_json, row.dirty = report_json, True
            self._flush()

    def finish(
        self,
        run_id: str,
        status: str,
        *,
        finished_at: float,
        report_json: str | None = None,
        reason: str | None = None,
    ) -> None:
        """The end of a run; written now, or kept until the history takes writes again."""
        row = self._rows.get(run_id)
        if row is None:
            return
        row.status, row.finished_at, row.reason, row.dirty = status, finished_at, reason, True
        if report_json is not None:
            row.report_json = report_json
        self._flush()
        if row.dirty:
            log.warning("run %s (%s) not recorded yet: kept in memory until the run history "
                        "takes writes (%d pending)", run_id, status, self.pending)  # fmt: skip
            self._bound()

    def retry(self) -> bool:
        """Write what is pending, if anything; True when nothing is left."""
        if self.pending:
            self._flush()
        return not self.pending

    def close(self) -> None:
        """Last attempt at what is pending (say what is lost), then close the history."""
        if not self.retry():
            log.error("run history %s: %d run(s) not recorded at exit", self.outage,
                      sum(row.dirty for row in self._rows.values()))  # fmt: skip
        self.history.close()

    def _flush(self) -> None:
        written = 0
        try:
            if self._recover:
                self._recovered = self.history.recover()
                self._recover = False
            for run_id, row in list(self._rows.items()):
                if row.dirty:
                    self.history.save(
                        run_id, row.plan, row.started_at, row.status,
                        report_json=row.report_json, finished_at=row.finished_at,
                        reason=row.reason,
                    )  # fmt: skip
                    row.dirty = False
                    written += row.status != "running"
                if row.status != "running":
                    del self._rows[run_id]
        except HistoryUnavailable as err:
            self._on_error(err.reason)
            if self.outage != str(err):
                log.error("run history %s: runs are still measured and exported, and recorded "
                          "once it takes writes again", err)  # fmt: skip
                self.outage = str(err)
            return
        if self.outage is not None:
            log.info("run history takes writes again (was %s): %d held run(s) recorded",
                     self.outage, written)  # fmt: skip
            self.outage = None

    def _bound(self) -> None:
        waiting = [rid for rid, row in self._rows.items() if row.dirty and row.status != "running"]
        for run_id in waiting[: max(0, len(waiting) - self.max_pending)]:
            del self._rows[run_id]
            log.warning("run %s dropped unrecorded: more than %d runs wait for the run "
                        "history (%s)", run_id, self.max_pending, self.outage)  # fmt: skip
