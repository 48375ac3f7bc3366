"""`soak once` end to end: the embedded LiteLLM default, nginx as a plain reverse proxy, the
per-request overhead method against a proxy of known delay, and gateways that misbehave."""

from __future__ import annotations

import statistics
import subprocess
from pathlib import Path

import pytest
from once_helpers import free_port, nginx_binary, proxy_gateway, run_once, small_phases

pytestmark = pytest.mark.integration


def test_embedded_default_runs_against_real_litellm(tmp_path: Path) -> None:
    done = run_once(tmp_path, None, "--phases", "calibration,overhead,stress", timeout=300)
    assert "Traceback" not in done.stderr
    report = done.report
    assert done.code == (0 if report["passed"] else 1), done.stderr[-2000:]
    assert report["kind"] == "litellm" and report["profile"] == "quick"
    names = [p["name"] for p in report["phases"]]
    assert names == ["calibration", "overhead", "stress-1", "stress-2"]

    calibration = done.phase("calibration")
    assert calibration["status"] == "baseline"
    assert calibration["success_ratio"] == 1.0

    overhead = done.phase("overhead")
    per_request = overhead["distributions"]["overhead_per_request"]
    seed = overhead["distributions"]["overhead_percentile_diff"]
    # the embedded default warms the cold proxy up for 3 s first; those are not recorded
    assert overhead["params"]["warmup"] == 3.0 and overhead["sent"] == 200
    assert per_request["count"] == overhead["completed"] > 150
    # LiteLLM is a Python proxy: it adds something, never nothing (how much is a speed figure:
    # bench/bench_gateways.py, docs/BENCHMARKS.md)
    assert per_request["p50"] > 0.001
    assert seed["p50"] == pytest.approx(
        overhead["latency"]["p50"] - calibration["latency"]["p50"], abs=1e-6
    )
    assert {c["name"] for c in overhead["checks"]} >= {"overhead p50", "overhead p99"}
    assert overhead["process"]["rss_peak"] > 50e6  # the real proxy, watched by PID

    for name in ("stress-1", "stress-2"):
        stress = done.phase(name)
        assert stress["success_ratio"] == 1.0, stress["outcomes"]
        assert stress["status"] == "passed"

    cases = done.junit().findall(".//testcase")
    assert [c.get("name") for c in cases] == names
    markdown = (done.out / "report.md").read_text()
    assert "Processing Overhead" in markdown and "stress-2" in markdown


def test_nginx_reverse_proxy_adds_next_to_nothing(tmp_path: Path) -> None:
    mock_port, nginx_port = free_port(), free_port()
    prefix = tmp_path / "nginx"
    (prefix / "logs").mkdir(parents=True)
    conf = prefix / "nginx.conf"
    conf.write_text(
        f"""
worker_processes 1;
error_log {prefix}/logs/error.log warn;
pid {prefix}/nginx.pid;
events {{ worker_connections 4096; }}
http {{
  access_log off;
  client_body_temp_path {prefix}/body;
  proxy_temp_path {prefix}/proxy;
  upstream mock {{ server 127.0.0.1:{mock_port}; keepalive 128; }}
  server {{
    listen 127.0.0.1:{nginx_port};
    location / {{
      proxy_pass http://mock;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_buffering off;
    }}
  }}
}}
"""
    )
    nginx = subprocess.Popen(
        [nginx_binary(), "-c", str(conf), "-p", str(prefix), "-g", "daemon off;"]
    )
    try:
        config = {
            "version": 1,
            "gateway": {
                "name": "nginx",
                "kind": "openai",
                "url": f"http://127.0.0.1:{nginx_port}",
                "chat_path": "/p/primary/v1/chat/completions",
                "model": "soak-model",
            },
            "mock": {"port": mock_port},
            "phases": small_phases(rate=50, duration="4s"),
        }
        done = run_once(tmp_path, config, "--phases", "calibration,overhead,stress")
    finally:
        nginx.terminate()
        nginx.wait(10)
    report = done.report
    assert done.code == (0 if report["passed"] else 1), done.stderr[-2000:]
    overhead = done.phase("overhead")
    ours = overhead["distributions"]["overhead_per_request"]
    floor = done.phase("calibration")["distributions"]["overhead_per_request"]
    assert ours["count"] == overhead["sent"] == 200
    # nginx over this run's floor (0.25 ms here) vs the mock's 20 ms left in on one side: 8x, 10x
    assert ours["p50"] - floor["p50"] < 0.002, (ours, floor)
    assert done.phase("stress-2")["success_ratio"] == 1.0
    failures = int(done.junit().get("failures"))
    assert failures == sum(p["status"] == "failed" for p in report["phases"])


