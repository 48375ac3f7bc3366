"""One measured load of llm-soak's engine, in its own process: what it cost in CPU per request.

The generator side of bench/bench_engine.py (`--cpu`) and bench/bench_peers.py: run as a child
pinned to its own core, it warms up, then runs one open-loop load against a URL and prints one
JSON line: CPU seconds (user, system; its worker processes included) over the measured load
only, requests completed, stream chunks, and the latency error against the mock's known
timing. Two paths:

- `engine`: `run_load` + `ChatClient` (build the body, send, read, parse, find the marker,
  build the `Result`);
- `full`: a phase's `measure()` through a "gateway" that is the mock itself, so every answer is
  also checked against the mock's trace, counted in `SoakMetrics`, shown by the progress
  reporter and summarised into the phase report (what a daemon does per request);
- `floor`: a reader that only looks for the end of each stream, so a stream chunk costs only
  its read (event loop and kernel): the floor under the client's cost per chunk;
- `wake`: no request at all, the loop only sleeps until each due time of the schedule: what one
  wake-up of an idle event loop costs at that rate (the floor under a request at low rates,
  which wakes the loop at least for its send and for its answer).

Every run also reports `wakes_per_request`: the process's voluntary context switches (sleeps
in the kernel, each ended by a wake-up) over the measured load, per request completed.

    python bench/engine_cpu.py '{"url": "http://127.0.0.1:8100", "rate": 1000, ...}'
"""

from __future__ import annotations

import asyncio
import io
import json
import resource
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

DEFAULTS: dict[str, Any] = {
    "url": "http://127.0.0.1:8100",
    "rate": 1000.0,
    "duration": 10.0,
    "path": "engine",  # engine | full | floor | wake
    "loop": "asyncio",  # asyncio | uvloop
    "stream": False,
    "max_tokens": 16,
    "connections": 1000,
    "workers": 1,
    "warmup": 1.0,
}


def cpu_now(*, children: bool = True, at: dict[str, float] | None = None) -> dict[str, float]:
    """CPU seconds of this process (and its waited-for children), user and system; `at`: an
    earlier reading, returned as this process's own part."""
    if at is not None:
        return {"user": at["self_user"], "sys": at["self_sys"], "wakes": at["self_wakes"]}
    me = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN) if children else None
    return {
        "user": me.ru_utime + (kids.ru_utime if kids else 0.0),
        "sys": me.ru_stime + (kids.ru_stime if kids else 0.0),
        "self_user": me.ru_utime,
        "self_sys": me.ru_stime,
        "wakes": me.ru_nvcsw + (kids.ru_nvcsw if kids else 0),
        "self_wakes": me.ru_nvcsw,
    }


