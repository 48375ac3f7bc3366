"""Every query of the generated Grafana dashboard returns data after a short `soak run`.

Grafana cannot run here, so the test does what Grafana would: it takes every panel target, the
phase-run annotation and the template variables of dashboards/generated/soak-overview.json,
fills in the variables, and asks a real Prometheus (scraping the daemon every second, with the
committed dashboards/generated/soak.rules.yml loaded for its recording rules) over the run's
window. No query may error and none may come back empty or all-NaN.

The gateway is nginx failing over from the mock's primary to its fallback on HTTP 5xx (a real
failover, so the failover panels have data), watched through its pid file (so the process
panels have data). One plan runs calibration, overhead, stress, breaker and failover, small.

Needs the Debian packages `prometheus` and `nginx`.
"""

from __future__ import annotations

import json
import math
import re
import subprocess
import time
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from once_helpers import ROOT, nginx_binary
from test_alertmanager import procs, start_prometheus
from test_daemon import SoakDaemon, daemons, free_port, get_json, http, mock, wait_for

pytestmark = pytest.mark.integration
__all__ = ["daemons", "mock", "procs"]

DASHBOARD = ROOT / "dashboards" / "generated" / "soak-overview.json"
RULES = ROOT / "dashboards" / "generated" / "soak.rules.yml"
GRAFANA_VARS = {"__rate_interval": "15s", "__interval": "1s", "__range": "5m",
                "__interval_ms": "1000", "__range_s": "300"}  # fmt: skip
"""Grafana's built-in variables as it would fill them for a 1 s scrape and a 5 m view."""
PHASES = ["calibration", "overhead", "stress", "breaker", "failover"]

NGINX_CONF = """
worker_processes 1;
error_log {prefix}/logs/error.log warn;
pid {prefix}/nginx.pid;
events {{ worker_connections 1024; }}
http {{
  access_log off;
  client_body_temp_path {prefix}/body;
  proxy_temp_path {prefix}/proxy;
  upstream mock {{ server 127.0.0.1:{mock_port}; keepalive 32; }}
  server {{
    listen 127.0.0.1:{port};
    location / {{
      rewrite ^(.*)$ /p/primary$1 break;
      proxy_pass http://mock;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_intercept_errors on;
      error_page 500 502 503 504 = @fallback;
    }}
    location @fallback {{
      rewrite ^/p/primary(.*)$ /p/fallback$1 break;
      proxy_pass http://mock;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
    }}
  }}
}}
"""


@pytest.fixture
def nginx(tmp_path: Path, mock: str) -> Iterator[tuple[str, Path]]:
    """nginx failing over from the mock's primary to its fallback: (URL, pid file)."""
    prefix, port = tmp_path / "nginx", free_port()
    (prefix / "logs").mkdir(parents=True)
    mock_port = int(mock.rpartition(":")[2])
    conf = prefix / "nginx.conf"
    conf.write_text(NGINX_CONF.format(prefix=prefix, port=port, mock_port=mock_port))
    proc = subprocess.Popen([nginx_binary(), "-c", str(conf), "-p", str(prefix),
                             "-g", "daemon off;"], stderr=subprocess.DEVNULL)  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for("nginx pid file", lambda: (prefix / "nginx.pid").exists(), 10)
        yield url, prefix / "nginx.pid"
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def fill(expr: str, variables: dict[str, str]) -> str:
    """Grafana's variable interpolation: `$name`, `${name}` and `[[name]]`."""

    def value(m: re.Match[str]) -> str:
        name = m.group(1) or m.group(2) or m.group(3)
        assert name in variables, f"unknown dashboard variable ${name} in {expr}"
        return variables[name]

    return re.sub(r"\$\{(\w+)(?::\w+)?\}|\$(\w+)|\[\[(\w+)\]\]", value, expr)


def dashboard_queries(dashboard: dict[str, Any]) -> list[tuple[str, str]]:
    """(where, expr) of every panel target (rows included) and every Prometheus annotation."""
    out: list[tuple[str, str]] = []

    def walk(panels: list[dict[str, Any]]) -> None:
        for panel in panels:
            for i, target in enumerate(panel.get("targets", [])):
                if target.get("expr"):
                    out.append((f"panel {panel.get('title')!r} target {i}", target["expr"]))
            walk(panel.get("panels", []))

    walk(dashboard["panels"])
    for note in dashboard.get("annotations", {}).get("list", []):
        if note.get("expr"):
            out.append((f"annotation {note.get('name')!r}", note["expr"]))
    return out


def query_range(prom: str, expr: str, start: float, end: float) -> dict[str, Any]:
    q = urllib.parse.urlencode({"query": expr, "start": start, "end": end, "step": "1s"})
    status, body = http(f"{prom}/api/v1/query_range?{q}")
    data = json.loads(body)
    assert status == 200 and data["status"] == "success", (expr, status, body)
    return data["data"]


