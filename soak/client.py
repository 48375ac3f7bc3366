"""One chat request over aiohttp, OpenAI or Anthropic wire, JSON or SSE, as one `Result`.

The only module using aiohttp's client. The request body is encoded once; per request only the
nonce `[soak:<run>:<seq>]` is spliced into the last user message, so the gateway and the mock can
tie each attempt to this request. Timestamps (sent, first byte, first token, end) come from one
monotonic clock. Every failure becomes an `Outcome` on the Result: nothing a server or the
network does raises out of `ChatClient.send`, and no URL or error text is ever recorded.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
from array import array
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Protocol

import aiohttp
from aiohttp.http_exceptions import HttpProcessingError
from yarl import URL

from soak.gateway.registry import self_headers
from soak.results import END_DONE, END_FINISH, END_USAGE, MAX_GAPS, Outcome, Result
from soak.tracing import BODY_FIELD, PROVIDER_HEADER, SERVICE_HEADER, find_marker, make_nonce

APIS = ("openai", "anthropic")
ANTHROPIC_VERSION = "2023-06-01"
_SPLICE = "\x1fSOAK-NONCE\x1f"
_DONE = b"[DONE]"
_DRAIN_AFTER_DONE = 1.0
"""Seconds to wait for the end of the HTTP body after [DONE], so the connection is reused."""
MAX_BODY_BYTES = 4 * 2**20
"""The most of one answer (JSON body, error body or whole stream) the client reads: a chat
answer is kilobytes, and a gateway sending 50 MB must not grow the tester's memory by 50 MB
per request in flight. Beyond it the answer is a bad response and the connection is dropped."""


def make_session(max_connections: int, timeout: float) -> aiohttp.ClientSession:
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
    connector = aiohttp.TCPConnector(limit=max_connections, limit_per_host=0, keepalive_timeout=30)
    return aiohttp.ClientSession(
        connector=connector,
        timeout=aiohttp.ClientTimeout(total=timeout),
        cookie_jar=aiohttp.DummyCookieJar(),
    )


def gateway_headers(
    headers: Mapping[str, str], names: Iterable[str] | None = None
) -> tuple[tuple[str, str], ...] | None:
    """The gateway's own response headers present in `headers`, or None: `names`, by default
    every known kind's `self_headers` (`soak.gateway.registry`), in which gateways say which
    target served and how often they retried (kept per Result for the gateway-said vs mock-saw
    comparison; values cut to 200 characters)."""
    keep = self_headers() if names is None else names
    found = tuple((name, value[:200]) for name in keep if (value := headers.get(name)) is not None)
    return found or None


class _Read:
    """What one response delivered so far; kept when the response breaks off."""

    __slots__ = ("answered", "end_bits", "first_byte", "first_token", "gaps", "gateway",
                 "last_token", "nbytes", "pieces", "provider", "service_s", "status",
                 "tokens", "tokens_in")  # fmt: skip

    def __init__(self) -> None:
        self.status = 0
        self.first_byte: float | None = None
        self.first_token: float | None = None
        self.last_token: float | None = None
        self.gaps: array | None = None
        self.pieces: list[str] | None = None
        self.end_bits = 0
        self.nbytes = 0
        self.tokens = 0
        self.tokens_in: int | None = None
        self.provider: str | None = None
        self.service_s: float | None = None
        self.gateway: tuple[tuple[str, str], ...] | None = None
        self.answered: str | None = None

    def mark(self, text: str, headers: Mapping[str, str], soak: Any) -> None:
        """Served-by provider and service time: content marker, else headers, else body field;
        and the nonce the body field says was answered."""
        if isinstance(soak, dict) and isinstance(answered := soak.get("nonce"), str):
            self.answered = answered[:64]
        marker = find_marker(text)
        if marker is not None:
            self.provider, self.service_s = marker.provider, marker.service_s
            return
        provider, service_us = headers.get(PROVIDER_HEADER), headers.get(SERVICE_HEADER)
        if isinstance(soak, dict):
            provider = provider or soak.get("provider")
            service_us = service_us if service_us is not None else soak.get("service_us")
        if isinstance(provider, str) and provider:
            self.provider = provider[:64]
        self.service_s = _micros(service_us)


MAX_SERVICE_US = 10**12 - 1
"""The largest service time a marker can carry (12 digits of microseconds, ~11.6 days)."""


def _micros(value: Any) -> float | None:
    """Seconds from a header's or body field's microseconds; None unless a whole number in
    [0, `MAX_SERVICE_US`] (a 4,000-digit header or 1e999 raised OverflowError out of send)."""
    if isinstance(value, str):
        value = value.strip()
        if not (value.isascii() and value.isdigit() and len(value) <= 12):
            return None
        value = int(value)
    elif isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_SERVICE_US:
        return None
    return value / 1e6


class RequestTemplates(Protocol):
    """The request template seam: per request, which pre-encoded body (split around the nonce)
    and which header set to send. `soak.workload.RequestPlan` is one; without it every
    request is the one body built from `prompt` and `max_tokens`."""

    header_sets: Sequence[Mapping[str, str]]
    """Extra headers per index (e.g. one virtual key each), over the client's own."""

    def pick(self, seq: int) -> tuple[bytes, bytes, int]:
        """(head, tail, header set index) of request `seq`; must be O(1) and never raise."""
        ...


