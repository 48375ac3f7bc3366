"""SoakMetrics: sample values after observe / record_phase, threshold buckets, bounded labels."""

from __future__ import annotations

import platform
import shutil
import subprocess
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from soak import metric_catalogue, phases
from soak.config.schema import SloConfig
from soak.metric_catalogue import Threshold
from soak.metrics import (
    BASE_BUCKETS,
    BreakerState,
    SoakMetrics,
    buckets_for_slo,
    buckets_with,
    check_thresholds_are_buckets,
    exposed_names,
    register_default_collectors,
    slo_thresholds,
)
from soak.phases import load_config
from soak.phases.capacity import CAPACITY_KNEE
from soak.phases.streaming import STREAM_INTEGRITY
from soak.results import Outcome, Result
from soak.summary import (
    GeneratorHealth,
    LatencySummary,
    NegativeOverhead,
    PhaseReport,
    ProcessSummary,
    Status,
)

ALLOWED_LABELS = {"target", "phase", "round", "outcome", "provider", "source", "plan", "statistic",
                  "le"}  # fmt: skip
ALLOWED_LABELS |= {"version", "python"}  # soak_build_info only


OVERHEAD_SECONDS = "soak_gateway_overhead_seconds"


def result(seq: int, latency: float, outcome: Outcome = Outcome.OK, **kw) -> Result:
    kw.setdefault("provider", "primary" if outcome is Outcome.OK else None)
    kw.setdefault("service_s", latency - 0.004 if outcome is Outcome.OK else None)
    return Result(seq=seq, intended=100.0, sent=100.0, end=100.0 + latency, outcome=outcome, **kw)


def summary(p50: float) -> LatencySummary:
    return LatencySummary(
        count=10, min=p50 / 2, mean=p50, p50=p50, p90=p50 * 2, p95=p50 * 3, p99=p50 * 4, max=p50 * 5
    )


def test_observe_counts_outcomes_and_latency(registry: CollectorRegistry) -> None:
    m = SoakMetrics(registry)
    m.observe(result(1, 0.25, tokens_out=7), target="gw", phase="overhead")
    m.observe(result(2, 0.5, nonce="[soak:run:2]"), target="gw", phase="overhead")
    m.observe(result(3, 2.0, Outcome.HTTP_5XX, status=502), target="gw", phase="overhead")
    labels = {"target": "gw", "phase": "overhead"}
    get = registry.get_sample_value
    assert get("soak_requests_total", {**labels, "outcome": "ok"}) == 2
    assert get("soak_requests_total", {**labels, "outcome": "http_5xx"}) == 1
    assert get("soak_requests_total", {**labels, "outcome": "timeout"}) == 0  # pre-created
    assert get("soak_request_duration_seconds_count", labels) == 3
    assert get("soak_request_duration_seconds_sum", labels) == pytest.approx(2.75)
    assert get("soak_request_duration_seconds_bucket", {**labels, "le": "0.25"}) == 1
    assert get("soak_request_duration_seconds_bucket", {**labels, "le": "1.0"}) == 2
    assert get("soak_output_tokens_total", labels) == 7
    assert get("soak_served_requests_total", {**labels, "provider": "primary"}) == 2
    # overhead only for successes that carry the mock's service time: 4 ms each
    assert get("soak_gateway_overhead_seconds_count", labels) == 2
    assert get("soak_gateway_overhead_seconds_bucket", {**labels, "le": "0.0025"}) == 0
    assert get("soak_gateway_overhead_seconds_bucket", {**labels, "le": "0.005"}) == 2


def test_latency_is_measured_from_the_intended_start(registry: CollectorRegistry) -> None:
    m = SoakMetrics(registry)
    late = Result(seq=1, intended=10.0, sent=10.3, end=10.4, outcome=Outcome.OK)
    m.observe(late, target="gw", phase="stress")
    labels = {"target": "gw", "phase": "stress"}
    assert registry.get_sample_value("soak_request_duration_seconds_sum", labels) == pytest.approx(
        0.4
    )
    assert registry.get_sample_value("soak_send_lag_seconds_sum", labels) == pytest.approx(0.3)
    assert registry.get_sample_value("soak_time_to_first_token_seconds_count", labels) == 0