def _overhead_through_proxy(tmp: Path, delay: float) -> tuple[dict[str, float], list[float]]:
    """Per-request overhead through the test proxy, and the delays it really added."""
    record = tmp / "added.txt"
    config = {
        "version": 1,
        "gateway": proxy_gateway("--delay", str(delay), "--record", str(record)),
        # 10/s: requests never overlap in the proxy, whose hold keeps its one thread busy
        "phases": small_phases(rate=10, duration="6s", latency="20ms"),
    }
    done = run_once(tmp, config, "--phases", "overhead")
    overhead = done.phase("overhead")
    assert overhead["success_ratio"] == 1.0, (overhead["outcomes"], done.stderr[-2000:])
    added = [float(x) for x in record.read_text().split()] if record.exists() else []
    return overhead["distributions"]["overhead_per_request"], added


def test_per_request_overhead_finds_a_known_added_delay(tmp_path: Path) -> None:
    """Same proxy, with and without a 2 ms hold, alternated twice: the per-request method must
    find what the proxy really added (it records each hold) within ±0.5 ms at p50 and mean.

    The bound widens only by the run-to-run spread of the same configuration in this test
    (shared CI machines are noisy); a method that misses or doubles the delay still fails.
    """
    runs: dict[float, list[dict[str, float]]] = {0.0: [], 0.002: []}
    held: list[float] = []
    for i in range(2):
        for delay in runs:
            summary, added = _overhead_through_proxy(tmp_path / f"{delay}-{i}", delay)
            runs[delay].append(summary)
            held += added
    assert len(held) == 120 and min(held) >= 0.002
    truth = {"p50": statistics.median(held), "mean": statistics.fmean(held)}
    for stat in ("p50", "mean"):
        zero = [r[stat] for r in runs[0.0]]
        two = [r[stat] for r in runs[0.002]]
        found = sum(two) / 2 - sum(zero) / 2
        noise = abs(zero[0] - zero[1]) + abs(two[0] - two[1])
        assert found == pytest.approx(truth[stat], abs=max(0.0005, noise)), (stat, zero, two)


BAD_GATEWAYS = [
    ("status-404", ["--mode", "status", "--status", "404"], "http_4xx"),
    ("status-503", ["--mode", "status", "--status", "503"], "http_5xx"),
    ("garbage", ["--mode", "garbage"], "bad_response"),
]


@pytest.mark.parametrize(
    ("name", "args", "outcome"), BAD_GATEWAYS, ids=[b[0] for b in BAD_GATEWAYS]
)
def test_misbehaving_gateway_is_a_verdict_not_a_traceback(
    tmp_path: Path, name: str, args: list[str], outcome: str
) -> None:
    config = {"version": 1, "gateway": proxy_gateway(*args), "phases": small_phases(duration="1s")}
    done = run_once(tmp_path, config, "--phases", "calibration,overhead")
    assert done.code == 1
    assert "Traceback" not in done.stderr
    overhead = done.phase("overhead")
    assert overhead["status"] == "failed"
    assert set(overhead["outcomes"]) == {outcome}
    assert done.phase("calibration")["success_ratio"] == 1.0  # measured before: kept


def test_truncated_stream_is_stream_broken(tmp_path: Path) -> None:
    config = {
        "version": 1,
        "gateway": proxy_gateway("--mode", "truncate", "--keep-bytes", "200"),
        "request": {"stream": True},
        "phases": small_phases(duration="1s"),
    }
    done = run_once(tmp_path, config, "--phases", "overhead")
    assert done.code == 1 and "Traceback" not in done.stderr
    assert set(done.phase("overhead")["outcomes"]) == {"stream_broken"}


def test_unreachable_gateway_is_counted_as_connect_errors(tmp_path: Path) -> None:
    config = {
        "version": 1,
        "gateway": {"url": f"http://127.0.0.1:{free_port()}", "timeout": "2s"},
        "phases": small_phases(duration="1s"),
    }
    done = run_once(tmp_path, config, "--phases", "calibration,overhead")
    assert done.code == 1 and "Traceback" not in done.stderr
    assert set(done.phase("overhead")["outcomes"]) == {"connect"}
    assert done.phase("calibration")["status"] == "baseline"


def test_gateway_dying_mid_phase_keeps_partial_results(tmp_path: Path) -> None:
    config = {
        "version": 1,
        "gateway": proxy_gateway("--mode", "die", "--after", "15"),
        "phases": small_phases(duration="2s"),
    }
    done = run_once(tmp_path, config, "--phases", "calibration,overhead,stress")
    assert done.code == 1 and "Traceback" not in done.stderr
    overhead = done.phase("overhead")
    assert overhead["status"] == "error"
    assert "gateway exited (code 3)" in overhead["error"]
    # 15 requests reach the mock; the last may still be in flight when the proxy exits
    assert overhead["outcomes"].get("ok", 0) in (14, 15)
    assert overhead["outcomes"].get("connect", 0) > 0
    assert done.phase("calibration")["success_ratio"] == 1.0