def percentile(values: list[float], q: float) -> float | None:
    """Nearest-rank percentile (None for no values)."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(0, min(len(ordered) - 1, round(q / 100 * len(ordered) + 0.5) - 1))]


def summary(results: list[Any], opts: dict[str, Any]) -> dict[str, Any]:
    """Latency figures of the successful results (ms): client latency from the intended send,
    TTFT and inter-chunk gaps for streams."""
    ok = [r for r in results if r.ok]
    lat = [(r.end - r.intended) * 1e3 for r in ok]
    out: dict[str, Any] = {
        "latency_p50_ms": percentile(lat, 50),
        "latency_p99_ms": percentile(lat, 99),
        "send_lag_p99_ms": percentile([(r.sent - r.intended) * 1e3 for r in results], 99),
    }
    if opts["stream"]:
        ttft = [(r.first_token - r.sent) * 1e3 for r in ok if r.first_token is not None]
        gaps = [g * 1e3 for r in ok if r.chunk_gaps is not None for g in r.chunk_gaps]
        out.update(
            ttft_p50_ms=percentile(ttft, 50), ttft_p99_ms=percentile(ttft, 99),
            itl_p50_ms=percentile(gaps, 50), itl_p99_ms=percentile(gaps, 99),
            chunks=sum(r.chunks for r in ok),
        )  # fmt: skip
    return out


async def engine_load(
    opts: dict[str, Any], rate: float, duration: float, run_id: str
) -> tuple[Any, None]:
    from soak.client import ChatClient, make_session
    from soak.engine import LoadSpec, run_load

    spec = LoadSpec(rate=rate, duration=duration, max_inflight=20000, drain_timeout=30.0)
    url = f"{opts['url']}/p/primary/v1/chat/completions"
    async with make_session(opts["connections"], 30.0) as session:
        client = ChatClient(session, url, model="m", run_id=run_id, stream=opts["stream"],
                            max_tokens=opts["max_tokens"])  # fmt: skip
        if opts["workers"] == 1:
            return await run_load(spec, client.send), None
        from soak.workers import run_load_workers

        run = await run_load_workers(spec, client, workers=opts["workers"],
                                     connections=opts["connections"])  # fmt: skip
        return run, None


async def floor_load(
    opts: dict[str, Any], rate: float, duration: float, run_id: str
) -> tuple[Any, None]:
    """A reader that does nothing with the answer but find its end (`[DONE]`), on a new
    connection per request: what the event loop and the kernel cost per read by themselves
    (the floor under the client's per-chunk cost; streams only)."""
    from urllib.parse import urlsplit

    from soak.engine import LoadSpec, run_load
    from soak.results import Outcome, Result

    url = urlsplit(opts["url"])
    body = json.dumps({"model": "m", "messages": [{"role": "user", "content": "Hello"}],
                       "max_tokens": opts["max_tokens"], "stream": True}).encode()  # fmt: skip
    request = (b"POST /p/primary/v1/chat/completions HTTP/1.1\r\nHost: x\r\n"
               b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n%s"
               % (len(body), body))  # fmt: skip
    store = bytearray(262144)
    buffer = memoryview(store)
    loop = asyncio.get_running_loop()

    class Reader(asyncio.BufferedProtocol):
        def __init__(self, done: asyncio.Future[None]) -> None:
            self.done = done

        def connection_made(self, transport: Any) -> None:
            transport.write(request)

        def get_buffer(self, sizehint: int) -> memoryview:
            return buffer

        def buffer_updated(self, nbytes: int) -> None:
            if store.find(b"[DONE]", 0, nbytes) >= 0 and not self.done.done():
                self.done.set_result(None)

    async def send(seq: int, intended: float) -> Result:
        sent = time.perf_counter()
        done = loop.create_future()
        transport, _ = await loop.create_connection(lambda: Reader(done), url.hostname, url.port)
        try:
            await done
        finally:
            transport.close()
        return Result(seq, intended, sent, time.perf_counter(), Outcome.OK, 200)

    spec = LoadSpec(rate=rate, duration=duration, max_inflight=20000, drain_timeout=30.0)
    return await run_load(spec, send), None


async def full_load(
    opts: dict[str, Any], rate: float, duration: float, run_id: str
) -> tuple[Any, Any]:
    """`measure()` with verification, metrics and progress, as a daemon's phase runs it."""
    from prometheus_client import CollectorRegistry

    from soak.metrics import SoakMetrics
    from soak.mockctl import MockControl
    from soak.phases import PhaseContext, Target, load_config
    from soak.phases.base import measure
    from soak.reports.progress import Progress

    url = opts["url"]
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp, "soak.yaml")
        engine = {"max_inflight": 20000}
        if opts["workers"] != 1:
            engine["workers"] = opts["workers"]
        path.write_text(json.dumps({
            "version": 1, "gateway": {"url": url}, "mock": {"url": url}, "engine": engine,
            "request": {"stream": opts["stream"], "max_tokens": opts["max_tokens"]},
        }))  # fmt: skip
        config = load_config(path, env={})
    metrics = SoakMetrics(CollectorRegistry())
    async with MockControl(url) as mock:
        target = Target("gw", f"{url}/p/primary/v1/chat/completions", "m")
        ctx = PhaseContext(
            config=config, run_id=run_id, mock=mock, direct=target, gateway=target,
            progress=Progress(stream=io.StringIO(), tty=False), stop=asyncio.Event(),
            observe=lambda r, phase: metrics.observe(r, target="gw", phase=phase),
        )  # fmt: skip
        run, report = await measure(
            ctx, name="overhead", kind="overhead", target=target, rate=rate,
            duration=duration, timeout=30.0, params={},
        )  # fmt: skip
    return run, report.verification


