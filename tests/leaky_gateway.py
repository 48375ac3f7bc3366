"""A minimal OpenAI-compatible gateway that can leak memory per request (tests only).

Forwards every request to `--upstream` (e.g. the mock's `/p/primary`) and, with `--leak-kb N`,
keeps N KB of touched memory per request forever: the memory phase must fail it, and must pass
the same gateway with `--leak-kb 0`. Serves its own RSS at `/metrics`, as a gateway soak does
not start would. Prints `leaky gateway listening` once ready.
Run: python tests/leaky_gateway.py --port P --upstream URL [--leak-kb 200].
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import sys

import aiohttp
from aiohttp import web

UPSTREAM = web.AppKey("upstream", str)
SESSION = web.AppKey("session", aiohttp.ClientSession)
LEAK = web.AppKey("leak", int)
HELD = web.AppKey("held", list)

_HOP = {"host", "content-length", "transfer-encoding", "connection", "keep-alive"}


async def forward(request: web.Request) -> web.Response:
    app = request.app
    if app[LEAK]:
        app[HELD].append(b"\x01" * app[LEAK])  # written bytes: resident, never freed
    body = await request.read()
    headers = {k: v for k, v in request.headers.items() if k.lower() not in _HOP}
    url = app[UPSTREAM] + request.path_qs
    async with app[SESSION].request(request.method, url, data=body, headers=headers) as up:
        payload = await up.read()
        out = {k: v for k, v in up.headers.items() if k.lower() not in _HOP}
        return web.Response(status=up.status, body=payload, headers=out)


async def health(_request: web.Request) -> web.Response:
    return web.json_response({"ok": True})


async def metrics(_request: web.Request) -> web.Response:
    """Prometheus text with this process's RSS, as client libraries export it."""
    with open("/proc/self/statm") as statm:
        rss = int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    text = (
        "# HELP process_resident_memory_bytes Resident memory size in bytes.\n"
        "# TYPE process_resident_memory_bytes gauge\n"
        f"process_resident_memory_bytes {float(rss)}\n"
    )
    return web.Response(text=text, content_type="text/plain")


async def main(argv: list[str]) -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--upstream", required=True)
    p.add_argument("--leak-kb", type=int, default=0, help="KB kept per request")
    opts = p.parse_args(argv)
    app = web.Application()
    app[UPSTREAM] = opts.upstream.rstrip("/")
    app[LEAK] = opts.leak_kb * 1024
    app[HELD] = []
    app.router.add_get("/health", health)
    app.router.add_get("/metrics", metrics)
    app.router.add_route("*", "/{tail:.*}", forward)

    async def session_ctx(app: web.Application):  # type: ignore[no-untyped-def]
        app[SESSION] = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0))
        yield
        await app[SESSION].close()

    app.cleanup_ctx.append(session_ctx)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", opts.port).start()
    print(f"leaky gateway listening on 127.0.0.1:{opts.port} leak={opts.leak_kb}KB", flush=True)
    await asyncio.Event().wait()


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(main(sys.argv[1:]))
