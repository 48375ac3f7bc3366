"""Every core: one load in N worker processes, each an event loop with its share of the arrivals.

Worker k of N sends requests k, k+N, k+2N, ... of the configured schedule (`LoadSpec.worker`)
at their due times from one shared t0, so the merged arrivals are exactly the configured process
(constant or Poisson) and every nonce is unique. Each worker has its own connections (its share
of the pool), its share of the in-flight cap and its own self-watch. It sends its Results to the
parent as they come, in compact batches (pickled rows, every `FLUSH` seconds and the first one
at once), so everything that reads Results (verification against the mock's trace, the daemon's
metrics, progress, the report's exact HDR statistics) runs in the parent on the very records one
process would have made. The parent merges the counts and the health: a worker that fell
behind makes the whole run untrusted, its reasons named with its number. `workers: 1` runs in
process, exactly as before.

The workers' timestamps are `time.perf_counter`: CLOCK_MONOTONIC on Linux, one clock for every
process of the machine, so they compare with the parent's. A worker whose parent goes away sees
its stdin close, stops sending and exits after its drain.

    python -m soak.workers   (started by `run_load_workers`: frames on stdin and stdout)
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import math
import os
import pickle
import struct
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, fields, replace
from operator import attrgetter
from typing import Any

from soak.client import ChatClient, make_session
from soak.engine import LoadRun, LoadSpec, run_load
from soak.eventloop import loop_factory, loop_name
from soak.results import Result
from soak.selfwatch import HealthBounds, merge_health, send_lag_p99

FLUSH = 0.05
"""Seconds a worker holds finished Results before sending them to the parent."""
LEAD = 0.1
"""Seconds between the start signal and t0, so every worker starts the schedule together."""
STARTUP = 60.0
"""Seconds the workers may take to start (import, open their loop) before the run fails."""
STOP_GRACE = 5.0
"""Seconds a cancelled run gives its workers to stop before they are killed."""
_LEN = struct.Struct("<I")
_ROW = attrgetter(*(f.name for f in fields(Result)))


def resolve(setting: int | str) -> int:
    """`engine.workers` as a number: `auto` is the cores this process may run on."""
    if setting == "auto":
        return max(1, len(os.sched_getaffinity(0)))
    if isinstance(setting, bool) or not isinstance(setting, int) or setting < 1:
        raise ValueError(f"workers {setting!r} must be an integer >= 1 or auto")
    return setting


@dataclass(frozen=True, slots=True)
class Job:
    """What one worker runs (pickled to it on its stdin)."""

    spec: LoadSpec
    client: ChatClient
    connections: int
    timeout: float
    bounds: HealthBounds | None
    loop: str
    """The parent's event loop (`soak.eventloop`): each worker runs the same."""


def _frame(message: Any) -> bytes:
    blob = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    return _LEN.pack(len(blob)) + blob


async def _read(reader: asyncio.StreamReader) -> Any:
    size = _LEN.unpack(await reader.readexactly(_LEN.size))[0]
    return pickle.loads(await reader.readexactly(size))


class WorkerError(RuntimeError):
    """A worker process failed (it exited early or reported an error): one line."""


async def run_load_workers(
    spec: LoadSpec,
    client: ChatClient,
    *,
    workers: int = 1,
    connections: int = 1000,
    on_result: Callable[[Result], object] | None = None,
    stop: asyncio.Event | None = None,
    bounds: HealthBounds | None = None,
) -> LoadRun:
    """`run_load(spec, client.send, ...)` in this process for one worker; else the same load
    shared by `workers` processes, merged into one LoadRun (Results in the order they reached
    the parent; `peak_inflight` the sum of the workers' peaks)."""
    if workers <= 1:
        return await run_load(spec, client.send, on_result=on_result, stop=stop, bounds=bounds)
    return await _Fleet(spec, client, workers, connections, bounds).run(on_result, stop)


