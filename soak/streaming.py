"""Streams, token by token: vLLM `bench serve` timing, what the gateway added, and integrity.

Pure: works on `Result` records and the mock's trace of each attempt (what it sent: time to
its first chunk, chunk and token counts, a sha256 of the content, its last-chunk service time).
Definitions and formulas are in docs/streaming.md. Every stream lands in exactly one class of
`CLASSES`, checked in this order:

- `failed`: no stream at all (an HTTP error, no connection, a timeout before any byte);
- `untraced`: the mock has no streamed attempt for the nonce (nothing to compare with);
- `truncated`: the content differs from what the mock sent (fewer chunks, other digest);
- `unterminated`: the content is whole but the stream lacked its end (end event, finish
  reason or usage);
- `buffered`: the gateway held the stream and released it at once: the mock spread its chunks
  over `span` seconds, the client got them within `BUFFERED_SHARE` of that;
- `stalled`: a gap between two chunks above the stall bound;
- `rechunked`: the same content in another number of chunks;
- `whole`: what the mock sent, chunk for chunk.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from soak.results import END_DONE, END_FINISH, END_USAGE, Result
from soak.stats import summarize
from soak.summary import LatencySummary

CLASSES = (
    "whole",
    "rechunked",
    "buffered",
    "stalled",
    "unterminated",
    "truncated",
    "untraced",
    "failed",
)
"""Integrity classes (bounded: a Prometheus label value)."""
TERMINATED = END_DONE | END_FINISH | END_USAGE
BUFFERED_SHARE = 0.1
"""A stream is buffered when the client saw its chunks within this share of the mock's span."""
BUFFERED_MIN_SPAN = 0.02
"""Spans shorter than this (seconds) are too short to tell buffering from a fast path."""


@dataclass(frozen=True, slots=True)
class Sent:
    """What the mock says it sent for one streamed attempt (its trace)."""

    first_chunk_s: float
    """Its own time from seeing the request to writing the first content chunk."""
    last_chunk_s: float
    """Its service time: to the last content chunk (the marker's `service_s`)."""
    chunks: int
    tokens: int
    digest: str

    @property
    def span(self) -> float:
        """Seconds between its first and last content chunk."""
        return max(0.0, self.last_chunk_s - self.first_chunk_s)


def sent_of(attempts: Sequence[Mapping[str, Any]], provider: str | None = None) -> Sent | None:
    """The streamed attempt that served a request: the last one with stream fields and status
    200 (of `provider` when it is known), or None."""
    streamed = [a for a in attempts if a.get("digest") and a.get("status") == 200]
    if provider is not None:
        streamed = [a for a in streamed if a.get("provider") == provider] or streamed
    if not streamed:
        return None
    a = streamed[-1]
    return Sent(
        first_chunk_s=float(a["first_chunk_s"]),
        last_chunk_s=float(a["service_s"]),
        chunks=int(a["chunks"]),
        tokens=int(a["tokens"]),
        digest=str(a["digest"]),
    )


def e2e(r: Result) -> float:
    """End-to-end latency from the actual send to the end of the answer."""
    return r.end - r.sent


def tpot(r: Result) -> float | None:
    """Time per output token after the first: (E2E − TTFT) / (tokens − 1); None below 2."""
    ttft = r.ttft
    if ttft is None or r.tokens_out < 2:
        return None
    return (e2e(r) - ttft) / (r.tokens_out - 1)


def output_rate(r: Result) -> float | None:
    """Output tokens per second of one request: tokens / E2E."""
    span = e2e(r)
    return r.tokens_out / span if r.tokens_out and span > 0 else None


def added_ttft(r: Result, sent: Sent) -> float | None:
    """What the path added to the first token: client TTFT − the mock's time to first chunk."""
    ttft = r.ttft
    return None if ttft is None else ttft - sent.first_chunk_s


def added_last(r: Result, sent: Sent) -> float | None:
    """The same for the last chunk: client time to last chunk − the mock's service time."""
    if r.last_token is None:
        return None
    return (r.last_token - r.sent) - sent.last_chunk_s


def added_tpot(r: Result, sent: Sent) -> float | None:
    """What the path added per output token: client TPOT − the mock's own
    (its span from first to last chunk / (tokens − 1))."""
    per_token = tpot(r)
    if per_token is None or sent.tokens < 2:
        return None
    return per_token - sent.span / (sent.tokens - 1)


def max_gap(r: Result) -> float:
    gaps = r.chunk_gaps
    return max(gaps) if gaps else 0.0


def classify(r: Result, sent: Sent | None, stall: float) -> str:
    """The integrity class of one stream (see the module docstring for the order)."""
    if r.digest is None or not 200 <= r.status < 300:
        return "failed"
    if sent is None:
        return "untraced"
    if r.digest != sent.digest:
        return "truncated"
    if r.stream_end & TERMINATED != TERMINATED:
        return "unterminated"
    if sent.chunks > 1 and sent.span >= BUFFERED_MIN_SPAN:
        seen = (
            0.0 if r.last_token is None or r.first_token is None else r.last_token - r.first_token
        )
        if seen < BUFFERED_SHARE * sent.span:
            return "buffered"
    if max_gap(r) > stall:
        return "stalled"
    if r.chunks != sent.chunks:
        return "rechunked"
    return "whole"


