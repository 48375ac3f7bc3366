"""Shared parts of the CPU benches: the mock on its own core, one generator run on another, and
interleaved rounds whose best and median are reported.

A *generator run* is a child process pinned to the generator core (`taskset`); its CPU time
(user + system, its own children included) over the measured load divided by the requests it
completed is its CPU-ms per request. CPU time is what a dedicated core would spend, so it holds
up on a machine shared with other work far better than wall-clock throughput; rounds are still
interleaved (every configuration once per round, the order rotated) so a noisy minute hurts
every configuration alike, and figures are given next to a reference (`hey`) measured in the
same rounds.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
SERVER_CORE, GENERATOR_CORE = 0, 1
LATENCY_MS = 50.0
"""The mock's fixed latency (non-streamed answers, and time to the first token of a stream)."""
INTER_TOKEN_MS = 5.0
"""The mock's fixed gap between stream chunks."""
PROFILE = f"""
defaults:
  latency: {{model: fixed, value: {LATENCY_MS / 1e3}}}
  stream: {{ttft: {{model: fixed, value: {LATENCY_MS / 1e3}}},
            inter_token: {{model: fixed, value: {INTER_TOKEN_MS / 1e3}}}, tokens: 4096}}
  faults: {{error_rate: 0.0}}
  seed: 1
providers:
  primary: {{}}
  fallback: {{}}
"""


def load_average() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def children_cpu() -> float:
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


def tool_run(cmd: list[str], timeout: float) -> tuple[str, float, int]:
    """Run a reference tool as a child: its stdout, CPU seconds and wake-ups (voluntary
    context switches: each a sleep ended by a wake-up)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout).stdout
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
    return out, cpu, after.ru_nvcsw - before.ru_nvcsw


def stop(proc: subprocess.Popen[Any]) -> None:
    """End a process we started, by its own handle."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


@contextlib.contextmanager
def mock(core: int = SERVER_CORE, loop: str = "uvloop") -> Iterator[str]:
    """The mock provider (known latency and stream timing) in its own process on `core`;
    yields its base URL."""
    with tempfile.TemporaryDirectory(prefix="bench-cpu-") as tmp:
        profile = Path(tmp, "profile.yaml")
        profile.write_text(PROFILE)
        cmd = ["taskset", "-c", str(core), sys.executable, "-m", "soak.mock", "--port", "0",
               "--profile", str(profile), "--log-level", "warning", "--loop", loop]  # fmt: skip
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        try:
            assert proc.stdout is not None
            found = re.search(r"http://[\d.]+:\d+", proc.stdout.readline())
            if not found:
                raise RuntimeError("the mock did not start")
            yield found.group(0)
        finally:
            stop(proc)


def engine_run(opts: dict[str, Any], *, tree: str | None = None, core: int | str = GENERATOR_CORE,
               timeout: float = 300.0) -> dict[str, Any]:  # fmt: skip
    """One `engine_cpu.py` child pinned to `core` (a core number or a taskset list); `tree`
    runs another checkout's `soak` package (PYTHONPATH) with this same bench code."""
    env = dict(os.environ)
    if tree:
        env["PYTHONPATH"] = tree
    cmd = ["taskset", "-c", str(core), sys.executable, str(HERE / "engine_cpu.py"),
           json.dumps(opts)]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
    if proc.returncode != 0:
        tail = proc.stderr.strip().splitlines()[-3:]
        raise RuntimeError(f"engine_cpu failed ({proc.returncode}): {' | '.join(tail)}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def hey_run(url: str, rate: float, duration: float, workers: int = 50,
            core: int = GENERATOR_CORE) -> dict[str, Any]:  # fmt: skip
    """`hey -z D -c C -q rate/C` POSTing a chat request: its CPU per request and latencies."""
    message = {"role": "user", "content": "Hello, how are you?"}
    body = json.dumps({"model": "m", "max_tokens": 16, "messages": [message]})
    cmd = ["taskset", "-c", str(core), "hey", "-z", f"{duration:g}s", "-c", str(workers),
           "-q", f"{rate / workers:g}", "-m", "POST", "-T", "application/json", "-d", body,
           f"{url}/p/primary/v1/chat/completions"]  # fmt: skip
    out, cpu, wakes = tool_run(cmd, duration + 60)
    total = sum(int(n) for n in re.findall(r"\[\d+\]\s+(\d+) responses", out))
    ok = sum(int(n) for n in re.findall(r"\[200\]\s+(\d+) responses", out))
    rps = re.search(r"Requests/sec:\s+([\d.]+)", out)
    p50, p99 = (re.search(rf"{q}%+ in ([\d.]+) secs", out) for q in (50, 99))
    return {
        "completed": ok,
        "failed": total - ok,
        "achieved_rate": float(rps.group(1)) if rps else 0.0,
        "cpu_ms_per_request": cpu * 1e3 / max(1, ok),
        "wakes_per_request": wakes / max(1, ok),
        "latency_p50_ms": float(p50.group(1)) * 1e3 if p50 else None,
        "latency_p99_ms": float(p99.group(1)) * 1e3 if p99 else None,
    }


