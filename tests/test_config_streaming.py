"""`phases.streaming` / `slo.streaming`: defaults, overrides, and one-line errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from soak.config import ConfigError, describe
from soak.phases import load_config
from soak.phases.streaming import DEFAULT_STREAMING, DEFAULT_STREAMING_SLO

GATEWAY = "gateway: {url: 'http://127.0.0.1:1'}\n"


def _load(tmp_path: Path, body: str):
    path = tmp_path / "streaming.yaml"
    path.write_text(f"version: 1\nprofile: quick\n{GATEWAY}{body}\n")
    return load_config(path, env={})


def test_defaults_and_overrides(tmp_path: Path) -> None:
    cfg = _load(tmp_path, "phases: {streaming: null}\nslo: {streaming: null}")
    assert cfg.phases.streaming == DEFAULT_STREAMING
    assert cfg.slo.streaming == DEFAULT_STREAMING_SLO
    body = (
        "phases: {streaming: {streams: 5, ramp: 1s, ttft: 50ms, inter_token: 20ms, tokens: 10,"
        " stall: 500ms, settle: 0s, warmup: false, timeout: 5s}}\n"
        "slo: {streaming: {added_ttft_p50: 2ms, whole_ratio: 0.9, fds_growth: 0}}"
    )
    cfg = _load(tmp_path, body)
    ph = cfg.phases.streaming
    assert (ph.streams, ph.ramp, ph.ttft, ph.inter_token, ph.tokens, ph.stall, ph.settle) == (
        5, 1.0, 0.05, 0.02, 10, 0.5, 0.0,
    )  # fmt: skip
    assert ph.stream_time == pytest.approx(0.05 + 9 * 0.02)
    assert ph.warmup is False and DEFAULT_STREAMING.warmup is True
    slo = cfg.slo.streaming
    assert (slo.added_ttft_p50, slo.whole_ratio, slo.fds_growth) == (0.002, 0.9, 0)
    assert slo.e2e == DEFAULT_STREAMING_SLO.e2e
    info = describe(cfg)
    assert info["phases"]["streaming"]["inter_token"] == 0.02
    assert info["slo"]["streaming"]["added_ttft_p50"] == 0.002


def test_profiles_carry_the_phase() -> None:
    quick = load_config(None, profile="quick").phases.streaming
    full = load_config(None, profile="full").phases.streaming
    assert 10 <= quick.stream_time < 60  # tens of seconds in quick
    assert full.stream_time >= 60  # minutes in full
    assert full.streams >= quick.streams


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("phases: {streaming: {streams: 0}}",
         "phases.streaming.streams: must be at least 1, got 0"),
        ("phases: {streaming: {tokens: 1}}",
         "phases.streaming.tokens: must be at least 2, got 1"),
        ("phases: {streaming: {inter_token: 1s, stall: 1s}}",
         "phases.streaming.stall: must be above inter_token (1s) (every gap would be a stall)"),
        ("phases: {streaming: {ttft: 1s, inter_token: 1s, tokens: 10, timeout: 10s}}",
         "phases.streaming.timeout: must outlast one stream (10s = ttft + (tokens - 1) x "
         "inter_token)"),
        ("phases: {streaming: {rate: 3}}", "phases.streaming.rate: unknown key"),
        ("slo: {streaming: {whole_ratio: 2}}",
         "slo.streaming.whole_ratio: must be between 0 and 1, got 2 (a ratio: 1.0 is 100%)"),
        ("slo: {streaming: {added_ttft_p50: 0}}",
         "slo.streaming.added_ttft_p50: must be longer than 0 (use 500ms, 30s, 5m, 1h30m)"),
        ("slo: {streaming: {fds_growth: -1}}",
         "slo.streaming.fds_growth: must be at least 0, got -1"),
    ],
)  # fmt: skip
def test_errors_are_one_line(tmp_path: Path, body: str, message: str) -> None:
    path = tmp_path / "streaming.yaml"
    path.write_text(f"version: 1\n{GATEWAY}{body}\n")
    with pytest.raises(ConfigError) as info:
        load_config(path, env={})
    text = str(info.value)
    assert "\n" not in text
    assert text.startswith(f"{path}: {message}")
