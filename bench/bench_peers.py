"""llm-soak's engine next to the load generators and LLM benchmarkers people use, side by side.

Every tool drives the same mock provider (its own process, pinned to core 0, a fixed 50 ms
latency; streams: first token after 50 ms, then one every 5 ms) from core 1 (`taskset`), in
interleaved rounds (every tool once per round, the order rotated), best of the rounds. Per tool
and rate: the rate it achieved, its latency error at p50 / p99 (what it measured minus the
mock's 50 ms), its CPU per request (the child's CPU time over the requests it completed), and
for streams its TTFT and inter-token error. A rate is *held* when the tool completed at least
99% of the requests the rate asks for in the run, with no failure. CPU is the whole process's,
start-up included, for every tool (llm-soak's bench/engine_cpu.py too, without a warm-up).

- llm-soak: bench/engine_cpu.py (its engine and client; asyncio and uvloop), open loop, latency
  from the intended send time.
- hey (Go, `-q` per worker), wrk (C, closed loop: `-c` = rate x latency connections, so it
  offers about the rate), Locust (Python, FastHttpUser at a constant throughput per user).
- LLM benchmarkers from PyPI, in their own virtualenv (`--peers-venv`, Python 3.12: one needs
  it), never a project dependency: inference-perf, AIPerf, GuideLLM. Each is given a tiny
  tokenizer built here with `tokenizers` (a word-level vocabulary, saved as a local
  `tokenizer.json` directory), so nothing is downloaded from a model hub.

Prints a markdown table (and `--json-out`). Every process it starts is stopped by its handle;
traffic stays on 127.0.0.1.

    .venv/bin/python bench/bench_peers.py [--rates 500,1000,2000] [--rounds 3] [--duration 8]
        [--peers-venv /tmp/peers-venv] [--tools soak,hey,wrk,locust,...] [--json-out F]
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import signal
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import cpu_bench
import peer_tools

LATENCY_MS, ITL_MS = cpu_bench.LATENCY_MS, cpu_bench.INTER_TOKEN_MS
STREAM_TOKENS = 64


def soak_run(url: str, rate: float, duration: float, *, loop: str, stream: bool) -> dict[str, Any]:
    opts = {"url": url, "rate": rate, "duration": duration, "loop": loop, "stream": stream,
            "max_tokens": STREAM_TOKENS if stream else 16, "connections": 2000,
            "whole": True, "warmup": 0}  # fmt: skip
    return cpu_bench.engine_run(opts)


def held(r: dict[str, Any], rate: float, duration: float) -> bool:
    return r.get("failed", 0) == 0 and r["completed"] >= 0.99 * rate * duration


def errors(r: dict[str, Any], stream: bool) -> dict[str, Any]:
    """Latency error (ms) against the mock's known timing."""
    out: dict[str, Any] = {}
    for key in ("latency_p50_ms", "latency_p99_ms"):
        if r.get(key) is not None and not stream:  # a stream's length differs by tool
            out[key.replace("latency", "error")] = r[key] - LATENCY_MS
    for key, base in (("ttft_p50_ms", LATENCY_MS), ("ttft_p99_ms", LATENCY_MS),
                      ("itl_p50_ms", ITL_MS), ("itl_p99_ms", ITL_MS)):  # fmt: skip
        if r.get(key) is not None:
            out[key.replace("_ms", "_error_ms")] = r[key] - base
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rates", default="500,1000,2000,4000")
    p.add_argument("--llm-rates", default="100,500,1000", help="for the LLM benchmarkers")
    p.add_argument("--stream-rate", type=float, default=50.0)
    p.add_argument("--duration", type=float, default=8.0)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--peers-venv", type=Path, default=Path("/tmp/peers-venv"))
    p.add_argument("--tools", default=",".join(["soak", "soak-uvloop", *peer_tools.TOOLS]))
    p.add_argument("--json-out", type=Path)
    args = p.parse_args(argv)
    # SIGTERM unwinds like Ctrl-C, so the mock we started is stopped
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    os.sched_setaffinity(0, {cpu_bench.GENERATOR_CORE})
    tools = args.tools.split(",")
    rates = [float(r) for r in args.rates.split(",")]
    dur = args.duration
    load_before = cpu_bench.load_average()
    with tempfile.TemporaryDirectory(prefix="bench-peers-") as tmp, cpu_bench.mock() as url:
        env = peer_tools.Env(Path(tmp), args.peers_venv, url)
        configs: dict[str, Callable[[], dict[str, Any]]] = {}
        unavailable: dict[str, str] = {}
        for tool in tools:
            if tool in ("soak", "soak-uvloop"):
                loop = "uvloop" if tool == "soak-uvloop" else "asyncio"
                for rate in rates:
                    configs[f"{tool} json {rate:g}"] = functools.partial(
                        soak_run, url, rate, dur, loop=loop, stream=False)  # fmt: skip
                configs[f"{tool} stream {args.stream_rate:g}"] = functools.partial(
                    soak_run, url, args.stream_rate, dur, loop=loop, stream=True)  # fmt: skip
                continue
            why = peer_tools.missing(tool, env)
            if why:
                unavailable[tool] = why
                print(f"{tool}: not run: {why}", flush=True)
                continue
            runner = peer_tools.TOOLS[tool]
            llm = tool in peer_tools.STREAMING
            for rate in [float(r) for r in args.llm_rates.split(",")] if llm else rates:
                configs[f"{tool} json {rate:g}"] = functools.partial(
                    runner, env, rate, dur, stream=False)  # fmt: skip
            if tool in peer_tools.STREAMING:
                configs[f"{tool} stream {args.stream_rate:g}"] = functools.partial(
                    runner, env, args.stream_rate, dur, stream=True)  # fmt: skip
        runs = cpu_bench.rounds(configs, args.rounds, safe=True)
    summary: dict[str, Any] = {}
    for name, results in runs.items():
        ok = [r for r in results if "error" not in r]
        if not ok:
            summary[name] = {"error": results[-1]["error"]}
            continue
        best = cpu_bench.best(ok)
        tool, kind, rate = name.rsplit(" ", 2)
        best.update(errors(best, kind == "stream"))
        best["held"] = held(best, float(rate), dur)
        summary[name] = best
    print(f"\nload average before {load_before}, after {cpu_bench.load_average()}")
    print(table(summary, dur))
    for tool, why in unavailable.items():
        print(f"- {tool}: {why}")
    if args.json_out:
        args.json_out.write_text(json.dumps({"summary": summary, "runs": runs,
                                             "unavailable": unavailable,
                                             "load": [load_before, cpu_bench.load_average()]},
                                            indent=2, default=str))  # fmt: skip
    return 0


def table(summary: dict[str, Any], duration: float) -> str:
    fmt = cpu_bench.fmt
    lines = [
        "| tool | load | rate asked | achieved | held | error p50 / p99 (ms) | TTFT error p50 / "
        "p99 (ms) | ITL error p50 / p99 (ms) | CPU-ms per request | req per CPU-s |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, r in summary.items():
        tool, kind, rate = name.rsplit(" ", 2)
        if "error" in r:
            lines.append(f"| {tool} | {kind} | {rate} | — | no | failed: {r['error']} |||||")
            continue
        cpu = r["cpu_ms_per_request"]
        achieved = r["completed"] / duration
        lines.append(
            f"| {tool} | {kind} | {rate} | {achieved:,.0f} | {'yes' if r['held'] else 'no'} | "
            f"{fmt(r.get('error_p50_ms'))} / {fmt(r.get('error_p99_ms'))} | "
            f"{fmt(r.get('ttft_p50_error_ms'))} / {fmt(r.get('ttft_p99_error_ms'))} | "
            f"{fmt(r.get('itl_p50_error_ms'))} / {fmt(r.get('itl_p99_error_ms'))} | "
            f"{cpu:.3f} | {1e3 / cpu:,.0f} |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    raise SystemExit(main())
