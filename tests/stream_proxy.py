"""A reverse proxy that does known things to SSE streams, standing in for a gateway (tests only).

Modes, applied to each `data:` event of a 2xx `text/event-stream` answer (anything else is
forwarded as it comes):
- `pass`: forward every event as it arrives; with `--hold-first S` the first content event
  is held for exactly S seconds (a timerfd deadline, not a millisecond loop timer);
- `buffer`: hold the whole stream and release it at once when the upstream ends;
- `drop-last`: forward every event but the last content event (the finish, usage and
  `[DONE]` events still go out: a well-formed stream missing its tail);
- `split`: split every content event in two (same text, twice the chunks).

Run: python tests/stream_proxy.py --port P --upstream URL --mode MODE.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sys
import time

import aiohttp
from aiohttp import web
from soak.mock.timing import PreciseSleeper

UPSTREAM = web.AppKey("upstream", str)
SESSION = web.AppKey("session", aiohttp.ClientSession)
OPTIONS = web.AppKey("options", argparse.Namespace)
SLEEPER = web.AppKey("sleeper", PreciseSleeper)

_HOP = {"host", "content-length", "transfer-encoding", "connection", "keep-alive"}


def content_of(event: bytes) -> tuple[dict | None, str | None]:
    """An OpenAI chunk event's JSON and its delta text (None when it carries no text)."""
    if not event.startswith(b"data: {"):
        return None, None
    chunk = json.loads(event[6:])
    choices = chunk.get("choices") or [{}]
    text = (choices[0].get("delta") or {}).get("content")
    return chunk, text or None


def split_event(chunk: dict, text: str) -> bytes:
    """The chunk as two events, the text cut in the middle (role in the first, rest in both)."""
    half = max(1, len(text) // 2)
    first = json.loads(json.dumps(chunk))
    first["choices"][0]["delta"]["content"] = text[:half]
    first.pop("soak", None)
    second = json.loads(json.dumps(chunk))
    second["choices"][0]["delta"].pop("role", None)
    second["choices"][0]["delta"]["content"] = text[half:]
    return b"".join(b"data: " + json.dumps(c).encode() + b"\n\n" for c in (first, second))


async def relay(request: web.Request, up: aiohttp.ClientResponse, out: web.StreamResponse) -> None:
    """Forward the upstream's SSE events to `out`, doing what the mode says."""
    opts, sleeper = request.app[OPTIONS], request.app[SLEEPER]
    pending = b""
    held: bytes | None = None  # drop-last: the latest content event, sent once another comes
    buffered: list[bytes] = []
    first = True
    async for data in up.content.iter_any():
        pending += data
        *events, pending = pending.split(b"\n\n")
        out_now: list[bytes] = []
        for raw in events:
            event = raw + b"\n\n"
            chunk, text = content_of(raw)
            if text is not None and first:
                first = False
                if opts.hold_first > 0:
                    await out.write(b"".join(out_now))
                    out_now.clear()
                    await sleeper.until(time.monotonic() + opts.hold_first)
            if opts.mode == "split" and chunk is not None and text is not None:
                event = split_event(chunk, text)
            elif opts.mode == "drop-last" and text is not None:
                held, event = event, held or b""
            out_now.append(event)
        if opts.mode == "buffer":
            buffered += out_now
        elif out_now:
            await out.write(b"".join(out_now))
    tail = b"".join(buffered) + pending
    if tail:
        await out.write(tail)


async def handle(request: web.Request) -> web.StreamResponse:
    body = await request.read()
    headers = {k: v for k, v in request.headers.items() if k.lower() not in _HOP}
    url = request.app[UPSTREAM] + request.path_qs
    async with request.app[SESSION].request(request.method, url, data=body, headers=headers) as up:
        out = web.StreamResponse(status=up.status)
        for k, v in up.headers.items():
            if k.lower() not in _HOP:
                out.headers[k] = v
        await out.prepare(request)
        if 200 <= up.status < 300 and up.content_type == "text/event-stream":
            await relay(request, up, out)
        else:
            async for data in up.content.iter_any():
                await out.write(data)
        await out.write_eof()
        return out


async def main(argv: list[str]) -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--upstream", required=True)
    p.add_argument("--mode", default="pass", choices=["pass", "buffer", "drop-last", "split"])
    p.add_argument("--hold-first", type=float, default=0.0, help="seconds the first chunk waits")
    opts = p.parse_args(argv)
    app = web.Application()
    app[UPSTREAM] = opts.upstream.rstrip("/")
    app[OPTIONS] = opts
    app.router.add_route("*", "/{tail:.*}", handle)

    async def context(app: web.Application):  # type: ignore[no-untyped-def]
        app[SESSION] = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0))
        app[SLEEPER] = PreciseSleeper()
        yield
        app[SLEEPER].close()
        await app[SESSION].close()

    app.cleanup_ctx.append(context)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", opts.port).start()
    print(f"stream proxy listening on 127.0.0.1:{opts.port} mode={opts.mode}", flush=True)
    await asyncio.Event().wait()


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(main(sys.argv[1:]))
