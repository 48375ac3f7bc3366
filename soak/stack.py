"""What `soak once` starts for itself: the mock provider and a managed gateway.

Both run as child processes in their own process groups (never in the tester's event loop,
which must only measure). Each is stopped by the PID soak started, and only that.
"""

from __future__ import annotations

import secrets
import sys
from contextlib import AsyncExitStack
from dataclasses import dataclass
from pathlib import Path

from soak.config.schema import Config, ProcessTarget
from soak.gateway.kind import GatewayKind
from soak.gateway.managed import build_managed
from soak.gateway.process import GatewayStartError, ManagedProcess, free_port
from soak.gateway.registry import kind_class
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
        mock_url = f"http://127.0.0.1:{port}"
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
        await _start(mock_proc, "mock provider")
        exits.push_async_callback(mock_proc.stop)
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


async def _start(proc: ManagedProcess, what: str) -> None:
    try:
        await proc.start()
    except GatewayStartError as exc:
        await proc.stop()
        raise StackError(f"{what}: {exc}") from None
