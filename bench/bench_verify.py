"""Benchmark answer verification: what checking every answer against the mock's trace costs.

1. 10,000 real attempts at a mock provider (its own process, loopback), then one
   `MockControl.traces()` call for all 10,000 nonces (5 control requests of 2,000): wall time,
   the mock's CPU and the tester's CPU; then `Verification.apply` on the 10,000 results.
2. The same open-loop load (rate × duration) without and with a `TraceVerifier` querying
   during the load, alternated for `--rounds` rounds: per-request overhead p50 / p99 (median
   over the rounds) and the number of trace queries, to show the queries do not perturb what
   is measured.

Prints the figures (and, without --no-write, writes them under `## Verification` in
docs/BENCHMARKS.md). Every process it starts is stopped by its PID.

    python bench/bench_verify.py [--nonces 10000] [--rate 200] [--duration 5] [--rounds 5]
                                 [--no-write]
"""

from __future__ import annotations

import argparse
import asyncio
import re
import socket
import statistics
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import psutil

from soak.client import ChatClient, make_session
from soak.engine import LoadSpec, run_load
from soak.mockctl import MockControl
from soak.results import Result
from soak.stats import overhead_per_request
from soak.verify import TraceVerifier, Verification

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "BENCHMARKS.md"
HEADING = "## Verification"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_mock(port: int) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "soak", "mock", "--port", str(port), "--latency", "5ms",
         "--log-level", "warning"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return proc
        time.sleep(0.05)
    proc.kill()
    raise SystemExit("the mock did not start within 30 s")


async def load(url: str, rate: float, duration: float, run_id: str,
               verifier_of: object = None) -> tuple[list[Result], int]:  # fmt: skip
    """One open-loop load at `url`; with `verifier_of` (a MockControl) answers are verified
    during it. Returns the results and the number of trace queries."""
    spec = LoadSpec(rate=rate, duration=duration, max_inflight=2000, drain_timeout=10)
    async with make_session(2000, 10.0) as session:
        client = ChatClient(session, url, model="m", run_id=run_id, timeout=10.0)
        if verifier_of is None:
            run = await run_load(spec, client.send)
            return run.results, 0
        verifier = TraceVerifier(verifier_of.traces, lambda _r: None)  # type: ignore[attr-defined]
        verifier.start()
        run = await run_load(spec, client.send, on_result=verifier.add)
        tally = await verifier.close()
        assert tally.failed == 0, tally.to_dict()
        return run.results, verifier.queries


async def measure(args: argparse.Namespace, base: str, mock_pid: int) -> dict[str, float]:
    url = f"{base}/p/primary/v1/chat/completions"
    figures: dict[str, float] = {}
    rate = 2000.0
    results, _ = await load(url, rate, args.nonces / rate, "bench-fill")
    nonces = [r.nonce for r in results if r.nonce]
    figures["attempts"] = len(nonces)
    mock = psutil.Process(mock_pid)
    async with MockControl(base) as control:
        await control.traces(nonces[:10])  # connection up
        cpu0, own0, wall0 = sum(mock.cpu_times()[:2]), time.process_time(), time.perf_counter()
        traces = await control.traces(nonces)
        wall = time.perf_counter() - wall0
        figures["query_wall_ms"] = wall * 1e3
        figures["query_mock_cpu_ms"] = (sum(mock.cpu_times()[:2]) - cpu0) * 1e3
        figures["query_tester_cpu_ms"] = (time.process_time() - own0) * 1e3
        offset = time.time() - time.perf_counter()
        own0 = time.process_time()
        tally = Verification()
        tally.apply(results, traces, offset=offset)
        figures["apply_cpu_ms"] = (time.process_time() - own0) * 1e3
        assert tally.checked == len(results) and tally.failed == 0, tally.to_dict()
        rounds: dict[str, list[tuple[float, float, int, int]]] = {"off": [], "on": []}
        for n in range(args.rounds):
            order = [("off", None), ("on", control)]
            for label, verify in order if n % 2 == 0 else order[::-1]:  # no order bias
                got, queries = await load(url, args.rate, args.duration, f"b{n}-{label}", verify)
                summary = overhead_per_request(got)
                assert summary is not None
                rounds[label].append((summary.p50 * 1e6, summary.p99 * 1e6, queries, len(got)))
        for label, rows in rounds.items():
            figures[f"{label}_p50_us"] = statistics.median(r[0] for r in rows)
            figures[f"{label}_p99_us"] = statistics.median(r[1] for r in rows)
            figures[f"{label}_queries"] = statistics.median(r[2] for r in rows)
            figures[f"{label}_requests"] = statistics.median(r[3] for r in rows)
            figures[f"{label}_p99_all"] = " / ".join(f"{r[1] / 1e3:.1f}" for r in rows)
    return figures


def render(figures: dict, args: argparse.Namespace) -> str:
    f = figures
    when = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    n = int(f["attempts"])
    query = (
        f"{f['query_wall_ms']:.0f} ms wall; mock CPU {f['query_mock_cpu_ms']:.0f} ms;"
        f" tester CPU {f['query_tester_cpu_ms']:.0f} ms"
    )
    rows = "\n".join(
        f"| {label} | {f[f'{label}_requests']:.0f} | {f[f'{label}_queries']:.0f} |"
        f" {f[f'{label}_p50_us']:.0f} µs | {f[f'{label}_p99_us']:.0f} µs |"
        f" {f[f'{label}_p99_all']} |"
        for label in ("off", "on")
    )
    return f"""{HEADING}

Measured {when} by `python bench/bench_verify.py` on this 2-core machine (shared with
other work while it ran); a mock provider in its own process at 5 ms latency, loopback.

| step | figure |
|---|---|
| one `MockControl.traces()` of {n:,} nonces (control requests of 2,000) | {query} |
| `Verification.apply` on the {n:,} results | {f["apply_cpu_ms"]:.0f} ms CPU |
| per nonce, query + apply | {(f["query_wall_ms"] + f["apply_cpu_ms"]) * 1e3 / n:.1f} µs |

Per-request overhead, {args.rate:g} req/s for {args.duration:g} s straight at the mock, without
and with verification during the load, alternated {args.rounds} times, the order swapped every
round (medians; every round's
p99 in ms in the last column):

| verification | requests | trace queries | overhead p50 | overhead p99 | p99 per round |
|---|---|---|---|---|---|
{rows}
"""


def write(section: str) -> None:
    text = DOC.read_text() if DOC.exists() else "# Benchmarks\n"
    pattern = re.compile(rf"^{re.escape(HEADING)}\n.*?(?=^## |\Z)", re.S | re.M)
    if pattern.search(text):
        text = pattern.sub(section + "\n", text)
    else:
        text = f"{text.rstrip()}\n\n{section}"
    DOC.write_text(text)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--nonces", type=int, default=10_000)
    p.add_argument("--rate", type=float, default=200.0)
    p.add_argument("--duration", type=float, default=5.0)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--no-write", action="store_true")
    args = p.parse_args()
    port = free_port()
    proc = start_mock(port)
    try:
        figures = asyncio.run(measure(args, f"http://127.0.0.1:{port}", proc.pid))
    finally:
        proc.terminate()
        proc.wait(10)
    section = render(figures, args)
    print(section)
    if not args.no_write:
        write(section)


if __name__ == "__main__":
    main()
