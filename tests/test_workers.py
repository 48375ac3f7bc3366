"""`engine.workers`: one load shared by worker processes against a real mock on loopback. The
merged arrivals are the configured schedule, every Result comes back once, the phase report's
percentiles and counts are exactly those of one computation on the same samples, a worker that
falls behind makes the run untrusted, stop reaches every worker, a broken worker is one line."""

from __future__ import annotations

import asyncio
import io
import time
from collections import Counter
from pathlib import Path

import pytest
from hdrh.histogram import HdrHistogram
from soak.mock.app import MockConfig, MockServer
from soak.mock.profile import parse_profile

from soak.client import ChatClient, make_session
from soak.engine import LoadSpec
from soak.mockctl import MockControl
from soak.pacing import PoissonArrivals
from soak.phases import PhaseContext, Target, load_config
from soak.phases.base import measure
from soak.reports.progress import Progress
from soak.results import Result
from soak.selfwatch import merge_health
from soak.summary import GeneratorHealth
from soak.workers import WorkerError, resolve, run_load_workers


@pytest.fixture
async def mock():
    profile = parse_profile({"latency": {"model": "fixed", "value": 0.02}}, "primary")
    providers = {"primary": profile, "fallback": profile, "default": profile}
    async with MockServer(MockConfig(providers=providers)) as server:
        yield server


def chat(session, mock, run_id: str = "wk") -> ChatClient:  # type: ignore[no-untyped-def]
    return ChatClient(session, f"{mock.url}/p/primary/v1/chat/completions", model="m",
                      run_id=run_id, timeout=10.0)  # fmt: skip


@pytest.mark.parametrize("arrival", ["constant", "poisson"])
async def test_two_workers_send_the_configured_schedule_interleaved(mock, arrival: str) -> None:
    spec = LoadSpec(rate=200, count=120, arrival=arrival, seed=3)
    async with make_session(50, 10.0) as session:
        run = await run_load_workers(spec, chat(session, mock), workers=2, connections=50)
    assert sorted(r.seq for r in run.results) == list(range(120))  # each once, none lost
    assert run.sent == 120 and run.drops == 0 and all(r.ok for r in run.results)
    schedule = PoissonArrivals(200, 3) if arrival == "poisson" else None
    for r in run.results:  # due at t0 + offset(seq), whichever worker sent it
        due = schedule.offset(r.seq) if schedule else r.seq / 200
        assert r.intended - run.t0 == pytest.approx(due, abs=1e-9)
    assert len({r.nonce for r in run.results}) == 120
    assert run.worker_cpu_s > 0  # the workers' own CPU over the load, reported back
    assert run.achieved_rate == pytest.approx(200, rel=0.1) if arrival == "constant" else True


async def context(tmp_path: Path, mock, workers: int, seen: list[Result]) -> PhaseContext:  # type: ignore[no-untyped-def]
    path = tmp_path / "soak.yaml"
    path.write_text(f"version: 1\ngateway: {{url: '{mock.url}'}}\nmock: {{url: '{mock.url}'}}\n"
                    f"engine: {{workers: {workers}}}\n")  # fmt: skip
    target = Target("gw", f"{mock.url}/p/primary/v1/chat/completions", "m")
    return PhaseContext(
        config=load_config(path, env={}), run_id="wk", mock=MockControl(mock.url),
        direct=target, gateway=target, progress=Progress(stream=io.StringIO(), tty=False),
        stop=asyncio.Event(), observe=lambda result, _phase: seen.append(result),
    )  # fmt: skip


def hdr_percentiles(seconds: list[float]) -> dict[float, float]:
    """One HDR histogram of every sample (µs, 3 digits), as the report computes it."""
    hist = HdrHistogram(1, 3600 * 10**6, 3)
    for s in seconds:
        hist.record_value(round(max(0.0, s) * 1e6))
    return hist.get_percentile_to_value_dict([50.0, 90.0, 95.0, 99.0])


async def test_a_phase_on_two_workers_reports_exactly_what_one_computation_gives(
    tmp_path: Path, mock
) -> None:
    """The exact merge: every Result comes back to the parent, which verifies, counts and
    summarises them; the report's percentiles equal one HDR histogram of the same samples
    and its outcome counts those of the records."""
    seen: list[Result] = []
    ctx = await context(tmp_path, mock, 2, seen)
    try:
        run, report = await measure(ctx, name="overhead", kind="overhead", target=ctx.gateway,
                                    rate=150, duration=1.0, timeout=10.0, params={})  # fmt: skip
    finally:
        await ctx.mock.close()
    assert report.sent == 150 and len(seen) == 150 and {r.seq for r in seen} == set(range(150))
    assert report.verification["checked"] == 150  # the mock's trace, per answer
    assert report.outcomes == dict(Counter(r.outcome.value for r in run.results)) == {"ok": 150}
    for summary, samples in (
        (report.latency, [r.end - r.intended for r in run.results]),
        (report.distributions["overhead_per_request"], [r.overhead for r in run.results]),
    ):
        assert summary is not None and summary.count == 150
        want = hdr_percentiles(samples)  # type: ignore[arg-type]
        lo, hi = min(samples), max(samples)  # type: ignore[type-var]
        for stat, q in (("p50", 50.0), ("p90", 90.0), ("p95", 95.0), ("p99", 99.0)):
            assert getattr(summary, stat) == min(hi, max(lo, want[q] / 1e6)), stat
        assert summary.mean == pytest.approx(sum(samples) / 150, abs=1e-12)  # type: ignore[arg-type]