def test_threshold_bucket_counts_requests_at_and_above_it_exactly(
    registry: CollectorRegistry,
) -> None:
    slo = [Threshold(OVERHEAD_SECONDS, "slo.overhead.p95", 0.015)]
    m = SoakMetrics(registry, buckets=buckets_for_slo(slo), thresholds=slo)
    for i, over in enumerate((0.010, 0.015, 0.016, 0.030)):
        m.observe(result(i, 0.1 + over, service_s=0.1), target="gw", phase="overhead")
    labels = {"target": "gw", "phase": "overhead"}
    below = registry.get_sample_value(
        "soak_gateway_overhead_seconds_bucket", {**labels, "le": "0.015"}
    )
    assert below == 2  # 10 ms and exactly 15 ms; 16 ms and 30 ms are above


def test_negative_overhead_is_clamped(registry: CollectorRegistry) -> None:
    m = SoakMetrics(registry)
    m.observe(result(1, 0.1, service_s=0.1005), target="gw", phase="overhead")
    labels = {"target": "gw", "phase": "overhead"}
    assert registry.get_sample_value("soak_gateway_overhead_seconds_sum", labels) == 0.0
    assert registry.get_sample_value("soak_gateway_overhead_seconds_count", labels) == 1


def test_record_phase_sets_last_run_gauges(registry: CollectorRegistry) -> None:
    m = SoakMetrics(registry)
    m.set_phase_running(True, target="gw", phase="readiness")
    running = {"target": "gw", "phase": "readiness"}
    assert registry.get_sample_value("soak_phase_running", running) == 1
    report = PhaseReport(
        name="readiness", kind="readiness", status=Status.FAILED, duration_s=120.5,
        target_rate=10, throughput=9.5, drops=3, success_ratio=0.97, latency=summary(1.0),
        distributions={"overhead_per_request": summary(0.002),
                       "overhead_percentile_diff": summary(0.003)},
        process=ProcessSummary(samples=5, cpu_avg=0.3, cpu_peak=0.5, rss_avg=110, rss_peak=130,
                               rss_initial=100, rss_final=125),
        generator=GeneratorHealth(send_lag_p99=0.001, loop_lag_max=0.2, cpu_ratio=0.95,
                                  drops=3, trusted=False),
    )  # fmt: skip
    m.record_phase(report, target="gw", finished_at=1_700_000_000.0)
    get = registry.get_sample_value
    assert get("soak_phase_running", running) == 0
    assert get("soak_generator_dropped_requests_total", running) == 3
    running = {**running, "round": ""}  # last-run gauges: a phase of one run has no round
    assert get("soak_phase_last_run_timestamp_seconds", running) == 1_700_000_000.0
    assert get("soak_phase_last_duration_seconds", running) == 120.5
    assert get("soak_phase_last_verdict", running) == 0
    assert get("soak_phase_last_success_ratio", running) == 0.97
    assert get("soak_phase_last_throughput_requests_per_second", running) == 9.5
    assert get("soak_phase_last_target_requests_per_second", running) == 10
    assert get("soak_phase_last_latency_seconds", {**running, "statistic": "p95"}) == 3.0
    assert get("soak_phase_last_latency_seconds", {**running, "statistic": "max"}) == 5.0
    assert get("soak_phase_last_latency_seconds", {**running, "statistic": "mean"}) == 1.0
    assert get("soak_phase_last_overhead_seconds", {**running, "statistic": "p99"}) == 0.008
    assert get("soak_phase_last_overhead_seconds", {**running, "statistic": "mean"}) == 0.002
    q50 = {**running, "statistic": "p50"}
    assert get("soak_phase_last_overhead_percentile_diff_seconds", q50) == 0.003
    assert get("soak_phase_last_gateway_memory_growth_ratio", running) == pytest.approx(0.25)
    assert get("soak_generator_trusted", running) == 0
    assert get("soak_phase_last_negative_overhead_requests", running) == 0