class _Fleet:
    """The parent's side of one load run by N worker processes."""

    def __init__(self, spec: LoadSpec, client: ChatClient, n: int, connections: int,
                 bounds: HealthBounds | None) -> None:  # fmt: skip
        self.spec, self.client, self.n, self.bounds = spec, client, n, bounds
        self.connections = connections
        self.procs: list[asyncio.subprocess.Process] = []
        self.stderr: list[collections.deque[str]] = []
        self.results: list[Result] = []
        self.callback_errors = 0
        self.first_error: str | None = None

    def _job(self, k: int) -> Job:
        n, spec = self.n, self.spec
        share = replace(spec, worker=k, workers=n, max_inflight=math.ceil(spec.max_inflight / n))
        return Job(share, self.client, math.ceil(self.connections / n), self.client.timeout,
                   self.bounds, loop_name())  # fmt: skip

    async def run(self, on_result: Callable[[Result], object] | None,
                  stop: asyncio.Event | None) -> LoadRun:  # fmt: skip
        tasks: list[asyncio.Task[Any]] = []
        try:
            for k in range(self.n):
                await self._start(k, tasks)
            async with asyncio.timeout(STARTUP):
                for k, proc in enumerate(self.procs):
                    if await self._next(k, proc) != ("ready",):
                        raise WorkerError(f"engine worker {k} did not start")
            t0 = time.perf_counter() + LEAD
            for proc in self.procs:
                self._send(proc, ("go", t0))
            if stop is not None:
                tasks.append(asyncio.ensure_future(self._relay_stop(stop)))
            done = await asyncio.gather(
                *(self._collect(k, proc, on_result) for k, proc in enumerate(self.procs))
            )
        finally:
            for task in tasks:
                task.cancel()
            await self._end()
        return self._merge(t0, done)

    async def _start(self, k: int, tasks: list[asyncio.Task[Any]]) -> None:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "soak.workers",
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE, limit=2**20,
        )  # fmt: skip
        self.procs.append(proc)
        lines: collections.deque[str] = collections.deque(maxlen=20)
        self.stderr.append(lines)
        tasks.append(asyncio.ensure_future(self._drain_stderr(proc, lines)))
        self._send(proc, ("job", self._job(k)))

    @staticmethod
    async def _drain_stderr(
        proc: asyncio.subprocess.Process, lines: collections.deque[str]
    ) -> None:
        assert proc.stderr is not None
        while line := await proc.stderr.readline():
            lines.append(line.decode(errors="replace").rstrip())

    @staticmethod
    def _send(proc: asyncio.subprocess.Process, message: Any) -> None:
        if proc.stdin is not None and not proc.stdin.is_closing():
            proc.stdin.write(_frame(message))

    async def _next(self, k: int, proc: asyncio.subprocess.Process) -> Any:
        assert proc.stdout is not None
        try:
            message = await _read(proc.stdout)
        except asyncio.IncompleteReadError:
            code = await proc.wait()
            tail = next((line for line in reversed(self.stderr[k]) if line.strip()), "")
            raise WorkerError(f"engine worker {k} exited with code {code}: {tail}") from None
        if message[0] == "error":
            raise WorkerError(f"engine worker {k}: {message[1]}")
        return message

    async def _collect(self, k: int, proc: asyncio.subprocess.Process,
                       on_result: Callable[[Result], object] | None) -> dict[str, Any]:  # fmt: skip
        append = self.results.append
        while True:
            message = await self._next(k, proc)
            if message[0] == "done":
                return message[1]
            for row in message[1]:
                result = Result(*row)
                append(result)
                if on_result is not None:
                    try:
                        on_result(result)
                    except Exception as exc:  # a progress/metrics bug must not cost results
                        self.callback_errors += 1
                        if self.first_error is None:
                            self.first_error = f"on_result {type(exc).__name__}: {exc}"

    async def _relay_stop(self, stop: asyncio.Event) -> None:
        await stop.wait()
        for proc in self.procs:
            self._send(proc, ("stop",))

    async def _end(self) -> None:
        """Every worker gone: asked to stop and given `STOP_GRACE`, then killed (by handle)."""
        for proc in self.procs:
            self._send(proc, ("stop",))
            if proc.stdin is not None:
                proc.stdin.close()
        for proc in self.procs:
            try:
                async with asyncio.timeout(STOP_GRACE):
                    await proc.wait()
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                await proc.wait()

    def _merge(self, t0: float, done: list[dict[str, Any]]) -> LoadRun:
        run = LoadRun(spec=self.spec, t0=t0, results=self.results)
        for name in ("sent", "drops", "peak_inflight", "cancelled", "send_errors",
                     "callback_errors"):  # fmt: skip
            setattr(run, name, sum(d[name] for d in done))
        run.callback_errors += self.callback_errors
        run.elapsed = max(d["elapsed"] for d in done)
        run.worker_cpu_s = sum(d["cpu_s"] for d in done)
        sending = [d for d in done if d["sent"]]
        if sending:
            run.first_send = min(d["first_send"] for d in sending)
            run.last_send = max(d["last_send"] for d in sending)
        errors = [self.first_error, *(d["first_error"] for d in done)]
        run.first_error = next((e for e in errors if e is not None), None)
        run.stopped = any(d["stopped"] for d in done)
        run.generator = merge_health(
            [d["generator"] for d in done], send_lag_p99=send_lag_p99(self.results)
        )
        return run


