"""The payload phase through `soak once` against nginx as a plain reverse proxy: every step's
body reaches the mock byte for byte, usage agrees, and the report carries the steps."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from once_helpers import free_port, nginx_binary, run_once

pytestmark = pytest.mark.integration


def _nginx(prefix: Path, port: int, mock_port: int) -> subprocess.Popen[bytes]:
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


def test_payload_phase_through_nginx(tmp_path: Path) -> None:
    mock_port, nginx_port = free_port(), free_port()
    nginx = _nginx(tmp_path / "nginx", nginx_port, mock_port)
    try:
        config = {
            "version": 1,
            "gateway": {"name": "nginx", "kind": "openai", "url": f"http://127.0.0.1:{nginx_port}",
                        "chat_path": "/p/primary/v1/chat/completions", "model": "soak-model"},
            "mock": {"port": mock_port},
            "workload": {"structure": {"single": 1, "history": 1, "system": 1, "tools": 1},
                         "models": {"small": 3, "large": 1}},
            "phases": {"payload": {"rate": 8, "duration": "2s", "latency": "10ms",
                                   "prompt_bytes": [1024, 65536, 262144],
                                   "answer_tokens": [16, 512], "warmup": "0s"}},
        }  # fmt: skip
        done = run_once(tmp_path, config, "--phases", "payload")
    finally:
        nginx.terminate()
        nginx.wait(10)
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
    mock_port, nginx_port = free_port(), free_port()
    nginx = _nginx(tmp_path / "nginx", nginx_port, mock_port)
    try:
        config = {
            "version": 1,
            "gateway": {"name": "nginx", "kind": "openai", "url": f"http://127.0.0.1:{nginx_port}",
                        "chat_path": "/p/primary/v1/chat/completions", "model": "soak-model"},
            "mock": {"port": mock_port},
            "workload": {"prompt_bytes": {"dist": "lognormal", "mean": 8192, "stddev": 8192},
                         "answer_tokens": {"values": [16, 128]},
                         "structure": {"single": 1, "history": 1},
                         "models": {"small": 1, "large": 1},
                         "keys": {"env": "SOAK_TEST_VIRTUAL_KEYS"}},
            "phases": {"overhead": {"rate": 20, "duration": "2s", "latency": "10ms"}},
        }  # fmt: skip
        done = run_once(tmp_path, config, "--phases", "overhead")
    finally:
        nginx.terminate()
        nginx.wait(10)
    overhead = done.phase("overhead")
    assert overhead["success_ratio"] == 1.0, (overhead["outcomes"], done.stderr[-2000:])
    verification = overhead["details"]["verification"]
    assert verification["checked"] == overhead["completed"] == 40
    assert verification["untraced"] == verification["forged"] == 0
    written = [done.stdout, done.stderr] + [p.read_text() for p in done.out.iterdir()]
    assert not [k for k in keys for text in written if k in text]
