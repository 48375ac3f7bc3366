"""`soak mock`: run the mock provider until SIGTERM/SIGINT.

Prints one line `mock listening on http://HOST:PORT providers=... instance=ID` (flushed) once
it accepts connections, so a parent process that started it with `--port 0` can read the port.

A tester that starts the mock passes `--instance-id` (checks `GET /_mock/instance` before any
load, so it never adopts a mock it did not start) and `--parent-pid` (the mock dies with it:
`PR_SET_PDEATHSIG` on Linux, so a SIGKILLed `soak once` leaves no mock holding its port).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ctypes
import gc
import logging
import os
import re
import signal
import sys
from collections.abc import Callable
from dataclasses import replace
from importlib import resources
from typing import Any

from .app import MockServer
from .profile import (
    MockConfig,
    ProfileError,
    check_provider_name,
    load_profiles,
    parse_duration,
    parse_latency,
)

log = logging.getLogger("soak.mock")

PR_SET_PDEATHSIG = 1
"""prctl(2) option: the signal this process gets when its parent (thread) exits."""
_INSTANCE_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="soak mock", description="Run the mock LLM provider.")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=8100, help="port (0: a free one; default 8100)")
    p.add_argument("--profile", help="profile file (YAML/JSON); default: the built-in one")
    p.add_argument("--providers", help="extra provider names, comma-separated")
    p.add_argument("--latency", help="fixed latency for every provider, e.g. 100ms")
    p.add_argument("--token-env", help="env var holding the control API bearer token")
    p.add_argument(
        "--instance-id", help="identity answered on GET /_mock/instance (default: random)"
    )
    p.add_argument(
        "--parent-pid", type=int, help="exit when this process (our parent) exits (Linux)"
    )
    p.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    p.add_argument(
        "--loop",
        default="auto",
        choices=["auto", "asyncio", "uvloop"],
        help="event loop (auto: uvloop when installed)",
    )
    return p


def default_config() -> MockConfig:
    """The built-in profile file shipped in the package."""
    path = resources.files("soak.mock") / "profiles" / "default.yaml"
    with resources.as_file(path) as real:
        return load_profiles(real)


def config_from_args(args: argparse.Namespace) -> MockConfig:
    """The configuration the flags describe; ProfileError names the offending flag."""
    config = load_profiles(args.profile) if args.profile else default_config()
    providers = dict(config.providers)
    if args.providers:
        for name in (n.strip() for n in args.providers.split(",")):
            if name:
                check_provider_name(name, "--providers")
                providers.setdefault(name, providers["default"])
    if args.latency is not None:
        parse_duration(args.latency, "--latency")
        latency = parse_latency(args.latency, "--latency")
        providers = {n: replace(p, latency=latency) for n, p in providers.items()}
    token = None
    if args.token_env:
        token = os.environ.get(args.token_env)
        if not token:
            raise ProfileError(f"--token-env: environment variable {args.token_env} is not set")
    if not 0 <= args.port <= 65535:
        raise ProfileError(f"--port: expected 0..65535, got {args.port}")
    if args.instance_id is not None and not _INSTANCE_ID.fullmatch(args.instance_id):
        raise ProfileError("--instance-id: expected 1-64 letters, digits, '_' or '-'")
    return replace(config, providers=providers, token=token)


def die_with_parent(parent: int) -> bool:
    """Ask the kernel for SIGTERM when our parent exits, however it exits (SIGKILL included).

    Linux only (prctl `PR_SET_PDEATHSIG`); elsewhere, or without a usable libc, False and the
    mock lives on as before. Raises ProfileError when `parent` is already gone (we were
    re-parented before the request took effect: nothing would ever signal us)."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
        if prctl(PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0) != 0:
            return False
    except (OSError, AttributeError):
        return False
    if os.getppid() != parent:
        raise ProfileError(f"--parent-pid: process {parent} is not our parent (it has exited)")
    return True


async def serve(
    config: MockConfig,
    host: str,
    port: int,
    on_ready: Callable[[str], Any],
    instance_id: str | None = None,
) -> None:
    """Serve until SIGTERM or SIGINT."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    server = MockServer(config, instance_id=instance_id)
    await server.start(host, port)
    # Collector pauses show up as mock latency. Everything alive now lives as long as the
    # process: freeze it out of full passes, and make those rare (with 1,000 connections open
    # one costs ~15 ms of CPU). The middle generation, where in-flight requests' objects pile
    # up, is collected 5x as often as by default, in pauses 5x shorter (~1-2 ms, not ~5 ms).
    gc.collect()
    gc.freeze()
    gc.set_threshold(700, 2, 1000)
    try:
        on_ready(
            f"mock listening on {server.url} providers={','.join(config.providers)} "
            f"instance={server.instance_id}"
        )
        await stop.wait()
    finally:
        await server.stop()
    log.info("mock stopped")


def _loop_factory(choice: str) -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop's loop when it is installed (an optional speed-up), else asyncio's."""
    if choice == "asyncio":
        return None
    try:
        import uvloop
    except ImportError:
        if choice == "uvloop":
            raise ProfileError("--loop: uvloop is not installed") from None
        return None
    return uvloop.new_event_loop


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(levelname)s %(name)s: %(message)s")
    try:
        config = config_from_args(args)
        loop_factory = _loop_factory(args.loop)
        if args.parent_pid is not None and not die_with_parent(args.parent_pid):
            log.debug("--parent-pid: PR_SET_PDEATHSIG unavailable here; the mock may outlive it")
    except ProfileError as exc:
        print(f"soak mock: {exc}", file=sys.stderr)
        return 2

    def ready(line: str) -> None:
        print(line, flush=True)

    try:
        with asyncio.Runner(loop_factory=loop_factory) as runner:
            runner.run(serve(config, args.host, args.port, ready, args.instance_id))
    except OSError as exc:
        print(
            f"soak mock: cannot listen on {args.host}:{args.port}: {exc.strerror}", file=sys.stderr
        )
        return 1
    except KeyboardInterrupt:
        with contextlib.suppress(Exception):
            sys.stdout.flush()
    return 0