def test_negative_overhead_requests_of_the_last_run(registry: CollectorRegistry) -> None:
    """The reports count answers faster than the mock's own time; the histograms clamp them."""
    m = SoakMetrics(registry)
    report = PhaseReport(name="overhead", kind="overhead", status=Status.PASSED,
                         distributions={"overhead_per_request": summary(0.001)},
                         negative_overhead=NegativeOverhead(count=4, worst=-0.002))  # fmt: skip
    m.record_phase(report, target="gw", finished_at=1.0)
    labels = {"target": "gw", "phase": "overhead", "round": ""}
    assert registry.get_sample_value("soak_phase_last_negative_overhead_requests", labels) == 4
    report.negative_overhead = None  # the next run had none: back to 0, not the stale 4
    m.record_phase(report, target="gw", finished_at=2.0)
    assert registry.get_sample_value("soak_phase_last_negative_overhead_requests", labels) == 0
    m.record_phase(PhaseReport(name="breaker", kind="breaker", status=Status.PASSED),
                   target="gw", finished_at=3.0)  # fmt: skip
    none = {"target": "gw", "phase": "breaker", "round": ""}
    assert registry.get_sample_value("soak_phase_last_negative_overhead_requests", none) is None


@pytest.mark.parametrize(
    ("status", "verdict"),
    [(Status.PASSED, 1), (Status.BASELINE, 1), (Status.FAILED, 0), (Status.ERROR, -1)],
)
def test_verdict_encoding(registry: CollectorRegistry, status: Status, verdict: int) -> None:
    m = SoakMetrics(registry)
    m.record_phase(PhaseReport(name="stress", kind="stress", status=status), target="gw",
                   finished_at=5.0)  # fmt: skip
    labels = {"target": "gw", "phase": "stress", "round": ""}
    assert registry.get_sample_value("soak_phase_last_verdict", labels) == verdict


def test_skipped_phase_leaves_gauges_alone(registry: CollectorRegistry) -> None:
    m = SoakMetrics(registry)
    m.record_phase(PhaseReport(name="memory", kind="memory", status=Status.PASSED), target="gw",
                   finished_at=5.0)  # fmt: skip
    m.record_phase(PhaseReport(name="memory", kind="memory", status=Status.SKIPPED), target="gw",
                   finished_at=9.0)  # fmt: skip
    labels = {"target": "gw", "phase": "memory", "round": ""}
    assert registry.get_sample_value("soak_phase_last_run_timestamp_seconds", labels) == 5.0


def test_a_round_is_its_own_label_and_the_phase_keeps_its_name(
    registry: CollectorRegistry,
) -> None:
    """Stress rounds are phase="stress", round="1"/"2" (never phase="stress-1"), so rules and
    dashboards select the phase by its name; a failed round 1 is not hidden by round 2."""
    m = SoakMetrics(registry)
    for number, status in ((1, Status.FAILED), (2, Status.PASSED)):
        report = PhaseReport(name=f"stress-{number}", kind="stress", status=status,
                             params={"round": number}, drops=1)  # fmt: skip
        m.record_phase(report, target="gw", finished_at=float(number))
    get = registry.get_sample_value
    stress = {"target": "gw", "phase": "stress"}
    assert get("soak_phase_last_verdict", {**stress, "round": "1"}) == 0
    assert get("soak_phase_last_verdict", {**stress, "round": "2"}) == 1
    assert get("soak_generator_dropped_requests_total", stress) == 2
    phases_seen = {s.labels.get("phase") for f in registry.collect() for s in f.samples}
    assert "stress-1" not in phases_seen and "stress" in phases_seen


