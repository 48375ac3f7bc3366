"""The daemon's run history: one SQLite file (WAL) in the data dir that survives restarts.

A run is written when it starts (`running`), its report after every phase, and its end status
(passed, failed, aborted, error). At startup a run still `running` was cut off by a crash or
kill: it becomes `aborted` with the reason "daemon restarted". A file SQLite cannot read is
moved aside as `history.db.corrupt-<unix time>` with a warning and a fresh one is started: a
broken history must never stop the soak. Retention keeps the newest `keep` runs.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

FILE_NAME = "history.db"
STATUSES = ("running", "passed", "failed", "aborted", "error")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    id TEXT PRIMARY KEY,
    plan TEXT NOT NULL,
    started_at REAL NOT NULL,
    finished_at REAL,
    status TEXT NOT NULL,
    reason TEXT,
    report TEXT
);
CREATE INDEX IF NOT EXISTS runs_started ON runs (started_at);
"""
_COLUMNS = "id, plan, started_at, finished_at, status, reason"


class HistoryError(RuntimeError):
    """The data dir cannot hold a history (not a directory, no permission)."""


class RunHistory:
    """Runs in `data_dir/history.db`, newest first on read; `keep` newest are retained."""

    def __init__(
        self, data_dir: Path, *, keep: int = 500, clock: Callable[[], float] = time.time
    ) -> None:
        self.path = Path(data_dir) / FILE_NAME
        self.keep = keep
        self._clock = clock
        self.set_aside: Path | None = None
        """Where a corrupt file was moved at open, if it was."""
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            why = "not a directory" if isinstance(err, FileExistsError) else err.strerror or err
            raise HistoryError(f"data dir {self.path.parent}: {why}") from None
        self._db = self._open()

    def _open(self) -> sqlite3.Connection:
        try:
            return self._connect()
        except sqlite3.DatabaseError as err:
            if isinstance(err, sqlite3.OperationalError) and not self.path.exists():
                raise HistoryError(f"{self.path}: {err}") from None
            self.set_aside = self.path.with_name(f"{FILE_NAME}.corrupt-{int(self._clock())}")
            log.warning("run history %s unreadable (%s): moved to %s, starting a fresh one",
                        self.path, err, self.set_aside.name)  # fmt: skip
            self.path.rename(self.set_aside)
            for suffix in ("-wal", "-shm"):
                side = self.path.with_name(FILE_NAME + suffix)
                if side.exists():
                    side.rename(self.set_aside.with_name(self.set_aside.name + suffix))
            return self._connect()

    def _connect(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        try:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
            check = db.execute("PRAGMA quick_check").fetchone()
            if not check or check[0] != "ok":
                raise sqlite3.DatabaseError(f"integrity check: {check[0] if check else 'none'}")
            db.executescript(_SCHEMA)
        except BaseException:
            db.close()
            raise
        return db

    def recover(self) -> int:
        """Mark runs left `running` by a previous daemon as aborted; return how many."""
        cur = self._db.execute(
            "UPDATE runs SET status = 'aborted', reason = 'daemon restarted', "
            "finished_at = COALESCE(finished_at, started_at) WHERE status = 'running'"
        )
        return cur.rowcount

    def start(self, run_id: str, plan: str, started_at: float) -> None:
        self._db.execute(
            "INSERT INTO runs (id, plan, started_at, status) VALUES (?, ?, ?, 'running')",
            (run_id, plan, started_at),
        )

    def update(self, run_id: str, report_json: str) -> None:
        """Store the report so far (after each phase) of a running run."""
        self._db.execute("UPDATE runs SET report = ? WHERE id = ?", (report_json, run_id))

    def finish(
        self,
        run_id: str,
        status: str,
        *,
        finished_at: float,
        report_json: str | None = None,
        reason: str | None = None,
    ) -> None:
        """Record the end of a run, then drop runs beyond the retention."""
        if status not in STATUSES[1:]:
            raise ValueError(f"unknown run status {status!r}")
        self._db.execute(
            "UPDATE runs SET status = ?, finished_at = ?, reason = ?, "
            "report = COALESCE(?, report) WHERE id = ?",
            (status, finished_at, reason, report_json, run_id),
        )
        self._db.execute(
            "DELETE FROM runs WHERE id NOT IN "
            "(SELECT id FROM runs ORDER BY started_at DESC, rowid DESC LIMIT ?)",
            (self.keep,),
        )

    def runs(self, limit: int = 50) -> list[dict[str, Any]]:
        """The newest `limit` runs without reports."""
        rows = self._db.execute(
            f"SELECT {_COLUMNS} FROM runs ORDER BY started_at DESC, rowid DESC LIMIT ?", (limit,)
        ).fetchall()
        return [_row(r) for r in rows]

    def get(self, run_id: str) -> dict[str, Any] | None:
        """One run with its report (parsed JSON, or None before its first phase ended)."""
        row = self._db.execute(
            f"SELECT {_COLUMNS}, report FROM runs WHERE id = ?", (run_id,)
        ).fetchone()
        if row is None:
            return None
        run = _row(row[:6])
        try:
            run["report"] = None if row[6] is None else json.loads(row[6])
        except ValueError:
            run["report"] = None
        return run

    def count(self) -> int:
        return int(self._db.execute("SELECT COUNT(*) FROM runs").fetchone()[0])

    def close(self) -> None:
        """Checkpoint the WAL into the main file and close."""
        try:
            self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        except sqlite3.Error as err:
            log.warning("run history checkpoint failed: %s", err)
        self._db.close()


def _row(row: tuple[Any, ...]) -> dict[str, Any]:
    keys = ("id", "plan", "started_at", "finished_at", "status", "reason")
    return dict(zip(keys, row, strict=True))
