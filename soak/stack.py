"""What `soak once` starts for itself: the mock provider and a managed gateway.

Both run as child processes in their own process groups (never in the tester's event loop,
which must only measure). Each is stopped by the PID soak started, and only that. The mock also
dies with soak however soak ends (SIGKILL included: `--parent-pid`, PR_SET_PDEATHSIG on Linux),
and a run never adopts a mock it did not start: a configured `mock.port` that something already
listens on is refused before the start, and the mock's run id (`--instance-id`, read back on
`GET /_mock/instance`) must match before any load is sent.
"""

from __future__ import annotations

import errno
import os
import secrets
import socket
import sys
from contextlib import AsyncExitStack
from dataclasses import dataclass
from pathlib import Path

from soak.config.schema import Config, ProcessTarget
from soak.gateway.kind import GatewayKind
from soak.gateway.managed import build_managed
from soak.gateway.process import GatewayStartError, ManagedProcess, free_port
from soak.gateway.registry import kind_class
from soak.mockctl import MockControl, MockControlError
from soak.procwatch import find_pid, pid_from_file

MOCK_READY_TIMEOUT = 30.0


class StackError(RuntimeError):
    """A component soak manages could not start (one line, secrets redacted)."""


@dataclass(slots=True)
class Stack:
    """The running pieces: the mock's URL, the gateway's URL, key and process."""

    mock_url: str
    mock_token: str | None
    gateway_url: str
    kind: GatewayKind
    api_key: str | None
    gateway: ManagedProcess | None
    mock: ManagedProcess | None

    process: ProcessTarget | None = None

    def gateway_pid(self) -> int | None:
        """The gateway's PID: the one soak started, else the configured pid / pid file / match."""
        if self.gateway is not None:
            return self.gateway.pid if self.gateway.alive else None
        target = self.process
        if target is None:
            return None
        if target.pid is not None:
            return target.pid
        if target.pid_file is not None:
            return pid_from_file(target.pid_file)
        return find_pid(target.match) if target.match else None

    async def restart_gateway(self) -> None:
        if self.gateway is not None:
            await self.gateway.restart()


def config_secrets(config: Config) -> list[str]:
    """Every secret the config holds, as strings to redact from a child's quoted log line: a
    child inherits soak's environment, so it can print any of them, not only its own."""
    gw = config.gateway
    found = [gw.api_key, *gw.headers.values(), config.mock.control_token]
    found.append(config.daemon.server.reload_token)
    if gw.managed is not None:
        found += gw.managed.env.values()
    return [text for secret in found if secret is not None for text in secret.redactions()]


async def start_stack(config: Config, workdir: Path, exits: AsyncExitStack) -> Stack:
    """Start the mock (unless `mock.url` is set) and a managed gateway; `exits` stops both."""
    workdir.mkdir(parents=True, exist_ok=True)
    token = config.mock.control_token.reveal() if config.mock.control_token else None
    hidden = config_secrets(config)
    mock_proc: ManagedProcess | None = None
    if config.mock.url is None:
        port = config.mock.port or free_port()
        where = f"mock.port {port}" if config.mock.port else f"mock provider (port {port})"
        if config.mock.port and (problem := bind_problem(port)):
            raise StackError(f"{where}: {problem}")
        mock_url = f"http://127.0.0.1:{port}"
        instance = secrets.token_hex(8)
        argv = [
            sys.executable,
            "-m",
            "soak.mock",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--providers",
            f"{config.mock.primary},{config.mock.fallback}",
            "--log-level",
            "warning",
            "--instance-id",
            instance,
            "--parent-pid",
            str(os.getpid()),
        ]
        env = {}
        if config.mock.control_token_env:
            argv += ["--token-env", config.mock.control_token_env]
        mock_proc = ManagedProcess(
            argv,
            env=env,
            log_path=workdir / "mock.log",
            ready_url=f"{mock_url}/v1/models",
            ready_timeout=MOCK_READY_TIMEOUT,
            secrets=hidden,
        )
        await _start(mock_proc, "mock provider", in_use=f"{where}: {IN_USE}")
        exits.push_async_callback(mock_proc.stop)
        await _check_instance(mock_url, token, instance, where)
    else:
        mock_url = config.mock.url

    gw = config.gateway
    kind = kind_class(gw.kind).from_config(gw)
    api_key = gw.api_key.reveal() if gw.api_key else None
    if gw.managed is None:
        assert gw.url is not None  # validated: an unmanaged gateway has a URL
        return Stack(mock_url, token, gw.url, kind, api_key, None, mock_proc, gw.process)

    if api_key is None and gw.generate_key:
        api_key = f"sk-soak-{secrets.token_hex(16)}"
    try:
        managed = await build_managed(
            kind,
            gw.managed,
            workdir=workdir,
            mock_url=mock_url,
            primary=config.mock.primary,
            fallback=config.mock.fallback,
            model=gw.model,
            api_key=api_key,
        )
    except GatewayStartError as exc:
        raise StackError(f"gateway ({gw.kind}): {exc}") from None
    managed.process.secrets.extend(hidden)
    await _start(managed.process, f"gateway ({gw.kind})")
    exits.push_async_callback(managed.process.stop)
    return Stack(mock_url, token, managed.url, kind, managed.api_key, managed.process, mock_proc)


IN_USE = "port in use by another process (soak sends only to a mock it started itself)"


def bind_problem(port: int, host: str = "127.0.0.1") -> str | None:
    """Why the mock could not listen on host:port (`IN_USE`, or the OS's reason), or None.
    SO_REUSEADDR as the mock's server sets it: a port left in TIME_WAIT is free, one that
    something listens on is not."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            return IN_USE if exc.errno == errno.EADDRINUSE else f"cannot listen: {exc.strerror}"
    return None


async def _check_instance(url: str, token: str | None, instance: str, where: str) -> None:
    """The mock answering at `url` must be the one started with `instance`: a process that
    took the port first (an orphan of a killed run) would otherwise get the run's load and
    control calls, and its answers would be counted."""
    async with MockControl(url, token=token) as mock:
        try:
            seen: str | None = await mock.instance()
        except MockControlError:
            seen = None
    if seen != instance:
        raise StackError(
            f"{where}: port in use by another process: what answers there is not the mock "
            "this run started"
        )


async def _start(proc: ManagedProcess, what: str, *, in_use: str | None = None) -> None:
    try:
        await proc.start()
    except GatewayStartError as exc:
        await proc.stop()
        if in_use is not None and "Address already in use" in proc.last_log_line():
            raise StackError(in_use) from None
        raise StackError(f"{what}: {exc}") from None