def wrk_stream_run(url: str, rate: float, tokens: int, duration: float,
                   core: int = GENERATOR_CORE) -> dict[str, Any]:  # fmt: skip
    """`wrk` (C, epoll, one read per event) reading streams of `tokens` chunks: a reader in C
    as the reference for the CPU per chunk. wrk has no rate option: a closed loop with as many
    connections as `rate` streams per second keep busy (rate × the stream's length)."""
    message = {"role": "user", "content": "Hello, how are you?"}
    body = json.dumps({"model": "m", "max_tokens": tokens, "messages": [message], "stream": True})
    connections = max(1, round(rate * (LATENCY_MS + (tokens - 1) * INTER_TOKEN_MS) / 1e3))
    with tempfile.TemporaryDirectory() as tmp:
        script = Path(tmp, "stream.lua")
        script.write_text(f'wrk.method = "POST"\nwrk.body = {json.dumps(body)}\n'
                          'wrk.headers["Content-Type"] = "application/json"\n')  # fmt: skip
        cmd = ["taskset", "-c", str(core), "wrk", "-t1", f"-c{connections}", f"-d{duration:g}s",
               "--latency", "-s", str(script), f"{url}/p/primary/v1/chat/completions"]  # fmt: skip
        out, cpu, wakes = tool_run(cmd, duration + 60)
    done = re.search(r"(\d+) requests in", out)
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    completed = int(done.group(1)) - (int(bad.group(1)) if bad else 0) if done else 0
    p50, p99 = (re.search(rf"^\s+{q}%\s+([\d.]+)(us|ms|s)", out, re.M) for q in (50, 99))
    scale = {"us": 1e-3, "ms": 1.0, "s": 1e3}
    return {
        "completed": completed,
        "failed": int(bad.group(1)) if bad else 0,
        "connections": connections,
        "cpu_ms_per_request": cpu * 1e3 / max(1, completed),
        "wakes_per_request": wakes / max(1, completed),
        "latency_p50_ms": float(p50.group(1)) * scale[p50.group(2)] if p50 else None,
        "latency_p99_ms": float(p99.group(1)) * scale[p99.group(2)] if p99 else None,
    }


def rounds(configs: dict[str, Callable[[], dict[str, Any]]], n: int,
           log: Callable[[str], None] = print, *,
           safe: bool = False) -> dict[str, list[dict[str, Any]]]:  # fmt: skip
    """Run every configuration once per round, `n` rounds, the order rotated each round;
    `safe`: a configuration that raises is recorded as `{"error": ...}` and the rest go on."""
    names = list(configs)
    out: dict[str, list[dict[str, Any]]] = {name: [] for name in names}
    for i in range(n):
        order = names[i % len(names) :] + names[: i % len(names)]
        for name in order:
            t0 = time.perf_counter()
            try:
                r = configs[name]()
            except Exception as exc:
                if not safe:
                    raise
                r = {"error": f"{type(exc).__name__}: {str(exc).splitlines()[0][:160]}"}
                out[name].append(r)
                log(f"round {i + 1} {name}: {r['error']}")
                continue
            out[name].append(r)
            log(f"round {i + 1} {name}: cpu {r['cpu_ms_per_request']:.3f} ms/req,"
                f" {r['completed']} ok, {r.get('failed', 0)} failed,"
                f" p50 {fmt(r.get('latency_p50_ms'))} p99 {fmt(r.get('latency_p99_ms'))} ms,"
                f" load {load_average()} ({time.perf_counter() - t0:.0f} s)")  # fmt: skip
    return out


def best(runs: list[dict[str, Any]], key: str = "cpu_ms_per_request") -> dict[str, Any]:
    """The run with the lowest `key`, with the median of `key` over all runs added."""
    chosen = dict(min(runs, key=lambda r: r[key]))
    chosen[f"{key}_median"] = statistics.median(r[key] for r in runs)
    return chosen


def fmt(value: float | None, digits: int = 2) -> str:
    return "—" if value is None else f"{value:.{digits}f}"
