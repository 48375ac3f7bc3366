"""What every data-plane request shares: provider lookup, body parsing, faults, timing, records.

`served()` wraps an endpoint handler: it starts the service clock at handler entry, counts the
request in flight, and guarantees exactly one attempt record and one metric count per request,
also when the client gives up (cancellation) or the handler fails.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import socket
import struct
import time
from collections.abc import Awaitable, Callable
from typing import Any, ClassVar

from aiohttp import web

from soak.tracing import PROVIDER_HEADER, SERVICE_HEADER

from .faults import ERROR, HANG, MALFORMED, RESET, Decision, decide
from .metrics import UNKNOWN_PROVIDER
from .state import MockState, ProviderState

log = logging.getLogger("soak.mock")
MOCK_KEY = web.AppKey("soak_mock_state", MockState)
HANG_LIMIT = 600.0
"""A hung request resets after this long at most, so nothing waits forever."""

_monotonic = time.monotonic
_wall = time.time
_JSON = "application/json"


class Dialect:
    """How errors look on one wire (OpenAI or Anthropic)."""

    name = "openai"
    _types: ClassVar[dict[int, str]] = {
        400: "invalid_request_error",
        404: "not_found_error",
        413: "invalid_request_error",
    }

    def error_body(self, status: int, message: str) -> bytes:
        etype = self._types.get(status, "rate_limit_error" if status == 429 else "server_error")
        code = {429: "rate_limit_exceeded", 404: "not_found"}.get(status)
        err = {"message": message, "type": etype, "param": None, "code": code}
        return json.dumps({"error": err}).encode()

    def error_headers(self, status: int) -> dict[str, str]:
        """Extra headers of an error answer on this wire."""
        return {}


class AnthropicDialect(Dialect):
    name = "anthropic"
    _types: ClassVar[dict[int, str]] = {
        400: "invalid_request_error",
        404: "not_found_error",
        413: "request_too_large",
        429: "rate_limit_error",
        529: "overloaded_error",
    }

    def error_body(self, status: int, message: str) -> bytes:
        etype = self._types.get(status, "api_error")
        return json.dumps({"type": "error", "error": {"type": etype, "message": message}}).encode()


OPENAI = Dialect()
ANTHROPIC = AnthropicDialect()
_MALFORMED = b'{"id": "mock-malformed", "object": "chat.completion", "choices": [{"index": 0, "mes'
_MALFORMED_SSE = b"data: " + _MALFORMED + b"\n\ndata: [DONE]\n\n"


class BadRequest(Exception):
    """The request is unusable; answered with a dialect-shaped error and `status`."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class Exchange:
    """One request: its provider, endpoint, service clock, nonce and (once) its record."""

    __slots__ = ("answered", "arrival", "dialect", "done", "endpoint", "fault", "mock", "nonce",
                 "prompt_tokens", "prov", "received", "t0")  # fmt: skip

    def __init__(
        self, mock: MockState, prov: ProviderState, endpoint: str, dialect: Dialect, t0: float
    ) -> None:
        self.mock = mock
        self.prov = prov
        self.endpoint = endpoint
        self.dialect = dialect
        self.t0 = t0
        self.arrival = _wall()
        self.nonce: str | None = None
        self.fault: str | None = None
        self.done = False
        self.received = 0
        """Bytes of the request body as received (what the gateway sent on)."""
        self.prompt_tokens = 0
        self.answered = 0
        """Tokens of the answer (set once it is decided)."""

    def elapsed(self) -> float:
        return _monotonic() - self.t0

    async def read_json(self, request: web.Request) -> dict[str, Any]:
        """The request body as a JSON object, or BadRequest (400 / 413)."""
        try:
            raw = await request.read()
            self.received = len(raw)
        except web.HTTPRequestEntityTooLarge:
            limit = self.mock.config.max_body
            raise BadRequest(413, f"request body exceeds {limit} bytes") from None
        try:
            body = json.loads(raw)
        except (ValueError, UnicodeDecodeError):
            raise BadRequest(400, "request body is not valid JSON") from None
        if not isinstance(body, dict):
            raise BadRequest(400, "request body must be a JSON object")
        return body

    def draw_fault(self, stream: bool) -> Decision | None:
        """The fault for this request, from injected faults first, else the profile's."""
        prov = self.prov
        faults = prov.faults.current() or prov.profile.faults
        if not faults.any:
            return None
        decision = decide(faults, prov.rng, stream)
        if decision is not None:
            self.fault = decision.kind
        return decision

    async def apply_fault(
        self, request: web.Request, d: Decision, stream: bool = False
    ) -> web.StreamResponse:
        """Answer with a fault: an error status, a hang, a reset or broken JSON (a stream:
        an event stream whose data is broken JSON)."""
        if d.kind == ERROR:
            headers = {}
            if d.status == 429:
                headers["Retry-After"] = str(math.ceil(d.retry_after))
                headers["retry-after-ms"] = str(round(d.retry_after * 1000))
            msg = f"injected fault: {d.status} from mock provider {self.prov.name}"
            return self.error(d.status, msg, f"http_{d.status}", headers)
        if d.kind == HANG:
            with contextlib.suppress(TimeoutError):  # until the client or the server gives up
                await asyncio.wait_for(self.mock.stopping.wait(), HANG_LIMIT)
            return self.reset(request)
        if d.kind == RESET:
            return self.reset(request)
        if d.kind == MALFORMED:
            self.finish(200, MALFORMED)
            if stream:
                return web.Response(body=_MALFORMED_SSE, content_type="text/event-stream")
            return web.Response(body=_MALFORMED, content_type=_JSON)
        raise AssertionError(d.kind)

    def reset(self, request: web.Request) -> web.StreamResponse:
        """Close the connection with a TCP reset and no answer."""
        self.finish(0, self.fault or RESET)
        abort_connection(request)
        raise ConnectionAborted

    async def wait_until(self, deadline: float) -> None:
        """Sleep until `deadline` on the monotonic clock (no-op when already past)."""
        if deadline > _monotonic():
            await self.mock.sleeper.until(deadline)

    def marker_headers(self, service_us: int) -> dict[str, str]:
        return {PROVIDER_HEADER: self.prov.name, SERVICE_HEADER: str(service_us)}

    def error(
        self, status: int, message: str, outcome: str, headers: dict[str, str] | None = None
    ) -> web.Response:
        self.finish(status, outcome)
        extra = self.dialect.error_headers(status)
        return web.Response(
            status=status,
            body=self.dialect.error_body(status, message),
            content_type=_JSON,
            headers={**extra, **headers} if headers else extra,
        )

    def finish(
        self,
        status: int,
        outcome: str,
        service_s: float | None = None,
        stream: tuple[float, int, int, str] | None = None,
    ) -> None:
        """Record the attempt and count it; only the first call per request counts.

        `stream` is (first_chunk_s, chunks, tokens, digest) for a streamed answer.
        """
        if self.done:
            return
        self.done = True
        prov = self.prov
        mock = self.mock
        key = (self.endpoint, outcome)
        prov.counts[key] = prov.counts.get(key, 0) + 1
        mock.metrics.request(prov.name, self.endpoint, outcome)
        service = self.elapsed() if service_s is None else service_s
        record = (
            prov.name,
            self.endpoint,
            self.nonce,
            self.arrival,
            service,
            status,
            outcome,
            self.fault,
            self.received,
            self.prompt_tokens,
            self.answered,
        )
        if stream is not None:
            record += stream
        mock.traces.add(record)


