"""The daemon's HTTP server: /metrics, health and readiness, reload, and the run history.

| path | answer |
|---|---|
| `GET /metrics` | the daemon's registry (soak_*, process_*, python_gc_*), Prometheus text |
| `GET /-/healthy` | 200 while the process serves |
| `GET /-/ready` | 200 while a plan is scheduled, else 503 + one line saying why |
| `POST /-/reload` | re-read the config: 200 swapped; 500 + one-line reason, old one kept |
| `GET /runs?limit=N` | `{"runs": [...]}` newest first, without reports |
| `GET /runs/{id}` | one run with its report JSON, 404 when unknown |

`/-/reload` needs `Authorization: Bearer <token>` when `server.reload_token_env` is set.
State reaches handlers through a typed `AppKey` (string keys warn on aiohttp 3.14). The access
log is off: scrapes every few seconds would flood the daemon's log; no header is ever logged.

/metrics is rendered in a worker thread, not on the event loop: the loop is the load
generator's, and a render (5-20 ms for a few hundred series) held every send due meanwhile,
so each scrape during a phase made sends late and pushed a busy tester's own send-lag p99
past its trust bound. In the thread the loop waits at most one GIL switch interval.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from aiohttp import hdrs, web
from prometheus_client import CollectorRegistry
from prometheus_client.exposition import choose_encoder

from soak.history import RunHistory

log = logging.getLogger(__name__)

MAX_LIMIT = 1000
DEFAULT_LIMIT = 50


@dataclass(slots=True)
class Controls:
    """What the server reads and calls; owned by the daemon."""

    registry: CollectorRegistry
    history: RunHistory
    not_ready: Callable[[], str | None]
    """Why the daemon is not ready (no plan scheduled, stopping), or None when it is."""
    reload: Callable[[], Awaitable[str | None]]
    """Re-read and swap the config: None on success, else the one-line reason it was kept."""
    reload_token: Callable[[], str | None]
    """The bearer token POST /-/reload requires now, or None (no token configured)."""


CONTROLS = web.AppKey("controls", Controls)


@web.middleware
async def json_errors(request: web.Request, handler: Callable) -> web.StreamResponse:
    """Unexpected failures become a JSON 500 and one log line naming the exception type."""
    try:
        return await handler(request)
    except web.HTTPException:
        raise
    except Exception as exc:
        log.error("request %s %s failed: %s", request.method, request.path, type(exc).__name__)
        return web.json_response({"error": "internal error"}, status=500)


def render(registry: CollectorRegistry, accept: str, names: list[str]) -> tuple[bytes, str]:
    """The exposition of `registry` (only `names` when given, as `?name[]=` asks) in the format
    `accept` prefers (Prometheus text or OpenMetrics), and its content type."""
    encoder, content_type = choose_encoder(accept)
    return encoder(registry.restricted_registry(names) if names else registry), content_type


async def metrics(request: web.Request) -> web.Response:
    """The registry, rendered off the event loop (see the module docstring); aiohttp gzips a
    body this size in its executor too when the scraper accepts it."""
    accept = ",".join(request.headers.getall(hdrs.ACCEPT, []))
    names = request.query.getall("name[]", [])
    body, content_type = await asyncio.to_thread(
        render, request.app[CONTROLS].registry, accept, names
    )
    response = web.Response(body=body, headers={hdrs.CONTENT_TYPE: content_type})
    response.enable_compression()
    return response


async def healthy(_request: web.Request) -> web.Response:
    return web.Response(text="Healthy.\n")


async def ready(request: web.Request) -> web.Response:
    why = request.app[CONTROLS].not_ready()
    if why is None:
        return web.Response(text="Ready.\n")
    return web.Response(text=f"Not ready: {why}\n", status=503)


async def reload(request: web.Request) -> web.Response:
    controls = request.app[CONTROLS]
    token = controls.reload_token()
    if token is not None:
        given = request.headers.get("Authorization", "")
        expected = f"Bearer {token}"
        if not hmac.compare_digest(given.encode(), expected.encode()):
            return web.Response(
                text="reload needs the bearer token (server.reload_token_env)\n",
                status=401,
                headers={"WWW-Authenticate": 'Bearer realm="soak"'},
            )
    problem = await controls.reload()
    if problem is not None:
        return web.Response(text=f"failed to reload config: {problem}\n", status=500)
    return web.Response(text="Config reloaded.\n")


async def runs(request: web.Request) -> web.Response:
    raw = request.query.get("limit", str(DEFAULT_LIMIT))
    # ASCII digits only: str.isdigit() is also true for '²' (which int() refuses) and '١'
    if not (raw.isascii() and raw.isdigit() and len(raw) <= 4) or not 1 <= int(raw) <= MAX_LIMIT:
        return web.json_response(
            {"error": f"limit must be an integer from 1 to {MAX_LIMIT}"}, status=400
        )
    return web.json_response({"runs": request.app[CONTROLS].history.runs(int(raw))})


async def run(request: web.Request) -> web.Response:
    found = request.app[CONTROLS].history.get(request.match_info["run_id"])
    if found is None:
        return web.json_response({"error": "no such run"}, status=404)
    return web.json_response(found)


def make_app(controls: Controls) -> web.Application:
    """The daemon's aiohttp application."""
    app = web.Application(middlewares=[json_errors])
    app[CONTROLS] = controls
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/-/healthy", healthy)
    app.router.add_get("/-/ready", ready)
    app.router.add_post("/-/reload", reload)
    app.router.add_get("/runs", runs)
    app.router.add_get("/runs/{run_id}", run)
    return app


class DaemonServer:
    """`make_app` served on host:port (port 0: a free one) until `stop()`.

    `stop()` waits at most `shutdown_timeout` for requests in progress (aiohttp's default is a
    minute), so it fits in the daemon's SIGTERM grace."""

    def __init__(self, controls: Controls, *, shutdown_timeout: float = 2.0) -> None:
        self.runner = web.AppRunner(
            make_app(controls), access_log=None, shutdown_timeout=shutdown_timeout
        )
        self.port = 0

    async def start(self, host: str, port: int) -> int:
        """Bind and serve; returns the bound port. OSError when the address is taken."""
        await self.runner.setup()
        site = web.TCPSite(self.runner, host, port)
        try:
            await site.start()
        except OSError:
            await self.runner.cleanup()
            raise
        addresses = self.runner.addresses
        self.port = int(addresses[0][1]) if addresses else port
        return self.port

    async def stop(self) -> None:
        await self.runner.cleanup()
