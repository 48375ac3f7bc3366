"""Turn `gateway.managed` plus a gateway kind into a ManagedProcess ready to start.

The kind supplies defaults (command, config file, env, readiness); the user's `managed` block
overrides them. A user command may use `{config}`, `{port}`, `{workdir}` and `{mock_url}`
placeholders. Every secret that reaches the gateway (its key, `managed.env` values) is handed
to the process wrapper for redaction.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from soak.config.schema import ManagedConfig
from soak.gateway.kind import GatewayKind, LaunchSpec
from soak.gateway.process import GatewayStartError, ManagedProcess, free_port

PLACEHOLDERS = ("{config}", "{port}", "{workdir}", "{mock_url}")


def default_cache_dir() -> Path:
    """Where installed gateways are kept between runs: $SOAK_CACHE, else ~/.cache/soak."""
    env = os.environ.get("SOAK_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "soak"


@dataclass(slots=True)
class ManagedGateway:
    """A gateway soak will start: the process (not started yet) and how to reach it."""

    process: ManagedProcess
    url: str
    api_key: str | None
    spec: LaunchSpec


async def build_managed(
    kind: GatewayKind,
    managed: ManagedConfig | None,
    *,
    workdir: Path,
    mock_url: str,
    primary: str,
    fallback: str,
    model: str,
    api_key: str | None = None,
    port: int | None = None,
    cache_dir: Path | None = None,
) -> ManagedGateway:
    """Prepare routes, resolve command / env / readiness; raises `GatewayStartError` (one line)."""
    port = port or free_port()
    command = tuple(managed.command) if managed is not None else ()
    if not command:
        await kind.install(cache_dir or default_cache_dir())
    try:
        spec = kind.prepare(
            workdir,
            mock_url=mock_url,
            primary=primary,
            fallback=fallback,
            port=port,
            model=model,
            api_key=api_key,
        )
    except GatewayStartError:
        if not command:
            raise
        spec = LaunchSpec(argv=(), env={}, url=f"http://127.0.0.1:{port}", ready_url=None)
    argv = _fill(command, spec, port, workdir, mock_url) if command else spec.argv
    ready_url, ready_log = spec.ready_url, spec.ready_log
    env = dict(spec.env)
    secrets = [*spec.secrets, *([api_key] if api_key else [])]
    timeout = 90.0
    if managed is not None:
        if managed.ready_url is not None:
            ready_url = _absolute(managed.ready_url, spec.url)
            ready_log = None
        elif managed.ready_log is not None:
            ready_url, ready_log = None, managed.ready_log
        for name, value in managed.env.items():
            env[name] = value.reveal()
            secrets.append(value.reveal())
        timeout = managed.ready_timeout
    process = ManagedProcess(
        argv,
        env=env,
        cwd=workdir,
        log_path=workdir / "gateway.log",
        ready_url=ready_url,
        ready_log=ready_log,
        ready_timeout=timeout,
        secrets=secrets,
    )
    return ManagedGateway(process=process, url=spec.url, api_key=spec.api_key or api_key, spec=spec)


def _absolute(ready: str, base_url: str) -> str:
    return base_url.rstrip("/") + ready if ready.startswith("/") else ready


def _fill(
    command: tuple[str, ...], spec: LaunchSpec, port: int, workdir: Path, mock_url: str
) -> tuple[str, ...]:
    config = spec.files.get("config")
    values = {
        "{config}": None if config is None else str(config),
        "{port}": str(port),
        "{workdir}": str(workdir),
        "{mock_url}": mock_url.rstrip("/"),
    }
    out = []
    for arg in command:
        for placeholder, value in values.items():
            if placeholder in arg:
                if value is None:
                    raise GatewayStartError(
                        f"gateway.managed.command uses {placeholder} but this gateway kind "
                        "writes no config file"
                    )
                arg = arg.replace(placeholder, value)
        out.append(arg)
    return tuple(out)
