"""The streaming phase through `soak once` against gateways of known stream behaviour
(tests/stream_proxy.py as a managed `openai`-kind gateway in front of soak's own mock)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest
from once_helpers import ROOT, run_once

pytestmark = pytest.mark.integration

PROXY = ROOT / "tests" / "stream_proxy.py"
HOLD = 0.003


def stream_gateway(*proxy_args: str) -> dict[str, Any]:
    return {
        "name": "stream-proxy",
        "kind": "openai",
        "chat_path": "/p/primary/v1/chat/completions",
        "model": "soak-model",
        "timeout": "10s",
        "managed": {
            "command": [
                sys.executable,
                str(PROXY),
                "--port",
                "{port}",
                "--upstream",
                "{mock_url}",
                *proxy_args,
            ],
            "ready_log": "stream proxy listening",
            "ready_timeout": "30s",
        },
    }


def streaming(tmp: Path, *proxy_args: str, streams: int = 20) -> tuple[int, dict[str, Any]]:
    """`soak once --phases streaming` through the proxy: exit code and the phase's report."""
    config = {
        "version": 1,
        "gateway": stream_gateway(*proxy_args),
        "phases": {
            "streaming": {
                "streams": streams,
                "ramp": "1s",
                "ttft": "20ms",
                "inter_token": "20ms",
                "tokens": 10,
                "stall": "500ms",
                "settle": "1s",
                "timeout": "10s",
            },
        },
    }
    done = run_once(tmp, config, "--phases", "streaming", timeout=120)
    assert "Traceback" not in done.stderr, done.stderr[-3000:]
    return done.code, done.phase("streaming")


def test_a_plain_proxy_passes_every_stream_whole_and_flat(tmp_path: Path) -> None:
    code, phase = streaming(tmp_path)
    stream = phase["details"]["streaming"]
    assert stream["integrity"]["whole"] == 20, stream["integrity"]
    assert stream["whole_ratio"] == 1.0
    assert 0 <= stream["slow_gaps"] <= 9  # a loaded CI machine may hold a few chunks 40 ms
    assert stream["goodput"] == pytest.approx(stream["request_rate"])
    dist = phase["distributions"]
    assert dist["itl"]["count"] == 20 * 9  # every gap between chunks, pooled
    assert dist["itl"]["p50"] == pytest.approx(0.02, abs=0.005)
    assert dist["tpot"]["p50"] == pytest.approx(0.02, abs=0.005)
    # chunks passed on (1.4-2.6 ms here) vs the stream held whole (183 ms, buffer): 11x and 6x
    assert 0 < dist["added_ttft"]["p50"] < 0.03
    flat = stream["process"]
    assert flat["fds_growth"] <= 16 and flat["rss_before"] > 0
    assert code == 0, [c for c in phase["checks"] if not c["passed"]]


def test_held_first_chunk_is_measured_as_added_ttft(tmp_path: Path) -> None:
    """Same proxy with and without a 3 ms hold of the first chunk, alternated twice: the added
    TTFT at p50 must grow by 3 ms ± 0.5 ms (widened only by this run's own zero-hold noise)."""
    runs: dict[float, list[float]] = {0.0: [], HOLD: []}
    for i in range(2):
        for hold in runs:
            _, phase = streaming(tmp_path / f"{hold}-{i}", "--hold-first", str(hold))
            assert phase["details"]["streaming"]["integrity"]["whole"] == 20
            runs[hold].append(phase["distributions"]["added_ttft"]["p50"])
    added = sum(runs[HOLD]) / 2 - sum(runs[0.0]) / 2
    noise = abs(runs[0.0][0] - runs[0.0][1]) + abs(runs[HOLD][0] - runs[HOLD][1])
    print(f"added TTFT p50: {runs}; held {added * 1e3:.3f} ms, noise {noise * 1e3:.3f} ms")
    assert added == pytest.approx(HOLD, abs=max(0.0005, noise)), runs


@pytest.mark.parametrize(
    ("mode", "expected"),
    [("buffer", "buffered"), ("drop-last", "truncated"), ("split", "rechunked")],
)
def test_stream_damage_is_classified(tmp_path: Path, mode: str, expected: str) -> None:
    code, phase = streaming(tmp_path, "--mode", mode, streams=10)
    stream = phase["details"]["streaming"]
    assert stream["integrity"][expected] == 10, stream["integrity"]
    assert code == 1  # none arrived whole: the phase fails on whole_ratio 1.0
    (whole,) = [c for c in phase["checks"] if c["name"] == "whole streams"]
    assert not whole["passed"] and whole["value"] == 0.0


@pytest.mark.timeout(200)
def test_real_litellm_with_its_bedrock_primary_keeps_streams_whole(tmp_path: Path) -> None:
    """The embedded default (LiteLLM re-framing the mock's Bedrock event stream as SSE), with
    a small streaming phase: every stream whole, the gateway-added TTFT in milliseconds."""
    config = {
        "version": 1,
        "profile": "quick",
        "gateway": {"name": "litellm", "kind": "litellm", "model": "soak-primary",
                    "primary_api": "bedrock", "api_key_env": None, "generate_key": True,
                    "timeout": "30s", "managed": {"command": [], "ready_timeout": "90s"}},
        "phases": {"streaming": {"streams": 10, "ramp": "1s", "ttft": "50ms",
                                 "inter_token": "50ms", "tokens": 10, "settle": "1s",
                                 "timeout": "20s"}},
    }  # fmt: skip
    done = run_once(tmp_path, config, "--phases", "streaming", timeout=180)
    assert "Traceback" not in done.stderr, done.stderr[-3000:]
    phase = done.phase("streaming")
    stream = phase["details"]["streaming"]
    assert stream["integrity"]["whole"] == 10, stream["integrity"]
    assert stream["warmup"] == {"streams": 10, "ok": 10}
    added = phase["distributions"]["added_ttft"]
    print(f"litellm (bedrock) added TTFT p50 {added['p50'] * 1e3:.2f} ms")
    assert added["p50"] > 0.001  # how much more is a speed figure: docs/BENCHMARKS.md
    assert phase["process"]["rss_peak"] > 50e6  # the real proxy, watched by PID
