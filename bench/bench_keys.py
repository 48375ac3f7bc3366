"""LiteLLM's memory against the number of keys: 1 key, then 1,000 distinct keys, same load.

A gateway keeps state per key (rate-limit windows, budgets, spend); a soak on one key never
grows it. Each run is one `soak once --phases memory` (the product, not a separate harness)
with `workload.keys` holding 1 or 1,000 keys, one per request in turn, against a managed
LiteLLM proxy that knows them. LiteLLM keeps virtual keys in its Postgres database through
Prisma, whose engines cannot be fetched on this machine (no internet); the proxy here knows
the keys through its documented `custom_auth` hook instead, which gives each key an
`rpm_limit` and a `tpm_limit`, so LiteLLM's own per-key rate limiter keeps a window per key
in memory, as it does for database keys. What this does not exercise: the database key
cache and spend writes.

The gateway is pinned to core 0, soak and its mock to core 1 (bench_gateways.py). Loads are
bounded (requests × concurrency / latency) and loopback only. Writes the figures under
`## LiteLLM memory against the number of keys` in docs/BENCHMARKS.md. Run:
    .venv/bin/python bench/bench_keys.py [--requests 3000] [--keys 1,1000] [--no-write]
"""

from __future__ import annotations

import argparse
import json
import secrets
import shlex
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench_gateways import GATEWAY_CORE, free_port, pinned, soak_once
from doc_section import write_section

from soak.reports.formatting import fmt_num

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "BENCHMARKS.md"
HEADING = "## LiteLLM memory against the number of keys"
RPM_LIMIT = 1_000_000
"""Each key's limits: far above the load, so every request passes, but set, so LiteLLM
tracks each key's usage window."""

CUSTOM_AUTH = f'''
"""Accept the keys listed in $BENCH_KEYS_FILE, each with its own rate limits."""
import os

from fastapi import Request
from litellm.proxy._types import UserAPIKeyAuth

with open(os.environ["BENCH_KEYS_FILE"]) as f:
    KEYS = {{line.strip(): n for n, line in enumerate(f) if line.strip()}}


async def user_api_key_auth(request: Request, api_key: str) -> UserAPIKeyAuth:
    key = api_key.removeprefix("Bearer ").strip()
    if key == os.environ.get("LITELLM_MASTER_KEY"):
        return UserAPIKeyAuth(api_key=key)
    if key not in KEYS:
        raise Exception("unknown key")
    return UserAPIKeyAuth(api_key=key, key_alias=f"bench-{{KEYS[key]}}",
                          rpm_limit={RPM_LIMIT}, tpm_limit={RPM_LIMIT * 1000})
'''

MERGE = """
import sys, yaml
src, dst = sys.argv[1], sys.argv[2]
config = yaml.safe_load(open(src))
config.setdefault("general_settings", {})["custom_auth"] = "custom_auth.user_api_key_auth"
yaml.safe_dump(config, open(dst, "w"))
"""


def gateway(work: Path) -> dict[str, Any]:
    """Managed LiteLLM: soak writes its config; the command adds `custom_auth` and starts it
    from `work`, where custom_auth.py lies (LiteLLM imports it next to its config)."""
    (work / "custom_auth.py").write_text(CUSTOM_AUTH)
    (work / "merge.py").write_text(MERGE)
    litellm = str(Path(sys.executable).with_name("litellm"))
    merged = work / "litellm.yaml"
    run = pinned(GATEWAY_CORE, [litellm, "--config", str(merged), "--host", "127.0.0.1",
                                "--port", "{port}", "--num_workers", "1"])  # fmt: skip
    script = (f"{shlex.quote(sys.executable)} {work}/merge.py {{config}} {merged} && "
              f"exec {' '.join(run)}")  # fmt: skip
    return {"name": "litellm", "kind": "litellm", "generate_key": True, "timeout": "10s",
            "managed": {"command": ["sh", "-c", script], "ready_timeout": "120s",
                        "env": {"BENCH_KEYS_FILE": str(work / "keys.txt")}}}  # fmt: skip


def run_keys(count: int, args: argparse.Namespace) -> dict[str, Any]:
    """One `soak once --phases memory` with `count` keys; the memory phase's figures."""
    with tempfile.TemporaryDirectory(prefix=f"bench-keys-{count}-") as tmp:
        work = Path(tmp)
        (work / "keys.txt").write_text(
            "".join(f"sk-bench-{secrets.token_hex(12)}\n" for _ in range(count))
        )
        mock_port = free_port()
        memory = {"requests": args.requests, "concurrency": args.concurrency,
                  "latency": args.latency, "warmup": "10s"}  # fmt: skip
        config = {
            "version": 1,
            "gateway": gateway(work),
            "mock": {"port": mock_port},
            "workload": {"keys": {"file": "keys.txt"}},
            "phases": {"memory": memory},
        }
        once = soak_once(work, config, "memory", name=f"{count} keys", timeout=1200)
    report = once.report
    phase = next(p for p in report["phases"] if p["name"] == "memory")
    if phase.get("error"):
        raise RuntimeError(f"{count} keys: {phase['error']}")
    d = phase["details"]
    return {"keys": count, "initial": d["initial"], "peak": d["peak"], "final": d["final"],
            "slope": d["slope_mb_per_min"], "sent": phase["sent"],
            "ok": phase["outcomes"].get("ok", 0), "p50": (phase["latency"] or {}).get("p50"),
            "status": phase["status"], "load": once.load, "seconds": once.seconds}  # fmt: skip


def section(rows: list[dict[str, Any]], args: argparse.Namespace) -> str:
    mb = 1024 * 1024
    lines = [
        HEADING,
        "",
        f"`bench/bench_keys.py`, {time.strftime('%Y-%m-%d', time.gmtime())}: one `soak once "
        f"--phases memory` per row ({args.requests} requests, ~{args.concurrency} in flight, "
        f"mock latency {args.latency}) against a managed LiteLLM proxy, one key per request in "
        "turn (`workload.keys`). The keys reach LiteLLM through its `custom_auth` hook with "
        "an rpm and tpm limit each (no Postgres here; see the bench's docstring).",
        "",
        "| keys | initial RSS MB | peak MB | final MB | growth MB | slope MB/min | "
        "answered | load average before → after | run |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['keys']} | {r['initial'] / mb:.1f} | {r['peak'] / mb:.1f} | "
            f"{r['final'] / mb:.1f} | {(r['final'] - r['initial']) / mb:+.1f} | "
            f"{fmt_num(r['slope'], 2)} | {r['ok']} / {r['sent']} | "
            f"{r['load'][0]:.2f} → {r['load'][1]:.2f} | {r['seconds']:.0f} s |"
        )
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--concurrency", type=int, default=5)
    parser.add_argument("--latency", default="100ms")
    parser.add_argument("--keys", default="1,1000")
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()
    rows = []
    for count in (int(k) for k in args.keys.split(",")):
        rows.append(run_keys(count, args))
        print(json.dumps(rows[-1]), flush=True)
    text = section(rows, args)
    print(text)
    if not args.no_write:
        write_section(DOC, HEADING, text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