async def wake_only(opts: dict[str, Any]) -> dict[str, Any]:
    """The `wake` path: sleep until each due time of a constant-rate schedule, nothing else."""
    rate, count = opts["rate"], round(opts["rate"] * opts["duration"])
    clock, sleep = time.perf_counter, asyncio.sleep
    before, t0 = cpu_now(), clock()
    for i in range(count):
        delay = t0 + i / rate - clock()
        if delay > 0:
            await sleep(delay)
    after = cpu_now()
    return {**opts, "completed": count, "failed": 0, "wall_s": clock() - t0,
            **cost(before, after, count)}  # fmt: skip


def cost(before: dict[str, float], after: dict[str, float], done: int) -> dict[str, float]:
    """CPU seconds between two `cpu_now` readings, and per request completed: CPU-ms and
    wake-ups."""
    user, sys_ = after["user"] - before["user"], after["sys"] - before["sys"]
    return {"cpu_user_s": user, "cpu_sys_s": sys_,
            "cpu_ms_per_request": (user + sys_) * 1e3 / max(1, done),
            "wakes_per_request": (after["wakes"] - before["wakes"]) / max(1, done)}  # fmt: skip


async def main_async(opts: dict[str, Any]) -> dict[str, Any]:
    if opts["path"] == "wake":
        return await wake_only(opts)
    load = {"full": full_load, "floor": floor_load}.get(opts["path"], engine_load)
    if opts["warmup"] > 0:  # connections opened, code paths warm, nothing measured
        await load(opts, min(opts["rate"], 500.0), opts["warmup"], "warm")
    before, wall0 = cpu_now(), time.perf_counter()
    if opts.get("whole"):  # from the process's start: imports and start-up counted too
        before = dict.fromkeys(("user", "sys", "self_user", "self_sys", "wakes", "self_wakes"), 0)
    run, verification = await load(opts, opts["rate"], opts["duration"], "cpu")
    after, wall = cpu_now(), time.perf_counter() - wall0
    workers_cpu = getattr(run, "worker_cpu_s", 0.0)
    if workers_cpu:  # worker processes: their CPU during the load, not their start-up
        before, after = cpu_now(children=False, at=before), cpu_now(children=False)
        after["user"] += workers_cpu
    health = run.generator
    out = {
        **opts,
        "sent": run.sent,
        "completed": sum(r.ok for r in run.results),
        "failed": sum(not r.ok for r in run.results),
        "drops": run.drops,
        "achieved_rate": run.achieved_rate,
        "wall_s": wall,
        "trusted": None if health is None else health.trusted,
        "reasons": [] if health is None else list(health.reasons),
        "verification": verification,
        **summary(run.results, opts),
    }
    return {**out, **cost(before, after, out["completed"])}


def main(argv: list[str]) -> int:
    opts = {**DEFAULTS, **(json.loads(argv[0]) if argv else {})}
    factory = None
    if opts["loop"] == "uvloop":  # not soak.eventloop: `--trees` runs older soak packages too
        import uvloop

        factory = uvloop.new_event_loop
    with asyncio.Runner(loop_factory=factory) as runner:
        out = runner.run(main_async(opts))
    print(json.dumps(out), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