def _count(value: Any) -> int | None:
    """A usage token count: a non-negative int, else None."""
    ok = isinstance(value, int) and not isinstance(value, bool) and value >= 0
    return value if ok else None


class _Bad(Exception):
    """The response is not what the wire promised; carries the outcome to record."""

    def __init__(self, outcome: Outcome) -> None:
        super().__init__(outcome.value)
        self.outcome = outcome


class ChatClient:
    """Sends chat requests to one endpoint URL; `send(seq, intended)` is the engine's `send`."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
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
        clock: Callable[[], float] = time.perf_counter,
        keep_headers: Iterable[str] | None = None,
        templates: RequestTemplates | None = None,
    ) -> None:
        if api not in APIS:
            raise ValueError(f"api {api!r} must be one of {', '.join(APIS)}")
        make_nonce(run_id, 0)  # validates the run id once; send() builds nonces directly
        if timeout is not None and not timeout > 0:
            raise ValueError(f"timeout {timeout!r} must be > 0 seconds")
        self._session = session
        self._url = URL(url)
        self.api = api
        self.stream = stream
        self.run_id = run_id
        self._clock = clock
        # the gateway's response headers kept per Result: by default every kind's own
        self._keep = tuple(self_headers() if keep_headers is None else keep_headers)
        self._timeout = aiohttp.ClientTimeout(total=timeout) if timeout else None
        self._headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if stream:
            self._headers["Accept"] = "text/event-stream"
        if api == "anthropic":
            self._headers["anthropic-version"] = ANTHROPIC_VERSION
        self._headers.update(headers or {})
        self._head, self._tail = _encode_body(api, model, prompt, max_tokens, stream)
        self._templates = templates
        self._header_sets = [
            {**self._headers, **extra} for extra in (templates.header_sets if templates else ())
        ]
        self._nonce_head = f"[soak:{run_id}:"

    async def send(self, seq: int, intended: float) -> Result:
        """One request; always a Result (failures are outcomes), latency counted from `intended`."""
        clock = self._clock
        nonce = f"{self._nonce_head}{seq}]"
        headers = self._headers
        if self._templates is None:
            body = self._head + nonce.encode() + self._tail
        else:
            head, tail, which = self._templates.pick(seq)
            body = head + nonce.encode() + tail
            if self._header_sets:
                headers = self._header_sets[which]
        read = _Read()
        sent = clock()
        try:
            async with self._session.post(
                self._url,
                data=body,
                headers=headers,
                timeout=self._timeout,
                allow_redirects=False,  # a 3xx is an outcome: headers never go elsewhere
            ) as resp:
                read.first_byte = clock()
                read.status = status = resp.status
                read.gateway = gateway_headers(resp.headers, self._keep)
                if not 200 <= status < 300:
                    read.nbytes = await _discard(resp)
                    outcome = Outcome.from_status(status)
                elif self.stream:
                    outcome = await self._read_stream(resp, read)
                else:
                    outcome = await self._read_json(resp, read)
            end = clock()
        except _Bad as bad:
            end, outcome = clock(), bad.outcome
        except TimeoutError:
            end, outcome = clock(), Outcome.TIMEOUT
        except aiohttp.ClientConnectorError:
            end, outcome = clock(), Outcome.CONNECT
        except (ValueError, HttpProcessingError, aiohttp.ClientResponseError):
            # not HTTP: a bad status line, header, length or chunk; an SSE line too long
            end, outcome = clock(), Outcome.BAD_RESPONSE
        except (aiohttp.ClientError, OSError):
            # reset or broken off: before any answer it is a connection failure, after the
            # status line the answer was cut short
            end = clock()
            outcome = Outcome.CONNECT if read.first_byte is None else Outcome.STREAM_BROKEN
        ok = outcome is Outcome.OK
        pieces = read.pieces
        return Result(
            seq,
            intended,
            sent,
            end,
            outcome,
            read.status,
            read.first_byte,
            read.first_token,
            read.nbytes,
            read.tokens,
            read.provider if ok else None,
            read.service_s if ok else None,
            nonce,
            read.gateway,
            read.last_token,
            0 if pieces is None else len(pieces),
            read.gaps,
            None if pieces is None else hashlib.sha256("".join(pieces).encode()).hexdigest(),
            read.end_bits,
            read.answered if ok else None,
            read.tokens_in,
        )

    async def _read_json(self, resp: aiohttp.ClientResponse, read: _Read) -> Outcome:
        raw = await _read_bounded(resp)
        if raw is None:
            read.nbytes = MAX_BODY_BYTES
            return Outcome.BAD_RESPONSE
        read.nbytes = len(raw)
        try:
            data = json.loads(raw)
            if self.api == "openai":
                text = data["choices"][0]["message"]["content"] or ""
                usage = data.get("usage") or {}
                tokens, tokens_in = usage.get("completion_tokens"), usage.get("prompt_tokens")
            else:
                text = "".join(b.get("text", "") for b in data["content"] if isinstance(b, dict))
                usage = data.get("usage") or {}
                tokens, tokens_in = usage.get("output_tokens"), usage.get("input_tokens")
        except (ValueError, KeyError, IndexError, TypeError, AttributeError, RecursionError):
            return Outcome.BAD_RESPONSE
        if not isinstance(text, str):
            return Outcome.BAD_RESPONSE
        read.tokens = tokens if isinstance(tokens, int) else 0
        read.tokens_in = _count(tokens_in)
        read.mark(text, resp.headers, data.get(BODY_FIELD))
        return Outcome.OK

    async def _read_stream(self, resp: aiohttp.ClientResponse, read: _Read) -> Outcome:
        """SSE: OpenAI `data:` chunks until `[DONE]`, or Anthropic events until message_stop.

        Per content chunk the hot path takes one clock reading and appends one gap to a
        compact `array('d')`; the content is hashed once at the end (`Result.digest`).
        """
        clock = self._clock
        anthropic = self.api == "anthropic"
        read.pieces = pieces = []
        read.gaps = gaps = array("d")
        usage_tokens: int | None = None
        soak: Any = None
        saw_data = False
        last = 0.0
        async for line in resp.content:
            read.nbytes += len(line)
            if read.nbytes > MAX_BODY_BYTES:
                raise _Bad(Outcome.BAD_RESPONSE)
            if not line.startswith(b"data:"):
                continue
            saw_data = True
            if not line.endswith(b"\n"):
                raise _Bad(Outcome.STREAM_BROKEN)  # the stream ended inside an event
            payload = line[5:].strip()
            if payload == _DONE and not anthropic:
                read.end_bits |= END_DONE
                break
            try:
                chunk = json.loads(payload)
                soak = chunk.get(BODY_FIELD, soak)
                if anthropic:
                    kind = chunk["type"]
                    if kind == "content_block_delta":
                        text = chunk["delta"].get("text")
                    elif kind == "message_stop":
                        read.end_bits |= END_DONE
                        break
                    elif kind == "error":
                        raise _Bad(Outcome.STREAM_BROKEN)
                    else:
                        if kind == "message_start":
                            usage = (chunk.get("message") or {}).get("usage") or {}
                            read.tokens_in = _count(usage.get("input_tokens"))
                        if kind == "message_delta":
                            usage = chunk.get("usage")
                            if usage:
                                usage_tokens = usage.get("output_tokens")
                                read.end_bits |= END_USAGE
                            if chunk["delta"].get("stop_reason"):
                                read.end_bits |= END_FINISH
                        continue
                else:
                    if "error" in chunk:
                        raise _Bad(Outcome.STREAM_BROKEN)
                    usage = chunk.get("usage")
                    if usage:
                        usage_tokens = usage.get("completion_tokens")
                        read.tokens_in = _count(usage.get("prompt_tokens"))
                        read.end_bits |= END_USAGE
                    choices = chunk["choices"]
                    if choices:
                        choice = choices[0]
                        text = choice["delta"].get("content")
                        if choice.get("finish_reason"):
                            read.end_bits |= END_FINISH
                    else:
                        text = None
            except (ValueError, KeyError, IndexError, TypeError, AttributeError, RecursionError):
                raise _Bad(Outcome.BAD_RESPONSE) from None
            if text:
                now = clock()
                if read.first_token is None:
                    read.first_token = now
                elif len(gaps) < MAX_GAPS:
                    gaps.append(now - last)
                last = read.last_token = now
                pieces.append(text)
        if not read.end_bits & END_DONE:
            # events that stopped short were cut; a 200 without any event was never a stream
            return Outcome.STREAM_BROKEN if saw_data else Outcome.BAD_RESPONSE
        read.tokens = usage_tokens if isinstance(usage_tokens, int) else len(pieces)
        read.mark("".join(pieces), resp.headers, soak)
        await _drain(resp)
        return Outcome.OK


async def _read_bounded(resp: aiohttp.ClientResponse) -> bytes | None:
    """The body, or None when it is longer than `MAX_BODY_BYTES` (read no further)."""
    if resp.content_length is not None and resp.content_length > MAX_BODY_BYTES:
        return None
    body = bytearray()
    async for chunk in resp.content.iter_any():
        body += chunk
        if len(body) > MAX_BODY_BYTES:
            return None
    return bytes(body)


async def _discard(resp: aiohttp.ClientResponse) -> int:
    """Read and drop an error answer's body up to `MAX_BODY_BYTES`; returns the bytes read."""
    seen = 0
    async for chunk in resp.content.iter_any():
        seen += len(chunk)
        if seen > MAX_BODY_BYTES:
            break
    return seen


async def _drain(resp: aiohttp.ClientResponse) -> None:
    """Read what follows the end of the stream (the chunk terminator) to keep the connection."""
    content = resp.content
    if content.at_eof():
        return
    try:
        async with asyncio.timeout(_DRAIN_AFTER_DONE):
            while await content.readany():
                pass
    except (TimeoutError, aiohttp.ClientError, OSError):
        pass  # the answer is complete; the connection is simply not reused


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
