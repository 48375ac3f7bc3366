"""Reading one chat answer as its bytes arrive: OpenAI or Anthropic wire, JSON or SSE.

`JsonAnswer` and `StreamAnswer` are `soak.http1.Handler`s: the connection hands them the status
line, the headers and the decoded body bytes inside its read callback, each with the time they
arrived, and they keep what a `Result` needs. Nothing they are fed raises: every answer ends as
one `Outcome` (hostile or broken ones included), read no further than `MAX_BODY_BYTES`.

Per stream chunk the work is one JSON parse of the event and, for content, one append to the
text and one gap to a compact `array('d')`; the content is joined, hashed and searched for the
mock's marker once, at the end.
"""

from __future__ import annotations

import hashlib
import json
from array import array
from collections.abc import Iterable, Mapping
from typing import Any

from soak.gateway.registry import self_headers
from soak.http1 import ABANDON, CONTINUE, FINISHED, Failure
from soak.results import END_DONE, END_FINISH, END_USAGE, MAX_GAPS, Outcome, Result
from soak.tracing import BODY_FIELD, MARKER_RE, PROVIDER_HEADER, SERVICE_HEADER, find_marker

MAX_BODY_BYTES = 4 * 2**20
"""The most of one answer (JSON body, error body or whole stream) the client reads: a chat
answer is kilobytes, and a gateway sending 50 MB must not grow the tester's memory by 50 MB
per request in flight. Beyond it the answer is a bad response and the connection is dropped."""
MAX_SERVICE_US = 10**12 - 1
"""The largest service time a marker can carry (12 digits of microseconds, ~11.6 days)."""
FAILURES = {
    Failure.CONNECT: Outcome.CONNECT,
    Failure.BROKEN: Outcome.STREAM_BROKEN,
    Failure.BAD: Outcome.BAD_RESPONSE,
    Failure.TIMEOUT: Outcome.TIMEOUT,
}
_PARSE_ERRORS = (ValueError, KeyError, IndexError, TypeError, AttributeError, RecursionError,
                 StopIteration)  # fmt: skip
_DONE = b"[DONE]"
_SCAN = json.JSONDecoder().scan_once
_SPACE = " \t\r\n"


def parse_json(raw: bytes) -> Any:
    """`json.loads` of UTF-8 bytes without its per-call detours (encoding detection, keyword
    checks), which cost as much as the parse of a stream event: the C scanner itself, and the
    same refusals (not JSON, extra data after the value, not UTF-8, nested past the limit)."""
    text = raw.decode()
    start = 0 if text[:1] not in _SPACE else len(text) - len(text.lstrip(_SPACE))
    value, end = _SCAN(text, start)  # StopIteration: no JSON value there
    if end != len(text) and text[end:].strip(_SPACE):
        raise ValueError("extra data after the JSON value")
    return value


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


def _count(value: Any) -> int | None:
    """A usage token count: a non-negative int, else None."""
    ok = isinstance(value, int) and not isinstance(value, bool) and value >= 0
    return value if ok else None


def last_marker(text: str) -> tuple[str, float] | None:
    """The last `[mock:<provider>:<us>]` in `text` as (provider, seconds): found from the end
    (the mock appends it), the whole text searched only when the last one is malformed."""
    at = text.rfind("[mock:")
    if at < 0:
        return None
    found = MARKER_RE.match(text, at)
    if found is not None:
        return found.group(1), int(found.group(2)) / 1e6
    marker = find_marker(text)
    return None if marker is None else (marker.provider, marker.service_s)


