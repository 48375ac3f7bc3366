"""Benchmark gateways side by side with soak itself: nginx, Portkey and LiteLLM.

For each gateway one `soak once --phases calibration,overhead,capacity` run (the product, not a
separate harness): soak starts the mock and the gateway (managed), measures per-request
overhead at a low rate, then searches the capacity knee. The gateway is pinned to core 0
(`taskset`), soak and its mock to core 1, as in the reference baselines (one gateway worker on
one core). A last LiteLLM run with `primary_api: bedrock` (overhead only) shows what the
Bedrock translation and SigV4 signing add on top of the OpenAI wire.

The machine may be shared: the load average is recorded before and after each run, and each
gateway is also given as a ratio to nginx measured in the same run. Every load is bounded in
time (the capacity search has a budget); traffic stays on 127.0.0.1. Writes the figures under
`## Gateways side by side` in docs/BENCHMARKS.md (other sections untouched). Run:
    /work/venv/bin/python bench/bench_gateways.py [--only nginx,portkey,litellm] [--no-write]
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from doc_section import write_section

from soak.gateway.kinds.portkey import PortkeyKind
from soak.gateway.managed import default_cache_dir

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "BENCHMARKS.md"
HEADING = "## Gateways side by side"
GATEWAY_CORE, TESTER_CORE = "0", "1"
LOW = {"rate": 20, "duration": "10s", "latency": "20ms"}
CAPACITY = {"start": 20, "factor": 1.5, "max_rate": 1500, "step_duration": "4s",
            "budget": "150s", "latency": "20ms", "timeout": "10s", "bisect": 2,
            "pause": "2s"}  # fmt: skip
NGINX_CONF = """
worker_processes 1;
daemon off;
pid {dir}/nginx.pid;
error_log {dir}/error.log warn;
events {{ worker_connections 8192; }}
http {{
  access_log off;
  client_body_temp_path {dir}/body;
  proxy_temp_path {dir}/proxy;
  fastcgi_temp_path {dir}/fastcgi;
  uwsgi_temp_path {dir}/uwsgi;
  scgi_temp_path {dir}/scgi;
  upstream mock {{ server 127.0.0.1:{mock_port}; keepalive 128; }}
  server {{
    listen 127.0.0.1:PORT backlog=4096;
    location / {{
      proxy_pass http://mock;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
    }}
  }}
}}
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def pinned(core: str, argv: list[str]) -> list[str]:
    return ["taskset", "-c", core, *argv] if shutil.which("taskset") else argv


@dataclass(frozen=True, slots=True)
class OnceRun:
    """What one bench's `soak once` gave: its report, how long it took, the load around it."""

    report: dict[str, Any]
    seconds: float
    load: tuple[float, float]
    """One-minute load average before and after (the machine may be shared)."""


def soak_once(work: Path, config: dict[str, Any], phases: str, *, name: str,
              timeout: float) -> OnceRun:  # fmt: skip
    """`soak once --phases` on `config` (written to `work`), pinned to the tester core; an
    error naming `name` when it wrote no report."""
    (work / "soak.yaml").write_text(yaml.safe_dump(config))
    argv = pinned(TESTER_CORE, [sys.executable, "-m", "soak", "once", "--config",
                                str(work / "soak.yaml"), "--out", str(work / "out"),
                                "--phases", phases])  # fmt: skip
    load_before = os.getloadavg()[0]
    started = time.monotonic()
    done = subprocess.run(argv, cwd=work, capture_output=True, text=True, timeout=timeout)
    elapsed = time.monotonic() - started
    path = work / "out" / "report.json"
    if not path.exists():
        raise RuntimeError(f"{name}: soak once exit {done.returncode}: {done.stderr[-800:]}")
    return OnceRun(json.loads(path.read_text()), elapsed, (load_before, os.getloadavg()[0]))


