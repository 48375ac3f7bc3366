"""A tiny reverse proxy standing in for a gateway of known behaviour (tests only).

Modes: `delay` (forward, adding a fixed delay before forwarding: the overhead a perfect
measurement must find), `garbage` (answer 200 with a body that is not JSON), `truncate`
(forward a stream but stop before its end), `status` (answer a fixed HTTP status), `die`
(exit the process after N requests). Run: python tests/proxy_gateway.py --port P --upstream URL.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import sys
import time

import aiohttp
from aiohttp import web

UPSTREAM = web.AppKey("upstream", str)
SESSION = web.AppKey("session", aiohttp.ClientSession)
OPTIONS = web.AppKey("options", argparse.Namespace)
SEEN = web.AppKey("seen", list)
ADDED = web.AppKey("added", list)
"""A one-item list: the open file (or None) each really added delay is appended to."""


async def hold(delay: float, added: list) -> None:
    """Hold a request `delay` seconds on the CPU (a spin, not a sleep: an idle process wakes up
    late on a busy machine, which would add more than asked), and record what was added."""
    start = time.perf_counter()
    end = start + delay
    while time.perf_counter() < end:
        pass
    if added[0] is not None:
        added[0].write(f"{time.perf_counter() - start!r}\n")
        added[0].flush()


_HOP = {"host", "content-length", "transfer-encoding", "connection", "keep-alive"}


async def handle(request: web.Request) -> web.StreamResponse:
    opts = request.app[OPTIONS]
    seen = request.app[SEEN]
    seen[0] += 1
    if opts.mode == "die" and seen[0] > opts.after:
        os._exit(3)
    if opts.mode == "status":
        return web.json_response({"error": {"message": "proxy says no"}}, status=opts.status)
    body = await request.read()
    if opts.mode == "garbage":
        return web.Response(body=b"<html>not json", content_type="application/json")
    if opts.delay > 0 and request.method == "POST":
        await hold(opts.delay, request.app[ADDED])
    headers = {k: v for k, v in request.headers.items() if k.lower() not in _HOP}
    url = request.app[UPSTREAM] + request.path_qs
    session = request.app[SESSION]
    async with session.request(request.method, url, data=body, headers=headers) as up:
        out = web.StreamResponse(status=up.status)
        for k, v in up.headers.items():
            if k.lower() not in _HOP:
                out.headers[k] = v
        await out.prepare(request)
        sent = 0
        async for chunk in up.content.iter_any():
            if opts.mode == "truncate" and sent + len(chunk) > opts.keep_bytes:
                await out.write(chunk[: max(0, opts.keep_bytes - sent)])
                break
            sent += len(chunk)
            await out.write(chunk)
        await out.write_eof()
        return out


async def main(argv: list[str]) -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--upstream", required=True)
    p.add_argument(
        "--mode", default="delay", choices=["delay", "garbage", "truncate", "status", "die"]
    )
    p.add_argument("--delay", type=float, default=0.0, help="seconds added before forwarding")
    p.add_argument("--status", type=int, default=404)
    p.add_argument("--after", type=int, default=10, help="die: requests served before exiting")
    p.add_argument("--keep-bytes", type=int, default=120, help="truncate: bytes forwarded")
    p.add_argument("--record", help="delay: append each really added delay (seconds) here")
    opts = p.parse_args(argv)
    app = web.Application()
    app[UPSTREAM] = opts.upstream.rstrip("/")
    app[OPTIONS] = opts
    app[SEEN] = [0]
    app[ADDED] = [open(opts.record, "a") if opts.record else None]  # noqa: SIM115
    app.router.add_route("*", "/{tail:.*}", handle)

    async def session_ctx(app: web.Application):  # type: ignore[no-untyped-def]
        app[SESSION] = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0))
        yield
        await app[SESSION].close()

    app.cleanup_ctx.append(session_ctx)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", opts.port).start()
    print(f"proxy listening on 127.0.0.1:{opts.port} mode={opts.mode}", flush=True)
    await asyncio.Event().wait()


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(main(sys.argv[1:]))
