"""The mock provider application: routes per provider, `/metrics`, `/_mock/`, and a server.

`make_app(config)` builds the aiohttp application; `MockServer` runs it on a loopback port
(port 0 picks a free one) for tests, benchmarks and `soak once`.
"""

from __future__ import annotations

import json
import secrets
from types import TracebackType

from aiohttp import web
from prometheus_client import CollectorRegistry

from .anthropic_api import messages
from .bedrock_api import BEDROCK, converse
from .bedrock_stream import SIGV4_KEY, SigV4Log, converse_stream, signed
from .control import make_control_app
from .exchange import ANTHROPIC, MOCK_KEY, OPENAI, served
from .metrics import MockMetrics
from .openai_api import chat, embeddings, models
from .profile import MockConfig
from .state import MockState
from .timing import PreciseSleeper

SHUTDOWN_S = 2.0
"""How long `stop()` lets in-flight requests finish (a hung one would otherwise hold it)."""
BACKLOG = 4096
"""Listen backlog: a burst of 1,000 new connections must not overflow the accept queue."""


async def _metrics(request: web.Request) -> web.Response:
    metrics = request.app[MOCK_KEY].metrics
    resp = web.Response(body=metrics.render())
    resp.headers["Content-Type"] = metrics.content_type
    return resp


async def _not_found(request: web.Request) -> web.Response:
    body = {
        "error": {
            "message": f"no route for {request.method} {request.path[:200]}",
            "type": "invalid_request_error",
            "param": None,
            "code": "not_found",
        }
    }
    return web.Response(status=404, body=json.dumps(body).encode(), content_type="application/json")


def make_app(
    config: MockConfig | None = None,
    registry: CollectorRegistry | None = None,
    *,
    instance_id: str | None = None,
) -> web.Application:
    """The mock application for `config`; metrics go to `registry` (a fresh one by default);
    `GET /_mock/instance` answers `instance_id` (random by default)."""
    config = config or MockConfig()
    state = MockState(config, MockMetrics(registry))
    app = web.Application(client_max_size=config.max_body)
    app[MOCK_KEY] = state
    app[SIGV4_KEY] = SigV4Log()
    r = app.router
    for prefix, fixed in (("/v1", "default"), ("/p/{provider}/v1", None)):
        r.add_post(f"{prefix}/chat/completions", served("chat", OPENAI, chat, fixed))
        r.add_post(f"{prefix}/embeddings", served("embeddings", OPENAI, embeddings, fixed))
        r.add_get(f"{prefix}/models", served("models", OPENAI, models, fixed))
        r.add_post(f"{prefix}/messages", served("messages", ANTHROPIC, messages, fixed))
    for prefix, fixed in (("", "default"), ("/p/{provider}", None)):
        path = f"{prefix}/model/{{model_id}}/converse"
        r.add_post(path, served("converse", BEDROCK, signed(converse), fixed))
        stream = served("converse_stream", BEDROCK, signed(converse_stream), fixed)
        r.add_post(f"{path}-stream", stream)
    r.add_get("/metrics", _metrics)
    app.add_subapp("/_mock/", make_control_app(state, instance_id))
    r.add_route("*", "/{tail:.*}", _not_found)
    return app


class MockServer:
    """The mock on a loopback port; `async with MockServer(config) as mock: mock.url`."""

    def __init__(
        self,
        config: MockConfig | None = None,
        registry: CollectorRegistry | None = None,
        *,
        instance_id: str | None = None,
    ) -> None:
        self.instance_id = instance_id or secrets.token_hex(8)
        """What `GET /_mock/instance` answers: tells this mock from any other on the port."""
        self.app = make_app(config, registry, instance_id=self.instance_id)
        self._runner: web.AppRunner | None = None
        self.port = 0
        self.host = "127.0.0.1"

    @property
    def state(self) -> MockState:
        return self.app[MOCK_KEY]

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> int:
        """Listen on `host:port` (0: a free port); returns the port."""
        self.state.stopping.clear()
        if self.state.sleeper.closed:  # started again after a stop
            self.state.sleeper = PreciseSleeper()
        runner = web.AppRunner(
            self.app, handler_cancellation=True, access_log=None, shutdown_timeout=SHUTDOWN_S
        )
        await runner.setup()
        site = web.TCPSite(runner, host, port, backlog=BACKLOG)
        try:
            await site.start()
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner
        self.host = host
        self.port = runner.addresses[0][1]
        return self.port

    async def stop(self) -> None:
        """Stop listening, clear injected faults (their timers) and close connections."""
        self.state.stopping.set()
        for prov in self.state.providers.values():
            prov.faults.clear()
        if self._runner is not None:
            runner, self._runner = self._runner, None
            await runner.cleanup()
        self.state.sleeper.close()

    async def __aenter__(self) -> MockServer:
        await self.start(self.host, self.port)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()