def gateway_config(name: str, work: Path, mock_port: int) -> dict[str, Any]:
    """The `gateway` section of one bench run (managed, pinned to the gateway core)."""
    if name == "nginx":
        nginx = shutil.which("nginx") or "/usr/sbin/nginx"
        conf = work / "nginx.conf.in"
        conf.write_text(NGINX_CONF.format(dir=work, mock_port=mock_port))
        script = f"sed s/PORT/{{port}}/ {conf} > {work}/nginx.conf && exec " + " ".join(
            pinned(GATEWAY_CORE, [nginx, "-c", f"{work}/nginx.conf", "-p", str(work)])
        )
        return {"name": "nginx", "kind": "openai", "chat_path": "/p/primary/v1/chat/completions",
                "model": "m", "managed": {"command": ["sh", "-c", script],
                                          "ready_url": "/p/primary/v1/models"}}  # fmt: skip
    if name == "portkey":
        kind = PortkeyKind()
        asyncio.run(kind.install(default_cache_dir()))
        assert kind.package_dir is not None
        script = str(kind.server_script(kind.package_dir))
        argv = pinned(GATEWAY_CORE, ["node", script, "--port={port}", "--headless"])
        return {"name": "portkey", "kind": "portkey",
                "managed": {"command": argv, "ready_url": "/"}}  # fmt: skip
    api = "bedrock" if name == "litellm-bedrock" else "openai"
    litellm = str(Path(sys.executable).with_name("litellm"))
    argv = pinned(GATEWAY_CORE, [litellm, "--config", "{config}", "--host", "127.0.0.1",
                                 "--port", "{port}", "--num_workers", "1"])  # fmt: skip
    return {"name": name, "kind": "litellm", "primary_api": api, "generate_key": True,
            "managed": {"command": argv, "ready_timeout": "120s"}}  # fmt: skip


def run_gateway(name: str, phases: str) -> dict[str, Any]:
    """One `soak once` run for gateway `name`; the figures the section shows."""
    with tempfile.TemporaryDirectory(prefix=f"bench-{name}-") as tmp:
        work = Path(tmp)
        mock_port = free_port()
        config = {
            "version": 1,
            "gateway": {**gateway_config(name, work, mock_port), "timeout": "10s"},
            "mock": {"port": mock_port},
            "phases": {"calibration": LOW, "overhead": LOW, "capacity": CAPACITY},
        }
        once = soak_once(work, config, phases, name=name, timeout=600)
    report = once.report
    if report.get("error"):
        raise RuntimeError(f"{name}: {report['error']}")
    by_name = {p["name"]: p for p in report["phases"]}
    over = by_name["overhead"]
    per_request = over["distributions"].get("overhead_per_request") or {}
    cap = by_name.get("capacity")
    rss = [p["process"]["rss_peak"] for p in report["phases"] if p.get("process")]
    out: dict[str, Any] = {
        "gateway": name,
        "overhead_p50": per_request.get("p50"),
        "overhead_p99": per_request.get("p99"),
        "overhead_success": over["success_ratio"],
        "own_overhead_p50": (over["params"].get("gateway_reported") or {}).get("overhead_p50"),
        "rss_peak_mb": max(rss) / 2**20 if rss else None,
        "load_before": once.load[0],
        "load_after": once.load[1],
        "seconds": once.seconds,
    }
    if cap is not None:
        d = cap["details"]
        bad = next((s for s in d["steps"] if not s["held"] and s["stop"] == d["stopped_by"]), None)
        out.update(knee=d["knee"], stopped_by=d["stopped_by"], reasons=d["reasons"],
                   first_failed=bad["rate"] if bad else None,
                   steps=[(round(s["rate"], 1), s["held"], s["overhead_p50"], s["overhead_p99"],
                           s["success"]) for s in d["steps"]])  # fmt: skip
    return out


def _ms(value: float | None) -> str:
    return "—" if value is None else f"{value * 1e3:.2f} ms"


def _ratio(value: float | None, ref: float | None) -> str:
    return "—" if not value or not ref else f"{value / ref:.2f}×"


