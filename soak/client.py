"""One chat request, OpenAI or Anthropic wire, JSON or SSE, as one `Result`.

The request is bytes built before the load: the request line and headers once per header set,
the JSON body once per template (`RequestTemplates`, the seam workloads plug into), split around
the nonce `[soak:<run>:<seq>]` at the end of the last user message, so per request only the
nonce and the length are spliced in. It goes out on a keep-alive connection of `soak.http1` in
one write, and its answer is read as it arrives by `soak.answer`. Timestamps (sent, first byte,
first token, end) come from one monotonic clock. Every failure becomes an `Outcome` on the
Result: nothing a server or the network does raises out of `ChatClient.send`, and no URL or
error text is ever recorded.

`make_session` gives the `Session` a client sends through; everything else the tester asks over
HTTP (scrapes, control calls) goes through the session's aiohttp client.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Protocol

from soak import __version__
from soak.answer import MAX_BODY_BYTES, JsonAnswer, StreamAnswer, gateway_headers
from soak.connpool import Pool
from soak.gateway.registry import self_headers
from soak.http1 import Origin
from soak.results import Result
from soak.tracing import make_nonce

if TYPE_CHECKING:
    import aiohttp

__all__ = ["MAX_BODY_BYTES", "ChatClient", "Session", "encode_template", "gateway_headers",
           "make_session"]  # fmt: skip

APIS = ("openai", "anthropic")
ANTHROPIC_VERSION = "2023-06-01"
_SPLICE = "\x1fSOAK-NONCE\x1f"
_KEEPALIVE = 30.0
"""Seconds an idle connection is kept for reuse."""


def make_session(
    max_connections: int, timeout: float, *, clock: Callable[[], float] = time.perf_counter
) -> Session:
    """A keep-alive session with at most `max_connections` connections and a total timeout.

    The pool limit matters: an unbounded pool collapses into connection errors above ~2,000
    requests/s on one core (see the baselines), a bounded one queues briefly instead.
    """
    if isinstance(max_connections, bool) or not isinstance(max_connections, int):
        raise ValueError(f"max_connections {max_connections!r} must be an integer >= 1")
    if max_connections < 1:
        raise ValueError(f"max_connections {max_connections!r} must be >= 1")
    if not timeout > 0:
        raise ValueError(f"timeout {timeout!r} must be > 0 seconds")
    return Session(max_connections, timeout, clock=clock)


class Session:
    """Chat requests over `soak.http1` keep-alive connections (`pool`, at most `limit` open);
    `request` (`get`, `post`, `delete`) goes through an aiohttp client opened on first use
    (scrapes, control calls, tests), with the same limit and total timeout and no cookies.
    Close it (or use it as an async context manager) to close both."""

    def __init__(
        self, limit: int, timeout: float, *, clock: Callable[[], float] = time.perf_counter
    ) -> None:
        self.limit, self.timeout = limit, timeout
        self.pool = Pool(limit, keepalive=_KEEPALIVE, max_body=MAX_BODY_BYTES, clock=clock)
        self._http: aiohttp.ClientSession | None = None

    def _aiohttp(self) -> aiohttp.ClientSession:
        if self.pool.closed:
            raise RuntimeError("the session is closed")
        if self._http is None:
            import aiohttp  # on first use: a load that only sends chat requests never needs it

            self._http = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(
                    limit=self.limit, limit_per_host=0, keepalive_timeout=_KEEPALIVE
                ),
                timeout=aiohttp.ClientTimeout(total=self.timeout),
                cookie_jar=aiohttp.DummyCookieJar(),
            )
        return self._http

    def request(self, method: str, url: str, **kwargs: Any) -> Any:
        """aiohttp's `ClientSession.request` (an async context manager)."""
        return self._aiohttp().request(method, url, **kwargs)

    def get(self, url: str, **kwargs: Any) -> Any:
        return self.request("GET", url, **kwargs)

    def post(self, url: str, **kwargs: Any) -> Any:
        return self.request("POST", url, **kwargs)

    def delete(self, url: str, **kwargs: Any) -> Any:
        return self.request("DELETE", url, **kwargs)

    @property
    def closed(self) -> bool:
        return self.pool.closed

    async def close(self) -> None:
        await self.pool.close()
        if self._http is not None:
            await self._http.close()

    async def __aenter__(self) -> Session:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


