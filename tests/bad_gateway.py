"""A stand-in gateway that misbehaves without any upstream (tests only).

Modes: `hang` (accept, read the request, never answer), `huge` (200 application/json whose
body streams `--mb` megabytes and never ends as JSON), `html` (200 text/html error page),
`json` (a well-formed non-streaming chat completion, whatever was asked: wrong content type
for a stream request), `sse-garbage` (200 text/event-stream whose events are not JSON),
`trickle` (200 text/event-stream, then one valid event a second, never the end).
Run: python tests/bad_gateway.py --port P --mode M; prints `bad gateway listening` when ready.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sys

from aiohttp import web

OPTIONS = web.AppKey("options", argparse.Namespace)

_COMPLETION = {
    "id": "chatcmpl-bad",
    "object": "chat.completion",
    "choices": [{"index": 0, "message": {"role": "assistant", "content": "hi"}}],
    "usage": {"completion_tokens": 1},
}


async def handle(request: web.Request) -> web.StreamResponse:
    opts = request.app[OPTIONS]
    await request.read()
    if opts.mode == "hang":
        await asyncio.Event().wait()  # until the client gives up and the server shuts down
    if opts.mode == "html":
        return web.Response(text="<html><body>502 Bad Gateway</body></html>",
                            content_type="text/html")  # fmt: skip
    if opts.mode == "json":
        return web.json_response(_COMPLETION)
    if opts.mode == "trickle":
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        event = b'data: {"choices": [{"index": 0, "delta": {"content": "."}}]}\n\n'
        with contextlib.suppress(ConnectionError):
            while True:
                await resp.write(event)
                await asyncio.sleep(1.0)
    if opts.mode == "sse-garbage":
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        await resp.write(b"data: {not json at all\n\ndata: [DONE]\n\n")
        await resp.write_eof()
        return resp
    # huge: chunked (no Content-Length), so only a bounded reader can stop early
    resp = web.StreamResponse(headers={"Content-Type": "application/json"})
    await resp.prepare(request)
    chunk = b"x" * 65536
    with contextlib.suppress(ConnectionError):  # the client stops reading: expected
        await resp.write(b'{"choices": "')
        for _ in range(opts.mb * 16):
            await resp.write(chunk)
        await resp.write(b'"}')
        await resp.write_eof()
    return resp


async def models(_request: web.Request) -> web.Response:
    return web.Response(text=json.dumps({"data": []}), content_type="application/json")


async def main(argv: list[str]) -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--mode", required=True,
                   choices=["hang", "huge", "html", "json", "sse-garbage", "trickle"])  # fmt: skip
    p.add_argument("--mb", type=int, default=50, help="huge: megabytes of body")
    opts = p.parse_args(argv)
    app = web.Application()
    app[OPTIONS] = opts
    app.router.add_get("/v1/models", models)
    app.router.add_route("*", "/{tail:.*}", handle)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", opts.port)
    await site.start()
    port = runner.addresses[0][1]
    print(f"bad gateway listening on 127.0.0.1:{port} mode={opts.mode}", flush=True)
    await asyncio.Event().wait()


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(main(sys.argv[1:]))
