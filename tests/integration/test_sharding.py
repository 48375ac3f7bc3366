"""Scale-out: two `soak run` daemons, shards 0 and 1 of 2, together send what one unsharded
daemon sends, and one real Prometheus adds them up (`sum by (le)`, `sum by (target)`).

All three daemons run the same overhead phase at the same time against one mock provider on
loopback (the mock plays the gateway: only the counting matters here); the sharded pair is
target "sharded", the single daemon target "single". Shard 0 is told its index by
SOAK_SHARD_INDEX, shard 1 finds it in HOSTNAME (`llm-soak-1`) as a StatefulSet pod does.
Prometheus scrapes all three every second and evaluates the committed rules.

Needs the `prometheus` Debian package (/usr/bin/prometheus).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

pytestmark = pytest.mark.integration

SOAK = [sys.executable, "-m", "soak"]
PROMETHEUS = "/usr/bin/prometheus"
RATE, DURATION = 20.0, 12.0
"""The fleet's rate (req/s) and the phase's length: 240 requests in all, 120 per shard."""
_NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))
RULES = Path(__file__).resolve().parents[2] / "deploy" / "generated" / "soak.rules.yml"
"""The committed rules: their recording rules must add the shards up too."""
RECORDED = (
    "target_phase_outcome:soak_requests:rate5m",
    "target_phase_le:soak_request_duration_seconds_bucket:rate5m",
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def get(url: str) -> tuple[int, str]:
    try:
        with _NO_PROXY.open(url, timeout=10) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode()


def wait_for(what: str, probe: Callable[[], Any], timeout: float) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            value = probe()
        except (OSError, ValueError, KeyError, IndexError):
            value = None
        if value:
            return value
        time.sleep(0.25)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


class Processes:
    """Children started by the test, stopped by PID (SIGTERM, then SIGKILL) at the end."""

    def __init__(self, tmp: Path) -> None:
        self.tmp, self.procs = tmp, []

    def start(self, name: str, argv: list[str], env: dict[str, str] | None = None) -> None:
        base = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith("SOAK_SHARD_") and k != "HOSTNAME"
        }
        base["NO_PROXY"] = "127.0.0.1,localhost"
        with (self.tmp / f"{name}.log").open("wb") as log:  # the child keeps its own copy
            proc = subprocess.Popen(
                argv,
                cwd=self.tmp,
                env={**base, **(env or {})},
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        self.procs.append((name, proc))

    def log(self, name: str) -> str:
        return (self.tmp / f"{name}.log").read_text(errors="replace")[-3000:]

    def stop(self) -> None:
        for _, proc in self.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for _, proc in self.procs:
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=5)


@pytest.fixture
def procs(tmp_path: Path) -> Iterator[Processes]:
    p = Processes(tmp_path)
    try:
        yield p
    finally:
        p.stop()


def daemon_config(tmp: Path, name: str, target: str, mock_url: str, port: int) -> Path:
    config = {
        "version": 1,
        "profile": "quick",
        "gateway": {  # the mock's primary plays the gateway: 50 ms per answer
            "name": target,
            "url": f"{mock_url}/p/primary",
            "model": "soak-primary",
            "timeout": "10s",
        },
        "mock": {"url": mock_url},
        "phases": {"overhead": {"rate": RATE, "duration": f"{DURATION}s", "latency": "50ms"}},
        "engine": {"arrival": "constant"},
        "schedule": [
            {"name": "overhead", "interval": "1h", "run_on_start": True, "phases": ["overhead"]}
        ],
        "server": {"listen": f"127.0.0.1:{port}", "data_dir": str(tmp / f"data-{name}")},
        "report": {"out": str(tmp / f"reports-{name}")},
    }
    path = tmp / f"{name}.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def query(prom: str, expr: str, at: float | None = None) -> dict[str, float]:
    """An instant PromQL query: target label (or le) → value."""
    params = {"query": expr, **({"time": f"{at:.3f}"} if at is not None else {})}
    status, body = get(f"{prom}/api/v1/query?{urllib.parse.urlencode(params)}")
    assert status == 200, body
    out = {}
    for series in json.loads(body)["data"]["result"]:
        labels = series["metric"]
        out[labels.get("target") or labels.get("le") or ""] = float(series["value"][1])
    return out


def query_range(prom: str, expr: str, start: float, end: float) -> dict[str, list[float]]:
    params = {"query": expr, "start": f"{start:.3f}", "end": f"{end:.3f}", "step": "1"}
    status, body = get(f"{prom}/api/v1/query_range?{urllib.parse.urlencode(params)}")
    assert status == 200, body
    return {
        s["metric"]["target"]: [float(v) for _, v in s["values"]]
        for s in json.loads(body)["data"]["result"]
    }


def test_two_shards_add_up_to_one_unsharded_daemon(tmp_path, procs):
    assert Path(PROMETHEUS).exists(), "install the Debian package prometheus"
    mock_port = free_port()
    mock_url = f"http://127.0.0.1:{mock_port}"
    procs.start(
        "mock",
        [*SOAK, "mock", "--host", "127.0.0.1", "--port", str(mock_port),
         "--providers", "primary,fallback", "--log-level", "warning"],
    )  # fmt: skip
    wait_for("the mock", lambda: get(f"{mock_url}/v1/models")[0] == 200, 30)

    ports = {name: free_port() for name in ("shard0", "shard1", "single")}
    prom_port = free_port()
    prom_config = tmp_path / "prometheus.yml"
    prom_config.write_text(
        yaml.safe_dump(
            {
                "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
                "rule_files": [str(RULES)],
                "scrape_configs": [
                    {
                        "job_name": "soak",
                        "scrape_timeout": "900ms",
                        "static_configs": [{"targets": [f"127.0.0.1:{p}" for p in ports.values()]}],
                    }
                ],
            }
        )
    )
    procs.start(
        "prometheus",
        [PROMETHEUS, f"--config.file={prom_config}", f"--storage.tsdb.path={tmp_path / 'tsdb'}",
         f"--web.listen-address=127.0.0.1:{prom_port}", "--log.level=warn"],
    )  # fmt: skip
    prom = f"http://127.0.0.1:{prom_port}"
    wait_for("Prometheus", lambda: get(f"{prom}/-/ready")[0] == 200, 60)

    shard_env = {
        "shard0": {"SOAK_SHARD_INDEX": "0", "SOAK_SHARD_COUNT": "2"},
        "shard1": {"HOSTNAME": "llm-soak-1", "SOAK_SHARD_COUNT": "2"},  # a StatefulSet pod
        "single": {},
    }
    for name, port in ports.items():
        target = "single" if name == "single" else "sharded"
        path = daemon_config(tmp_path, name, target, mock_url, port)
        procs.start(
            name, [*SOAK, "run", "--config", str(path), "--log-format", "text"], shard_env[name]
        )
    started = time.time()
    for name, port in ports.items():
        wait_for(
            f"{name} ready ({procs.log(name)})",
            lambda port=port: get(f"http://127.0.0.1:{port}/-/ready")[0] == 200,
            60,
        )

    def finished(port: int) -> bool:
        status, body = get(f"http://127.0.0.1:{port}/runs")
        runs = json.loads(body)["runs"] if status == 200 else []
        return bool(runs) and all(r.get("finished_at") for r in runs)

    for name, port in ports.items():
        wait_for(f"{name}'s run ({procs.log(name)})", lambda port=port: finished(port), 60)

    def scraped() -> dict[str, float]:
        got = query(prom, "sum by (target) (soak_phase_last_run_timestamp_seconds)")
        return got if set(got) == {"sharded", "single"} else {}

    wait_for("Prometheus to scrape the finished runs", scraped, 20)
    time.sleep(2)  # two more scrapes: the last counter values are in
    end = time.time()

    totals = query(prom, 'sum by (target) (soak_requests_total{phase="overhead"})')
    counts = query(prom, 'sum by (target) (soak_request_duration_seconds_count{phase="overhead"})')
    expected = RATE * DURATION
    assert totals["single"] == pytest.approx(expected, rel=0.02), totals
    assert totals["sharded"] == pytest.approx(totals["single"], rel=0.02), totals
    assert counts["sharded"] == pytest.approx(counts["single"], rel=0.02), counts
    halves = list(_by_instance(prom).values())  # each shard (instance) sent its half
    assert sorted(halves) == pytest.approx([expected / 2, expected / 2], rel=0.02), halves

    # The aggregated request rate over the run, sampled every second by Prometheus.
    rates = query_range(
        prom, 'sum by (target) (rate(soak_requests_total{phase="overhead"}[4s]))', started, end
    )
    busy = {t: [v for v in values if v > RATE / 2] for t, values in rates.items()}
    assert len(busy["sharded"]) >= DURATION / 2 and len(busy["single"]) >= DURATION / 2, rates
    assert statistics.median(busy["sharded"]) == pytest.approx(RATE, rel=0.15), busy
    assert statistics.median(busy["sharded"]) == pytest.approx(
        statistics.median(busy["single"]), rel=0.15
    ), busy

    # The histogram, aggregated across replicas before histogram_quantile (sum by (le)).
    buckets = {
        target: query(
            prom,
            "sum by (le) (soak_request_duration_seconds_bucket"
            f'{{phase="overhead", target="{target}"}})',
        )
        for target in ("sharded", "single")
    }
    assert buckets["sharded"].keys() == buckets["single"].keys()
    assert buckets["sharded"]["+Inf"] == counts["sharded"]
    for le, n in buckets["single"].items():
        assert buckets["sharded"][le] == pytest.approx(n, abs=0.05 * expected), le
    p50 = {
        t: query(
            prom,
            "histogram_quantile(0.5, sum by (le) (soak_request_duration_seconds_bucket"
            f'{{phase="overhead", target="{t}"}}))',
        )[""]
        for t in ("sharded", "single")
    }
    # The committed recording rules (sum by target, phase, ...) see the two shards as one.
    rules = RULES.read_text()
    for record in RECORDED:
        assert f"record: {record}" in rules, record
        recorded = query(prom, f'sum by (target) ({record}{{phase="overhead"}})')
        assert recorded["sharded"] == pytest.approx(recorded["single"], rel=0.15), (
            record,
            recorded,
        )
    # the 50 ms answers (the (0.05, 0.1] bucket) vs a median 10x off the mock's latency
    assert 0.04 <= p50["sharded"] <= 0.5 and 0.04 <= p50["single"] <= 0.5, p50
    assert p50["sharded"] == pytest.approx(p50["single"], rel=0.2), p50


def _by_instance(prom: str) -> dict[str, float]:
    status, body = get(
        f"{prom}/api/v1/query?"
        + urllib.parse.urlencode(
            {"query": 'sum by (instance) (soak_requests_total{phase="overhead", target="sharded"})'}
        )
    )
    assert status == 200, body
    return {
        s["metric"]["instance"]: float(s["value"][1]) for s in json.loads(body)["data"]["result"]
    }
