"""The payload phase through `soak once` against nginx as a plain reverse proxy: every step's
body reaches the mock byte for byte, usage agrees, and the report carries the steps."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest
from once_helpers import Once, free_port, nginx_binary, run_once
from prometheus_client import CollectorRegistry

from soak.metrics import SoakMetrics
from soak.reports.jsonfile import parse_json

pytestmark = pytest.mark.integration


def _nginx(prefix: Path, port: int, mock_port: int, refuse: str = "") -> subprocess.Popen[bytes]:
    """nginx in front of the mock; with `refuse`, the requests carrying that Authorization
    header get nginx's own 429 (a gateway throttling one tenant)."""
    rule = f'if ($http_authorization = "{refuse}") {{ return 429; }}' if refuse else ""
    (prefix / "logs").mkdir(parents=True)
    conf = prefix / "nginx.conf"
    conf.write_text(f"""
worker_processes 1;
error_log {prefix}/logs/error.log warn;
pid {prefix}/nginx.pid;
events {{ worker_connections 1024; }}
http {{
  access_log off;
  client_max_body_size 16m;
  client_body_buffer_size 16m;
  client_body_temp_path {prefix}/body;
  proxy_temp_path {prefix}/proxy;
  upstream mock {{ server 127.0.0.1:{mock_port}; keepalive 32; }}
  server {{
    listen 127.0.0.1:{port};
    location / {{
      {rule}
      proxy_pass http://mock;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_buffering off;
    }}
  }}
}}
""")
    return subprocess.Popen([nginx_binary(), "-c", str(conf), "-p", str(prefix), "-g",
                             "daemon off;"])  # fmt: skip


def _once_through_nginx(
    tmp_path: Path, workload: dict[str, Any], phases: dict[str, Any], refuse: str = ""
) -> Once:
    """`soak once` of `phases` with `workload` through nginx (`_nginx`, refusing `refuse`),
    nginx stopped whatever happens."""
    mock_port, nginx_port = free_port(), free_port()
    nginx = _nginx(tmp_path / "nginx", nginx_port, mock_port, refuse=refuse)
    try:
        config = {
            "version": 1,
            "gateway": {"name": "nginx", "kind": "openai", "url": f"http://127.0.0.1:{nginx_port}",
                        "chat_path": "/p/primary/v1/chat/completions", "model": "soak-model"},
            "mock": {"port": mock_port},
            "workload": workload,
            "phases": phases,
        }  # fmt: skip
        return run_once(tmp_path, config, "--phases", ",".join(phases))
    finally:
        nginx.terminate()
        nginx.wait(10)


def _leaked(done: Once, keys: list[str]) -> list[str]:
    """The key values found in anything `soak once` printed or wrote."""
    written = [done.stdout, done.stderr] + [p.read_text() for p in done.out.iterdir()]
    return [k for k in keys for text in written if k in text]


def test_payload_phase_through_nginx(tmp_path: Path) -> None:
    workload = {"structure": {"single": 1, "history": 1, "system": 1, "tools": 1},
                "models": {"small": 3, "large": 1}}
    payload = {"rate": 8, "duration": "2s", "latency": "10ms",
               "prompt_bytes": [1024, 65536, 262144], "answer_tokens": [16, 512], "warmup": "0s"}
    done = _once_through_nginx(tmp_path, workload, {"payload": payload})  # fmt: skip
    assert "Traceback" not in done.stderr, done.stderr[-3000:]
    payload = done.phase("payload")
    steps = payload["details"]["steps"]
    assert [(s["prompt_bytes"], s["answer_tokens"]) for s in steps] == [
        (1024, 16), (65536, 16), (262144, 16), (1024, 512)]
    for s in steps:
        assert s["success_ratio"] == 1.0 and s["completed"] == 16, s
        # nginx passes the body on untouched: the mock received exactly what soak sent
        assert s["received_bytes"] == s["sent_bytes"] > s["prompt_bytes"], s
        assert s["usage"]["compared"] == 16 and s["usage"]["prompt_wrong"] == 0
        assert s["usage"]["completion_wrong"] == 0 and s["usage"]["completion_ratio"] == 1.0
        assert s["p50"] is not None and s["floor_p50"] is not None
        assert set(s["breakdown"]["model"]) == {"small", "large"}
    assert payload["details"]["slope_s_per_100kb"] is not None
    assert payload["status"] == "passed", payload["checks"]
    markdown = (done.out / "report.md").read_text()
    assert "Overhead against payload size" in markdown and "| 256 KB | 16 |" in markdown
    html = (done.out / "report.html").read_text()
    assert 'id="plot-payload"' in html and "Overhead against prompt size" in html


