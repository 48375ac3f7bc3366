"""Config of the streaming soak (`phases.streaming`, `slo.streaming`): strict parsing.

Split from `soak.config` like the capacity search. Both sections are optional: missing keys
take the defaults below (the `quick` profile's figures), so a file written before the phase
existed stays valid.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from soak.config.fields import Section


@dataclass(frozen=True, slots=True)
class StreamingPhase:
    """`streams` long streams started evenly over `ramp`, the mock answering each with a first
    token after `ttft`, then `tokens` − 1 more, `inter_token` apart; the gateway's memory and
    descriptors are compared before the first stream and `settle` after the last one ended."""

    streams: int = 40
    ramp: float = 4.0
    ttft: float = 0.2
    inter_token: float = 0.25
    tokens: int = 80
    stall: float = 2.0
    """A gap between two content chunks above this is a stall."""
    settle: float = 3.0
    warmup: bool = True
    """Before the "before" sample, open `streams` short streams at once (a watched gateway)."""
    timeout: float = 60.0
    """Per-stream client timeout; must outlast a stream (ttft + (tokens − 1) × inter_token)."""

    @property
    def stream_time(self) -> float:
        """How long the mock takes to send one whole stream."""
        return self.ttft + (self.tokens - 1) * self.inter_token


@dataclass(frozen=True, slots=True)
class StreamingSlo:
    """Bounds on what the gateway added to streams, their integrity, and per-request goodput."""

    added_ttft_p50: float = 0.005
    """Gateway-added time to first token (client TTFT − the mock's own), at p50."""
    added_ttft_p99: float = 0.1
    added_tpot_p50: float = 0.001
    """Gateway-added time per output token (client TPOT − the mock's own), at p50."""
    whole_ratio: float = 1.0
    """Share of streams that must arrive whole (chunk for chunk what the mock sent)."""
    ttft: float = 1.0
    """Goodput: a stream counts when its TTFT, TPOT and E2E are within these bounds."""
    tpot: float = 0.5
    e2e: float = 40.0
    goodput_ratio: float = 0.99
    """Goodput / rate of successful streams."""
    rss_growth: float = 0.25
    """The gateway's RSS after the streams (and `settle`) / before − 1."""
    fds_growth: int = 16
    """Open descriptors after the streams (and `settle`) − before."""


DEFAULT_STREAMING = StreamingPhase()
DEFAULT_STREAMING_SLO = StreamingSlo()
PHASE_KEYS = ("streams", "ramp", "ttft", "inter_token", "tokens", "stall", "settle", "warmup",
              "timeout")  # fmt: skip
SLO_KEYS = ("added_ttft_p50", "added_ttft_p99", "added_tpot_p50", "whole_ratio", "ttft", "tpot",
            "e2e", "goodput_ratio", "rss_growth", "fds_growth")  # fmt: skip


def streaming_phase(phases: Section) -> StreamingPhase:
    """`phases.streaming`, each missing key at its default."""
    s = phases.section("streaming", optional=True)
    if s is None:
        return DEFAULT_STREAMING
    s.only(*PHASE_KEYS)
    d = DEFAULT_STREAMING
    phase = StreamingPhase(
        streams=s.integer("streams", d.streams, minimum=1),
        ramp=s.duration("ramp", d.ramp, positive=True),
        ttft=s.duration("ttft", d.ttft),
        inter_token=s.duration("inter_token", d.inter_token),
        tokens=s.integer("tokens", d.tokens, minimum=2),
        stall=s.duration("stall", d.stall, positive=True),
        settle=s.duration("settle", d.settle),
        warmup=s.boolean("warmup", d.warmup),
        timeout=s.duration("timeout", d.timeout, positive=True),
    )
    if phase.stall <= phase.inter_token:
        s.fail(
            "stall",
            f"must be above inter_token ({phase.inter_token:g}s)",
            "every gap would be a stall",
        )
    if phase.timeout <= phase.stream_time:
        s.fail(
            "timeout",
            f"must outlast one stream ({phase.stream_time:g}s = ttft + (tokens - 1) x inter_token)",
        )
    return phase


def streaming_slo(slo: Section) -> StreamingSlo:
    """`slo.streaming`, each missing key at its default."""
    s = slo.section("streaming", optional=True)
    if s is None:
        return DEFAULT_STREAMING_SLO
    s.only(*SLO_KEYS)
    d = DEFAULT_STREAMING_SLO
    return StreamingSlo(
        added_ttft_p50=s.duration("added_ttft_p50", d.added_ttft_p50, positive=True),
        added_ttft_p99=s.duration("added_ttft_p99", d.added_ttft_p99, positive=True),
        added_tpot_p50=s.duration("added_tpot_p50", d.added_tpot_p50, positive=True),
        whole_ratio=s.number("whole_ratio", d.whole_ratio, at_most=1.0),
        ttft=s.duration("ttft", d.ttft, positive=True),
        tpot=s.duration("tpot", d.tpot, positive=True),
        e2e=s.duration("e2e", d.e2e, positive=True),
        goodput_ratio=s.number("goodput_ratio", d.goodput_ratio, at_most=1.0),
        rss_growth=s.number("rss_growth", d.rss_growth, positive=True),
        fds_growth=s.integer("fds_growth", d.fds_growth, minimum=0),
    )


def describe_streaming(phase: StreamingPhase, slo: StreamingSlo) -> tuple[dict[str, Any], dict]:
    """JSON-safe (phases.streaming, slo.streaming) entries, durations in seconds."""
    return asdict(phase), asdict(slo)