def test_breaker_state_counts_transitions_per_source(registry: CollectorRegistry) -> None:
    m = SoakMetrics(registry)
    for state in (BreakerState.CLOSED, BreakerState.OPEN, BreakerState.OPEN,
                  BreakerState.HALF_OPEN, BreakerState.CLOSED):  # fmt: skip
        m.set_breaker_state(state, target="gw", provider="primary", source="observed")
    m.set_breaker_state(BreakerState.OPEN, target="gw", provider="primary", source="reported")
    observed = {"target": "gw", "provider": "primary", "source": "observed"}
    reported = {**observed, "source": "reported"}
    assert registry.get_sample_value("soak_breaker_state", observed) == 0
    assert registry.get_sample_value("soak_breaker_transitions_total", observed) == 3
    assert registry.get_sample_value("soak_breaker_state", reported) == 2
    assert registry.get_sample_value("soak_breaker_transitions_total", reported) == 0
    with pytest.raises(ValueError, match="breaker source 'guessed'"):
        m.set_breaker_state(BreakerState.OPEN, target="gw", provider="p", source="guessed")


def test_process_generator_scheduler_and_reload(registry: CollectorRegistry) -> None:
    m = SoakMetrics(registry)
    m.set_gateway_process(target="gw", rss_bytes=3e8, cpu_ratio=0.4, open_fds=42, threads=9)
    m.set_generator(loop_lag_s=0.02, cpu_ratio=0.7)
    m.init_plan("hourly")
    m.count_missed_run("hourly")
    m.count_missed_run("hourly")
    m.config_loaded(True, at=1000.0)
    m.config_loaded(False, at=2000.0)
    observe_failover = m.observe_failover
    observe_failover(0.8, target="gw", phase="failover")
    get = registry.get_sample_value
    assert get("soak_gateway_resident_memory_bytes", {"target": "gw"}) == 3e8
    assert get("soak_gateway_cpu_ratio", {"target": "gw"}) == 0.4
    assert get("soak_gateway_open_fds", {"target": "gw"}) == 42
    assert get("soak_gateway_threads", {"target": "gw"}) == 9
    assert get("soak_generator_event_loop_lag_seconds") == 0.02
    assert get("soak_generator_cpu_ratio") == 0.7
    assert get("soak_scheduler_missed_runs_total", {"plan": "hourly"}) == 2
    assert get("soak_scheduler_skipped_runs_total", {"plan": "hourly"}) == 0
    assert get("soak_config_last_reload_successful") == 0
    assert get("soak_config_last_reload_success_timestamp_seconds") == 1000.0
    fo = {"target": "gw", "phase": "failover"}
    assert get("soak_failover_seconds_bucket", {**fo, "le": "1.0"}) == 1
    assert get("soak_failover_seconds_bucket", {**fo, "le": "0.5"}) == 0
    assert (
        get(
            "soak_build_info",
            {"version": "0.1.0", "python": platform.python_version()},
        )
        == 1
    )


def test_plan_runs_next_and_last_run_and_forgetting_a_plan(registry: CollectorRegistry) -> None:
    m = SoakMetrics(registry)
    m.set_plan_next_run("hourly", 5000.0)
    m.count_plan_run("hourly", "passed", at=4000.0)
    m.count_plan_run("hourly", "passed", at=4100.0)
    m.forget_plan("never-scheduled")  # nothing to drop: no error
    get = registry.get_sample_value
    plan = {"plan": "hourly"}
    assert get("soak_plan_runs_total", {**plan, "status": "passed"}) == 2
    assert get("soak_plan_last_run_timestamp_seconds", plan) == 4100.0
    assert get("soak_plan_next_run_timestamp_seconds", plan) == 5000.0
    m.forget_plan("hourly")
    assert get("soak_plan_last_run_timestamp_seconds", plan) is None
    assert get("soak_plan_next_run_timestamp_seconds", plan) is None
    assert get("soak_plan_runs_total", {**plan, "status": "passed"}) == 2  # a counter stays


