"""A soak of hours, measured: `soak run` on the embedded default (real LiteLLM, managed, living
across runs, with background load), scraped by a real Prometheus with `soak rules --config`.

Every 10 s it appends a row to `bench/results/soak-<gateway>.jsonl` (so a cut-short run still
gives figures): the managed gateway's PID, RSS and fds (read here with psutil, independent of
the daemon), the daemon's own RSS, runs finished, restarts, the daemon's long-window slope gauge,
the overhead p50/p99 of the last `overhead` run, and the alerts firing in Prometheus.
`--gateway leaky` runs the same with tests/leaky_gateway.py keeping 50 KB per request: the
long-window verdict (SoakGatewayMemoryLongSlope) must catch it within the hour while the
per-phase memory verdict passes every run. `--report` turns the JSONL files into the figures,
an SVG plot (docs/soak-rss.svg) and the `## Soak of hours` section of docs/BENCHMARKS.md.

    python bench/bench_soak.py --gateway litellm --minutes 60
    python bench/bench_soak.py --gateway leaky --minutes 60
    python bench/bench_soak.py --report

Every process it starts is stopped by its PID; all traffic stays on loopback; rates are low
(background 2 req/s, phases at 5 req/s for 10-20 s every 5 min) because the host is shared.
"""

from __future__ import annotations

import argparse
import json
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import psutil
import yaml

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
SOAK = [sys.executable, "-m", "soak"]
PROMETHEUS = "/usr/bin/prometheus"
EVERY = 10.0
LEAK_KB = 50
LONG_WINDOW = "30m"
LONG_SLOPE_MB_PER_HOUR = 50


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def get(url: str, timeout: float = 10) -> str:
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return r.read().decode()


def config(gateway: str) -> dict[str, Any]:
    """The embedded default with a schedule of calibration, overhead and memory every 5 min at
    low rates, background load between runs, and a 30 min long window."""
    cfg = yaml.safe_load((ROOT / "soak/config/profiles/embedded.yaml").read_text())
    if gateway == "leaky":
        cfg["gateway"] = {
            "name": "leaky", "kind": "openai", "model": "soak-model", "timeout": "30s",
            "chat_path": "/v1/chat/completions",
            "managed": {"command": [sys.executable, str(ROOT / "tests/leaky_gateway.py"),
                                   "--port", "{port}", "--upstream", "{mock_url}/p/primary",
                                   "--leak-kb", str(LEAK_KB)],
                        "ready_log": "leaky gateway listening", "ready_timeout": "30s"},
        }  # fmt: skip
    shape = {"rate": 5, "duration": "10s", "latency": "100ms"}
    cfg["phases"] = {
        "calibration": dict(shape),
        "overhead": {**shape, "warmup": "3s"},
        "memory": {"requests": 40, "concurrency": 2, "latency": "1s", "warmup": "5s"},
    }
    cfg["slo"] = {"memory": {"long_window": LONG_WINDOW,
                             "long_slope_mb_per_hour": LONG_SLOPE_MB_PER_HOUR}}  # fmt: skip
    cfg["schedule"] = [{
        "name": "soak", "interval": "5m", "run_on_start": True,
        "phases": ["calibration", "overhead", "memory"],
        "background": {"rate": 2, "latency": "100ms"},
    }]  # fmt: skip
    cfg["server"] = {"grace": "30s", "keep_runs": 100}
    return cfg


def metrics(url: str) -> dict[str, float]:
    out: dict[str, float] = {}
    for line in get(f"{url}/metrics").splitlines():
        if line.startswith("#"):
            continue
        key, _, value = line.rpartition(" ")
        out[key] = float(value)
    return out


def pick(m: dict[str, float], name: str, **labels: str) -> float | None:
    total = None
    for key, value in m.items():
        if key.split("{")[0] != name:
            continue
        if all(f'{k}="{v}"' in key for k, v in labels.items()):
            total = (total or 0.0) + value
    return total


def firing(prom: str) -> list[str]:
    data = json.loads(get(f"{prom}/api/v1/alerts"))["data"]["alerts"]
    return sorted({a["labels"]["alertname"] for a in data if a["state"] == "firing"})


def gateway_proc(daemon: psutil.Process, gateway: str) -> psutil.Process | None:
    mark = "leaky_gateway.py" if gateway == "leaky" else "litellm"
    for child in daemon.children(recursive=True):
        try:
            if any(mark in part for part in child.cmdline()) and "soak.mock" not in child.cmdline():
                parent = child.parent()
                if parent is not None and parent.pid == daemon.pid:
                    return child
        except psutil.Error:
            continue
    return None


def tree(proc: psutil.Process) -> tuple[int, int]:
    """RSS and fds of a process and its descendants."""
    rss = fds = 0
    for p in [proc, *proc.children(recursive=True)]:
        try:
            rss += p.memory_info().rss
            fds += p.num_fds()
        except psutil.Error:
            continue
    return rss, fds


