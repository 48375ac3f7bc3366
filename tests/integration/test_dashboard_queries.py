"""Every query of the generated Grafana dashboard returns data after a short `soak run`, and
nothing the run wrote vanishes at the step Grafana uses for a 24 h range.

Grafana cannot run here, so the test does what Grafana would: it takes every panel target, the
phase-run annotation and the template variables of dashboards/generated/soak-overview.json,
fills in the variables, and asks a real Prometheus (scraping the daemon every second, with the
committed dashboards/generated/soak.rules.yml loaded for its recording rules) over the run's
window. No query may error and none may come back empty or all-NaN.

Then the same queries over the last 24 h, at Grafana 11's step for that range: the range over
the panel's width in pixels (no maxDataPoints cap), rounded to Grafana's nice intervals, never
below the scrape interval. On a 1920-px screen (1830 px of dashboard) that is 2 min for the 6-,
8- and 12-column panels (1 min for a full-width one) and 30 s for annotations (the window's width);
every query is also asked at 5 min (a 6-column panel on a 1280-px laptop). Each series that
is non-zero at the 1 s step must be non-zero at the 24 h step too, and every phase that ran
shows as running in the state timeline and the annotation: no run vanishes between two points.

The gateway is nginx failing over from the mock's primary to its fallback on HTTP 5xx (a real
failover, so the failover panels have data), watched through its pid file (so the process
panels have data). One plan runs calibration, overhead, stress, breaker, failover and
streaming, small.

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
from soak.dashboards import soak_dashboard
from test_alertmanager import procs, start_prometheus
from test_daemon import SoakDaemon, daemons, free_port, get_json, http, mock, wait_for

from soak.metrics import exposed_names
from soak.phases import load_config
from soak.rules import AlertOptions, build_rules

pytestmark = pytest.mark.integration
__all__ = ["daemons", "mock", "procs"]

DASHBOARD = ROOT / "dashboards" / "generated" / "soak-overview.json"
RULES = ROOT / "dashboards" / "generated" / "soak.rules.yml"
GRAFANA_VARS = {"__rate_interval": "15s", "__interval": "1s", "__range": "5m",
                "__interval_ms": "1000", "__range_s": "300"}  # fmt: skip
"""Grafana's built-in variables as it would fill them for a 1 s scrape and a 5 m view."""
PHASES = ["calibration", "overhead", "stress", "breaker", "failover", "streaming"]
DAY = 86400
FIRST_EVENTS = ("panel 'Stream integrity by class'", "panel 'Plan runs by status'")
"""Counters first written when the run ends: the run is their first event since the start."""
SCREEN_PX, WINDOW_PX = 1830, 1920
"""The dashboard's width on a 1920-px screen (side menu and padding off), and the window's."""
SCRAPE = 1
"""The test Prometheus' scrape interval: the data source's floor for the step."""
NICE_STEPS = ((1.5, 1), (3.5, 2), (7.5, 5), (12.5, 10), (17.5, 15), (25, 20), (45, 30),
              (90, 60), (210, 120), (450, 300), (750, 600), (1050, 900), (1500, 1200),
              (2700, 1800), (5400, 3600), (9000, 7200), (16200, 10800), (32400, 21600))  # fmt: skip
"""Grafana's roundInterval (pkg/promlib intervalv2, @grafana/data rangeutil): an interval up
to the first number becomes the second, in seconds."""

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


def dashboard_queries(dashboard: dict[str, Any]) -> list[tuple[str, str, float]]:
    """(where, expr, width in pixels on a 1920-px screen) of every panel target (rows
    included) and every Prometheus annotation (as wide as the window)."""
    out: list[tuple[str, str, float]] = []

    def walk(panels: list[dict[str, Any]]) -> None:
        for panel in panels:
            pixels = SCREEN_PX * panel.get("gridPos", {}).get("w", 24) / 24
            for i, target in enumerate(panel.get("targets", [])):
                if target.get("expr"):
                    out.append((f"panel {panel.get('title')!r} target {i}", target["expr"],
                                pixels))  # fmt: skip
            walk(panel.get("panels", []))

    walk(dashboard["panels"])
    for note in dashboard.get("annotations", {}).get("list", []):
        if note.get("expr"):
            out.append((f"annotation {note.get('name')!r}", note["expr"], WINDOW_PX))
    return out