def test_label_sets_are_bounded(registry: CollectorRegistry) -> None:
    m = SoakMetrics(registry)
    for seq, outcome in enumerate(Outcome):
        m.observe(result(seq, 0.1, outcome, nonce=f"[soak:r:{seq}]", status=500),
                  target="gw", phase="sustained")  # fmt: skip
    m.record_phase(PhaseReport(name="sustained", kind="sustained", status=Status.ERROR,
                               error="connection refused to http://10.0.0.1/secret"),
                   target="gw", finished_at=1.0)  # fmt: skip
    values = set()
    for family in registry.collect():
        for sample in family.samples:
            assert set(sample.labels) <= ALLOWED_LABELS, sample
            values |= set(sample.labels.values())
    assert not any("soak:" in v or "://" in v or " " in v for v in values), values
    assert {"ok", "http_5xx", "timeout", "gw", "sustained"} <= values
    with pytest.raises(ValueError, match="target label value 'http://x'"):
        m.observe(result(1, 0.1), target="http://x", phase="p")
    m.observe(result(1, 0.1, provider="a b"), target="gw", phase="p")  # wire data: unknown
    assert registry.get_sample_value(
        "soak_served_requests_total", {"target": "gw", "phase": "p", "provider": "unknown"}
    ) == 1


def test_every_catalogue_metric_is_registered(registry: CollectorRegistry) -> None:
    SoakMetrics(registry)
    names = {sample_name for f in registry.collect() for sample_name in [f.name]}
    for spec in phases.catalogue():  # the shared catalogue and every phase's own
        assert spec.name.removesuffix("_total") in names, spec.name
        assert spec.name.startswith("soak_")
        assert spec.kind != "counter" or spec.name.endswith("_total")
    assert "soak_requests_total" in exposed_names()
    assert "soak_request_duration_seconds_bucket" in exposed_names()


def test_default_collectors_land_on_the_given_registry(registry: CollectorRegistry) -> None:
    register_default_collectors(registry)
    assert registry.get_sample_value("process_resident_memory_bytes") > 0
    assert registry.get_sample_value("python_info", {
        "implementation": "CPython", "major": "3", "minor": "11",
        "patchlevel": platform.python_version_tuple()[2], "version":
        platform.python_version()}) == 1  # fmt: skip


def test_buckets_with_adds_thresholds_once() -> None:
    assert buckets_with((0.1, 1, 5), (3, 5, 0.1)) == (0.1, 1.0, 3.0, 5.0)


def slo_of(tmp_path: Path, slo: str) -> SloConfig:
    """The SLO block of a config whose `slo:` section is `slo` (YAML flow text)."""
    path = tmp_path / "soak.yaml"
    path.write_text(f"version: 1\ngateway: {{url: 'http://127.0.0.1:4000'}}\nslo: {slo}\n")
    return load_config(path, env={}).slo


def test_buckets_for_slo_covers_every_threshold(tmp_path: Path) -> None:
    slo = slo_of(tmp_path, """{
        overhead: {mean: 5ms, p95: 15ms, p99: 100ms},
        readiness: {success_ratio: 0.95, p95: 4.5s},
        failover: {mean: 5s, max: 12s},
        tiers: {p95: {target: 2.5s, acceptable: 5s}, success_ratio: {target: 0.99}}}""")
    thresholds = phases.thresholds(slo)
    buckets = buckets_for_slo(thresholds)
    assert 0.015 in buckets["soak_gateway_overhead_seconds"]
    assert {4.5, 2.5} <= set(buckets["soak_request_duration_seconds"])
    assert 12.0 in buckets["soak_failover_seconds"]
    assert 0.99 not in buckets["soak_request_duration_seconds"]  # ratios are not latencies
    check_thresholds_are_buckets(buckets, thresholds)  # no error
    assert slo_thresholds(thresholds)["soak_failover_seconds"].items() >= {
        "slo.failover.mean": 5.0,
        "slo.failover.max": 12.0,
    }.items()


def test_each_threshold_goes_to_the_histogram_of_its_quantity(tmp_path: Path) -> None:
    """`slo.capacity.p99` bounds the per-request overhead: it is an overhead bucket, never a
    request-latency one (a key regex once put it there)."""
    found = slo_thresholds(phases.thresholds(slo_of(tmp_path, "{capacity: {p99: 0.3}}")))
    assert found[OVERHEAD_SECONDS]["slo.capacity.p99"] == 0.3
    assert "slo.capacity.p99" not in found["soak_request_duration_seconds"]
    assert found["soak_request_duration_seconds"]["slo.sustained.p95"] > 0