class RequestTemplates(Protocol):
    """The request template seam: per request, which pre-encoded body (split around the nonce)
    and which header set to send. `soak.workload.RequestPlan` is one; without it every
    request is the one body built from `prompt` and `max_tokens`."""

    header_sets: Sequence[Mapping[str, str]]
    """Extra headers per index (e.g. one virtual key each), over the client's own."""

    def pick(self, seq: int) -> tuple[bytes, bytes, int]:
        """(head, tail, header set index) of request `seq`; must be O(1) and never raise."""
        ...


def _head_block(origin: Origin, headers: Mapping[str, str]) -> bytes:
    """The request line and headers up to the value of Content-Length; a header name or value
    that could break the request (CR, LF, NUL) is a one-line error naming the header only (its
    value may be a secret)."""
    lines = [f"POST {origin.target} HTTP/1.1", f"Host: {origin.host_header}"]
    for name, value in headers.items():
        if not name or any(c in name for c in "\r\n\0: ") or any(c in value for c in "\r\n\0"):
            raise ValueError(f"header {name!r} must not contain CR, LF or NUL")
        lines.append(f"{name}: {value}")
    return ("\r\n".join(lines) + "\r\nContent-Length: ").encode()


class ChatClient:
    """Sends chat requests to one endpoint URL; `send(seq, intended)` is the engine's `send`."""

    def __init__(
        self,
        session: Session,
        url: str,
        *,
        api: str = "openai",
        model: str,
        headers: Mapping[str, str] | None = None,
        stream: bool = False,
        max_tokens: int = 16,
        prompt: str = "Hello, how are you?",
        run_id: str = "soak",
        timeout: float | None = None,
        keep_headers: Iterable[str] | None = None,
        templates: RequestTemplates | None = None,
    ) -> None:
        if not isinstance(session, Session):
            raise TypeError("ChatClient sends through a soak.client.make_session() session")
        if api not in APIS:
            raise ValueError(f"api {api!r} must be one of {', '.join(APIS)}")
        make_nonce(run_id, 0)  # validates the run id once; send() builds nonces directly
        if timeout is not None and not timeout > 0:
            raise ValueError(f"timeout {timeout!r} must be > 0 seconds")
        self._pool = session.pool
        self._clock = session.pool.clock
        self._origin = Origin(url)
        self.api = api
        self.stream = stream
        self.run_id = run_id
        self._anthropic = api == "anthropic"
        self._timeout = timeout or session.timeout
        # the gateway's response headers kept per Result: by default every kind's own
        self._keep = tuple(self_headers() if keep_headers is None else keep_headers)
        base = {
            "user-agent": f"llm-soak/{__version__}",
            "accept": "text/event-stream" if stream else "application/json",
            "accept-encoding": "gzip, deflate",
            "content-type": "application/json",
        }
        if self._anthropic:
            base["anthropic-version"] = ANTHROPIC_VERSION

        def merged(*extra: Mapping[str, str] | None) -> bytes:
            out = dict(base)
            for more in extra:
                out.update({k.lower(): v for k, v in (more or {}).items()})
            return _head_block(self._origin, out)

        self._prefix = merged(headers)
        self._head, self._tail = _encode_body(api, model, prompt, max_tokens, stream)
        self._templates = templates
        self._prefixes = [
            merged(headers, extra) for extra in (templates.header_sets if templates else ())
        ]
        self._nonce_head = f"[soak:{run_id}:"

    @property
    def timeout(self) -> float:
        """Seconds a request may take in all (connect, send, answer)."""
        return self._timeout

    @property
    def templates(self) -> RequestTemplates | None:
        """The per-request plan the bodies and headers come from (None: one fixed body)."""
        return self._templates

    def __getstate__(self) -> dict[str, Any]:
        """Everything but the session: a worker process (`soak.workers`) rebuilds the client
        from the bytes built here and `attach`es its own session."""
        state = dict(self.__dict__)
        state["_pool"] = state["_clock"] = None
        return state

    def attach(self, session: Session) -> None:
        """Send through `session` from now on (a client unpickled in a worker process)."""
        self._pool, self._clock = session.pool, session.pool.clock

    async def send(self, seq: int, intended: float) -> Result:
        """One request; always a Result (failures are outcomes), latency counted from `intended`."""
        nonce = f"{self._nonce_head}{seq}]"
        templates = self._templates
        if templates is None:
            head, tail, prefix = self._head, self._tail, self._prefix
        else:
            head, tail, which = templates.pick(seq)
            prefix = self._prefixes[which] if self._prefixes else self._prefix
        body = b"".join((head, nonce.encode(), tail))
        data = b"".join((prefix, str(len(body)).encode(), b"\r\n\r\n", body))
        if self.stream:
            answer: JsonAnswer | StreamAnswer = StreamAnswer(self._keep, anthropic=self._anthropic)
        else:
            answer = JsonAnswer(self._keep, anthropic=self._anthropic)
        sent = self._clock()
        await self._pool.exchange(self._origin, data, answer, sent + self._timeout)
        return answer.result(seq, intended, sent, nonce)


