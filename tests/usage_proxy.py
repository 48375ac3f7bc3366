"""A test gateway: forwards chat requests to the mock, optionally rewriting the `usage` block
(as a gateway that recounts tokens, or bills more than the provider counted, would)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import aiohttp
from aiohttp import web


def _rewrite(usage: dict) -> dict:
    out = dict(usage)
    for key in ("prompt_tokens", "input_tokens"):
        if key in out:
            out[key] = out[key] * 2 + 7
    for key in ("completion_tokens", "output_tokens"):
        if key in out:
            out[key] = out[key] + 3
    return out


@asynccontextmanager
async def usage_proxy(upstream: str, *, rewrite: bool) -> AsyncIterator[str]:
    """A loopback proxy to `upstream` (the mock's base URL); yields its base URL."""
    session = aiohttp.ClientSession()

    async def forward(request: web.Request) -> web.StreamResponse:
        body = await request.read()
        headers = {"Content-Type": "application/json"}
        async with session.post(upstream + request.path, data=body, headers=headers) as up:
            raw = await up.read()
            passed = {k: v for k, v in up.headers.items() if k.lower().startswith("x-soak")}
            if rewrite and up.status == 200:
                data = json.loads(raw)
                if isinstance(data.get("usage"), dict):
                    data["usage"] = _rewrite(data["usage"])
                raw = json.dumps(data).encode()
            return web.Response(status=up.status, body=raw, content_type="application/json",
                                headers=passed)  # fmt: skip

    app = web.Application(client_max_size=16 * 2**20)
    app.router.add_post("/{tail:.*}", forward)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()
        await session.close()