async def test_a_worker_that_falls_behind_makes_the_run_untrusted(mock) -> None:
    """Each worker gets its share of the in-flight cap; at a cap of 2 (1 each) the 20 ms
    answers cannot keep up with 200/s: each worker drops, and says so under its number."""
    spec = LoadSpec(rate=200, count=60, max_inflight=2)
    async with make_session(10, 10.0) as session:
        run = await run_load_workers(spec, chat(session, mock), workers=2, connections=10)
    health = run.generator
    assert health is not None and not health.trusted and run.drops == health.drops > 0
    assert run.sent + run.drops == 60
    assert {r.split(":")[0] for r in health.reasons} == {"worker 0", "worker 1"}
    assert any("dropped at the in-flight cap" in r for r in health.reasons)


def test_one_untrusted_worker_is_an_untrusted_run() -> None:
    ok = GeneratorHealth(0.001, 0.002, 0.3, 0, True)
    late = GeneratorHealth(0.05, 0.2, 0.95, 3, False, ("send lag p99 50.0 ms > 10 ms",))
    merged = merge_health([ok, late], send_lag_p99=0.02)
    assert not merged.trusted
    assert merged.reasons == ("worker 1: send lag p99 50.0 ms > 10 ms",)
    assert (merged.loop_lag_max, merged.cpu_ratio, merged.drops) == (0.2, 0.95, 3)
    assert merge_health([ok, ok], send_lag_p99=0.001).trusted


async def test_stop_reaches_every_worker(mock) -> None:
    stop = asyncio.Event()
    spec = LoadSpec(rate=100, duration=30.0, drain_timeout=5.0)
    async with make_session(20, 10.0) as session:
        asyncio.get_running_loop().call_later(1.0, stop.set)
        began = time.perf_counter()
        run = await run_load_workers(spec, chat(session, mock), workers=2, connections=20,
                                     stop=stop)  # fmt: skip
        took = time.perf_counter() - began
    assert run.stopped and 20 <= run.sent <= 300  # ~100 by the stop, of 3,000 scheduled
    assert took < 15  # the 30 s load, stopped after 1 s (plus starting the workers)


class Unimportable:
    """Templates a worker cannot unpickle: this test module is not importable there."""

    header_sets = ()

    def pick(self, seq: int) -> tuple[bytes, bytes, int]:
        return b"{", b"}", 0


async def test_a_worker_that_cannot_start_is_a_one_line_error(mock) -> None:
    async with make_session(4, 10.0) as session:
        client = ChatClient(session, f"{mock.url}/v1/chat/completions", model="m",
                            templates=Unimportable())  # fmt: skip
        with pytest.raises(WorkerError, match=r"^engine worker 0 exited with code 1: "
                           r"ModuleNotFoundError: No module named 'test_workers'$"):  # fmt: skip
            await run_load_workers(LoadSpec(rate=10, count=4), client, workers=2)


async def test_one_worker_runs_in_this_process(mock, monkeypatch: pytest.MonkeyPatch) -> None:
    async def no_process(*_: object, **__: object) -> None:
        raise AssertionError("workers: 1 starts no process")

    monkeypatch.setattr(asyncio, "create_subprocess_exec", no_process)
    async with make_session(10, 10.0) as session:
        run = await run_load_workers(LoadSpec(rate=100, count=20), chat(session, mock),
                                     workers=1)  # fmt: skip
    assert run.sent == 20 and all(r.ok for r in run.results)


def test_auto_is_the_cores_this_process_may_use(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("os.sched_getaffinity", lambda _pid: {0, 3, 5})
    assert (resolve("auto"), resolve(2)) == (3, 2)
    with pytest.raises(ValueError, match="workers 0 must be an integer >= 1 or auto"):
        resolve(0)


@pytest.mark.parametrize(
    ("value", "error"),
    [("2", None), ("auto", None), ("0", "engine.workers: must be at least 1, got 0"),
     ("many", "engine.workers: unknown value 'many' (use an integer from 1 or auto)"),
     ("true", "engine.workers: expected an integer, got boolean True")],
)  # fmt: skip
def test_engine_workers_in_the_config(tmp_path: Path, value: str, error: str | None) -> None:
    path = tmp_path / "soak.yaml"
    path.write_text(f"version: 1\ngateway: {{url: 'http://127.0.0.1:1'}}\n"
                    f"engine: {{workers: {value}}}\n")  # fmt: skip
    if error is None:
        assert str(load_config(path, env={}).engine.workers) == value
    else:
        with pytest.raises(Exception, match=error.replace("(", r"\(").replace(")", r"\)")):
            load_config(path, env={})