def streaming_alert_rules(config: Path) -> dict[str, Any]:
    """The streaming phase's alerts for `config`'s SLO, `for: 1s` (the committed rules file
    is built for a schedule without streaming)."""
    slo = load_config(config).slo
    built = build_rules(slo, phases={"streaming": 3600}, options=AlertOptions(for_override="1s"))
    rules = [r for g in built["groups"] for r in g["rules"]]
    return {"name": "soak.streaming",
            "rules": [r for r in rules if r.get("alert", "").startswith("SoakStream")]}  # fmt: skip


def stream_alerts(prom: str) -> dict[str, float]:
    """Alert name → value of the pending or firing streaming alerts on nginx's streaming phase."""
    alerts = [a["labels"] | {"value": a["value"]}
              for a in get_json(f"{prom}/api/v1/alerts")["data"]["alerts"]]  # fmt: skip
    return {a["alertname"]: float(a["value"]) for a in alerts
            if a["alertname"].startswith("SoakStream")
            and (a.get("target"), a.get("phase")) == ("nginx", "streaming")}  # fmt: skip


def forthcoming(expr: str) -> bool:
    """A query of a metric soak does not write yet (`soak_dashboard.FORTHCOMING`)."""
    return any(m in expr and m not in exposed_names() for m in soak_dashboard.FORTHCOMING)


def peaks(data: dict[str, Any]) -> dict[tuple[tuple[str, str], ...], float]:
    """Largest absolute finite value of each series, by its label set."""
    out = {}
    for series in data["result"]:
        values = [abs(float(v)) for _, v in series["values"] if math.isfinite(float(v))]
        if values:
            out[tuple(sorted(series["metric"].items()))] = max(values)
    return out


def grafana_step(range_s: float, pixels: float) -> int:
    """The step Grafana 11 asks Prometheus for: range / pixels (maxDataPoints is the panel's
    width when unset), rounded to a nice interval, at least the scrape interval."""
    raw = range_s / pixels
    nice = next((step for upper, step in NICE_STEPS if raw <= upper), 43200)
    return max(nice, SCRAPE)


def step_vars(step: int) -> dict[str, str]:
    """Grafana's built-in variables at `step` over a day: $__rate_interval is
    max($__interval + scrape, 4 x scrape)."""
    return {"__interval": f"{step}s", "__interval_ms": str(step * 1000),
            "__rate_interval": f"{max(step + SCRAPE, 4 * SCRAPE)}s", "__range": "1d",
            "__range_s": str(DAY)}  # fmt: skip