def has_values(data: dict[str, Any]) -> bool:
    """Some series with at least one finite value."""
    return any(math.isfinite(float(v)) for s in data["result"] for _, v in s["values"])


def test_every_dashboard_query_returns_data_after_a_short_run(
    tmp_path: Path, daemons: list[SoakDaemon], procs: list[subprocess.Popen[bytes]],
    mock: str, nginx: tuple[str, Path],
) -> None:  # fmt: skip
    gateway_url, pid_file = nginx
    config = {
        "version": 1,
        "gateway": {"name": "nginx", "url": gateway_url, "timeout": "5s",
                    "process": {"pid_file": str(pid_file)}},
        "mock": {"url": mock},
        "phases": {
            "calibration": {"rate": 10, "duration": "3s", "latency": "20ms"},
            "overhead": {"rate": 10, "duration": "3s", "latency": "20ms"},
            "stress": {"rate": 10, "duration": "3s", "latency": "200ms", "rounds": 1,
                       "gap": "0s", "timeout": "5s"},
            "breaker": {"rate": 10, "duration": "6s", "lead": "1s", "fault": "2s",
                        "latency": "20ms"},
            "failover": {"requests": 6, "rate": 3, "latency": "20ms"},
        },
        "schedule": [{"name": "dash", "interval": "1h", "phases": PHASES, "run_on_start": True}],
        "server": {"grace": "10s"},
    }  # fmt: skip
    rules = yaml.safe_load(RULES.read_text())
    daemon = SoakDaemon(tmp_path, config)
    daemons.append(daemon)
    start = time.time()
    prom = start_prometheus(tmp_path, procs, daemon.url.removeprefix("http://"), rules)
    run = daemon.finished_run(timeout=75)
    names = [p["name"] for p in run["report"]["phases"]]
    assert names == ["calibration", "overhead", "stress-1", "breaker", "failover"], names
    failover = run["report"]["phases"][-1]
    assert failover["details"]["timed"] > 0, failover["details"]  # nginx really failed over
    # A second failover run, as any schedule brings: rate() sees the histogram grow. (The first
    # run after a daemon start is invisible to rate(): soak.metrics creates the failover
    # histogram's child only at the phase's first observation, after the phase.)
    again = {"name": "again", "interval": "1h", "phases": ["failover"], "run_on_start": True}
    daemon.config_path.write_text(yaml.safe_dump({**config, "schedule": [*config["schedule"],
                                                                          again]}))  # fmt: skip
    assert http(f"{daemon.url}/-/reload", method="POST")[0] == 200
    wait_for("the second run", lambda: len([r for r in daemon.runs()
                                            if r["status"] != "running"]) == 2, 30)  # fmt: skip
    runs = urllib.parse.quote("sum(soak_plan_runs_total)")
    wait_for("both finished runs in Prometheus",
             lambda: get_json(f"{prom}/api/v1/query?query={runs}")["data"]["result"][0]["value"][1]
             == "2", 15)  # fmt: skip
    time.sleep(2)  # two more evaluations of the recording rules after the last phase

    dashboard = json.loads(DASHBOARD.read_text())
    variables = dict(GRAFANA_VARS, datasource="prometheus")
    for var in dashboard["templating"]["list"]:
        if var["type"] != "query":
            continue
        metric, label = re.fullmatch(r"label_values\((.+), (\w+)\)", var["query"]).groups()
        selector = fill(metric, variables | {"target": "nginx", "phase": ".*"})
        q = urllib.parse.urlencode({"match[]": selector})
        values = get_json(f"{prom}/api/v1/label/{label}/values?{q}")["data"]
        assert values, f"template variable ${var['name']} has no values: {var['query']}"
        variables[var["name"]] = "|".join(values) if var.get("includeAll") else values[0]
    assert variables["target"] == "nginx"
    assert set(variables["phase"].split("|")) >= {"calibration", "overhead", "breaker"}

    queries = dashboard_queries(dashboard)
    assert len(queries) >= 30
    empty = []
    for where, expr in queries:
        data = query_range(prom, fill(expr, variables), start, time.time())
        if not has_values(data):
            empty.append(f"{where}: {expr}")
    assert not empty, "queries without data:\n" + "\n".join(empty)
    code, _ = daemon.stop()
    assert code == 0


def test_fill_knows_grafanas_variable_forms() -> None:
    v = {"target": "a|b", "__rate_interval": "15s"}
    assert fill('x{t=~"$target"}[$__rate_interval]', v) == 'x{t=~"a|b"}[15s]'
    assert fill("${target} [[target]] ${target:regex}", v) == "a|b a|b a|b"
    with pytest.raises(AssertionError, match=r"unknown dashboard variable \$nope"):
        fill("$nope", v)