class ConnectionAborted(Exception):
    """Raised after a deliberate reset: there is nothing left to answer."""


def abort_connection(request: web.Request) -> None:
    transport = request.transport
    if transport is None:
        return
    sock = transport.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):  # a reset, not an orderly close
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    transport.abort()


Handler = Callable[[web.Request, Exchange], Awaitable[web.StreamResponse]]


def served(
    endpoint: str, dialect: Dialect, fn: Handler, provider: str | None = None
) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    """An aiohttp handler for `fn` on the fixed `provider` or the `{provider}` path part."""

    async def handler(request: web.Request) -> web.StreamResponse:
        t0 = _monotonic()
        mock = request.app[MOCK_KEY]
        name = provider or request.match_info["provider"]
        prov = mock.providers.get(name)
        if prov is None:
            mock.metrics.request(UNKNOWN_PROVIDER, endpoint, "not_found")
            body = dialect.error_body(404, f"unknown mock provider {name[:64]!r}")
            headers = dialect.error_headers(404)
            return web.Response(status=404, body=body, content_type=_JSON, headers=headers)
        ex = Exchange(mock, prov, endpoint, dialect, t0)
        prov.in_flight += 1
        prov.flight_gauge.inc()
        try:
            return await fn(request, ex)
        except BadRequest as exc:
            return ex.error(exc.status, str(exc), "bad_request")
        except ConnectionAborted:
            raise asyncio.CancelledError from None
        except asyncio.CancelledError:
            ex.finish(0, ex.fault or "cancelled")
            raise
        except ConnectionResetError:  # the client went away mid-stream
            ex.finish(0, ex.fault or "cancelled")
            raise asyncio.CancelledError from None
        except Exception:
            log.exception("mock handler failed on %s", endpoint)
            return ex.error(500, "mock internal error", "error")
        finally:
            prov.in_flight -= 1
            prov.flight_gauge.dec()

    return handler
