"""`soak run` as a user runs it: a subprocess on loopback, scraped by a real Prometheus, against
the real LiteLLM proxy; and its lifecycle (SIGTERM mid-phase, restart, reload of a bad file).

Needs the `prometheus` Debian package (/usr/bin/prometheus) and litellm[proxy].
"""

from __future__ import annotations

import itertools
import json
import os
import re
import selectors
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from soak.metric_catalogue import BASE_BUCKETS

pytestmark = pytest.mark.integration

SOAK = [sys.executable, "-m", "soak"]
PROMETHEUS = "/usr/bin/prometheus"
LITELLM = {
    "name": "litellm",
    "kind": "litellm",
    "api_key_env": None,
    "generate_key": True,
    "managed": {"command": [], "ready_timeout": "90s"},
}


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for(what: str, probe: Callable[[], Any], timeout: float, every: float = 0.25) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            value = probe()
        except (OSError, ValueError, KeyError, IndexError):
            value = None
        if value:
            return value
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def http(url: str, method: str = "GET", headers: dict[str, str] | None = None) -> tuple[int, str]:
    req = urllib.request.Request(url, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode()


def get_json(url: str) -> Any:
    status, body = http(url)
    assert status == 200, (url, status, body)
    return json.loads(body)


def read_line(proc: subprocess.Popen[bytes], pattern: str, timeout: float) -> re.Match[str]:
    """The first stdout output of `proc` matching `pattern` (the port line)."""
    assert proc.stdout is not None
    fd, buf = proc.stdout.fileno(), ""
    deadline = time.monotonic() + timeout
    with selectors.DefaultSelector() as sel:
        sel.register(fd, selectors.EVENT_READ)
        while time.monotonic() < deadline:
            if sel.select(timeout=0.2):
                chunk = os.read(fd, 4096)
                if not chunk:
                    break
                buf += chunk.decode(errors="replace")
                if m := re.search(pattern, buf):
                    return m
    raise AssertionError(f"no {pattern!r} within {timeout}s (exit {proc.poll()}): {buf}")


class SoakDaemon:
    """`soak run --config FILE` on a free loopback port."""

    def __init__(self, tmp: Path, config: dict[str, Any]) -> None:
        self.tmp, self.config_path = tmp, tmp / "soak.yaml"
        self.config_path.write_text(yaml.safe_dump(config))
        self.log = open(tmp / "daemon.log", "a")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [*SOAK, "run", "--config", str(self.config_path), "--listen", "127.0.0.1:0",
             "--data-dir", str(tmp / "data"), "--log-format", "json"],
            cwd=tmp, stdout=subprocess.PIPE, stderr=self.log,
        )  # fmt: skip
        port = int(read_line(self.proc, r"listening on http://127\.0\.0\.1:(\d+)", 30)[1])
        self.url = f"http://127.0.0.1:{port}"

    def runs(self) -> list[dict[str, Any]]:
        return get_json(f"{self.url}/runs")["runs"]

    def finished_run(self, timeout: float) -> dict[str, Any]:
        done = wait_for(
            "a finished run",
            lambda: [r for r in self.runs() if r["status"] != "running"],
            timeout,
            every=0.5,
        )
        return get_json(f"{self.url}/runs/{done[-1]['id']}")

    def metric(self, name: str, **labels: str) -> float | None:
        _, text = http(f"{self.url}/metrics")
        want = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
        for line in text.splitlines():
            series, _, value = line.rpartition(" ")
            if series.split("{")[0] != name:
                continue
            have = series.partition("{")[2].rstrip("}")
            if sorted(have.split(",")) == sorted(want.split(",")) or (not want and not have):
                return float(value)
        return None

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30) -> tuple[int, float]:
        t0 = time.monotonic()
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            code = self.proc.wait(timeout=timeout)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()
            self.log.close()
            if self.proc.stdout is not None:
                self.proc.stdout.close()
        return code, time.monotonic() - t0


@pytest.fixture
def daemons() -> Iterator[list[SoakDaemon]]:
    started: list[SoakDaemon] = []
    yield started
    for d in started:
        if d.proc.poll() is None:
            d.stop(signal.SIGKILL)


