"""bench/bench_engine.py's CPU sections: CPU-ms per request before and after (`--cpu`), and
`engine.workers` 1 against 2 (`--workers-bench`). See bench_engine.py's docstring."""

from __future__ import annotations

import argparse
import functools
from collections.abc import Callable
from typing import Any

import cpu_bench


def cpu_section(args: argparse.Namespace, loops: list[str]) -> dict[str, Any]:
    """CPU-ms per request (and per stream chunk) of each tree, loop and path, next to hey."""
    trees: dict[str, str | None] = {}
    for item in filter(None, args.trees.split(",")):
        name, _, path = item.partition("=")
        trees[name] = path or None  # "name=": this checkout
    rates = [float(r) for r in args.cpu_rates.split(",")]
    dur, sr = args.cpu_duration, args.stream_rate
    load_before = cpu_bench.load_average()
    with cpu_bench.mock() as url:
        configs: dict[str, Callable[[], dict[str, Any]]] = {}
        for tree, path in trees.items():
            for loop in loops:
                base = {"url": url, "duration": dur, "loop": loop}
                for rate in rates:
                    configs[f"{tree} {loop} engine json {rate:g}"] = functools.partial(
                        cpu_bench.engine_run, {**base, "rate": rate}, tree=path
                    )
                configs[f"{tree} {loop} full json {rates[0]:g}"] = functools.partial(
                    cpu_bench.engine_run, {**base, "rate": rates[0], "path": "full"}, tree=path
                )
                for tokens in (8, 64):
                    configs[f"{tree} {loop} engine stream{tokens} {sr:g}"] = functools.partial(
                        cpu_bench.engine_run,
                        {**base, "rate": sr, "stream": True, "max_tokens": tokens},
                        tree=path,
                    )
        for loop in loops:
            for tokens in (8, 64):
                opts = {"url": url, "duration": dur, "loop": loop, "rate": sr, "stream": True,
                        "max_tokens": tokens, "path": "floor"}  # fmt: skip
                configs[f"floor {loop} engine stream{tokens} {sr:g}"] = functools.partial(
                    cpu_bench.engine_run, opts
                )
            for rate in sorted({500.0, *rates}):  # one bare wake-up per scheduled time
                wake = {"duration": dur, "loop": loop, "rate": rate, "path": "wake"}
                configs[f"wake {loop} {rate:g}"] = functools.partial(cpu_bench.engine_run, wake)
        for tokens in (8, 64):
            configs[f"wrk {tokens}"] = functools.partial(
                cpu_bench.wrk_stream_run, url, sr, tokens, dur
            )
        for rate in rates:
            configs[f"hey json {rate:g}"] = functools.partial(cpu_bench.hey_run, url, rate, dur)
        runs = cpu_bench.rounds(configs, args.rounds)
    summary = {name: cpu_bench.best(r) for name, r in runs.items()}
    pairs = {f"{tree} {loop}": (f"{tree} {loop} engine stream8 {sr:g}",
                                f"{tree} {loop} engine stream64 {sr:g}")
             for tree in [*trees, "floor"] for loop in loops}  # fmt: skip
    pairs["wrk"] = ("wrk 8", "wrk 64")
    for name, (eight, sixty_four) in pairs.items():  # the slope over the 56 extra chunks
        short, long = summary[eight], summary[sixty_four]
        summary[f"{name} per chunk"] = {
            "cpu_ms_per_chunk": (long["cpu_ms_per_request"] - short["cpu_ms_per_request"]) / 56,
            "cpu_ms_per_chunk_median": (
                long["cpu_ms_per_request_median"] - short["cpu_ms_per_request_median"]
            ) / 56,
            "cpu_ms_per_stream_8": short["cpu_ms_per_request"],
        }
    print(f"load average before {load_before}, after {cpu_bench.load_average()}")
    for name, r in summary.items():
        if "cpu_ms_per_chunk" in r:
            print(f"{name:40s} best {r['cpu_ms_per_chunk']:.4f} median"
                  f" {r['cpu_ms_per_chunk_median']:.4f} CPU-ms per chunk")
        else:
            print(
                f"{name:40s} best {r['cpu_ms_per_request']:.3f} median"
                f" {r['cpu_ms_per_request_median']:.3f} CPU-ms/req, p50"
                f" {cpu_bench.fmt(r.get('latency_p50_ms'))} p99"
                f" {cpu_bench.fmt(r.get('latency_p99_ms'))} ms, wakes/req"
                f" {cpu_bench.fmt(r.get('wakes_per_request'))}"
            )
    return {
        "load_before": load_before,
        "load_after": cpu_bench.load_average(),
        "summary": summary,
        "runs": runs,
    }


def workers_section(args: argparse.Namespace) -> dict[str, Any]:
    """engine.workers 1 (core 1) and 2 (cores 0 and 1, the mock on core 0 too), per rate."""
    rates = [float(r) for r in args.workers_rates.split(",")]
    dur = args.cpu_duration
    load_before = cpu_bench.load_average()
    with cpu_bench.mock() as url:
        configs: dict[str, Callable[[], dict[str, Any]]] = {}
        for rate in rates:
            for n, cores in ((1, str(cpu_bench.GENERATOR_CORE)), (2, "0,1")):
                opts = {"url": url, "rate": rate, "duration": dur, "workers": n,
                        "connections": 2000, "loop": "asyncio", "warmup": 0.5}  # fmt: skip
                configs[f"workers {n} {rate:g}"] = functools.partial(
                    cpu_bench.engine_run, opts, core=cores
                )
        runs = cpu_bench.rounds(configs, args.rounds, safe=True)
    summary: dict[str, Any] = {}
    for name, results in runs.items():
        ok = [r for r in results if "error" not in r]
        if not ok:
            summary[name] = {"error": results[-1]["error"]}
            continue
        rate = float(name.rsplit(" ", 1)[1])
        best = max(ok, key=lambda r: (r["completed"], -r["cpu_ms_per_request"]))
        best["held"] = best["failed"] == 0 and best["completed"] >= 0.99 * rate * dur
        best["requests_per_cpu_s"] = 1e3 / best["cpu_ms_per_request"]
        summary[name] = best
        print(f"{name:20s} held={best['held']!s:5s} completed={best['completed']}"
              f" achieved={best['achieved_rate']:.0f}/s cpu={best['cpu_ms_per_request']:.3f}"
              f" ms/req ({best['requests_per_cpu_s']:.0f} req/CPU-s) p50"
              f" {cpu_bench.fmt(best.get('latency_p50_ms'))} p99"
              f" {cpu_bench.fmt(best.get('latency_p99_ms'))} trusted={best['trusted']}"
              f" {best['reasons'][:2]}", flush=True)  # fmt: skip
    print(f"load average before {load_before}, after {cpu_bench.load_average()}")
    return {"load_before": load_before, "load_after": cpu_bench.load_average(),
            "summary": summary, "runs": runs}  # fmt: skip
