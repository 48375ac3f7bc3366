"""A disk that fills up and a connection that refuses writes, for the run history's tests.

`Disk` is real where mounting is permitted (root): a 1 MiB tmpfs under the test's tmp dir,
filled with a file until ENOSPC. Elsewhere it is an in-process fault: the history's
connections (the current one and any it reopens) fail writing statements with SQLite's own
message. `fault()` alone gives any message (e.g. a read-only database)."""

from __future__ import annotations

import contextlib
import os
import sqlite3
import subprocess
from collections.abc import Callable
from pathlib import Path

from soak.history import RunHistory

FULL = "database or disk is full"
READ_ONLY = "attempt to write a readonly database"


class Disk:
    """`data` on a filesystem that `fill()` fills and `free()` frees; `close()` unmounts."""

    def __init__(self, tmp: Path) -> None:
        self.mount = tmp / "disk"
        self.mount.mkdir()
        self.real = mount("tmpfs", self.mount, "size=1m")
        self.data = self.mount / "data"
        self.error: str | None = None
        """The in-process fault's message while "full" (or "read-only"); None: writable."""

    def fill(self) -> None:
        self.error = FULL
        if self.real:
            fd = os.open(self.mount / "filler", os.O_WRONLY | os.O_CREAT | os.O_APPEND)
            try:
                with contextlib.suppress(OSError):
                    while True:  # tmpfs allocates whole pages: none is left after this
                        os.write(fd, b"\0" * 4096)
            finally:
                os.close(fd)

    def free(self) -> None:
        self.error = None
        if self.real:
            (self.mount / "filler").unlink()

    def attach(self, history: RunHistory) -> RunHistory:
        """Route `history`'s writes through the in-process fault (a no-op on a real disk)."""
        if not self.real:
            fault(history, lambda: self.error)
        return history

    def close(self) -> None:
        if self.real:
            subprocess.run(["umount", "-l", str(self.mount)], check=False)


def mount(kind: str, where: Path, options: str) -> bool:
    if os.geteuid() != 0:
        return False
    done = subprocess.run(["mount", "-t", kind, "-o", options, kind, str(where)],
                          capture_output=True, check=False)  # fmt: skip
    return done.returncode == 0


class _Faulty:
    """A sqlite3 connection whose writing statements raise `error()` while it is not None."""

    def __init__(self, db: sqlite3.Connection, error: Callable[[], str | None]) -> None:
        self._db, self._error = db, error

    def execute(self, sql: str, args: tuple[object, ...] = ()) -> sqlite3.Cursor:
        message = self._error()
        if message and sql.split()[0].upper() in ("INSERT", "UPDATE", "DELETE"):
            raise sqlite3.OperationalError(message)
        return self._db.execute(sql, args)

    def __getattr__(self, name: str) -> object:
        return getattr(self._db, name)


def fault(history: RunHistory, error: Callable[[], str | None]) -> None:
    connect = history._connect
    history._db = _Faulty(history._db, error)  # type: ignore[assignment]
    history._connect = lambda: _Faulty(connect(), error)  # type: ignore[method-assign]