def query_range(prom: str, expr: str, start: float, end: float, step: int = 1) -> dict[str, Any]:
    q = urllib.parse.urlencode({"query": expr, "start": start, "end": end, "step": f"{step}s"})
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
            "streaming": {"streams": 4, "ramp": "1s", "ttft": "50ms", "inter_token": "50ms",
                          "tokens": 6, "stall": "1s", "settle": "0s", "warmup": False,
                          "timeout": "5s"},
        },
        # the mock's first token comes after 50 ms: every stream misses a 50 ms TTFT bound
        "slo": {"streaming": {"ttft": "50ms"}},
        "schedule": [{"name": "hourly", "interval": "1h", "phases": PHASES}],
        "server": {"grace": "10s"},
    }  # fmt: skip
    rules = yaml.safe_load(RULES.read_text())
    daemon = SoakDaemon(tmp_path, config)
    daemons.append(daemon)
    rules["groups"].append(streaming_alert_rules(daemon.config_path))
    start = time.time()
    prom = start_prometheus(tmp_path, procs, daemon.url.removeprefix("http://"), rules)
    up = urllib.parse.quote('up{job="soak"}')
    wait_for("Prometheus scraping the daemon",
             lambda: get_json(f"{prom}/api/v1/query?query={up}")["data"]["result"][0]["value"][1]
             == "1", 15)  # fmt: skip
    # The run starts once Prometheus scrapes, as in a deployment: it sees every phase's series
    # from before its first request, so rate() and increase() see the first run after a start.
    now = {"name": "now", "interval": "1h", "phases": PHASES, "run_on_start": True}
    daemon.config_path.write_text(yaml.safe_dump({**config, "schedule": [*config["schedule"],
                                                                          now]}))  # fmt: skip
    assert http(f"{daemon.url}/-/reload", method="POST")[0] == 200
    run = daemon.finished_run(timeout=75)
    names = [p["name"] for p in run["report"]["phases"]]
    assert names == ["calibration", "overhead", "stress-1", "breaker", "failover",
                     "streaming"], names  # fmt: skip
    failover = run["report"]["phases"][-2]
    assert failover["details"]["timed"] > 0, failover["details"]  # nginx really failed over
    runs = urllib.parse.quote("sum(soak_plan_runs_total)")
    wait_for("the finished run in Prometheus",
             lambda: get_json(f"{prom}/api/v1/query?query={runs}")["data"]["result"][0]["value"][1]
             == "1", 15)  # fmt: skip
    time.sleep(2)  # two more evaluations of the recording rules after the last phase

    # The streaming alerts on the daemon's own labels, valued as its report counts the streams.
    streaming = run["report"]["phases"][-1]
    integrity = streaming["details"]["streaming"]["integrity"]
    broken = sum(n for cls, n in integrity.items() if cls != "whole")
    expected = {"SoakStreamTtftHigh": 1.0}
    if broken:
        expected["SoakStreamIntegrityLow"] = broken / sum(integrity.values())
    health = streaming.get("generator") or {}
    if not health.get("trusted", True):
        # A starved tester (a loaded CI machine) flagged this phase, and its report says why:
        # the phase's alerts are then muted for their window, by design (soak.rules).
        expected = {}
    deadline, got = time.monotonic() + 15, stream_alerts(prom)
    while got.keys() != expected.keys() and time.monotonic() < deadline:
        time.sleep(0.5)
        got = stream_alerts(prom)
    assert got == pytest.approx(expected), (got, integrity, health)
    # ... and the integrity alert's traffic gate counts this first run's streams, quiet or not
    (rule,) = [r for r in rules["groups"][-1]["rules"] if r["alert"] == "SoakStreamIntegrityLow"]
    gate_expr = rule["expr"].split("and on (target, phase)\n")[1].split("\n)\nunless")[0]
    gate = urllib.parse.quote(gate_expr)  # the traffic gate alone (before the trust clause)
    (counted,) = get_json(f"{prom}/api/v1/query?query={gate}")["data"]["result"]
    assert float(counted["value"][1]) == sum(integrity.values()) == 4, counted

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
    assert len(queries) >= 50
    empty, fine = [], {}
    for where, expr, _ in queries:
        data = query_range(prom, fill(expr, variables), start, time.time())
        fine[where] = peaks(data)
        if not has_values(data) and not forthcoming(expr):
            empty.append(f"{where}: {expr}")
    assert not empty, "queries without data:\n" + "\n".join(empty)

    # The same queries over the last 24 h at Grafana's step: nothing the run wrote vanishes.
    now, steps_used, vanished = time.time(), set(), []
    for where, expr, pixels in queries:
        for step in sorted({grafana_step(DAY, pixels), 300}):
            steps_used.add(step)
            day = peaks(query_range(prom, fill(expr, variables | step_vars(step)), now - DAY,
                                    now, step))  # fmt: skip
            for labels, peak in fine[where].items():
                if peak > 0 and day.get(labels, 0.0) == 0:
                    vanished.append(f"{where} at {step}s: {dict(labels)} (peak {peak:g})")
            if where.startswith(("panel 'Phase running'", "annotation")):
                ran = {dict(labels).get("phase") for labels, v in day.items() if v == 1}
                assert ran >= set(PHASES), (where, step, sorted(ran))
            elif "by (phase)" in expr:  # every phase that ran has points
                shown = {dict(labels).get("phase") for labels in day}
                assert shown >= set(PHASES), (where, step, sorted(set(PHASES) - shown))
            if where.startswith(FIRST_EVENTS):  # counted although its series is new
                assert any(v > 0 for v in day.values()), (where, step, day)
    assert not vanished, "series the 24 h step loses:\n" + "\n".join(vanished)
    assert steps_used == {30, 120, 300}, steps_used  # annotation, every panel, narrow laptop
    code, _ = daemon.stop()
    assert code == 0


def test_grafana_step_for_a_day_by_panel_width() -> None:
    assert [grafana_step(DAY, SCREEN_PX * w / 24) for w in (6, 8, 12, 24)] == [120, 120, 120, 60]
    assert grafana_step(DAY, WINDOW_PX) == 30
    assert grafana_step(DAY, 100) == 900  # grafanalib's maxDataPoints: 100 (x intervalFactor 2)
    assert grafana_step(300, 1000) == SCRAPE
    assert step_vars(120)["__rate_interval"] == "121s"


def test_fill_knows_grafanas_variable_forms() -> None:
    v = {"target": "a|b", "__rate_interval": "15s"}
    assert fill('x{t=~"$target"}[$__rate_interval]', v) == 'x{t=~"a|b"}[15s]'
    assert fill("${target} [[target]] ${target:regex}", v) == "a|b a|b a|b"
    with pytest.raises(AssertionError, match=r"unknown dashboard variable \$nope"):
        fill("$nope", v)
