"""Stream timing formulas and the integrity classifier on synthetic data, then the client's
record of real streams from the mock checked against the mock's own trace."""

from __future__ import annotations

import hashlib
from array import array
from itertools import pairwise

import pytest
from soak.mock.app import MockConfig, MockServer
from soak.mock.profile import parse_profile

from soak import phases
from soak.client import ChatClient, make_session
from soak.metrics import SoakMetrics
from soak.mockctl import MockControl
from soak.phases.streaming import (
    StreamingDetails,
    StreamingSlo,
    flat_checks,
    flatness,
    stream_checks,
)
from soak.procwatch import Sample
from soak.reports.markdown import render_markdown
from soak.results import END_DONE, END_FINISH, END_USAGE, Outcome, Result
from soak.streaming import (
    CLASSES,
    Bounds,
    Sent,
    added_last,
    added_tpot,
    added_ttft,
    analyze,
    classify,
    output_rate,
    sent_of,
    tpot,
)
from soak.summary import LatencySummary, PhaseReport, RunReport, Status

TEXT = ["lorem", " ipsum", " dolor", " sit"]
DIGEST = hashlib.sha256("".join(TEXT).encode()).hexdigest()
ALL_ENDS = END_DONE | END_FINISH | END_USAGE
STALL = 1.0


def stream(
    *,
    times: tuple[float, ...] = (0.1, 0.2, 0.3, 0.4),
    text: list[str] = TEXT,
    end: float | None = None,
    ends: int = ALL_ENDS,
    status: int = 200,
    outcome: Outcome = Outcome.OK,
    nonce: str = "[soak:t:1]",
) -> Result:
    """A stream sent at t=10 whose content chunks arrived `times` seconds after the send."""
    sent = 10.0
    gaps = array("d", (b - a for a, b in pairwise(times)))
    return Result(
        seq=1,
        intended=sent,
        sent=sent,
        end=sent + (end if end is not None else times[-1] + 0.001),
        outcome=outcome,
        status=status,
        first_token=sent + times[0],
        tokens_out=len(text),
        nonce=nonce,
        last_token=sent + times[-1],
        chunks=len(text),
        chunk_gaps=gaps,
        digest=hashlib.sha256("".join(text).encode()).hexdigest(),
        stream_end=ends,
    )


SENT = Sent(first_chunk_s=0.095, last_chunk_s=0.395, chunks=4, tokens=4, digest=DIGEST)


def test_formulas_follow_vllm_bench_serve() -> None:
    r = stream(end=0.5)
    assert r.ttft == pytest.approx(0.1)
    assert tpot(r) == pytest.approx((0.5 - 0.1) / 3)
    assert output_rate(r) == pytest.approx(4 / 0.5)
    assert list(r.chunk_gaps) == pytest.approx([0.1, 0.1, 0.1])
    assert added_ttft(r, SENT) == pytest.approx(0.005)
    assert added_last(r, SENT) == pytest.approx(0.005)
    assert added_tpot(r, SENT) == pytest.approx((0.5 - 0.1) / 3 - 0.3 / 3)
    single = stream(times=(0.1,), text=["x"])
    assert tpot(single) is None


@pytest.mark.parametrize(
    ("result", "sent", "expected"),
    [
        (stream(), SENT, "whole"),
        (stream(times=(0.1, 0.2, 0.4), text=["lorem", " ipsum dolor", " sit"]), SENT, "rechunked"),
        (stream(times=(0.39, 0.391, 0.392, 0.393)), SENT, "buffered"),
        (stream(times=(0.1, 0.2, 1.3, 1.4)), SENT, "stalled"),
        (stream(times=(0.1, 0.2, 0.3), text=TEXT[:3]), SENT, "truncated"),
        (stream(ends=END_DONE | END_FINISH), SENT, "unterminated"),
        (stream(ends=0, outcome=Outcome.STREAM_BROKEN), SENT, "unterminated"),
        (stream(), None, "untraced"),
        (stream(status=503, outcome=Outcome.HTTP_5XX), SENT, "failed"),
    ],
    ids=["whole", "rechunked", "buffered", "stalled", "truncated", "no-usage", "no-end",
         "untraced", "failed"],
)  # fmt: skip
def test_classifier(result: Result, sent: Sent | None, expected: str) -> None:
    assert classify(result, sent, STALL) == expected


def test_short_streams_are_never_called_buffered() -> None:
    quick = Sent(first_chunk_s=0.1, last_chunk_s=0.101, chunks=4, tokens=4, digest=DIGEST)
    assert classify(stream(times=(0.1, 0.1, 0.1, 0.1)), quick, STALL) == "whole"


