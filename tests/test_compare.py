"""The statistics of `soak compare`: histograms, the exact percentile bootstrap, verdicts, and
a run judged against its baseline (soak.compare, soak.baseline). No load: seeded data only."""

from __future__ import annotations

import math
import random
from dataclasses import replace
from pathlib import Path

import pytest
import yaml

from soak.baseline import NOT_COMPARED, Comparison, compare_runs
from soak.compare import (
    IMPROVED,
    REGRESSED,
    UNCHANGED,
    Histogram,
    Interval,
    betainc,
    bucket,
    diff_interval,
    verdict,
)
from soak.config.regression import DEFAULT_REGRESSION
from soak.summary import PhaseReport, RunReport, Status, repeat_name, split_repeat


def hist(seed: int, n: int, shift: float = 0.0, median: float = 0.0012) -> Histogram:
    rng = random.Random(seed)
    found = Histogram.of_seconds(median * rng.lognormvariate(0, 0.35) + shift for _ in range(n))
    assert found is not None
    return found


def test_buckets_keep_three_significant_digits() -> None:
    assert [bucket(v) for v in (0, 7, 999, 1234, 1235, 98_765, 1_000_000)] == [
        0, 7, 999, 1230, 1240, 98_800, 1_000_000]  # fmt: skip
    h = Histogram.of_seconds([0.001234, 0.001236, -0.5, math.nan, 0.0005])
    assert h is not None and h.values == (0, 500, 1230, 1240) and h.counts == (1, 1, 1, 1)
    assert Histogram.from_json(h.to_json()) == h
    assert Histogram.of_seconds([]) is None


