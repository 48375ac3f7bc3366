"""The payload phase's pure parts: its section, its steps, the slope, and its metrics."""

from __future__ import annotations

from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from soak.config import ConfigError
from soak.metrics import SoakMetrics
from soak.phases import get, load_config
from soak.phases.payload import PayloadDetails, PayloadPhase, slope_per_100kb, steps_of
from soak.summary import PhaseReport, Status


def test_steps_and_defaults() -> None:
    phase = load_config(None).phases.payload
    assert phase.prompt_bytes == (1024, 32768, 131072, 524288)
    assert phase.answer_tokens == (16, 256, 2048) and get("payload").on_demand
    assert steps_of(phase) == [(1024, 16), (32768, 16), (131072, 16), (524288, 16),
                               (1024, 256), (1024, 2048)]  # fmt: skip


def test_slope_is_ms_per_100kb() -> None:
    # 2 ms + 0.5 ms per 100 KB, exactly
    points = [(x, 0.002 + 0.0005 * x / 102_400) for x in (1024, 32768, 131072, 524288)]
    assert slope_per_100kb(points) == pytest.approx(0.0005)
    assert slope_per_100kb([(1024, 0.001)]) is None


def test_bad_section_is_one_line(tmp_path: Path) -> None:
    path = tmp_path / "soak.yaml"
    path.write_text("version: 1\ngateway: {url: 'http://127.0.0.1:1'}\n"
                    "phases: {payload: {prompt_bytes: [1024, 0]}}\n")  # fmt: skip
    with pytest.raises(ConfigError, match=r"phases\.payload\.prompt_bytes: expected a list of 1"):
        load_config(path, env={})


def test_record_sets_step_gauges_slopes_and_model_overhead() -> None:
    registry = CollectorRegistry()
    metrics = SoakMetrics(registry)
    step = {"prompt_bytes": 1024, "answer_tokens": 16, "p50": 0.002, "p99": 0.009,
            "cpu_s_per_request": 0.0004,
            "breakdown": {"model": {"openai/gpt-x": {"overhead_p50": 0.003, "overhead_p99": 0.01}},
                          "key": {"key-0": {"overhead_p50": 0.001}}}}  # fmt: skip
    report = PhaseReport(name="payload", kind="payload", status=Status.PASSED,
                         details=PayloadDetails(steps=[step], slope_s_per_100kb=0.0007,
                                                floor_slope_s_per_100kb=0.0001,
                                                net_slope_s_per_100kb=0.0006))  # fmt: skip
    spec = get("payload")
    assert spec.record is not None
    spec.record(report, metrics, "gw")
    value = registry.get_sample_value
    sizes = {"target": "gw", "prompt_bytes": "1024", "answer_tokens": "16"}
    assert value("soak_payload_overhead_seconds", {**sizes, "statistic": "p99"}) == 0.009
    assert value("soak_payload_gateway_cpu_seconds_per_request", sizes) == 0.0004
    assert value("soak_payload_overhead_slope_seconds_per_100kb",
                 {"target": "gw", "basis": "net"}) == 0.0006  # fmt: skip
    model = {"target": "gw", "model": "openai_gpt-x", "statistic": "p50"}
    assert value("soak_model_overhead_seconds", model) == 0.003
    assert PayloadPhase().direct