class Answer:
    """What one answer delivered so far (kept when it breaks off); an error status's body is
    read and dropped up to the bound. Subclasses read a successful answer's body."""

    __slots__ = ("answered", "end", "end_bits", "first_byte", "first_token", "gaps", "gateway",
                 "headers", "keep", "last_token", "nbytes", "outcome", "pieces", "provider",
                 "service_s", "status", "tokens", "tokens_in")  # fmt: skip

    def __init__(self, keep: tuple[str, ...] = ()) -> None:
        self.keep = keep
        self.outcome: Outcome | None = None
        self.status = 0
        self.end = 0.0
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
        self.headers: Mapping[str, str] = {}

    # soak.http1.Handler
    def head(self, status: int, headers: dict[str, str], at: float) -> int:
        self.status, self.first_byte, self.headers = status, at, headers
        self.gateway = gateway_headers(headers, self.keep) if self.keep else None
        if not 200 <= status < 300:
            self.outcome = Outcome.from_status(status)  # its body is read and dropped
        return CONTINUE

    def body(self, data: bytes, at: float) -> int:
        """An error answer's body: counted, dropped, read up to the bound."""
        self.nbytes += len(data)
        if self.nbytes > MAX_BODY_BYTES:
            self.end = at
            return ABANDON
        return CONTINUE

    def done(self, at: float) -> None:
        self.end = at

    def fail(self, kind: str, at: float) -> None:
        self.end, self.outcome = at, FAILURES[kind]

    def mark(self, text: str, headers: Mapping[str, str], soak: Any) -> None:
        """Served-by provider and service time: content marker, else headers, else body field;
        and the nonce the body field says was answered."""
        if isinstance(soak, dict) and isinstance(answered := soak.get("nonce"), str):
            self.answered = answered[:64]
        marker = last_marker(text)
        if marker is not None:
            self.provider, self.service_s = marker
            return
        provider, service_us = headers.get(PROVIDER_HEADER), headers.get(SERVICE_HEADER)
        if isinstance(soak, dict):
            provider = provider or soak.get("provider")
            service_us = service_us if service_us is not None else soak.get("service_us")
        if isinstance(provider, str) and provider:
            self.provider = provider[:64]
        self.service_s = _micros(service_us)

    def result(self, seq: int, intended: float, sent: float, nonce: str) -> Result:
        outcome = self.outcome or Outcome.BAD_RESPONSE
        ok = outcome is Outcome.OK
        pieces = self.pieces
        return Result(
            seq, intended, sent, self.end, outcome, self.status, self.first_byte,
            self.first_token, self.nbytes, self.tokens, self.provider if ok else None,
            self.service_s if ok else None, nonce, self.gateway, self.last_token,
            0 if pieces is None else len(pieces), self.gaps,
            None if pieces is None else hashlib.sha256("".join(pieces).encode()).hexdigest(),
            self.end_bits, self.answered if ok else None, self.tokens_in,
        )  # fmt: skip


class JsonAnswer(Answer):
    """A JSON chat completion (OpenAI `choices[0].message.content`, Anthropic `content[]`)."""

    __slots__ = ("_anthropic", "_parts")

    def __init__(self, keep: tuple[str, ...] = (), *, anthropic: bool = False) -> None:
        super().__init__(keep)
        self._anthropic = anthropic
        self._parts: list[bytes] = []

    def head(self, status: int, headers: dict[str, str], at: float) -> int:
        super().head(status, headers, at)
        length = headers.get("content-length", "")
        if self.outcome is None and length.isdigit() and int(length) > MAX_BODY_BYTES:
            self.nbytes, self.end, self.outcome = MAX_BODY_BYTES, at, Outcome.BAD_RESPONSE
            return ABANDON  # never waited for, never read
        return CONTINUE

    def body(self, data: bytes, at: float) -> int:
        if self.outcome is not None:
            return super().body(data, at)
        self.nbytes += len(data)
        if self.nbytes > MAX_BODY_BYTES:
            self.nbytes, self.end, self.outcome = MAX_BODY_BYTES, at, Outcome.BAD_RESPONSE
            return ABANDON
        self._parts.append(data)
        return CONTINUE

    def done(self, at: float) -> None:
        self.end = at
        if self.outcome is None:
            self.outcome = self._parse(b"".join(self._parts))

    def _parse(self, raw: bytes) -> Outcome:
        try:
            data = parse_json(raw)
            usage = data.get("usage") or {}
            if self._anthropic:
                text = "".join(b.get("text", "") for b in data["content"] if isinstance(b, dict))
                tokens, tokens_in = usage.get("output_tokens"), usage.get("input_tokens")
            else:
                text = data["choices"][0]["message"]["content"] or ""
                tokens, tokens_in = usage.get("completion_tokens"), usage.get("prompt_tokens")
        except _PARSE_ERRORS:
            return Outcome.BAD_RESPONSE
        if not isinstance(text, str):
            return Outcome.BAD_RESPONSE
        self.tokens = tokens if isinstance(tokens, int) else 0
        self.tokens_in = _count(tokens_in)
        self.mark(text, self.headers, data.get(BODY_FIELD))
        return Outcome.OK