def section(rows: list[dict[str, Any]]) -> str:
    day = datetime.datetime.now(datetime.UTC).date().isoformat()
    ref = next((r for r in rows if r["gateway"] == "nginx"), {})
    lines = [
        HEADING,
        "",
        f"Measured by `python bench/bench_gateways.py` on {day}: one `soak once --phases "
        "calibration,overhead,capacity` per gateway, each managed by soak (one worker, pinned "
        "to core 0; soak and its mock on core 1). Overhead: per-request (client latency − the "
        f"mock's own service time) at {LOW['rate']} req/s for {LOW['duration']}, mock latency "
        f"{LOW['latency']}. Knee: the capacity phase (start {CAPACITY['start']} req/s, ×"
        f"{CAPACITY['factor']} per {CAPACITY['step_duration']} step, 2 bisections, default "
        "`slo.capacity`: success ≥ 0.99, overhead p99 < 200 ms, p50 runaway 3×). RSS: the "
        "gateway's peak (process and children) over the run. Ratios are to nginx in the same run.",
        "",
        "| gateway | overhead p50 | p99 | ×nginx p50 | own p50 (self-report) | knee (req/s) | "
        "stopped by | stopped at | ×nginx knee | RSS peak | load avg before→after |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        knee, failed, rss = r.get("knee"), r.get("first_failed"), r["rss_peak_mb"]
        cells = [
            r["gateway"],
            _ms(r["overhead_p50"]),
            _ms(r["overhead_p99"]),
            _ratio(r["overhead_p50"], ref.get("overhead_p50")),
            _ms(r["own_overhead_p50"]),
            "—" if knee is None else f"{knee:.0f}",
            r.get("stopped_by", "—"),
            "—" if not failed else f"{failed:.0f}",
            _ratio(knee, ref.get("knee")),
            "—" if rss is None else f"{rss:.0f} MB",
            f"{r['load_before']:.1f}→{r['load_after']:.1f}",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    lines += [
        "",
        "Reading it: soak's mock shares core 1 with the tester, so past a few hundred req/s the "
        "tester's core is contended by the mock and the generator flags itself (`generator`): "
        "the nginx knee is this bench's own ceiling, a lower bound for nginx. A gateway knee "
        "stopped by `slo`/`runaway` is the gateway's (its p50 overhead beyond the tester's "
        "worst loop lag). The knee is the highest rate that held a p99 SLO, so it sits at or "
        "below the baselines' saturation point (where p50 climbs to seconds). The "
        "`litellm-bedrock` row is LiteLLM with `primary_api: bedrock` (overhead only): the "
        "difference to `litellm` is the Bedrock translation and SigV4 signing.",
        "",
        "Why each search stopped (the first step that did not hold):",
        "",
    ]
    for r in rows:
        if r.get("reasons"):
            lines.append(f"- {r['gateway']}: " + "; ".join(r["reasons"]))
    lines += ["", "Curves (rate, held, overhead p50 / p99, success):", ""]
    for r in rows:
        if r.get("steps"):
            pts = ", ".join(
                f"{rate:g} {'✓' if held else '✗'} {_ms(p50)}/{_ms(p99)} {succ:.3f}"
                for rate, held, p50, p99, succ in sorted(r["steps"])
            )
            lines.append(f"- {r['gateway']}: {pts}")
    return "\n".join(lines) + "\n"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--only", default="nginx,portkey,litellm,litellm-bedrock")
    p.add_argument("--no-write", action="store_true", help="print only")
    p.add_argument("--json-out", type=Path)
    p.add_argument("--from-json", type=Path, help="re-render a --json-out file, run nothing")
    args = p.parse_args()
    rows = json.loads(args.from_json.read_text()) if args.from_json else []
    for name in [] if args.from_json else args.only.split(","):
        phases = (
            "calibration,overhead"
            if name == "litellm-bedrock"
            else ("calibration,overhead,capacity")
        )
        row = run_gateway(name, phases)
        print(json.dumps(row), flush=True)
        rows.append(row)
    if args.json_out:
        args.json_out.write_text(json.dumps(rows, indent=1))
    text = section(rows)
    print(text)
    if not args.no_write:
        write_section(DOC, HEADING, text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
