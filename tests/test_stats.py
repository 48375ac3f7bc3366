"""HDR percentiles against exact nearest-rank values, both overhead methods, run figures."""

from __future__ import annotations

import math
import random

import pytest

from soak.engine import LoadRun, LoadSpec
from soak.results import Outcome, Result
from soak.stats import (
    Distribution,
    overhead_per_request,
    overhead_percentile_diff,
    percentile_diff_summary,
    report_fields,
    success_ratio,
    summarize,
    throughput,
)
from soak.summary import GeneratorHealth, LatencySummary, PhaseReport, Status


def nearest_rank(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[max(1, math.ceil(p / 100 * len(ordered))) - 1]


def test_percentiles_match_nearest_rank_to_three_significant_digits() -> None:
    rng = random.Random(5)
    values = [rng.lognormvariate(math.log(0.02), 1.0) for _ in range(20_000)]
    s = summarize(values)
    assert s is not None
    assert s.count == 20_000
    for stat, p in (("p50", 50), ("p90", 90), ("p95", 95), ("p99", 99)):
        assert s.get(stat) == pytest.approx(nearest_rank(values, p), rel=2e-3, abs=1e-6)
    assert s.mean == pytest.approx(sum(values) / len(values), rel=1e-12)
    assert s.min == min(values)
    assert s.max == max(values)


def test_uniform_milliseconds() -> None:
    s = summarize(i / 1000 for i in range(1, 1001))
    assert s == LatencySummary(
        count=1000,
        min=0.001,
        mean=pytest.approx(0.5005),
        p50=pytest.approx(0.5, rel=1e-3),
        p90=pytest.approx(0.9, rel=1e-3),
        p95=pytest.approx(0.95, rel=1e-3),
        p99=pytest.approx(0.99, rel=1e-3),
        max=1.0,
    )


def test_sub_millisecond_values_keep_microsecond_resolution() -> None:
    s = summarize([0.000050, 0.000051, 0.000052, 0.000120] * 25)
    assert s is not None
    assert s.p50 == pytest.approx(0.000051, abs=1e-9)
    assert s.p99 == pytest.approx(0.000120, abs=1e-9)


def test_single_value_and_empty() -> None:
    assert summarize([]) is None
    s = summarize([0.25])
    assert s is not None
    assert (s.min, s.p50, s.p99, s.max, s.mean) == (0.25, 0.25, 0.25, 0.25, 0.25)


def test_negative_and_huge_values_are_clamped_and_counted() -> None:
    d = Distribution().extend([-0.002, 0.010, 0.020, 7200.0])
    s = d.summary()
    assert d.clamped == 2
    assert s is not None
    assert s.min == 0.0
    assert s.max == 3600.0
    assert s.count == 4


def test_non_finite_value_is_an_error() -> None:
    with pytest.raises(ValueError, match="latency nan must be a finite number"):
        summarize([0.1, float("nan")])


def ok(seq: int, intended: float, sent: float, end: float, service_s: float | None) -> Result:
    return Result(seq, intended, sent, end, Outcome.OK, 200, provider="p", service_s=service_s)


def test_overhead_per_request_subtracts_the_mock_service_time() -> None:
    results = [
        ok(0, 0.0, 0.001, 0.103, 0.100),  # 2 ms overhead (send lag excluded)
        ok(1, 1.0, 1.000, 1.104, 0.100),  # 4 ms
        ok(2, 2.0, 2.000, 2.106, None),  # no marker: not counted
        Result(3, 3.0, 3.0, 3.5, Outcome.HTTP_5XX, 500, service_s=0.1),  # failed: not counted
    ]
    s = overhead_per_request(results)
    assert s is not None
    assert s.count == 2
    assert s.min == pytest.approx(0.002)
    assert s.max == pytest.approx(0.004)
    assert s.mean == pytest.approx(0.003)
    assert overhead_per_request(results[2:]) is None


def test_percentile_diff_is_per_stat_and_may_be_negative() -> None:
    direct = LatencySummary(100, 0.100, 0.101, 0.101, 0.102, 0.103, 0.110, 0.120)
    through = LatencySummary(100, 0.102, 0.104, 0.103, 0.106, 0.107, 0.105, 0.130)
    diff = overhead_percentile_diff(through, direct)
    assert diff == pytest.approx(
        {
            "mean": 0.003,
            "p50": 0.002,
            "p90": 0.004,
            "p95": 0.004,
            "p99": -0.005,
            "min": 0.002,
            "max": 0.010,
        }
    )
    as_summary = percentile_diff_summary(through, direct)
    assert as_summary.count == 100
    assert as_summary.p99 == pytest.approx(-0.005)


def make_run(results: list[Result], *, drops: int = 0, elapsed: float = 2.0) -> LoadRun:
    health = GeneratorHealth(0.0, 0.0, 0.1, drops, trusted=drops == 0)
    return LoadRun(
        spec=LoadSpec(rate=5, count=len(results) + drops),
        t0=0.0,
        results=results,
        sent=len(results),
        drops=drops,
        elapsed=elapsed,
        generator=health,
    )


def test_success_ratio_counts_drops_as_failures_and_throughput_counts_ok_per_second() -> None:
    results = [ok(i, i / 5, i / 5, i / 5 + 0.1, 0.09) for i in range(6)]
    results.append(Result(6, 1.2, 1.2, 1.3, Outcome.HTTP_429, 429))
    run = make_run(results, drops=3, elapsed=2.0)
    assert success_ratio(run) == pytest.approx(6 / 10)
    assert throughput(run) == pytest.approx(3.0)
    assert success_ratio(make_run([])) == 0.0
    assert throughput(make_run([], elapsed=0.0)) == 0.0


def test_report_fields_fill_a_phase_report() -> None:
    results = [ok(i, i / 5, i / 5 + 0.001, i / 5 + 0.2, 0.15) for i in range(5)]
    for r in results:
        r.first_token = r.sent + 0.05
    results.append(Result(5, 1.0, 1.0, 31.0, Outcome.TIMEOUT))
    run = make_run(results, drops=1, elapsed=3.0)
    fields = report_fields(run)
    report = PhaseReport("overhead", "overhead", Status.PASSED, **fields)
    assert report.sent == 6
    assert report.completed == 5
    assert report.drops == 1
    assert report.outcomes == {"ok": 5, "timeout": 1}
    assert report.success_ratio == pytest.approx(5 / 7)
    assert report.throughput == pytest.approx(5 / 3)
    assert report.target_rate == 5
    assert report.duration_s == 3.0
    assert report.latency is not None
    assert report.latency.count == 5  # failed requests do not enter the latency summary
    assert report.latency.p50 == pytest.approx(0.2)
    assert report.distributions["ttft"].p50 == pytest.approx(0.05)
    assert report.distributions["overhead_per_request"].mean == pytest.approx(0.049)
    assert report.generator is run.generator
    assert report.to_dict()["distributions"]["ttft"]["count"] == 5
    assert report.notes == []


def test_report_notes_say_what_the_engine_had_to_do_without_error_text() -> None:
    run = make_run([Result(0, 0.0, 0.0, 30.0, Outcome.TIMEOUT)])
    run.cancelled = 1
    run.send_errors = 2
    run.callback_errors = 3
    run.first_error = "InvalidURL: http://user:secret@host/"
    notes = report_fields(run)["notes"]
    assert notes == [
        "1 requests still in flight after the 30 s drain were cancelled and counted as timeouts",
        "2 requests raised inside the tester (InvalidURL); a soak bug",
        "the result callback raised 3 times; results kept",
    ]
    assert not any("secret" in n for n in notes)
