"""Overhead against payload size through nginx, LiteLLM and Portkey, with soak itself.

For each gateway one `soak once --phases payload` run (the product, not a separate harness):
soak starts the mock and the gateway (managed), then steps the prompt size (1, 32, 128 and
512 KB at 16 answer tokens) and the answer length (16, 256 and 2,048 tokens at 1 KB) at one
moderate rate, each step straight to the mock first (the tester's own floor) and then through
the gateway. The gateway is pinned to core 0, soak and its mock to core 1 (bench_gateways.py).

The machine may be shared: the load average is recorded before and after each run, and each
gateway's p50 is also given as a ratio to nginx's at the same step, measured in the same run.
Every load is bounded (rate × duration per step); traffic stays on 127.0.0.1. Writes the
figures under `## Overhead against payload size` in docs/BENCHMARKS.md (other sections
untouched). Run:
    .venv/bin/python bench/bench_payload.py [--only nginx,litellm,portkey] [--no-write]
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

from bench_gateways import GATEWAY_CORE, free_port, gateway_config, pinned, soak_once
from doc_section import write_section

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "BENCHMARKS.md"
HEADING = "## Overhead against payload size"
PROMPTS = [1024, 32768, 131072, 524288]
ANSWERS = [16, 256, 2048]
NGINX_CONF = """
worker_processes 1;
daemon off;
pid {dir}/nginx.pid;
error_log {dir}/error.log warn;
events {{ worker_connections 4096; }}
http {{
  access_log off;
  client_max_body_size 16m;
  client_body_buffer_size 16m;
  client_body_temp_path {dir}/body;
  proxy_temp_path {dir}/proxy;
  fastcgi_temp_path {dir}/fastcgi;
  uwsgi_temp_path {dir}/uwsgi;
  scgi_temp_path {dir}/scgi;
  upstream mock {{ server 127.0.0.1:{mock_port}; keepalive 64; }}
  server {{
    listen 127.0.0.1:PORT;
    location / {{
      proxy_pass http://mock;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_buffering off;
    }}
  }}
}}
"""


def _gateway(name: str, work: Path, mock_port: int) -> dict[str, Any]:
    """bench_gateways' managed gateway, with nginx keeping bodies of up to 16 MB in memory."""
    if name != "nginx":
        return gateway_config(name, work, mock_port)
    nginx = "/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else "nginx"
    conf = work / "nginx.conf.in"
    conf.write_text(NGINX_CONF.format(dir=work, mock_port=mock_port))
    script = f"sed s/PORT/{{port}}/ {conf} > {work}/nginx.conf && exec " + " ".join(
        pinned(GATEWAY_CORE, [nginx, "-c", f"{work}/nginx.conf", "-p", str(work)])
    )
    return {"name": "nginx", "kind": "openai", "chat_path": "/p/primary/v1/chat/completions",
            "model": "m", "managed": {"command": ["sh", "-c", script],
                                      "ready_url": "/p/primary/v1/models"}}  # fmt: skip


def run_gateway(name: str, args: argparse.Namespace) -> dict[str, Any]:
    """One `soak once --phases payload` for gateway `name`: its steps and slopes."""
    with tempfile.TemporaryDirectory(prefix=f"bench-payload-{name}-") as tmp:
        work = Path(tmp)
        os.chmod(work, 0o755)  # nginx's worker (nobody) reads its own files
        mock_port = free_port()
        payload = {"rate": args.rate, "duration": args.duration, "latency": "20ms",
                   "prompt_bytes": PROMPTS, "answer_tokens": ANSWERS, "direct": True,
                   "warmup": args.warmup, "timeout": "30s"}  # fmt: skip
        config = {
            "version": 1,
            "gateway": {**_gateway(name, work, mock_port), "timeout": "30s"},
            "mock": {"port": mock_port},
            "phases": {"payload": payload},
        }
        once = soak_once(work, config, "payload", name=name, timeout=1200)
    report = once.report
    phase = next(p for p in report["phases"] if p["name"] == "payload")
    if phase.get("error"):
        raise RuntimeError(f"{name}: {phase['error']}")
    d = phase["details"]
    return {"gateway": name, "steps": d["steps"], "slope": d["slope_s_per_100kb"],
            "floor_slope": d["floor_slope_s_per_100kb"], "net_slope": d["net_slope_s_per_100kb"],
            "status": phase["status"], "notes": phase["notes"], "load_before": once.load[0],
            "load_after": once.load[1], "seconds": once.seconds}  # fmt: skip


