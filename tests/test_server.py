"""The daemon's HTTP API over a real (not started) `Daemon`: metrics values, health and
readiness, reload good / bad / unauthorized, and the run history endpoints."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from soak.daemon import ConfigSource, Daemon
from soak.phases import load_config
from soak.results import Outcome, Result
from soak.server import make_app

BASE = """version: 1
gateway: {name: gw, url: 'http://127.0.0.1:9'}
schedule:
  - {name: hourly, cron: '0 * * * *', phases: [overhead]}
"""


@pytest.fixture
def config_file(tmp_path: Path) -> Path:
    path = tmp_path / "soak.yaml"
    path.write_text(BASE)
    return path


def daemon_for(path: Path, tmp_path: Path) -> Daemon:
    source = ConfigSource(path)
    return Daemon(source, source.load(), listen="127.0.0.1:0", data_dir=tmp_path / "data")


@pytest.fixture
async def daemon(config_file: Path, tmp_path: Path):
    d = daemon_for(config_file, tmp_path)
    yield d
    d.scheduler.shutdown()
    d.history.close()


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


async def test_metrics_serve_the_daemons_registry(daemon: Daemon, aiohttp_client) -> None:
    client = await aiohttp_client(make_app(daemon.controls))
    for seq, (latency, outcome) in enumerate([(0.2, Outcome.OK), (0.7, Outcome.HTTP_5XX)]):
        result = Result(seq=seq, intended=10.0, sent=10.0, end=10.0 + latency, outcome=outcome)
        daemon.metrics.observe(result, target="gw", phase="overhead")
    resp = await client.get("/metrics")
    assert resp.status == 200
    assert resp.headers["Content-Type"].startswith("text/plain")
    got = samples(await resp.text())
    tp = (("phase", "overhead"), ("target", "gw"))
    assert got[("soak_requests_total", (("outcome", "ok"), *tp))] == 1
    assert got[("soak_requests_total", (("outcome", "http_5xx"), *tp))] == 1
    assert got[("soak_request_duration_seconds_count", tp)] == 2
    assert got[("soak_request_duration_seconds_bucket", (("le", "0.25"), *tp))] == 1
    assert got[("soak_request_duration_seconds_bucket", (("le", "1.0"), *tp))] == 2
    assert got[("soak_request_duration_seconds_sum", tp)] == pytest.approx(0.9)
    assert got[("process_resident_memory_bytes", ())] > 10e6  # the daemon's own process_*


async def test_metrics_negotiate_openmetrics_and_filter_by_name(
    daemon: Daemon, aiohttp_client
) -> None:
    """Rendered off the loop, /metrics still answers as prometheus_client's handler does:
    OpenMetrics when the scraper asks for it, `name[]` restricts, gzip when accepted."""
    client = await aiohttp_client(make_app(daemon.controls))
    result = Result(seq=0, intended=10.0, sent=10.0, end=10.2, outcome=Outcome.OK)
    daemon.metrics.observe(result, target="gw", phase="overhead")
    accept = "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5"
    resp = await client.get("/metrics", headers={"Accept": accept})
    assert resp.headers["Content-Type"].startswith("application/openmetrics-text")
    assert (await resp.text()).endswith("# EOF\n")
    resp = await client.get("/metrics", params=[("name[]", "soak_requests_total")])
    got = samples(await resp.text())
    assert {name for name, _ in got} == {"soak_requests_total"}, got
    tp = (("outcome", "ok"), ("phase", "overhead"), ("target", "gw"))
    assert got[("soak_requests_total", tp)] == 1
    resp = await client.get("/metrics", headers={"Accept-Encoding": "gzip"})
    assert resp.headers["Content-Encoding"] == "gzip"
    assert samples(await resp.text())[("soak_requests_total", tp)] == 1


async def test_healthy_and_ready(daemon: Daemon, aiohttp_client) -> None:
    client = await aiohttp_client(make_app(daemon.controls))
    assert (await client.get("/-/healthy")).status == 200
    assert (await client.get("/-/ready")).status == 503  # scheduler not started yet
    daemon.scheduler.start(daemon.config.daemon.schedule, paused=True)
    resp = await client.get("/-/ready")
    assert (resp.status, await resp.text()) == (200, "Ready.\n")


async def test_reload_swaps_a_good_config_and_keeps_the_old_on_a_bad_one(
    daemon: Daemon, config_file: Path, aiohttp_client
) -> None:
    client = await aiohttp_client(make_app(daemon.controls))
    daemon.scheduler.start(daemon.config.daemon.schedule, paused=True)
    reg = daemon.registry

    config_file.write_text(BASE + "  - {name: quick, interval: 5m, phases: [calibration]}\n")
    resp = await client.post("/-/reload")
    assert (resp.status, await resp.text()) == (200, "Config reloaded.\n")
    assert [p.name for p in daemon.config.daemon.schedule] == ["hourly", "quick"]
    assert set(daemon.scheduler.next_run_times()) == {"hourly", "quick"}
    assert reg.get_sample_value("soak_config_last_reload_successful") == 1
    ok_at = reg.get_sample_value("soak_config_last_reload_success_timestamp_seconds")

    config_file.write_text(BASE + "  - {name: bad, interval: 5m, phases: [warp]}\n")
    resp = await client.post("/-/reload")
    text = await resp.text()
    assert resp.status == 500
    assert text.startswith("failed to reload config: ") and text.count("\n") == 1
    assert "schedule[1].phases: unknown phase 'warp'" in text
    assert [p.name for p in daemon.config.daemon.schedule] == ["hourly", "quick"]  # old kept
    assert reg.get_sample_value("soak_config_last_reload_successful") == 0
    assert reg.get_sample_value("soak_config_last_reload_success_timestamp_seconds") == ok_at

    config_file.write_text("version: 1\ngateway: [not, a, mapping]\n")
    assert (await client.post("/-/reload")).status == 500
    assert daemon.config.gateway.name == "gw"


async def test_reload_with_a_token_needs_it(
    tmp_path: Path, aiohttp_client, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SOAK_TEST_RELOAD_TOKEN", "s3cret-token")
    path = tmp_path / "soak.yaml"
    path.write_text(BASE + "server: {reload_token_env: SOAK_TEST_RELOAD_TOKEN}\n")
    daemon = daemon_for(path, tmp_path)
    try:
        client = await aiohttp_client(make_app(daemon.controls))
        good_text = path.read_text()
        path.write_text("not: [valid")  # a reload would fail: the gauge shows whether one ran
        resp = await client.post("/-/reload")
        assert resp.status == 401 and "s3cret" not in await resp.text()
        bad = await client.post("/-/reload", headers={"Authorization": "Bearer wrong"})
        assert bad.status == 401
        assert daemon.registry.get_sample_value("soak_config_last_reload_successful") == 1
        path.write_text(good_text)
        good = await client.post("/-/reload", headers={"Authorization": "Bearer s3cret-token"})
        assert good.status == 200
        assert daemon.registry.get_sample_value("soak_config_last_reload_successful") == 1
        assert (await client.get("/-/reload")).status == 405  # it changes state: POST only
    finally:
        daemon.history.close()


async def test_runs_list_and_one_run(daemon: Daemon, aiohttp_client) -> None:
    h = daemon.history
    for i in range(3):
        h.start(f"run{i}", "hourly", 100.0 + i)
        h.finish(f"run{i}", "passed", finished_at=110.0 + i,
                 report_json=json.dumps({"run_id": f"run{i}", "phases": []}))  # fmt: skip
    client = await aiohttp_client(make_app(daemon.controls))
    body = await (await client.get("/runs")).json()
    assert [r["id"] for r in body["runs"]] == ["run2", "run1", "run0"]
    assert "report" not in body["runs"][0]
    body = await (await client.get("/runs?limit=2")).json()
    assert [r["id"] for r in body["runs"]] == ["run2", "run1"]
    for bad in ("0", "x", "-1", "100000"):
        resp = await client.get(f"/runs?limit={bad}")
        assert resp.status == 400 and "limit" in (await resp.json())["error"]
    one = await (await client.get("/runs/run1")).json()
    assert (one["status"], one["plan"], one["report"]["run_id"]) == ("passed", "hourly", "run1")
    missing = await client.get("/runs/nope")
    assert (missing.status, (await missing.json())["error"]) == (404, "no such run")


def test_daemon_buckets_hold_the_slo_thresholds(config_file: Path, tmp_path: Path) -> None:
    daemon = daemon_for(config_file, tmp_path)
    try:
        overhead = daemon.metrics.buckets["soak_gateway_overhead_seconds"]
        slo = load_config(config_file).slo.overhead
        assert {slo.p50, slo.p90, slo.p95, slo.p99} <= set(overhead)
    finally:
        daemon.history.close()