def test_sent_of_picks_the_serving_streamed_attempt() -> None:
    failed = {"provider": "primary", "status": 500, "digest": None}
    served = {"provider": "fallback", "status": 200, "first_chunk_s": 0.1, "service_s": 0.3,
              "chunks": 4, "tokens": 4, "digest": DIGEST}  # fmt: skip
    assert sent_of([failed, served]) == Sent(0.1, 0.3, 4, 4, DIGEST)
    assert sent_of([failed]) is None
    assert sent_of([]) is None


def test_analyze_counts_classes_goodput_and_pooled_gaps() -> None:
    results = [
        stream(nonce="a"),
        stream(nonce="b", times=(0.1, 0.2, 1.3, 1.4)),  # stalled; TPOT (1.4 − 0.1)/3 > 0.2
        stream(nonce="c", times=(0.1, 0.2, 0.3), text=TEXT[:3]),
        stream(nonce="d", status=0, outcome=Outcome.CONNECT),
    ]
    results[3].digest = None
    sent = {"a": SENT, "b": SENT, "c": SENT}
    stats = analyze(results, sent, stall=STALL, bounds=Bounds(1.0, 0.2, 5.0), duration=2.0)
    assert set(stats.integrity) == set(CLASSES)
    assert {k: v for k, v in stats.integrity.items() if v} == {
        "whole": 1, "stalled": 1, "truncated": 1, "failed": 1,
    }  # fmt: skip
    assert stats.whole_ratio == 0.25
    assert stats.request_rate == pytest.approx(3 / 2.0)
    assert stats.goodput == pytest.approx(2 / 2.0)  # a and the truncated c met every bound
    assert stats.output_tokens == 11
    itl = stats.distributions["itl"]
    assert itl.count == 3 + 3 + 2 + 3  # every gap of every stream, pooled
    assert itl.max == pytest.approx(1.1)
    assert stats.max_gap == pytest.approx(1.1)
    assert stats.distributions["added_ttft"].count == 3
    assert stats.output_tokens_per_s is not None and stats.output_tokens_per_s.count == 3
    assert stats.distributions["added_tpot"].count == 3
    details = stats.to_details()
    assert details["integrity"]["whole"] == 1 and details["goodput"] == pytest.approx(1.0)


PROFILE = {
    "latency": {"model": "fixed", "value": 0.0},
    "stream": {
        "ttft": {"model": "fixed", "value": 0.2},  # 0.2 s + 7 x 30 ms: the slow sides of the bounds
        "inter_token": {"model": "fixed", "value": 0.03},
        "tokens": 8,
    },
}


@pytest.mark.parametrize("api", ["openai", "anthropic"])
async def test_real_streams_are_whole_against_the_mock_trace(api: str) -> None:
    config = MockConfig(providers={"default": parse_profile(PROFILE, "default")})
    async with MockServer(config) as mock, make_session(8, 10.0) as session:
        path = "chat/completions" if api == "openai" else "messages"
        client = ChatClient(
            session, f"{mock.url}/v1/{path}", api=api, model="m", stream=True, max_tokens=8
        )
        results = [await client.send(seq, 0.0) for seq in range(3)]
        async with MockControl(mock.url) as ctl:
            traces = await ctl.traces([r.nonce for r in results])
    for r in results:
        assert r.ok and r.chunks == 8 and r.tokens_out == 8
        assert r.stream_end == ALL_ENDS
        # spread over 7 x 30 ms vs one batch (~0): 42 ms is 5x below; single gaps pair up under load
        assert len(r.chunk_gaps) == 7 and sum(r.chunk_gaps) > 0.042
        sent = sent_of(traces[r.nonce])
        assert sent is not None and sent.chunks == 8 and sent.digest == r.digest
        assert classify(r, sent, STALL) == "whole"
        added = added_ttft(r, sent)
        # the mock's own time subtracted (0.7-2 ms here) vs not (0.2 s / 0.41 s): 20x; 5x and 10x
        assert added is not None and 0 < added < 0.04
        assert 0 < added_last(r, sent) < 0.04