def test_threshold_that_is_not_a_bucket_is_a_config_error(
    registry: CollectorRegistry, tmp_path: Path
) -> None:
    slo = [Threshold(OVERHEAD_SECONDS, "slo.overhead.p95", 0.015)]
    with pytest.raises(ValueError, match=r"^slo\.overhead\.p95: threshold 0\.015s is not a bucket"):
        check_thresholds_are_buckets(BASE_BUCKETS, slo)
    tiers = phases.thresholds(slo_of(tmp_path, "{tiers: {p99: {target: 7s, acceptable: 10s}}}"))
    with pytest.raises(ValueError, match=r"slo\.tiers\.p99\.target: threshold 7s"):
        SoakMetrics(registry, thresholds=tiers)


def test_default_buckets_hold_the_seed_thresholds() -> None:
    seeds = phases.thresholds(load_config(None, env={}).slo)
    assert {t.path for t in seeds} >= {"slo.overhead.p50", "slo.readiness.p99",
                                        "slo.failover.max", "slo.tiers.failover_time.target"}
    check_thresholds_are_buckets(BASE_BUCKETS, seeds)
    assert BASE_BUCKETS["soak_gateway_overhead_seconds"][0] == 5e-05
    assert BASE_BUCKETS["soak_request_duration_seconds"][-1] >= 300


def test_metric_catalogue_document_lists_every_metric() -> None:
    doc = (Path(__file__).resolve().parent.parent / "docs" / "metrics.md").read_text()
    missing = [spec.name for spec in phases.catalogue() if f"`{spec.name}`" not in doc]
    assert missing == []


def test_exposition_passes_promtool_lint(registry: CollectorRegistry) -> None:
    """Every metric family, filled in, passes `promtool check metrics` (naming, units, labels)."""
    m = SoakMetrics(registry)
    m.observe(result(1, 0.2, tokens_out=3, first_token=100.05), target="gw", phase="overhead")
    m.record_phase(PhaseReport(name="overhead", kind="overhead", status=Status.PASSED,
                               latency=summary(0.1), drops=1,
                               distributions={"overhead_per_request": summary(0.001)},
                               generator=GeneratorHealth(0.001, 0.01, 0.2, 1, True)),
                   target="gw", finished_at=10.0)  # fmt: skip
    m.observe_failover(0.3, target="gw", phase="failover")
    m.set_breaker_state(BreakerState.OPEN, target="gw", provider="primary", source="reported")
    m.set_gateway_process(target="gw", rss_bytes=1e8, cpu_ratio=0.5, open_fds=10, threads=4)
    m.set_generator(loop_lag_s=0.001, cpu_ratio=0.1)
    m.init_plan("hourly")
    m.config_loaded(True, at=1.0)
    promtool = shutil.which("promtool") or "/usr/bin/promtool"
    assert Path(promtool).exists(), "promtool is required (Debian package prometheus)"
    done = subprocess.run([promtool, "check", "metrics"], input=generate_latest(registry),
                          capture_output=True, timeout=60)  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr


def test_every_outcome_exists_at_zero_from_the_first_request(registry: CollectorRegistry) -> None:
    SoakMetrics(registry).observe(result(1, 0.1), target="gw", phase="overhead")
    for outcome in ("http_3xx", "untraced", "forged", "bad_response"):
        labels = {"target": "gw", "phase": "overhead", "outcome": outcome}
        assert registry.get_sample_value("soak_requests_total", labels) == 0, outcome


def served_providers(registry: CollectorRegistry) -> dict[str, float]:
    return {
        s.labels["provider"]: s.value
        for f in registry.collect()
        for s in f.samples
        if s.name == "soak_served_requests_total"
    }