def test_workload_keys_and_models_through_nginx_never_leak(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A realistic workload on an ordinary phase: three virtual keys from an env var and two
    models; every answer verified, and no key value in any output soak writes."""
    keys = ["sk-virtual-aaa111", "sk-virtual-bbb222", "sk-virtual-ccc333"]
    monkeypatch.setenv("SOAK_TEST_VIRTUAL_KEYS", "\n".join(keys))
    workload = {"prompt_bytes": {"dist": "lognormal", "mean": 8192, "stddev": 8192},
                "answer_tokens": {"values": [16, 128]},
                "structure": {"single": 1, "history": 1},
                "models": {"small": 1, "large": 1},
                "keys": {"env": "SOAK_TEST_VIRTUAL_KEYS"}}
    overhead_phase = {"rate": 20, "duration": "2s", "latency": "10ms"}
    done = _once_through_nginx(tmp_path, workload, {"overhead": overhead_phase})  # fmt: skip
    overhead = done.phase("overhead")
    assert overhead["success_ratio"] == 1.0, (overhead["outcomes"], done.stderr[-2000:])
    verification = overhead["details"]["verification"]
    assert verification["checked"] == overhead["completed"] == 40
    assert verification["untraced"] == verification["forged"] == 0
    assert not _leaked(done, keys)


def test_a_throttled_key_and_the_model_mix_show_per_phase(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An ordinary phase with two models and three keys through nginx, which refuses one key:
    the phase's aggregate hides it; the breakdown names that key (by index), counts it in the
    report and, fed the report soak wrote, in the metrics; no key value appears anywhere."""
    keys = ["sk-tenant-aaa111", "sk-tenant-bbb222", "sk-tenant-ccc333"]
    monkeypatch.setenv("SOAK_TEST_TENANT_KEYS", "\n".join(keys))
    workload = {"models": {"small": 1, "large": 1}, "keys": {"env": "SOAK_TEST_TENANT_KEYS"}}
    overhead_phase = {"rate": 30, "duration": "2s", "latency": "10ms"}
    done = _once_through_nginx(tmp_path, workload, {"overhead": overhead_phase},
                               refuse=f"Bearer {keys[1]}")  # fmt: skip
    assert "Traceback" not in done.stderr, done.stderr[-3000:]
    overhead = done.phase("overhead")
    assert overhead["sent"] == 60
    parts = overhead["details"]["breakdown"]
    by_key = parts["key"]
    assert set(by_key) == {"key-0", "key-1", "key-2"}
    assert by_key["key-1"]["success_ratio"] == 0.0 and by_key["key-1"]["requests"] == 20
    assert by_key["key-0"]["success_ratio"] == by_key["key-2"]["success_ratio"] == 1.0
    assert next(iter(by_key)) == "key-1"  # the worst first
    assert parts["keys"] == {"keys": 3, "failing": 1, "worst_success_ratio": 0.0}
    by_model = parts["model"]
    assert set(by_model) == {"small", "large"}
    assert sum(m["requests"] for m in by_model.values()) == 60
    ok = sum(round(m["requests"] * m["success_ratio"]) for m in by_model.values())
    assert ok == overhead["outcomes"]["ok"] == 40
    assert overhead["details"]["verification"]["forged"] == 0

    markdown = (done.out / "report.md").read_text()
    section = markdown[markdown.index("## Per Model and Key"):]
    assert "3 keys, 1 with a failed request" in section
    assert "| key-1 | 20 | 0.000 |" in section and "| small |" in section

    registry = CollectorRegistry()
    metrics = SoakMetrics(registry)
    report = parse_json((done.out / "report.json").read_text())
    for phase in report.phases:
        metrics.record_phase(phase, target="nginx", finished_at=1.0)
    value = registry.get_sample_value
    labels = {"target": "nginx", "phase": "overhead"}
    assert value("soak_phase_last_keys_used", labels) == 3
    assert value("soak_phase_last_keys_failing", labels) == 1
    for model, row in by_model.items():
        got = value("soak_phase_last_model_success_ratio", {**labels, "model": model})
        assert got == row["success_ratio"]
        p99 = value("soak_phase_last_model_overhead_seconds",
                    {**labels, "model": model, "statistic": "p99"})  # fmt: skip
        assert p99 == row["overhead_p99"] and p99 is not None
    assert not _leaked(done, keys)