@dataclass(frozen=True, slots=True)
class Bounds:
    """Per-request streaming SLOs (seconds) a request must meet to count towards goodput."""

    ttft: float
    tpot: float
    e2e: float


def meets(r: Result, bounds: Bounds) -> bool:
    """A successful stream within every per-request bound (vLLM goodput)."""
    ttft, per_token = r.ttft, tpot(r)
    return (
        r.ok
        and ttft is not None
        and ttft <= bounds.ttft
        and (per_token is None or per_token <= bounds.tpot)
        and e2e(r) <= bounds.e2e
    )


@dataclass(slots=True)
class StreamStats:
    """A phase's streams: distributions (seconds), integrity counts, goodput."""

    distributions: dict[str, LatencySummary] = field(default_factory=dict)
    """Seconds: ttft, itl, tpot, e2e, added_ttft, added_last, added_tpot."""
    output_tokens_per_s: LatencySummary | None = None
    """Per-request output tokens per second (not seconds: kept apart from `distributions`)."""
    integrity: dict[str, int] = field(default_factory=dict)
    streams: int = 0
    output_tokens: int = 0
    request_rate: float = 0.0
    """Successful streams per second over the phase."""
    goodput: float = 0.0
    """Streams per second that met every per-request bound."""
    output_token_rate: float = 0.0
    """Output tokens per second over the phase (all streams)."""
    max_gap: float = 0.0

    @property
    def whole_ratio(self) -> float | None:
        return self.integrity.get("whole", 0) / self.streams if self.streams else None

    def to_details(self) -> dict[str, Any]:
        """JSON-safe figures for `StreamingDetails.streaming` (distributions apart)."""
        return {
            "streams": self.streams,
            "integrity": dict(self.integrity),
            "whole_ratio": self.whole_ratio,
            "request_rate": self.request_rate,
            "goodput": self.goodput,
            "output_tokens": self.output_tokens,
            "output_token_rate": self.output_token_rate,
            "max_gap": self.max_gap,
            "output_tokens_per_s": None
            if self.output_tokens_per_s is None
            else asdict(self.output_tokens_per_s),
        }


def analyze(
    results: Iterable[Result],
    sent: Mapping[str, Sent | None],
    *,
    stall: float,
    bounds: Bounds,
    duration: float,
) -> StreamStats:
    """Timing, gateway-added time, integrity and goodput of `results` over `duration` seconds;
    `sent` maps each nonce to what the mock sent (None: untraced)."""
    out = StreamStats(integrity=dict.fromkeys(CLASSES, 0))
    ttft, itl, per_token, ends, rates, first, last, added = [], [], [], [], [], [], [], []
    ok = good = 0
    for r in results:
        out.streams += 1
        s = sent.get(r.nonce or "")
        out.integrity[classify(r, s, stall)] += 1
        if r.chunk_gaps:
            itl.extend(r.chunk_gaps)
            out.max_gap = max(out.max_gap, max(r.chunk_gaps))
        if not r.ok:
            continue
        ok += 1
        good += meets(r, bounds)
        out.output_tokens += r.tokens_out
        for values, value in (
            (ttft, r.ttft),
            (per_token, tpot(r)),
            (ends, e2e(r)),
            (rates, output_rate(r)),
            (first, None if s is None else added_ttft(r, s)),
            (last, None if s is None else added_last(r, s)),
            (added, None if s is None else added_tpot(r, s)),
        ):
            if value is not None and math.isfinite(value):
                values.append(value)
    for name, values in (
        ("ttft", ttft),
        ("itl", itl),
        ("tpot", per_token),
        ("e2e", ends),
        ("added_ttft", first),
        ("added_last", last),
        ("added_tpot", added),
    ):
        summary = summarize(values)
        if summary is not None:
            out.distributions[name] = summary
    if rates:
        rates.sort()
        out.output_tokens_per_s = _plain_summary(rates)
    if duration > 0:
        out.request_rate = ok / duration
        out.goodput = good / duration
        out.output_token_rate = out.output_tokens / duration
    return out


def _plain_summary(values: list[float]) -> LatencySummary:
    """Nearest-rank summary of sorted values that are not seconds (tokens per second)."""

    def rank(q: float) -> float:
        return values[min(len(values) - 1, max(0, math.ceil(q * len(values)) - 1))]

    return LatencySummary(
        count=len(values),
        min=values[0],
        mean=sum(values) / len(values),
        p50=rank(0.5),
        p90=rank(0.9),
        p95=rank(0.95),
        p99=rank(0.99),
        max=values[-1],
    )