def test_the_provider_label_holds_configured_names_only(registry: CollectorRegistry) -> None:
    """60 answers naming 60 providers (a gateway's marker or header is wire data) make no new
    series: only the configured names and `unknown`."""
    m = SoakMetrics(registry, providers=("bedrock", "openai"))
    for seq in range(60):
        m.observe(result(seq, 0.1, provider=f"p{seq}"), target="gw", phase="overhead")
    m.observe(result(60, 0.1, provider="bedrock"), target="gw", phase="overhead")
    m.observe(result(61, 0.1, provider="primary"), target="gw", phase="overhead")  # not ours
    assert served_providers(registry) == {"unknown": 61, "bedrock": 1}
    m.set_breaker_state(BreakerState.OPEN, target="gw", provider="x9", source="reported")
    get = registry.get_sample_value
    assert get("soak_breaker_state", {"target": "gw", "provider": "unknown",
                                      "source": "reported"}) == 2  # fmt: skip
    m.set_providers(("primary", "openai"))  # a reload renamed the primary
    m.observe(result(62, 0.1, provider="primary"), target="gw", phase="overhead")
    assert served_providers(registry) == {"unknown": 61, "bedrock": 1, "primary": 1}


def series_of(registry: CollectorRegistry, target: str) -> int:
    return sum(
        1
        for f in registry.collect()
        for s in f.samples
        if s.labels.get("target") == target and not s.name.endswith("_created")
    )


def test_forget_target_removes_every_series_of_a_renamed_target(
    registry: CollectorRegistry,
) -> None:
    m = SoakMetrics(registry)
    for target in ("old", "kept"):
        m.observe(result(1, 0.1, tokens_out=3), target=target, phase="overhead")
        m.observe_failover(0.5, target=target, phase="failover")
        m.set_breaker_state(BreakerState.OPEN, target=target, provider="primary",
                            source="observed")  # fmt: skip
        m.set_gateway_process(target=target, rss_bytes=1e6, cpu_ratio=0.1, open_fds=9, threads=2)
        m.child(CAPACITY_KNEE, target).set(50.0)  # a phase's own metric goes too
        m.child(STREAM_INTEGRITY, target, "streaming", "whole").inc(2)
    kept = series_of(registry, "kept")
    assert series_of(registry, "old") == kept > 100
    removed = m.forget_target("old")
    assert removed > 20
    assert series_of(registry, "old") == 0
    assert series_of(registry, "kept") == kept
    get = registry.get_sample_value
    assert get("soak_requests_total", {"target": "kept", "phase": "overhead",
                                       "outcome": "ok"}) == 1  # fmt: skip
    # the name comes back clean if used again: children are rebuilt, not the forgotten ones
    m.observe(result(2, 0.1), target="old", phase="overhead")
    assert get("soak_requests_total", {"target": "old", "phase": "overhead",
                                       "outcome": "ok"}) == 1  # fmt: skip
    m.set_breaker_state(BreakerState.CLOSED, target="old", provider="primary", source="observed")
    assert get("soak_breaker_transitions_total", {"target": "old", "provider": "primary",
                                                  "source": "observed"}) == 0  # fmt: skip
    assert m.forget_target("never-seen") == 0


def test_a_phase_declares_its_own_metrics_and_writes_them_through_the_one_writer(
    registry: CollectorRegistry,
) -> None:
    """Payload, capacity and streaming declare their metrics in their modules
    (`PhaseSpec.metrics`); the writer creates them with the catalogue's and checks every label
    value a hook hands it."""
    owned = {m.name: s.name for s in phases.registry() for m in s.metrics}
    assert owned["soak_capacity_knee_requests_per_second"] == "capacity"
    assert owned["soak_payload_overhead_seconds"] == "payload"
    assert owned["soak_stream_integrity_total"] == "streaming"
    assert not set(owned) & {m.name for m in metric_catalogue.CATALOGUE}  # declared once
    assert "soak_payload_overhead_seconds" in exposed_names()  # rules and dashboards see it
    m = SoakMetrics(registry)
    m.child(CAPACITY_KNEE, "gw").set(40.0)
    assert registry.get_sample_value("soak_capacity_knee_requests_per_second",
                                     {"target": "gw"}) == 40.0  # fmt: skip
    with pytest.raises(ValueError, match="target label value 'http://x'"):
        m.child(CAPACITY_KNEE, "http://x")  # never a URL
    with pytest.raises(ValueError, match="takes labels"):
        m.child(STREAM_INTEGRITY, "gw", "streaming")