def run(gateway: str, minutes: float) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / f"soak-{gateway}.jsonl"
    tmp = Path(tempfile.mkdtemp(prefix=f"bench-soak-{gateway}-"))
    cfg_path = tmp / "soak.yaml"
    cfg_path.write_text(yaml.safe_dump(config(gateway)))
    rules = tmp / "rules.yml"
    subprocess.run([*SOAK, "rules", "--config", str(cfg_path), "--out", str(rules)], check=True)
    port, prom_port = free_port(), free_port()
    (tmp / "prometheus.yml").write_text(yaml.safe_dump({
        "global": {"scrape_interval": "5s", "evaluation_interval": "15s"},
        "rule_files": [str(rules)],
        "scrape_configs": [{"job_name": "soak",
                            "static_configs": [{"targets": [f"127.0.0.1:{port}"]}]}],
    }))  # fmt: skip
    log = (tmp / "daemon.log").open("wb")
    daemon = subprocess.Popen(
        [*SOAK, "run", "--config", str(cfg_path), "--listen", f"127.0.0.1:{port}",
         "--data-dir", str(tmp / "data"), "--log-level", "info"],
        stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    prom = subprocess.Popen(
        [PROMETHEUS, f"--config.file={tmp / 'prometheus.yml'}",
         f"--storage.tsdb.path={tmp / 'tsdb'}", f"--web.listen-address=127.0.0.1:{prom_port}",
         "--log.level=warn"],
        stdout=subprocess.DEVNULL, stderr=(tmp / "prometheus.log").open("wb"),
    )  # fmt: skip
    url, prom_url = f"http://127.0.0.1:{port}", f"http://127.0.0.1:{prom_port}"
    dproc = psutil.Process(daemon.pid)
    started = time.time()
    seen_alerts: dict[str, float] = {}
    print(f"bench_soak {gateway}: daemon {url}, prometheus {prom_url}, rows -> {out}", flush=True)
    try:
        with out.open("w") as f:
            f.write(json.dumps({"kind": "start", "gateway": gateway, "at": started,
                                "config": config(gateway), "tmp": str(tmp)}) + "\n")  # fmt: skip
            while time.time() - started < minutes * 60:
                time.sleep(EVERY)
                if daemon.poll() is not None:
                    f.write(json.dumps({"kind": "daemon_exit", "code": daemon.returncode}) + "\n")
                    break
                row: dict[str, Any] = {"kind": "row", "t": round(time.time() - started, 1)}
                row["daemon_rss"] = dproc.memory_info().rss
                gw = gateway_proc(dproc, gateway)
                if gw is not None:
                    row["gw_pid"] = gw.pid
                    row["gw_rss"], row["gw_fds"] = tree(gw)
                try:
                    m = metrics(url)
                except OSError:
                    m = {}
                row["runs"] = pick(m, "soak_plan_runs_total")
                row["passed"] = pick(m, "soak_plan_runs_total", status="passed")
                row["restarts"] = pick(m, "soak_gateway_restarts_total")
                row["slope"] = pick(m, "soak_gateway_memory_slope_bytes_per_second")
                row["bg_requests"] = pick(m, "soak_requests_total", phase="background")
                row["memory_verdict"] = pick(m, "soak_phase_last_verdict", phase="memory")
                row["overhead_at"] = pick(m, "soak_phase_last_run_timestamp_seconds",
                                          phase="overhead")  # fmt: skip
                for stat in ("p50", "p99"):
                    row[f"overhead_{stat}"] = pick(m, "soak_phase_last_overhead_seconds",
                                                   phase="overhead", statistic=stat)  # fmt: skip
                try:
                    row["alerts"] = firing(prom_url)
                except OSError:
                    row["alerts"] = None
                for name in row["alerts"] or []:
                    seen_alerts.setdefault(name, row["t"])
                row["alerts_first"] = seen_alerts
                f.write(json.dumps(row) + "\n")
                f.flush()
    finally:
        gw = gateway_proc(dproc, gateway) if daemon.poll() is None else None
        stop_at = time.monotonic()
        daemon.send_signal(signal.SIGTERM)
        try:
            daemon.wait(timeout=60)
        except subprocess.TimeoutExpired:
            daemon.kill()
            daemon.wait()
        stopped_s = time.monotonic() - stop_at
        prom.terminate()
        prom.wait(timeout=30)
        log.close()
        with out.open("a") as f:
            left = gw is not None and gw.is_running()
            f.write(json.dumps({"kind": "end", "t": round(time.time() - started, 1),
                                "stop_s": round(stopped_s, 2), "code": daemon.returncode,
                                "gateway_left": left}) + "\n")  # fmt: skip
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--gateway", choices=("litellm", "leaky"), default="litellm")
    p.add_argument("--minutes", type=float, default=60.0)
    p.add_argument("--report", action="store_true", help="figures, plot and docs from the rows")
    args = p.parse_args()
    if args.report:
        from bench_soak_report import report

        report(RESULTS, ROOT / "docs")
        return 0
    run(args.gateway, args.minutes)
    return 0


if __name__ == "__main__":
    sys.exit(main())