class StreamAnswer(Answer):
    """SSE: OpenAI `data:` chunks until `[DONE]`, or Anthropic events until `message_stop`.
    Times are those of the read that delivered each event."""

    __slots__ = ("_anthropic", "_last", "_partial", "_saw_data", "_soak", "_usage")

    def __init__(self, keep: tuple[str, ...] = (), *, anthropic: bool = False) -> None:
        super().__init__(keep)
        self._anthropic = anthropic
        self._partial = b""
        self._saw_data = False
        self._soak: Any = None
        self._usage: Any = None
        self._last = 0.0
        self.pieces = []
        self.gaps = array("d")

    def body(self, data: bytes, at: float) -> int:
        if self.outcome is not None:
            return super().body(data, at)
        self.nbytes += len(data)
        if self.nbytes > MAX_BODY_BYTES:
            self.end, self.outcome = at, Outcome.BAD_RESPONSE
            return ABANDON
        lines = (self._partial + data if self._partial else data).split(b"\n")
        self._partial = lines.pop()
        for line in lines:
            if not line.startswith(b"data:"):
                continue
            self._saw_data = True
            outcome = self._event(line[5:].strip(), at)
            if outcome is not None:
                self.end, self.outcome = at, outcome
                if outcome is not Outcome.OK:
                    return ABANDON
                self._done()
                return FINISHED
        return CONTINUE

    def _event(self, payload: bytes, at: float) -> Outcome | None:
        """One `data:` event; an outcome when it ends the stream."""
        anthropic = self._anthropic
        if payload == _DONE and not anthropic:
            self.end_bits |= END_DONE
            return Outcome.OK
        try:
            chunk = parse_json(payload)
            self._soak = chunk.get(BODY_FIELD, self._soak)
            if anthropic:
                kind = chunk["type"]
                if kind == "content_block_delta":
                    text = chunk["delta"].get("text")
                elif kind == "message_stop":
                    self.end_bits |= END_DONE
                    return Outcome.OK
                elif kind == "error":
                    return Outcome.STREAM_BROKEN
                else:
                    if kind == "message_start":
                        usage = (chunk.get("message") or {}).get("usage") or {}
                        self.tokens_in = _count(usage.get("input_tokens"))
                    elif kind == "message_delta":
                        usage = chunk.get("usage")
                        if usage:
                            self._usage = usage.get("output_tokens")
                            self.end_bits |= END_USAGE
                        if chunk["delta"].get("stop_reason"):
                            self.end_bits |= END_FINISH
                    return None
            else:
                if "error" in chunk:
                    return Outcome.STREAM_BROKEN
                usage = chunk.get("usage")
                if usage:
                    self._usage = usage.get("completion_tokens")
                    self.tokens_in = _count(usage.get("prompt_tokens"))
                    self.end_bits |= END_USAGE
                choices = chunk["choices"]
                text = None
                if choices:
                    choice = choices[0]
                    text = choice["delta"].get("content")
                    if choice.get("finish_reason"):
                        self.end_bits |= END_FINISH
        except _PARSE_ERRORS:
            return Outcome.BAD_RESPONSE
        if text:
            if not isinstance(text, str):
                return Outcome.BAD_RESPONSE
            if self.first_token is None:
                self.first_token = at
            elif len(self.gaps) < MAX_GAPS:  # type: ignore[arg-type]
                self.gaps.append(at - self._last)  # type: ignore[union-attr]
            self._last = self.last_token = at
            self.pieces.append(text)  # type: ignore[union-attr]
        return None

    def _done(self) -> None:
        usage = self._usage
        self.tokens = usage if isinstance(usage, int) else len(self.pieces)  # type: ignore[arg-type]
        self.mark("".join(self.pieces), self.headers, self._soak)  # type: ignore[arg-type]

    def done(self, at: float) -> None:
        self.end = at
        if self.outcome is None:  # the body ended before the end event
            cut = self._saw_data or self._partial.startswith(b"data:")
            self.outcome = Outcome.STREAM_BROKEN if cut else Outcome.BAD_RESPONSE
