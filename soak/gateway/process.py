"""A gateway process soak starts, waits for, restarts and stops: the *managed* gateway.

The process runs in its own session (process group) so stopping it also stops the workers it
forked (uvicorn, node clusters), and only those: signals go to our child's group, never to a
name. It also dies with soak however soak ends (a SIGKILLed `soak once` included): on Linux the
child asks the kernel for SIGKILL when soak's thread that started it exits (PR_SET_PDEATHSIG,
as the mock does); workers it forked itself are not covered by that. `stop()` is bounded: a
gateway that ignores SIGTERM is SIGKILLed after the grace, also when the stop is cancelled
(a daemon stopped at its grace). Readiness is a URL answering 2xx and/or a log line; a gateway
that dies or stalls fails fast with one line that names the cause and quotes its last log line,
secrets redacted.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import os
import re
import signal
import socket
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from types import TracebackType

REDACTED = "***"
_TAIL_BYTES = 64 * 1024
_MAX_LINE = 300


class GatewayStartError(RuntimeError):
    """The managed gateway did not become ready; the message is one line, safe to print."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago (bind to port 0, ask, close)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def redact(text: str, secrets: Iterable[str]) -> str:
    """`text` with every non-empty secret replaced by `***`, longest first."""
    for secret in sorted((s for s in secrets if s), key=len, reverse=True):
        text = text.replace(secret, REDACTED)
    return text


_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))
"""Readiness is checked on loopback: never through an HTTP(S)_PROXY from the environment."""


PR_SET_PDEATHSIG = 1
"""prctl(2) option: the signal this process gets when its parent (thread) exits."""