def _encode_body(
    api: str, model: str, prompt: str, max_tokens: int, stream: bool
) -> tuple[bytes, bytes]:
    """The JSON body split around the nonce's place at the end of the last user message."""
    return encode_template(api, model, [{"role": "user", "content": prompt}], max_tokens, stream)


def encode_template(
    api: str,
    model: str,
    messages: Sequence[Mapping[str, Any]],
    max_tokens: int,
    stream: bool,
    *,
    system: str | None = None,
    tools: Sequence[tuple[str, str, Mapping[str, Any]]] = (),
) -> tuple[bytes, bytes]:
    """A chat body on `api`'s wire split around the nonce's place, which is at the end of the
    last message (a user message with string content). `system` and `tools` (name,
    description, JSON schema) take each wire's shape."""
    if not messages or messages[-1].get("role") != "user":
        raise ValueError("the last message must be a user message")
    prompt = messages[-1].get("content")
    if not isinstance(prompt, str) or _SPLICE in prompt:
        raise ValueError("prompt must be a string without the nonce placeholder")
    if isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or max_tokens < 1:
        raise ValueError(f"max_tokens {max_tokens!r} must be an integer >= 1")
    msgs = [*messages[:-1], {**messages[-1], "content": f"{prompt} {_SPLICE}"}]
    body: dict[str, Any] = {"model": model}
    if api == "anthropic":
        if system is not None:
            body["system"] = system
        body["max_tokens"] = max_tokens
        body["messages"] = msgs
        if tools:
            body["tools"] = [{"name": n, "description": d, "input_schema": s} for n, d, s in tools]
    else:
        if system is not None:
            msgs.insert(0, {"role": "system", "content": system})
        body["messages"] = msgs
        body["max_tokens"] = max_tokens
        if tools:
            body["tools"] = [
                {"type": "function", "function": {"name": n, "description": d, "parameters": s}}
                for n, d, s in tools
            ]
    body["stream"] = stream
    if stream and api == "openai":
        body["stream_options"] = {"include_usage": True}
    encoded = json.dumps(body, ensure_ascii=False, separators=(",", ":"))
    marker = json.dumps(_SPLICE, ensure_ascii=False)[1:-1]
    head, _, tail = encoded.rpartition(marker)
    return head.encode(), tail.encode()
