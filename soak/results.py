"""The one record the load engine emits per request, and its bounded outcome vocabulary.

Every consumer (stats, metrics, verdicts, reports) reads `Result`; nothing else talks to the
engine. Times are seconds on the tester's monotonic clock except where named `_s` durations.
"""

from __future__ import annotations

from array import array
from dataclasses import dataclass
from enum import StrEnum


class Outcome(StrEnum):
    """How a request ended. Bounded: safe as a Prometheus label value."""

    OK = "ok"
    HTTP_3XX = "http_3xx"
    """A redirect: never followed, so no header (secrets included) goes to another origin."""
    HTTP_4XX = "http_4xx"
    HTTP_429 = "http_429"
    HTTP_5XX = "http_5xx"
    TIMEOUT = "timeout"
    CONNECT = "connect"
    STREAM_BROKEN = "stream_broken"
    BAD_RESPONSE = "bad_response"
    UNTRACED = "untraced"
    """A well-formed answer whose nonce the mock never saw: served from a cache, or invented."""
    FORGED = "forged"
    """A well-formed answer whose marker disagrees with the mock's trace of that nonce."""

    @classmethod
    def from_status(cls, status: int) -> Outcome:
        """Classify a non-2xx HTTP status (1xx and anything past 599 are not HTTP answers)."""
        if status == 429:
            return cls.HTTP_429
        if 300 <= status < 400:
            return cls.HTTP_3XX
        if 400 <= status < 500:
            return cls.HTTP_4XX
        if 500 <= status < 600:
            return cls.HTTP_5XX
        return cls.BAD_RESPONSE


END_FINISH, END_USAGE, END_DONE = 1, 2, 4
"""`Result.stream_end` bits."""
MAX_GAPS = 65536
"""Chunk gaps kept per stream (512 KiB at most): a longer stream keeps its first gaps."""


@dataclass(slots=True)
class Result:
    """One request: when it was due, when it went out, how and when it ended.

    `intended` is the open-loop schedule's due time; latency from it includes any send lag, so
    a slow generator or gateway cannot hide queueing (no coordinated omission).
    """

    seq: int
    intended: float
    sent: float
    end: float
    outcome: Outcome
    status: int = 0
    first_byte: float | None = None
    first_token: float | None = None
    bytes_in: int = 0
    tokens_out: int = 0
    provider: str | None = None
    """Provider that served it, from the mock's marker (None when unknown or failed)."""
    service_s: float | None = None
    """The mock's own service time for the serving attempt, from its marker."""
    nonce: str | None = None
    gateway_headers: tuple[tuple[str, str], ...] | None = None
    """The gateway's own response headers about routing (a bounded allowlist: the gateway kinds'
    `self_headers`, which target it says served, its retries); None: none sent."""
    last_token: float | None = None
    """When the last content chunk arrived (streams; same clock as `sent`)."""
    chunks: int = 0
    """Content chunks received (streams): events that carried answer text."""
    chunk_gaps: array | None = None
    """Seconds between consecutive content chunks (`array('d')`, at most `MAX_GAPS` kept)."""
    digest: str | None = None
    """sha256 (hex) of the streamed content as received, to compare with what the mock sent."""
    stream_end: int = 0
    """What closed the stream, as bits: `END_FINISH` a finish reason, `END_USAGE` usage,
    `END_DONE` the end event (`data: [DONE]` / `message_stop`)."""
    answered: str | None = None
    """The nonce the answer's `soak` body field says the mock answered (None when the gateway
    dropped the field): another request's nonce means a replayed answer."""
    tokens_in: int | None = None
    """Prompt tokens the gateway's `usage` reports (`prompt_tokens` / `input_tokens`); None
    when it reported none (checked against the mock's count: a gateway bills by it)."""

    @property
    def ok(self) -> bool:
        return self.outcome is Outcome.OK

    @property
    def latency(self) -> float:
        """Seconds from the intended start to the end (what a user waiting in line saw)."""
        return self.end - self.intended

    @property
    def service_latency(self) -> float:
        """Seconds from the actual send to the end."""
        return self.end - self.sent

    @property
    def send_lag(self) -> float:
        """Seconds the send ran behind schedule."""
        return self.sent - self.intended

    @property
    def ttft(self) -> float | None:
        """Seconds from the actual send to the first content token (streams only)."""
        return None if self.first_token is None else self.first_token - self.sent

    @property
    def overhead(self) -> float | None:
        """What the path between tester and mock added: client latency − mock service time."""
        if self.service_s is None or not self.ok:
            return None
        return self.service_latency - self.service_s
