"""A gateway whose faults are switched at runtime, for the game day (tests only).

Forwards `POST /v1/...` to the mock's primary provider (`{upstream}/p/primary/v1/...`) and, when
the primary fails (connection refused or a 5xx) and failover is on, to the fallback
(`{upstream}/p/fallback/v1/...`), as LiteLLM's router does. `POST /_game/state` with a JSON
object changes what it does from the next request on (`GET /_game/state` reads it back):

- `delay` (seconds): added before forwarding (a slowdown past the overhead SLO);
- `primary` (`up` | `down`): down sends the primary attempt to a closed loopback port, so
  it fails as an unreachable provider does; `fallback` (bool): fail over on a primary failure,
  else answer 502;
- `leak_kb`: KB of touched memory kept per request, for ever (a leak); `release` (true)
  drops what was kept, as a restart would;
- `hold_match` (a regular expression) and `hold` (seconds): requests whose body matches are
  held that long before forwarding (a run that hangs, e.g. the nonces of one phase); setting
  `hold` to 0 releases the requests held so far at once.

Serves its own `process_resident_memory_bytes` at `/metrics`. Prints `game gateway listening`
once ready and exits by itself if the process that started it goes away.
Run: python tests/game_gateway.py --port P --upstream URL [--parent-pid PID].
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import re
import socket
import sys
from dataclasses import asdict, dataclass, field
from typing import Any

import aiohttp
from aiohttp import web

_HOP = {"host", "content-length", "transfer-encoding", "connection", "keep-alive"}
MAX_HOLD_S = 600.0
MAX_LEAK_KB = 10_240


@dataclass
class State:
    """What the gateway does to the next request (the control endpoint's document)."""

    delay: float = 0.0
    primary: str = "up"
    fallback: bool = True
    leak_kb: int = 0
    hold_match: str = ""
    hold: float = 0.0
    served: dict[str, int] = field(default_factory=lambda: {"primary": 0, "fallback": 0})
    failed: int = 0
    held: int = 0
    leaked_kb: int = 0

    def update(self, changes: dict[str, Any]) -> None:
        """Apply a control request; a bad key or value is a ValueError naming it."""
        for key, value in changes.items():
            if key == "delay" or key == "hold":
                if isinstance(value, bool) or not isinstance(value, int | float):
                    raise ValueError(f"{key}: expected seconds, got {value!r}")
                if not 0 <= value <= MAX_HOLD_S:
                    raise ValueError(f"{key}: expected 0..{MAX_HOLD_S:g} s, got {value!r}")
                setattr(self, key, float(value))
            elif key == "primary":
                if value not in ("up", "down"):
                    raise ValueError(f"primary: expected up or down, got {value!r}")
                self.primary = value
            elif key == "fallback":
                if not isinstance(value, bool):
                    raise ValueError(f"fallback: expected true or false, got {value!r}")
                self.fallback = value
            elif key == "leak_kb":
                if isinstance(value, bool) or not isinstance(value, int):
                    raise ValueError(f"leak_kb: expected an integer, got {value!r}")
                if not 0 <= value <= MAX_LEAK_KB:
                    raise ValueError(f"leak_kb: expected 0..{MAX_LEAK_KB}, got {value!r}")
                self.leak_kb = value
            elif key == "hold_match":
                if not isinstance(value, str):
                    raise ValueError(f"hold_match: expected a regular expression, got {value!r}")
                re.compile(value)
                self.hold_match = value
            elif key != "release":
                raise ValueError(f"{key}: unknown key")


STATE = web.AppKey("state", State)
RELEASE = web.AppKey("release", list)
"""A one-item list: the asyncio.Event held requests wait on, set (and replaced) on release."""
KEPT = web.AppKey("kept", list)
SESSION = web.AppKey("session", aiohttp.ClientSession)
UPSTREAM = web.AppKey("upstream", str)
DEAD = web.AppKey("dead", str)


def dead_url() -> str:
    """A loopback URL nobody listens on (a port bound, then closed): connection refused."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{s.getsockname()[1]}"


async def _attempt(
    app: web.Application, base: str, request: web.Request, body: bytes
) -> tuple[int, bytes, dict[str, str]] | None:
    """One upstream attempt; None when it failed as a dead provider does (refused, 5xx)."""
    headers = {k: v for k, v in request.headers.items() if k.lower() not in _HOP}
    try:
        async with app[SESSION].post(base + request.path_qs, data=body, headers=headers) as up:
            payload = await up.read()
            if up.status >= 500:
                return None
            out = {k: v for k, v in up.headers.items() if k.lower() not in _HOP}
            return up.status, payload, out
    except aiohttp.ClientError:
        return None


async def forward(request: web.Request) -> web.Response:
    app, state = request.app, request.app[STATE]
    body = await request.read()
    if state.leak_kb:
        app[KEPT].append(b"\x01" * (state.leak_kb * 1024))  # touched: resident, never freed
        state.leaked_kb += state.leak_kb
    if state.hold > 0 and state.hold_match and re.search(state.hold_match.encode(), body):
        state.held += 1
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(app[RELEASE][0].wait(), state.hold)
    if state.delay > 0:
        await asyncio.sleep(state.delay)
    primary = app[DEAD] if state.primary == "down" else f"{app[UPSTREAM]}/p/primary"
    answer = await _attempt(app, primary, request, body)
    provider = "primary"
    if answer is None and state.fallback:
        answer = await _attempt(app, f"{app[UPSTREAM]}/p/fallback", request, body)
        provider = "fallback"
    if answer is None:
        state.failed += 1
        return web.json_response({"error": {"message": "no provider answered"}}, status=502)
    state.served[provider] += 1
    status, payload, headers = answer
    return web.Response(status=status, body=payload, headers=headers)


async def control(request: web.Request) -> web.Response:
    state = request.app[STATE]
    if request.method == "POST":
        try:
            changes = await request.json()
            if not isinstance(changes, dict):
                raise ValueError("expected a JSON object")
            state.update(changes)
        except ValueError as exc:  # json.JSONDecodeError is a ValueError
            return web.json_response({"error": str(exc).splitlines()[0]}, status=400)
        if changes.get("release"):
            request.app[KEPT].clear()
            state.leaked_kb = 0
        if state.hold == 0:  # let every held request go on
            request.app[RELEASE][0].set()
            request.app[RELEASE][0] = asyncio.Event()
    return web.json_response(asdict(state))


def rss_bytes() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


async def metrics(_request: web.Request) -> web.Response:
    """This process's RSS as Prometheus client libraries export it."""
    text = (
        "# HELP process_resident_memory_bytes Resident memory size in bytes.\n"
        "# TYPE process_resident_memory_bytes gauge\n"
        f"process_resident_memory_bytes {float(rss_bytes())}\n"
    )
    return web.Response(text=text, content_type="text/plain")


async def watch_parent(pid: int) -> None:
    """Exit once the process that started this one is gone (no orphan gateway)."""
    while True:
        await asyncio.sleep(1.0)
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            os._exit(0)


async def main(argv: list[str]) -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--upstream", required=True, help="the mock's base URL")
    p.add_argument("--parent-pid", type=int, default=None)
    opts = p.parse_args(argv)
    app = web.Application()
    app[STATE], app[KEPT], app[RELEASE] = State(), [], [asyncio.Event()]
    app[UPSTREAM], app[DEAD] = opts.upstream.rstrip("/"), dead_url()
    app.router.add_get("/metrics", metrics)
    app.router.add_route("*", "/_game/state", control)
    app.router.add_post("/v1/{tail:.*}", forward)

    async def session_ctx(app: web.Application):  # type: ignore[no-untyped-def]
        app[SESSION] = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0))
        yield
        await app[SESSION].close()

    app.cleanup_ctx.append(session_ctx)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", opts.port).start()
    print(f"game gateway listening on 127.0.0.1:{opts.port}", flush=True)
    if opts.parent_pid:
        await watch_parent(opts.parent_pid)
    await asyncio.Event().wait()


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(main(sys.argv[1:]))
