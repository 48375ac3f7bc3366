"""`phases.capacity` / `slo.capacity` and `gateway.primary_api`: defaults and one-line errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from soak.config import ConfigError, describe
from soak.phases import load_config
from soak.phases.capacity import DEFAULT_CAPACITY, DEFAULT_CAPACITY_SLO

GATEWAY = "gateway: {url: 'http://127.0.0.1:1'}\n"


def _load(tmp_path: Path, body: str, gateway: str = GATEWAY):
    path = tmp_path / "cap.yaml"
    path.write_text(f"version: 1\n{gateway}{body}\n")
    return path, load_config(path, env={})


def test_defaults_and_overrides(tmp_path: Path) -> None:
    _, cfg = _load(tmp_path, "")
    assert cfg.phases.capacity == DEFAULT_CAPACITY
    assert cfg.slo.capacity == DEFAULT_CAPACITY_SLO
    body = (
        "phases: {capacity: {start: 20, factor: 2, max_rate: 500, step_duration: 3s,"
        " budget: 1m, bisect: 0}}\n"
        "slo: {capacity: {p99: 50ms, min_knee: 40}}"
    )
    _, cfg = _load(tmp_path, body)
    cap = cfg.phases.capacity
    assert (cap.start, cap.factor, cap.max_rate, cap.step_duration, cap.budget, cap.bisect) == (
        20.0, 2.0, 500.0, 3.0, 60.0, 0,
    )  # fmt: skip
    assert cap.latency == DEFAULT_CAPACITY.latency
    assert (cfg.slo.capacity.p99, cfg.slo.capacity.min_knee) == (0.05, 40.0)
    info = describe(cfg)
    assert info["phases"]["capacity"]["budget"] == 60.0
    assert info["slo"]["capacity"]["success_ratio"] == DEFAULT_CAPACITY_SLO.success_ratio


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("phases: {capacity: {factor: 1}}", "phases.capacity.factor: must be above 1, got 1 "
         "(e.g. 1.5: +50% per step)"),
        ("phases: {capacity: {start: 100, max_rate: 50}}",
         "phases.capacity.max_rate: must not be below start (100)"),
        ("phases: {capacity: {budget: 2s, step_duration: 5s}}",
         "phases.capacity.budget: must allow at least one step (5s)"),
        ("phases: {capacity: {start: 0}}", "phases.capacity.start: must be greater than 0, got 0"),
        ("phases: {capacity: {bisect: -1}}", "phases.capacity.bisect: must be at least 0, got -1"),
        ("phases: {capacity: {steps: 3}}", "phases.capacity.steps: unknown key"),
        ("slo: {capacity: {runaway: 0.5}}",
         "slo.capacity.runaway: must be above 1, got 0.5 (e.g. 3: p50 tripled)"),
        ("slo: {capacity: {success_ratio: 2}}",
         "slo.capacity.success_ratio: must be between 0 and 1, got 2 (a ratio: 1.0 is 100%)"),
        ("slo: {capacity: {p99: 0}}",
         "slo.capacity.p99: must be longer than 0 (use 500ms, 30s, 5m, 1h30m)"),
    ],
)  # fmt: skip
def test_capacity_errors_are_one_line(tmp_path: Path, body: str, message: str) -> None:
    path = tmp_path / "cap.yaml"
    path.write_text(f"version: 1\n{GATEWAY}{body}\n")
    with pytest.raises(ConfigError) as info:
        load_config(path, env={})
    assert str(info.value).startswith(f"{path}: {message}")


def test_primary_api(tmp_path: Path) -> None:
    assert load_config(None).gateway.primary_api == "bedrock"  # the embedded default: the seed
    gw = "gateway: {kind: litellm, managed: {}, generate_key: true, primary_api: bedrock}\n"
    assert _load(tmp_path, "", gw)[1].gateway.primary_api == "bedrock"
    assert _load(tmp_path, "")[1].gateway.primary_api == "openai"
    path = tmp_path / "cap.yaml"
    path.write_text("version: 1\ngateway: {url: 'http://127.0.0.1:1', primary_api: bedrock}\n")
    with pytest.raises(ConfigError) as info:
        load_config(path, env={})
    assert str(info.value) == (
        f"{path}: gateway.primary_api: only for kind litellm"
        " (soak writes the routes of LiteLLM only)"
    )
    path.write_text("version: 1\ngateway: {kind: litellm, url: 'http://x:1', primary_api: grpc}\n")
    with pytest.raises(ConfigError) as info:
        load_config(path, env={})
    assert str(info.value) == (
        f"{path}: gateway.primary_api: unknown value 'grpc' (use openai or bedrock)"
    )