def _ms(value: float | None) -> str:
    return "–" if value is None else f"{value * 1e3:.2f}"


def _step(row: dict[str, Any], prompt: int, answer: int) -> dict[str, Any] | None:
    return next((s for s in row["steps"] if s["prompt_bytes"] == prompt
                 and s["answer_tokens"] == answer), None)  # fmt: skip


def section(rows: list[dict[str, Any]], args: argparse.Namespace) -> str:
    nginx = next((r for r in rows if r["gateway"] == "nginx"), None)
    lines = [
        HEADING, "",
        f"`bench/bench_payload.py`, {time.strftime('%Y-%m-%d', time.gmtime())}: one `soak once"
        f" --phases payload` per gateway at {args.rate:g} req/s, {args.duration} per step (and"
        f" as long straight to the mock first: the floor; {args.warmup} of unrecorded load through"
        " the gateway before each step), mock latency 20 ms, gateway on core 0,"
        " soak and the mock on core 1 of a shared 2-core machine. Overhead is per request (client"
        " latency − the mock's own service time); \"× nginx\" is the p50 against nginx's at the"
        " same step in the same run. CPU is the gateway process's per request.", "",
        "| gateway | prompt | answer tokens | overhead p50 ms | p99 ms | floor p50 ms | × nginx p50"
        " | gateway CPU ms/request | bytes at the mock / sent | usage wrong |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    steps = [(p, ANSWERS[0]) for p in PROMPTS] + [(PROMPTS[0], a) for a in ANSWERS[1:]]
    for row in rows:
        for prompt, answer in steps:
            s = _step(row, prompt, answer)
            if s is None:
                continue
            ref = _step(nginx, prompt, answer) if nginx else None
            ratio = (f"{s['p50'] / ref['p50']:.1f}" if ref and ref.get("p50") and s.get("p50")
                     else "–")  # fmt: skip
            sent, got = s.get("sent_bytes"), s.get("received_bytes")
            size = f"{got / sent:.3f}" if sent and got else "–"
            usage = s.get("usage") or {}
            wrong = (f"{usage.get('prompt_wrong', 0)}+{usage.get('completion_wrong', 0)}"
                     f" / {usage.get('compared', 0)}") if usage else "–"  # fmt: skip
            ok = "" if s.get("success_ratio", 0) >= 0.99 else f" ({s['success_ratio']:.0%} ok)"
            lines.append(
                f"| {row['gateway']} | {prompt // 1024} KB | {answer} | {_ms(s.get('p50'))}{ok} |"
                f" {_ms(s.get('p99'))} | {_ms(s.get('floor_p50'))} | {ratio} |"
                f" {_ms(s.get('cpu_s_per_request'))} | {size} | {wrong} |"
            )
    lines += ["", "| gateway | slope of p50, ms per 100 KB | floor's slope | net | load average"
              " before → after | run |", "|---|---|---|---|---|---|"]
    for row in rows:
        lines.append(f"| {row['gateway']} | {_ms(row['slope'])} | {_ms(row['floor_slope'])} |"
                     f" {_ms(row['net_slope'])} | {row['load_before']:.2f} →"
                     f" {row['load_after']:.2f} | {row['seconds']:.0f} s |")  # fmt: skip
    return "\n".join(lines) + "\n"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--only", default="nginx,litellm,portkey")
    p.add_argument("--rate", type=float, default=5.0)
    p.add_argument("--duration", default="6s", help="load per step")
    p.add_argument("--warmup", default="6s",
                   help="unrecorded load through the gateway before each step (LiteLLM is cold"
                        " for its first ~20 requests)")  # fmt: skip
    p.add_argument("--no-write", action="store_true", help="print only")
    p.add_argument("--json-out", type=Path)
    p.add_argument("--from-json", type=Path, help="re-render a --json-out file, run nothing")
    args = p.parse_args()
    rows = json.loads(args.from_json.read_text()) if args.from_json else []
    for name in [] if args.from_json else args.only.split(","):
        row = run_gateway(name, args)
        print(json.dumps({k: v for k, v in row.items() if k != "steps"}), flush=True)
        rows.append(row)
        if args.json_out:
            args.json_out.write_text(json.dumps(rows, indent=1))
    text = section(rows, args)
    print(text)
    if not args.no_write:
        write_section(DOC, HEADING, text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