# The worker's side


async def _work(job: Job, out: Any) -> None:
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=2**20)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    writer, _ = await loop.connect_write_pipe(asyncio.Protocol, out)
    write = writer.write
    write(_frame(("ready",)))
    message = await _read(reader)
    if message[0] != "go":
        return
    stop = asyncio.Event()

    async def control() -> None:
        with contextlib.suppress(asyncio.IncompleteReadError, ConnectionError):
            while (await _read(reader))[0] != "stop":
                pass
        stop.set()  # asked to, or the parent is gone (stdin closed)

    batch: list[Result] = []
    first = [True]

    def flush() -> None:
        if batch:
            write(_frame(("results", [_ROW(r) for r in batch])))
            batch.clear()

    def on_result(result: Result) -> None:
        batch.append(result)
        if first:  # the phase's first answer goes at once (phases time from it)
            first.clear()
            flush()

    async def flusher() -> None:
        while True:
            await asyncio.sleep(FLUSH)
            flush()

    listening = asyncio.ensure_future(control())
    sending = asyncio.ensure_future(flusher())
    cpu0 = time.process_time()
    try:
        async with make_session(job.connections, job.timeout) as session:
            job.client.attach(session)
            run = await run_load(job.spec, job.client.send, on_result=on_result, stop=stop,
                                 bounds=job.bounds, start=message[1])  # fmt: skip
    finally:
        sending.cancel()
        listening.cancel()
    flush()
    summary = {name: getattr(run, name) for name in (
        "sent", "drops", "peak_inflight", "first_send", "last_send", "cancelled", "send_errors",
        "callback_errors", "first_error", "stopped", "generator")}  # fmt: skip
    summary["elapsed"] = run.elapsed
    summary["cpu_s"] = time.process_time() - cpu0
    write(_frame(("done", summary)))
    while writer.get_write_buffer_size():
        await asyncio.sleep(0.005)
    writer.close()


def main() -> int:
    """A worker process: read the job, run its share, report, exit."""
    out = os.fdopen(os.dup(1), "wb", buffering=0)
    os.dup2(2, 1)  # anything printed goes to stderr, never into the frames on stdout
    size = _LEN.unpack(sys.stdin.buffer.read(_LEN.size))[0]
    _, job = pickle.loads(sys.stdin.buffer.read(size))
    factory = loop_factory(job.loop)
    try:
        with asyncio.Runner(loop_factory=factory) as runner:
            runner.run(_work(job, out))
    except Exception as exc:  # one line for the parent, the traceback on stderr
        import traceback

        traceback.print_exc()
        with contextlib.suppress(OSError):
            out.write(_frame(("error", f"{type(exc).__name__}: {exc}")))
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
