"""The daemon's run history: one SQLite file (WAL) in the data dir that survives restarts.

A run is written when it starts (`running`), its report after every phase, and its end status
(passed, failed, aborted, error). At startup a run still `running` was cut off by a crash or
kill: it becomes `aborted` with the reason "daemon restarted". A file SQLite cannot read is
moved aside as `history.db.corrupt-<unix time>` with a warning and a fresh one is started: a
broken history must never stop the soak. Retention keeps the newest `keep` runs.

One daemon per data dir: `soak.lock` there is held (flock) for the history's life, so a second
daemon on the same dir is refused ("in use by pid N") instead of overwriting the first's rows.
A write the disk refuses raises `HistoryUnavailable` naming why (disk full, read-only, other);
`HistoryWriter` (soak/history_writer.py) keeps such runs in memory until a write succeeds.
"""

from __future__ import annotations

import errno
import fcntl
import json
import logging
import os
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

FILE_NAME = "history.db"
LOCK_NAME = "soak.lock"
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
    """The data dir cannot hold a history (not a directory, no permission, in use)."""


class HistoryUnavailable(HistoryError):
    """The disk refused a write (or the open): `reason` is disk_full, read_only or other."""

    def __init__(self, message: str, reason: str) -> None:
        super().__init__(message)
        self.reason = reason


REASONS = ("disk_full", "read_only", "other")
"""`HistoryUnavailable.reason` values (a bounded metric label)."""


def unavailable(err: BaseException, path: Path) -> HistoryUnavailable:
    """Name why SQLite (or the OS) could not write `path`: disk full, read-only, or other."""
    name = getattr(err, "sqlite_errorname", "") or ""
    text = " ".join(str(err).split())
    code = err.errno if isinstance(err, OSError) else None
    if name.startswith("SQLITE_FULL") or "disk is full" in text or code == errno.ENOSPC:
        return HistoryUnavailable(f"disk full: {path}", "disk_full")
    if (
        name.startswith("SQLITE_READONLY")
        or "readonly database" in text
        or code in (errno.EROFS, errno.EACCES, errno.EPERM)
        or not _writable(path)
    ):
        return HistoryUnavailable(f"read-only: {path}", "read_only")
    if name.startswith("SQLITE_IOERR") and _no_space(path):
        return HistoryUnavailable(f"disk full: {path}", "disk_full")
    return HistoryUnavailable(f"{text or type(err).__name__}: {path}", "other")


def _writable(path: Path) -> bool:
    """Whether this process may write `path` (or create it in its dir); root is subject to
    read-only mounts and immutable files here, unlike to modes."""
    target = path if path.exists() else path.parent
    return os.access(target, os.W_OK)


def _no_space(path: Path) -> bool:
    try:
        st = os.statvfs(path.parent)
    except OSError:
        return False
    return st.f_bavail * st.f_frsize < 64 * 1024


def _lock(data_dir: Path) -> int:
    """Hold `data_dir/soak.lock` (flock, released by the kernel when the process dies) and
    write our pid in it; HistoryError naming the holder's pid when another process has it."""
    path = data_dir / LOCK_NAME
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    except OSError as err:
        raise unavailable(err, path) from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        holder = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
        os.close(fd)
        by = f"pid {holder}" if holder.isdigit() else "another process"
        raise HistoryError(f"data dir {data_dir} is in use by {by}") from None
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    except OSError:  # a full disk: the lock holds all the same, only the pid is not shown
        pass
    return fd


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
        if not _writable(self.path.parent) or not _writable(self.path):
            raise HistoryUnavailable(f"run history read-only: {self.path}", "read_only")
        self._lock = _lock(self.path.parent)
        try:
            self._db = self._open()
        except BaseException:
            os.close(self._lock)
            raise
        self._reopen = False

    def _open(self) -> sqlite3.Connection:
        try:
            return self._connect()
        except sqlite3.DatabaseError as err:
            if isinstance(err, sqlite3.OperationalError) and not self.path.exists():
                raise HistoryError(f"{self.path}: {err}") from None
            refused = unavailable(err, self.path)
            if refused.reason != "other":  # the disk, not the file: setting it aside won't help
                raise HistoryUnavailable(f"run history {refused}", refused.reason) from None
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

    def _write(self, sql: str, args: tuple[Any, ...] = ()) -> sqlite3.Cursor:
        """Run one writing statement; HistoryUnavailable naming why when the disk refuses it.

        After a read-only refusal the connection is reopened before the next write: SQLite
        keeps a connection read-only once it saw the file so, even after it is fixed."""
        try:
            if self._reopen:
                fresh = self._connect()  # first: on failure the old one still serves reads
                self._db.close()
                self._db, self._reopen = fresh, False
            return self._db.execute(sql, args)
        except (sqlite3.Error, OSError) as err:
            refused = unavailable(err, self.path)
            self._reopen = refused.reason == "read_only"
            raise refused from err

    def recover(self) -> int:
        """Mark runs left `running` by a previous daemon as aborted; return how many."""
        cur = self._write(
            "UPDATE runs SET status = 'aborted', reason = 'daemon restarted', "
            "finished_at = COALESCE(finished_at, started_at) WHERE status = 'running'"
        )
        return cur.rowcount

    def start(self, run_id: str, plan: str, started_at: float) -> None:
        self._write(
            "INSERT INTO runs (id, plan, started_at, status) VALUES (?, ?, ?, 'running')",
            (run_id, plan, started_at),
        )

    def update(self, run_id: str, report_json: str) -> None:
        """Store the report so far (after each phase) of a running run."""
        self._write("UPDATE runs SET report = ? WHERE id = ?", (report_json, run_id))

    def save(
        self,
        run_id: str,
        plan: str,
        started_at: float,
        status: str,
        *,
        report_json: str | None = None,
        finished_at: float | None = None,
        reason: str | None = None,
    ) -> None:
        """Write a run's whole row (insert or replace what is there): one statement, so a run
        held back while the disk was full lands whole, or not at all."""
        if status not in STATUSES:
            raise ValueError(f"unknown run status {status!r}")
        self._write(
            "INSERT INTO runs (id, plan, started_at, finished_at, status, reason, report) "
            "VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO UPDATE SET "
            "finished_at = excluded.finished_at, status = excluded.status, "
            "reason = excluded.reason, report = COALESCE(excluded.report, runs.report)",
            (run_id, plan, started_at, finished_at, status, reason, report_json),
        )
        if status != "running":
            self._retain()

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
        self._write(
            "UPDATE runs SET status = ?, finished_at = ?, reason = ?, "
            "report = COALESCE(?, report) WHERE id = ?",
            (status, finished_at, reason, report_json, run_id),
        )
        self._retain()

    def _retain(self) -> None:
        self._write(
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
        """Checkpoint the WAL into the main file, close, and release the data dir."""
        try:
            self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        except sqlite3.Error as err:
            log.warning("run history checkpoint failed: %s", err)
        self._db.close()
        if self._lock >= 0:
            os.close(self._lock)
            self._lock = -1


def _row(row: tuple[Any, ...]) -> dict[str, Any]:
    keys = ("id", "plan", "started_at", "finished_at", "status", "reason")
    return dict(zip(keys, row, strict=True))
