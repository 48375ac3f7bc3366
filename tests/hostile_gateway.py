"""A gateway that tries to fool or rob the tester (tests only).

Modes:
- `forge`: answers every chat request itself, never calling the mock, with a well-formed
  completion carrying a forged marker: `--forge content` (`[mock:primary:999999999999]` in the
  text), `header` (a 15-digit `x-soak-service-us` and `x-soak-provider`), `plausible` (a marker
  of exactly the mock's latency, `--service-us`). It answers in about 1 ms.
- `cache`: a response cache keyed on nothing: forwards the first request to `--upstream` and
  replays that answer (body and soak headers) to every later request.
- `replay`: forwards every request (the mock sees each nonce) but answers each with the first
  answer it got (a cache that still calls upstream).
- `retime`: forwards every request but rewrites the marker's service time to `--service-us`
  (a gateway hiding its own overhead).
- `redirect`: answers `--status` (302 or 307) pointing at a second listener on another
  loopback port, which records every request's headers to `--seen` (one JSON object a line)
  and answers like `forge plausible`.
Run: python tests/hostile_gateway.py --port P --mode M; prints `hostile gateway listening`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import re
import sys

import aiohttp
from aiohttp import web

OPTIONS = web.AppKey("options", argparse.Namespace)
STATE = web.AppKey("state", dict)
MARKER = re.compile(rb"\[mock:([A-Za-z0-9_.-]{1,64}):(\d{1,12})\]")
_SOAK_HEADERS = ("x-soak-provider", "x-soak-service-us")


def completion(text: str) -> dict:
    return {
        "id": "chatcmpl-hostile",
        "object": "chat.completion",
        "choices": [
            {"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}
        ],
        "usage": {"prompt_tokens": 5, "completion_tokens": 3, "total_tokens": 8},
    }


def forged(opts: argparse.Namespace) -> web.Response:
    if opts.forge == "content":
        return web.json_response(completion("Fine, thanks. [mock:primary:999999999999]"))
    if opts.forge == "header":
        headers = {"x-soak-provider": "primary", "x-soak-service-us": "9" * 15}
        return web.json_response(completion("Fine, thanks."), headers=headers)
    return web.json_response(completion(f"Fine, thanks. [mock:primary:{opts.service_us}]"))


async def forward(request: web.Request, body: bytes) -> tuple[int, bytes, dict[str, str]]:
    opts = request.app[OPTIONS]
    session = request.app[STATE]["session"]
    headers = {"Content-Type": "application/json"}
    async with session.post(opts.upstream.rstrip("/") + request.path, data=body,
                            headers=headers) as up:  # fmt: skip
        kept = {k: v for k, v in up.headers.items() if k.lower() in _SOAK_HEADERS}
        return up.status, await up.read(), kept


async def handle(request: web.Request) -> web.StreamResponse:
    opts, state = request.app[OPTIONS], request.app[STATE]
    body = await request.read()
    if request.method != "POST":  # the self-report scrape and the like: nothing here
        return web.Response(status=404)
    state["requests"] += 1
    if opts.mode == "forge":
        return forged(opts)
    if opts.mode == "redirect":
        location = f"http://127.0.0.1:{state['collector_port']}{request.path}"
        return web.Response(status=opts.status, headers={"Location": location})
    if opts.mode == "replay":
        fresh = await forward(request, body)
        state.setdefault("first", fresh)
        status, raw, headers = state["first"] if fresh[0] == 200 else fresh
        return web.Response(status=status, body=raw, headers=headers,
                            content_type="application/json")  # fmt: skip
    if opts.mode == "cache":
        if "cached" in state:
            status, raw, headers = state["cached"]
        else:
            status, raw, headers = await forward(request, body)
            if status == 200:
                state["cached"] = status, raw, headers
        return web.Response(status=status, body=raw, headers=headers,
                            content_type="application/json")  # fmt: skip
    status, raw, headers = await forward(request, body)  # retime
    raw = MARKER.sub(lambda m: b"[mock:%s:%d]" % (m.group(1), opts.service_us), raw)
    headers = {k: v for k, v in headers.items() if k.lower() != "x-soak-service-us"}
    return web.Response(status=status, body=raw, headers=headers, content_type="application/json")


async def collect(request: web.Request) -> web.Response:
    """The redirect's target: whatever reaches it is written down."""
    opts = request.app[OPTIONS]
    with open(opts.seen, "a") as out:
        out.write(json.dumps({"path": request.path, "headers": dict(request.headers)}) + "\n")
    return forged(argparse.Namespace(forge="plausible", service_us=opts.service_us))


async def main(argv: list[str]) -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, required=True)
    modes = ["forge", "cache", "replay", "retime", "redirect"]
    p.add_argument("--mode", required=True, choices=modes)
    p.add_argument("--forge", default="plausible", choices=["content", "header", "plausible"])
    p.add_argument("--service-us", type=int, default=20_000)
    p.add_argument("--upstream", default="", help="cache, replay, retime: the mock's URL")
    p.add_argument("--status", type=int, default=307, help="redirect: 302 or 307")
    p.add_argument("--seen", default="seen.jsonl", help="redirect: the target's request log")
    opts = p.parse_args(argv)
    state: dict = {"requests": 0}
    runners = []
    if opts.mode == "redirect":
        target = web.Application()
        target[OPTIONS] = opts
        target.router.add_route("*", "/{tail:.*}", collect)
        runner = web.AppRunner(target, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        state["collector_port"] = runner.addresses[0][1]
        runners.append(runner)
    app = web.Application()
    app[OPTIONS], app[STATE] = opts, state
    app.router.add_get("/v1/models", lambda _r: web.json_response({"data": []}))
    app.router.add_route("*", "/{tail:.*}", handle)

    async def session_ctx(app: web.Application):  # type: ignore[no-untyped-def]
        state["session"] = aiohttp.ClientSession()
        yield
        await state["session"].close()

    app.cleanup_ctx.append(session_ctx)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", opts.port).start()
    print(f"hostile gateway listening on 127.0.0.1:{opts.port} mode={opts.mode}", flush=True)
    await asyncio.Event().wait()


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(main(sys.argv[1:]))