def test_metrics_count_integrity_classes_and_observe_stream_timing(registry) -> None:
    metrics = SoakMetrics(registry)
    r = stream(end=0.5)
    metrics.observe(r, target="gw", phase="streaming")
    labels = {"target": "gw", "phase": "streaming"}
    assert registry.get_sample_value("soak_inter_token_gap_seconds_count", labels) == 3
    assert registry.get_sample_value("soak_inter_token_gap_seconds_sum", labels) == pytest.approx(
        0.3
    )
    assert registry.get_sample_value(
        "soak_time_per_output_token_seconds_sum", labels
    ) == pytest.approx((0.5 - 0.1) / 3)
    report = PhaseReport(name="streaming", kind="streaming", status=Status.FAILED)
    report.distributions["added_ttft"] = LatencySummary(3, 0.001, 0.002, 0.002, 0.003, 0.003,
                                                        0.004, 0.004)  # fmt: skip
    report.details = StreamingDetails({"integrity": {**dict.fromkeys(CLASSES, 0), "whole": 7,
                                                     "truncated": 2}})  # fmt: skip
    for _ in range(2):
        phases.record(report, metrics, target="gw", finished_at=1.0)
    value = registry.get_sample_value
    assert value("soak_stream_integrity_total", {**labels, "class": "whole"}) == 14
    assert value("soak_stream_integrity_total", {**labels, "class": "truncated"}) == 4
    assert value("soak_stream_integrity_total", {**labels, "class": "buffered"}) == 0
    added = {**labels, "round": "", "statistic": "p99"}
    assert value("soak_phase_last_gateway_added_ttft_seconds", added) == 0.004


def test_markdown_has_a_streaming_section() -> None:
    stats = analyze([stream(nonce="a")], {"a": SENT}, stall=STALL, bounds=Bounds(1, 1, 5),
                    duration=1.0)  # fmt: skip
    report = PhaseReport(name="streaming", kind="streaming", status=Status.PASSED)
    report.distributions.update(stats.distributions)
    report.params.update(tokens=4, ttft=0.1, inter_token=0.1, stream_time=0.4)
    report.details = StreamingDetails({
        **stats.to_details(),
        "process": {"rss_before": 2**20, "rss_peak": 3 * 2**20, "rss_after": 2**20,
                    "fds_before": 20, "fds_peak": 60, "fds_after": 21},
    })  # fmt: skip
    run = RunReport(run_id="r", started_at=0, finished_at=1, target="gw", kind="openai",
                    profile="quick", phases=[report])  # fmt: skip
    text = render_markdown(run, phases.markdown_sections())
    section = text[text.index("## Streaming") :]
    assert "| gateway-added TTFT | 1 | 5.00 | 5.00 | 5.00 | 5.00 |" in section
    assert "| whole | 1 |" in section
    assert "Whole: **100.00%** of streams." in section
    assert "**1.00 req/s** of 1.00 req/s successful" in section
    assert "| open fds | 20 | 60 | 21 |" in section


def test_flatness_compares_the_last_sample_before_the_load_with_the_last_one() -> None:
    samples = [Sample(t, None, rss, fds, 1, 1) for t, rss, fds in (
        (0.0, 100, 10), (0.5, 120, 15), (1.0, 300, 60), (2.0, 130, 17), (3.0, 126, 16),
    )]  # fmt: skip
    flat = flatness(samples, load_started=0.7)
    assert flat is not None
    assert (flat["rss_before"], flat["rss_after"], flat["rss_peak"]) == (120, 126, 300)
    assert (flat["fds_before"], flat["fds_after"], flat["fds_growth"]) == (15, 16, 1)
    assert flat["rss_growth"] == pytest.approx(0.05)
    slo = StreamingSlo(rss_growth=0.04, fds_growth=1)
    rss, fds = flat_checks(flat, slo)
    assert not rss.passed and fds.passed and fds.op == "<="
    assert flatness(samples[:1], 0.7) is None


def test_stream_checks_follow_the_slo_block() -> None:
    results = [stream(nonce="a"), stream(nonce="b", times=(0.1, 0.2, 0.3), text=TEXT[:3])]
    sent = {"a": SENT, "b": SENT}
    stats = analyze(results, sent, stall=STALL, bounds=Bounds(1, 1, 5), duration=1.0)
    checks = {c.name: c for c in stream_checks(stats, StreamingSlo(added_ttft_p50=0.004))}
    assert set(checks) == {"added TTFT p50", "added TTFT p99", "added TPOT p50",
                           "whole streams", "goodput / rate"}  # fmt: skip
    assert checks["added TTFT p50"].value == pytest.approx(0.005)
    assert not checks["added TTFT p50"].passed and checks["added TTFT p99"].passed
    assert checks["whole streams"].value == 0.5 and not checks["whole streams"].passed
    assert checks["goodput / rate"].value == 1.0 and checks["goodput / rate"].passed