@pytest.mark.parametrize(
    ("data", "problem"),
    [({"unit": "ms", "values": [1], "counts": [1]}, "unit"),
     ({"unit": "us", "values": [2, 1], "counts": [1, 1]}, "ascending"),
     ({"unit": "us", "values": [1], "counts": [0]}, "counts ≥ 1"),
     ({"unit": "us", "values": [1, 2], "counts": [1]}, "equally long")],
)  # fmt: skip
def test_a_malformed_histogram_is_a_value_error(data: dict, problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        Histogram.from_json(data)


def test_percentiles_follow_the_hdr_rank() -> None:
    h = Histogram.of_seconds([i / 1e6 for i in range(1, 101)])  # 1..100 µs
    assert h is not None
    assert [round(h.stat(s) * 1e6) for s in ("p50", "p90", "p95", "p99")] == [50, 90, 95, 99]
    assert h.stat("mean") == pytest.approx(50.5e-6)


def test_betainc_is_the_binomial_tail() -> None:
    n, k, p = 60, 25, 0.37
    tail = sum(math.comb(n, i) * p**i * (1 - p) ** (n - i) for i in range(k, n + 1))
    assert betainc(k, n - k + 1, p) == pytest.approx(tail, rel=1e-10)
    assert betainc(3, 4, 0.0) == 0.0 and betainc(3, 4, 1.0) == 1.0


def test_the_exact_bootstrap_matches_resampling() -> None:
    """The percentile interval from the order-statistic distribution is the one plain
    resampling gives (within Monte-Carlo error)."""
    rng = random.Random(5)
    xa = [rng.lognormvariate(0, 0.5) * 1e-3 for _ in range(300)]
    xb = [rng.lognormvariate(0, 0.5) * 1e-3 for _ in range(300)]
    a, b = Histogram.of_seconds(xa), Histogram.of_seconds(xb)
    assert a is not None and b is not None
    iv = diff_interval(a, b, "p90", confidence=0.95, resamples=20_000, rng=random.Random(1))

    def p90(sample: list[float]) -> float:
        return sorted(sample)[math.ceil(0.9 * len(sample)) - 1]

    diffs = sorted(p90(rng.choices(xb, k=300)) - p90(rng.choices(xa, k=300)) for _ in range(3000))
    assert iv.low == pytest.approx(diffs[75], abs=4e-5)
    assert iv.high == pytest.approx(diffs[2924], abs=4e-5)


def test_intervals_are_repeatable_and_cover_a_known_shift() -> None:
    a, b = hist(1, 2000), hist(2, 2000, shift=0.002)
    one = diff_interval(a, b, "p50", confidence=0.95, resamples=5000, rng=random.Random(7))
    two = diff_interval(a, b, "p50", confidence=0.95, resamples=5000, rng=random.Random(7))
    assert one == two
    assert one.low < 0.002 < one.high and one.high - one.low < 0.0003
    mean = diff_interval(a, b, "mean", confidence=0.95, resamples=5000, rng=random.Random(7))
    assert mean.low < 0.002 < mean.high


def test_thirty_thousand_samples_cost_what_two_hundred_do() -> None:
    import time

    a, b = hist(3, 30_000), hist(4, 30_000, shift=0.001)
    started = time.process_time()
    for stat in ("mean", "p50", "p90", "p95", "p99"):
        diff_interval(a, b, stat, confidence=0.95, resamples=10_000, rng=random.Random(1))
    assert time.process_time() - started < 5.0


@pytest.mark.parametrize(
    ("low", "high", "expected"),
    [(0.0011, 0.003, REGRESSED), (0.0005, 0.003, UNCHANGED), (-0.003, -0.0011, IMPROVED),
     (-0.003, 0.003, UNCHANGED)],
)  # fmt: skip
def test_a_verdict_needs_the_whole_interval_beyond_the_tolerance(
    low: float, high: float, expected: str
) -> None:
    assert verdict(Interval(0.001, 0.002, 0.001, low, high), tolerance=0.001) == expected


def run_with(*phases: tuple[str, Histogram | None], run_id: str = "r") -> RunReport:
    reports = []
    for name, h in phases:
        report = PhaseReport(name, name, Status.PASSED, target_rate=20.0,
                             params={"latency": 0.1})  # fmt: skip
        if h is not None:
            report.histograms["overhead_per_request"] = h.to_json()
        reports.append(report)
    return RunReport(run_id, 1.0, 2.0, "gw", "openai", "quick", reports)


def test_same_build_is_no_change_and_a_2ms_slowdown_fails_the_gate() -> None:
    base = run_with(("calibration", hist(1, 400)), ("overhead", hist(2, 400)), run_id="main")
    same = run_with(("calibration", hist(3, 400)), ("overhead", hist(4, 400)))
    slow = run_with(("calibration", hist(5, 400)), ("overhead", hist(6, 400, shift=0.002)))
    ok = compare_runs(base, same, DEFAULT_REGRESSION, source="main.json")
    assert not ok.failed and ok.verdict == UNCHANGED
    assert [p.phase for p in ok.phases] == ["calibration", "overhead"]
    assert [p.gated for p in ok.phases] == [False, True]
    bad = compare_runs(base, slow, DEFAULT_REGRESSION)
    assert bad.failed and bad.verdict == REGRESSED
    (p50,) = [s for s in bad.phases[1].stats if s.stat == "p50"]
    assert p50.gated and p50.failed and p50.low > 0.001 and p50.relative is not None
    assert not any(s.gated for s in bad.phases[0].stats)  # calibration is shown, not gated
    same.comparison, slow.comparison = ok, bad
    assert same.passed and not slow.passed
    round_trip = Comparison.from_dict(bad.to_dict())
    assert round_trip == bad and round_trip.failed


def test_what_cannot_be_compared_is_said() -> None:
    base = run_with(("overhead", None), ("stress", hist(1, 100)), run_id="old")
    cur = run_with(("overhead", hist(2, 100)), ("readiness", hist(3, 100)))
    cur.phases[0].params["latency"] = 1.0
    result = compare_runs(base, cur, replace(DEFAULT_REGRESSION, phases=("overhead", "stress")))
    (overhead,) = result.phases
    assert overhead.verdict == NOT_COMPARED and not result.failed
    assert "latency differs: 0.1 vs 1.0" in overhead.notes
    assert "not compared: no per-request overhead histogram in the baseline run" in overhead.notes
    assert any(n.startswith("overhead: gated but not compared") for n in result.notes)
    assert "stress: not run this time: not compared" in result.notes


def test_an_untrusted_generator_makes_a_phase_inconclusive_never_failing() -> None:
    from soak.baseline import INCONCLUSIVE
    from soak.summary import GeneratorHealth

    base = run_with(("overhead", hist(1, 400)), run_id="main")
    slow = run_with(("overhead", hist(2, 400, shift=0.003)))
    slow.phases[0].generator = GeneratorHealth(0.13, 0.18, 0.02, 0, False, ("loop lag",))
    result = compare_runs(base, slow, DEFAULT_REGRESSION)
    (phase,) = result.phases
    assert phase.stats and {s.verdict for s in phase.stats} == {INCONCLUSIVE}
    assert phase.verdict == result.verdict == INCONCLUSIVE and not result.failed
    assert any("current run's load generator was not trusted" in n for n in phase.notes)


def repeated(name: str, *hists: Histogram, run_id: str = "r") -> RunReport:
    """A run whose phase `name` ran once per histogram (`soak once --repeat`)."""
    run = run_with(*((name, h) for h in hists), run_id=run_id)
    for number, phase in enumerate(run.phases, 1):
        phase.name = repeat_name(name, number)
    return run


def test_a_burst_that_slows_one_run_of_three_is_not_a_regression() -> None:
    base = repeated("overhead", hist(1, 200), hist(2, 200), hist(3, 200), run_id="main")
    # the second current run came out 2.5 ms slower: the machine, not the gateway
    cur = repeated("overhead", hist(4, 200), hist(5, 200, shift=0.0025), hist(6, 200))
    single = compare_runs(repeated("overhead", hist(1, 200)),
                          repeated("overhead", hist(5, 200, shift=0.0025)), DEFAULT_REGRESSION)
    assert single.failed  # one run each: the burst decides
    result = compare_runs(base, cur, DEFAULT_REGRESSION)
    (phase,) = result.phases
    assert (phase.baseline_runs, phase.current_runs) == (3, 3) and phase.current_count == 600
    assert not result.failed and phase.verdict == UNCHANGED and not phase.notes
    assert all(s.current_run != 2 for s in phase.stats)  # the slowed run is never the one judged


def test_a_slowdown_in_every_run_fails_the_gate_and_names_the_runs_judged() -> None:
    base = repeated("overhead", hist(1, 200), hist(2, 200), hist(3, 200), run_id="main")
    cur = repeated("overhead", *(hist(s, 200, shift=0.002) for s in (4, 5, 6)))
    result = compare_runs(base, cur, DEFAULT_REGRESSION)
    (p50,) = [s for s in result.phases[0].stats if s.stat == "p50"]
    assert result.failed and p50.verdict == REGRESSED and p50.low > 0.001
    values = {n: h.stat("p50") for n, h in enumerate((hist(4, 200, shift=0.002),
              hist(5, 200, shift=0.002), hist(6, 200, shift=0.002)), 1)}  # fmt: skip
    assert p50.current == min(values.values()) and values[p50.current_run] == p50.current
    assert Comparison.from_dict(result.to_dict()) == result


def test_an_untrusted_run_is_left_out_while_a_trusted_one_remains() -> None:
    from soak.summary import GeneratorHealth

    base = repeated("overhead", hist(1, 200), hist(2, 200), run_id="main")
    cur = repeated("overhead", hist(3, 200, shift=-0.0005), hist(4, 200))
    cur.phases[0].generator = GeneratorHealth(0.13, 0.18, 0.02, 0, False, ("loop lag",))
    (phase,) = compare_runs(base, cur, DEFAULT_REGRESSION).phases
    assert "current run 1 of 2 left out: its load generator was not trusted" in phase.notes
    assert {s.current_run for s in phase.stats} == {2} and phase.current_count == 200
    assert phase.verdict == UNCHANGED  # judged on the trusted run, not inconclusive


def test_sides_with_different_run_counts_are_compared_with_a_note() -> None:
    base = repeated("overhead", hist(1, 200), run_id="main")
    cur = repeated("overhead", hist(2, 200), hist(3, 200), hist(4, 200))
    (phase,) = compare_runs(base, cur, DEFAULT_REGRESSION).phases
    assert phase.stats and any(n.startswith("runs differ: 1 in the baseline, 3 in this run")
                               for n in phase.notes)  # fmt: skip
    written = compare_runs(cur, cur, DEFAULT_REGRESSION).to_dict()
    for phase in written["phases"]:  # as a report written before repeats has it
        del phase["baseline_runs"], phase["current_runs"]
        for stat in phase["stats"]:
            del stat["baseline_run"], stat["current_run"]
    old = Comparison.from_dict(written)
    assert (old.phases[0].baseline_runs, old.phases[0].stats[0].current_run) == (1, 1)


@pytest.mark.parametrize(
    ("name", "split"),
    [("overhead#2", ("overhead", 2)), ("overhead", ("overhead", 1)),
     ("stress-1#3", ("stress-1", 3)), ("a#0", ("a#0", 1)), ("a#", ("a#", 1)),
     ("#2", ("#2", 1)), ("a#²", ("a#²", 1)), ("a#-1", ("a#-1", 1))],
)  # fmt: skip
def test_repeat_names_split_back(name: str, split: tuple[str, int]) -> None:
    assert split_repeat(name) == split
    if split[1] > 1:
        assert repeat_name(*split) == name


@pytest.mark.parametrize(
    ("value", "problem"),
    [(0, "must be at least 1"), (21, "at most 20"), ("3", "integer"), (True, "integer"),
     (2.5, "integer")],
)  # fmt: skip
def test_regression_runs_is_checked(tmp_path: Path, value: object, problem: str) -> None:
    from soak.config import ConfigError
    from soak.phases import load_config

    path = tmp_path / "soak.yaml"
    path.write_text(yaml.safe_dump({"version": 1, "gateway": {"url": "http://127.0.0.1:9"},
                                    "slo": {"regression": {"runs": value}}}))  # fmt: skip
    with pytest.raises(ConfigError) as info:
        load_config(path)
    message = str(info.value)
    assert "slo.regression.runs" in message and problem in message and "\n" not in message
    path.write_text(yaml.safe_dump({"version": 1, "gateway": {"url": "http://127.0.0.1:9"},
                                    "slo": {"regression": {"runs": 3}}}))  # fmt: skip
    assert load_config(path).slo.regression.runs == 3


def stolen(run: RunReport, number: int, share: float) -> None:
    """Run `number` of `run`'s phase lost `share` of the machine's CPU to the hypervisor."""
    from soak.summary import GeneratorHealth

    run.phases[number - 1].generator = GeneratorHealth(0.002, 0.001, 0.1, 0, True, (), share)


def test_a_run_that_lost_cpu_to_the_hypervisor_is_left_out() -> None:
    base = repeated("overhead", hist(1, 200, shift=0.0015), hist(2, 200, shift=0.0015),
                    run_id="main")  # fmt: skip
    # the first current run is the least by p50 but ran while the host stole 4.5 %
    cur = repeated("overhead", hist(3, 200), hist(4, 200, shift=0.004))
    stolen(cur, 1, 0.045)
    stolen(cur, 2, 0.004)
    (phase,) = compare_runs(base, cur, DEFAULT_REGRESSION).phases
    assert ("current run 1 of 2 left out: the hypervisor took more than 2% of the machine's CPU"
            in phase.notes)  # fmt: skip
    assert {s.current_run for s in phase.stats} == {2} and phase.verdict == REGRESSED
    judged_all = compare_runs(base, cur, replace(DEFAULT_REGRESSION, max_steal=1.0))
    assert judged_all.phases[0].verdict == IMPROVED  # without the rule run 1 decides


def test_a_side_whose_every_run_lost_cpu_is_inconclusive_never_failing() -> None:
    from soak.baseline import INCONCLUSIVE

    base = repeated("overhead", hist(1, 200), hist(2, 200), run_id="main")
    cur = repeated("overhead", *(hist(s, 200, shift=0.0025) for s in (3, 4)))
    stolen(cur, 1, 0.03)
    stolen(cur, 2, 0.07)
    result = compare_runs(base, cur, DEFAULT_REGRESSION)
    (phase,) = result.phases
    assert phase.verdict == result.verdict == INCONCLUSIVE and not result.failed
    assert any(n.startswith("inconclusive: the hypervisor took 3.0% or more of this machine's"
                            " CPU during every current run") for n in phase.notes)  # fmt: skip
    assert len(phase.stats) == 5  # still shown, with intervals
    assert compare_runs(base, cur, replace(DEFAULT_REGRESSION, max_steal=0.1)).failed


def test_regression_max_steal_is_a_share() -> None:
    from soak.config import ConfigError
    from soak.config.fields import Section
    from soak.config.regression import parse_regression

    for value, ok in ((0.0, True), (1.0, True), (0.05, True), (1.5, False), (-0.1, False),
                      ("1%", False)):  # fmt: skip
        section = Section({"max_steal": value}, ("slo", "regression"), lambda _p: "soak.yaml")
        if ok:
            assert parse_regression(section, ["overhead"]).max_steal == value
        else:
            with pytest.raises(ConfigError, match=r"slo\.regression\.max_steal: (must|expected)"):
                parse_regression(section, ["overhead"])