def _die_with(parent: int) -> Callable[[], None] | None:
    """A `preexec_fn` for the child: SIGKILL when `parent` exits (Linux; None elsewhere). A child
    whose parent is already gone by then exits at once (nothing would ever signal it)."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None

    def preexec() -> None:
        prctl(PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)
        if os.getppid() != parent:
            os._exit(1)

    return preexec


def _url_ready(url: str, timeout: float) -> bool:
    """True when a GET of `url` answers 2xx (blocking; run in a thread)."""
    try:
        with _OPENER.open(url, timeout=timeout) as resp:
            return 200 <= resp.status < 300
    except (urllib.error.URLError, OSError, ValueError):
        return False


class ManagedProcess:
    """One gateway process: `start()` returns once it is ready, `stop()` ends its group.

    `env` is layered over this process's environment. `secrets` are redacted from every
    error message that quotes the gateway's log. Time is read from `clock` (monotonic seconds).
    """

    def __init__(
        self,
        argv: Sequence[str],
        *,
        env: dict[str, str] | None = None,
        cwd: str | Path | None = None,
        log_path: Path,
        ready_url: str | None = None,
        ready_log: str | None = None,
        ready_timeout: float = 90.0,
        secrets: Sequence[str] = (),
        poll_interval: float = 0.1,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not argv:
            raise ValueError("gateway command is empty")
        self.argv = [str(a) for a in argv]
        self.env = dict(env or {})
        self.cwd = None if cwd is None else str(cwd)
        self.log_path = Path(log_path)
        self.ready_url = ready_url
        self.ready_log = re.compile(ready_log) if ready_log else None
        self.ready_timeout = ready_timeout
        self.secrets = list(secrets)
        self.poll_interval = poll_interval
        self.clock = clock
        self.ready_s: float | None = None
        """Seconds the last start took from spawn to ready."""
        self._proc: asyncio.subprocess.Process | None = None
        self._log_offset = 0

    @property
    def pid(self) -> int | None:
        return None if self._proc is None else self._proc.pid

    @property
    def returncode(self) -> int | None:
        return None if self._proc is None else self._proc.returncode

    @property
    def alive(self) -> bool:
        return self._proc is not None and self._proc.returncode is None

    async def start(self) -> None:
        """Spawn the process and wait until it is ready; on failure it is stopped and
        `GatewayStartError` is raised."""
        if self.alive:
            raise RuntimeError("gateway already running")
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            self._log_offset = log.tell()
            try:
                self._proc = await asyncio.create_subprocess_exec(
                    *self.argv,
                    stdin=asyncio.subprocess.DEVNULL,
                    stdout=log,
                    stderr=asyncio.subprocess.STDOUT,
                    cwd=self.cwd,
                    env={**os.environ, **self.env},
                    start_new_session=True,
                    preexec_fn=_die_with(os.getpid()),
                )
            except OSError as exc:
                msg = redact(
                    f"cannot start gateway {self.argv[0]!r}: {exc.strerror or exc}", self.secrets
                )
                raise GatewayStartError(msg) from None
        started = self.clock()
        try:
            await self._wait_ready(started)
        except BaseException:
            await self.stop(grace=2.0)
            raise
        self.ready_s = self.clock() - started

    async def _wait_ready(self, started: float) -> None:
        url_ok = self.ready_url is None
        log_ok = self.ready_log is None
        pending = b""
        while True:
            if self._proc is not None and self._proc.returncode is not None:
                raise GatewayStartError(
                    f"gateway exited with code {self._proc.returncode} before it was ready; "
                    f"last log line: {self.last_log_line()}"
                )
            if not log_ok:
                pending, log_ok = self._scan_log(pending)
            if not url_ok and self.ready_url is not None:
                url_ok = await asyncio.to_thread(_url_ready, self.ready_url, 1.0)
            if url_ok and log_ok:
                return
            if self.clock() - started >= self.ready_timeout:
                raise GatewayStartError(
                    f"gateway not ready after {self.ready_timeout:g}s; "
                    f"last log line: {self.last_log_line()}"
                )
            await asyncio.sleep(self.poll_interval)

    def _scan_log(self, pending: bytes) -> tuple[bytes, bool]:
        """Read what the log gained since the last look; True when the ready line is in it."""
        assert self.ready_log is not None
        try:
            with self.log_path.open("rb") as f:
                f.seek(self._log_offset)
                chunk = f.read()
        except OSError:
            return pending, False
        self._log_offset += len(chunk)
        *lines, pending = (pending + chunk).split(b"\n")
        for line in [*lines, pending]:
            if self.ready_log.search(line.decode("utf-8", "replace")):
                return b"", True
        return pending, False

    def last_log_line(self) -> str:
        """The gateway's last non-empty log line, secrets redacted, or `(empty log)`."""
        try:
            with self.log_path.open("rb") as f:
                f.seek(max(0, f.seek(0, os.SEEK_END) - _TAIL_BYTES))
                tail = f.read().decode("utf-8", "replace")
        except OSError:
            return "(no log)"
        lines = [ln.strip() for ln in tail.splitlines() if ln.strip()]
        if not lines:
            return "(empty log)"
        line = redact(lines[-1], self.secrets)
        return line if len(line) <= _MAX_LINE else line[: _MAX_LINE - 3] + "..."

    async def stop(self, grace: float = 10.0) -> int | None:
        """SIGTERM the process group, SIGKILL it after `grace` seconds; returns the exit code."""
        proc = self._proc
        if proc is None:
            return None
        pgid = proc.pid  # session leader: its pid is the group id
        try:
            if proc.returncode is None:
                self._signal_group(pgid, signal.SIGTERM)
                try:
                    await asyncio.wait_for(proc.wait(), timeout=grace)
                except TimeoutError:
                    self._signal_group(pgid, signal.SIGKILL)
                    await proc.wait()
            # Workers of the group may outlive the leader: give them the rest, then kill.
            deadline = self.clock() + max(grace, 0.5)
            while self._group_alive(pgid) and self.clock() < deadline:
                await asyncio.sleep(0.05)
        except asyncio.CancelledError:
            self._signal_group(pgid, signal.SIGKILL)  # cancelled mid-stop: nothing outlives us
            raise
        if self._group_alive(pgid):
            self._signal_group(pgid, signal.SIGKILL)
        return proc.returncode

    async def restart(self, grace: float = 10.0) -> None:
        """Stop, then start again with the same command (clears stale pools and state)."""
        await self.stop(grace)
        self._proc = None
        await self.start()

    @staticmethod
    def _signal_group(pgid: int, sig: signal.Signals) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pgid, sig)

    @staticmethod
    def _group_alive(pgid: int) -> bool:
        try:
            os.killpg(pgid, 0)
        except (ProcessLookupError, PermissionError):
            return False
        return True

    async def __aenter__(self) -> ManagedProcess:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()