@pytest.fixture
def mock(tmp_path: Path) -> Iterator[str]:
    """Our own mock provider process, so the test can read its injected faults."""
    proc = subprocess.Popen(
        [*SOAK, "mock", "--port", "0", "--providers", "primary,fallback", "--log-level", "warning"],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        port = read_line(proc, r"listening on http://127\.0\.0\.1:(\d+)", 20)[1]
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        assert proc.stdout is not None
        proc.stdout.close()


def mock_only(mock_url: str, schedule: list[dict[str, Any]], **phases: Any) -> dict[str, Any]:
    """A config whose 'gateway' is the mock itself: lifecycle tests need no real gateway."""
    return {
        "version": 1,
        "gateway": {
            "name": "direct",
            "url": mock_url,
            "chat_path": "/p/primary/v1/chat/completions",
        },
        "mock": {"url": mock_url},
        "phases": phases,
        "schedule": schedule,
        "server": {"grace": "10s"},
    }


@pytest.fixture
def prometheus(tmp_path: Path) -> Iterator[Callable[[str], str]]:
    """Start a real Prometheus for a target; yields `start(target) -> base URL`."""
    procs: list[subprocess.Popen[bytes]] = []
    log = open(tmp_path / "prometheus.log", "wb")  # noqa: SIM115 - closed after the test

    def start(target: str) -> str:
        port = free_port()
        cfg = tmp_path / "prometheus.yml"
        cfg.write_text(yaml.safe_dump({
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
            "scrape_configs": [{"job_name": "soak", "static_configs": [{"targets": [target]}]}],
        }))  # fmt: skip
        procs.append(subprocess.Popen(
            [PROMETHEUS, f"--config.file={cfg}", f"--storage.tsdb.path={tmp_path / 'tsdb'}",
             f"--web.listen-address=127.0.0.1:{port}", "--log.level=warn"],
            stdout=subprocess.DEVNULL, stderr=log,
        ))  # fmt: skip
        url = f"http://127.0.0.1:{port}"
        wait_for("prometheus ready", lambda: http(f"{url}/-/ready")[0] == 200, 30)
        return url

    yield start
    for proc in procs:
        proc.terminate()
        proc.wait(timeout=15)
    log.close()


def promql(url: str, query: str) -> float | None:
    """The single value of an instant query (None when it has no result)."""
    q = urllib.parse.urlencode({"query": query})
    data = get_json(f"{url}/api/v1/query?{q}")["data"]["result"]
    assert len(data) <= 1, (query, data)
    return float(data[0]["value"][1]) if data else None


def test_prometheus_scrapes_the_daemon_running_against_litellm(
    tmp_path: Path, daemons: list[SoakDaemon], prometheus: Callable[[str], str]
) -> None:
    config = {
        "version": 1,
        "gateway": LITELLM,
        "phases": {
            "overhead": {"rate": 10, "duration": "3s", "latency": "50ms"},
            "failover": {"requests": 10, "rate": 2, "latency": "50ms"},
        },
        "schedule": [
            {"name": "smoke", "interval": "1h", "phases": ["overhead", "breaker", "failover"],
             "run_on_start": True},
        ],
    }  # fmt: skip
    started = time.time()
    daemon = SoakDaemon(tmp_path, config)
    daemons.append(daemon)
    prom = prometheus(daemon.url.removeprefix("http://"))
    run = daemon.finished_run(timeout=80)
    report = run["report"]
    overhead, breaker, failover = report["phases"]
    assert [p["name"] for p in report["phases"]] == ["overhead", "breaker", "failover"]
    # Prometheus has scraped the finished run once its runs counter shows it.
    wait_for("the finished run in Prometheus",
             lambda: promql(prom, 'sum(soak_plan_runs_total{plan="smoke"})') == 1, 15)  # fmt: skip
    sel = 'target="litellm",phase="overhead"'

    # Counters: one sample per request the phase sent, by outcome.
    assert promql(prom, f"sum(soak_requests_total{{{sel}}})") == overhead["sent"] > 0
    assert promql(prom, f'sum(soak_requests_total{{{sel},outcome="ok"}})') == overhead[
        "outcomes"
    ].get("ok", 0)
    assert promql(prom, f"sum(soak_request_duration_seconds_count{{{sel}}})") == overhead["sent"]

    # Histograms: the PromQL median lies in the bucket that holds the exact p50 of the report.
    q50 = promql(
        prom,
        f"histogram_quantile(0.5, sum by (le) (soak_request_duration_seconds_bucket{{{sel}}}))",
    )
    exact = overhead["latency"]["p50"]
    bounds = [0.0, *BASE_BUCKETS["soak_request_duration_seconds"]]
    lo, hi = next((a, b) for a, b in itertools.pairwise(bounds) if a < exact <= b)
    assert q50 is not None and lo <= q50 <= hi, (q50, exact)
    over = promql(prom, f"sum(soak_gateway_overhead_seconds_count{{{sel}}})")
    assert over == overhead["outcomes"].get("ok", 0)

    # Breaker: the gauges and transition counters replay the phase's timelines.
    observed = breaker["details"]["observed"]["primary"]
    states = {"CLOSED": 0, "HALF_OPEN": 1, "OPEN": 2}
    b = 'target="litellm",provider="primary",source="observed"'
    assert promql(prom, f"soak_breaker_state{{{b}}}") == states[observed["final"]]
    assert promql(prom, f"soak_breaker_transitions_total{{{b}}}") == observed["transitions"]
    assert observed["transitions"] > 0  # the fault changed the primary's state: not 0 == 0

    # Failover: one histogram sample per timed failover of the phase.
    times = failover["details"]["times"]
    f = 'target="litellm",phase="failover"'
    assert promql(prom, f"sum(soak_failover_seconds_count{{{f}}})") == len(times) > 0
    assert promql(prom, f"sum(soak_failover_seconds_sum{{{f}}})") == pytest.approx(sum(times))

    # Gateway RSS: sampled for the daemon's whole life (1 Hz, not frozen at a phase's end), so
    # it is the live process, near what the report's last phase measured; the daemon's own too.
    rss = promql(prom, 'soak_gateway_resident_memory_bytes{target="litellm"}')
    assert rss == pytest.approx(failover["process"]["rss_final"], rel=0.25)
    assert rss > 50e6
    assert promql(prom, 'process_resident_memory_bytes{job="soak"}') > 10e6
    assert promql(prom, "soak_config_last_reload_successful") == 1
    assert promql(prom, 'soak_phase_running{phase="breaker"}') == 0
    nxt = promql(prom, 'soak_plan_next_run_timestamp_seconds{plan="smoke"}')
    assert nxt == pytest.approx(started + 3600, abs=30)
    assert promql(prom, 'up{job="soak"}') == 1
    code, took = daemon.stop()
    # an idle stop (0.2 s here) vs waiting out the default 30 s grace (24 s drain): 20x and 6x
    assert code == 0 and took < 4


def test_sigterm_mid_phase_clears_faults_aborts_the_run_and_restart_keeps_it(
    tmp_path: Path, daemons: list[SoakDaemon], mock: str
) -> None:
    plan = {"name": "brk", "interval": "1h", "phases": ["breaker"], "run_on_start": True}
    config = mock_only(
        mock, [plan], breaker={"rate": 10, "duration": "60s", "lead": "1s", "fault": "30s"}
    )
    daemon = SoakDaemon(tmp_path, config)
    daemons.append(daemon)

    def active_faults() -> int:
        stats = get_json(f"{mock}/_mock/stats")["providers"]
        return sum(len(p["active_faults"]) for p in stats.values())

    wait_for("the breaker phase's fault at the mock", active_faults, 20)
    assert daemon.metric("soak_phase_running", target="direct", phase="breaker") == 1
    code, took = daemon.stop(signal.SIGTERM)
    # within server.grace (10 s): stopped (0.3 s here) vs the 60 s phase run out: 30x and 6x
    assert code == 0 and took < 10
    assert active_faults() == 0  # cleared, not left to expire by TTL

    again = SoakDaemon(tmp_path, {**config, "schedule": [{**plan, "run_on_start": False}]})
    daemons.append(again)
    (run,) = again.runs()
    assert (run["plan"], run["status"]) == ("brk", "aborted")
    assert run["reason"] == "daemon stopping (SIGTERM)"
    full = get_json(f"{again.url}/runs/{run['id']}")
    assert full["report"]["aborted"] is True
    assert again.stop()[0] == 0


def test_reload_with_a_bad_file_keeps_the_old_config(
    tmp_path: Path, daemons: list[SoakDaemon], mock: str
) -> None:
    plan = {"name": "quick", "interval": "1h", "phases": ["overhead"], "run_on_start": True}
    config = mock_only(mock, [plan], overhead={"rate": 10, "duration": "1s", "latency": "10ms"})
    daemon = SoakDaemon(tmp_path, config)
    daemons.append(daemon)
    assert daemon.finished_run(timeout=30)["status"] == "passed"
    next_run = daemon.metric("soak_plan_next_run_timestamp_seconds", plan="quick")

    daemon.config_path.write_text("version: 1\nschedule: [{name: quick, cron: nope}]\n")
    daemon.proc.send_signal(signal.SIGHUP)
    wait_for("the failed reload", lambda: daemon.metric("soak_config_last_reload_successful") == 0,
             10)  # fmt: skip
    status, body = http(f"{daemon.url}/-/reload", method="POST")
    assert status == 500 and body.startswith("failed to reload config: ")
    assert "\n" not in body.strip()
    assert http(f"{daemon.url}/-/ready")[0] == 200  # still serving the old config
    assert daemon.metric("soak_plan_next_run_timestamp_seconds", plan="quick") == next_run

    daemon.config_path.write_text(yaml.safe_dump({**config, "schedule": [
        {"name": "other", "interval": "2h", "phases": ["overhead"]}]}))  # fmt: skip
    assert http(f"{daemon.url}/-/reload", method="POST")[0] == 200
    assert daemon.metric("soak_config_last_reload_successful") == 1
    assert daemon.metric("soak_plan_next_run_timestamp_seconds", plan="quick") is None
    assert daemon.metric("soak_plan_next_run_timestamp_seconds", plan="other") > time.time()
    assert daemon.stop()[0] == 0
