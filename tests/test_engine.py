"""The open-loop engine on virtual time (pure engine logic), plus real-time runs against the mock.

`VirtualTime` is an auto-jumping clock: `sleep(d)` parks the caller until virtual time reaches
now + d, and a ticker jumps to the earliest sleeper once every runnable task has settled. Fake
senders that "take" seconds therefore overlap exactly as real requests would, without waiting.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import time

import pytest
from soak.mock.app import MockConfig, MockServer
from soak.mock.profile import parse_profile

from soak.client import ChatClient, make_session
from soak.engine import LoadSpec, run_load
from soak.results import Outcome, Result
from soak.selfwatch import SelfWatch


class VirtualTime:
    """Deterministic time for asyncio code that takes `clock` and `sleep` as arguments."""

    def __init__(self) -> None:
        self.now = 0.0
        self._heap: list[tuple[float, int, asyncio.Future[None]]] = []
        self._order = itertools.count()
        self._ticker: asyncio.Task[None] | None = None

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        fut = asyncio.get_running_loop().create_future()
        heapq.heappush(self._heap, (self.now + max(0.0, seconds), next(self._order), fut))
        await fut

    async def _tick(self) -> None:
        while True:
            for _ in range(10):  # let every runnable task settle before time moves
                await asyncio.sleep(0)
            while self._heap:
                when, _, fut = heapq.heappop(self._heap)
                if not fut.done():
                    self.now = max(self.now, when)
                    fut.set_result(None)
                    break

    def watch(self) -> SelfWatch:
        return SelfWatch(
            0.02, clock=self.clock, cpu_clock=lambda: 0.0, sleep=self.sleep, wait_clock=lambda: None
        )

    async def __aenter__(self) -> VirtualTime:
        self._ticker = asyncio.get_running_loop().create_task(self._tick())
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._ticker is not None
        self._ticker.cancel()
        await asyncio.gather(self._ticker, return_exceptions=True)


def fake_sender(vt: VirtualTime, latency: float = 0.0, log: list[tuple[int, float]] | None = None):
    """A send that answers OK after `latency` virtual seconds, recording when it went out."""

    async def send(seq: int, intended: float) -> Result:
        sent = vt.now
        if log is not None:
            log.append((seq, sent))
        if latency:
            await vt.sleep(latency)
        return Result(seq, intended, sent, vt.now, Outcome.OK)

    return send


async def run_virtual(vt: VirtualTime, spec: LoadSpec, send, **kw):
    return await run_load(spec, send, clock=vt.clock, sleep=vt.sleep, watch=vt.watch(), **kw)


async def test_constant_rate_sends_each_request_at_its_due_time() -> None:
    async with VirtualTime() as vt:
        log: list[tuple[int, float]] = []
        run = await run_virtual(vt, LoadSpec(rate=100, count=200), fake_sender(vt, 0.0, log))
    assert run.sent == 200
    assert run.drops == 0
    assert len(run.results) == 200
    assert [seq for seq, _ in log] == list(range(200))
    assert [sent for _, sent in log] == pytest.approx([i / 100 for i in range(200)])
    assert max(r.send_lag for r in run.results) == pytest.approx(0.0, abs=1e-9)
    assert run.elapsed == pytest.approx(1.99)
    assert run.achieved_rate == pytest.approx(100.0)
    assert run.generator is not None
    assert run.generator.trusted
    assert run.generator.reasons == ()


async def test_high_rates_never_send_early_and_batch_sub_millisecond_gaps() -> None:
    sleeps: list[float] = []
    async with VirtualTime() as vt:

        async def counting_sleep(seconds: float) -> None:
            sleeps.append(seconds)
            await vt.sleep(seconds)

        log: list[tuple[int, float]] = []
        run = await run_load(
            LoadSpec(rate=5000, count=100),
            fake_sender(vt, 0.0, log),
            clock=vt.clock,
            sleep=counting_sleep,
            watch=vt.watch(),
        )
    lags = [sent - seq / 5000 for seq, sent in log]
    assert run.sent == 100
    assert min(lags) >= -1e-12
    assert max(lags) < 0.001
    assert min(s for s in sleeps if s > 0) >= 0.001  # no sub-millisecond (spinning) sleeps
    assert len(sleeps) < 30


async def test_slow_answers_do_not_slow_the_arrivals() -> None:
    async with VirtualTime() as vt:
        log: list[tuple[int, float]] = []
        run = await run_virtual(vt, LoadSpec(rate=10, duration=2.0), fake_sender(vt, 5.0, log))
    assert run.sent == 20
    assert run.peak_inflight == 20  # every request still waiting when the last went out
    assert [sent for _, sent in log] == pytest.approx([i / 10 for i in range(20)])
    assert all(r.ok for r in run.results)
    assert [r.latency for r in run.results] == pytest.approx([5.0] * 20)
    assert run.elapsed == pytest.approx(1.9 + 5.0)


async def test_latency_counts_from_the_intended_time_when_the_send_runs_late() -> None:
    async def late_send(seq: int, intended: float) -> Result:
        sent = intended + 0.2  # the request left 200 ms after it was due
        await vt.sleep(0.2 + 0.1)
        return Result(seq, intended, sent, vt.now, Outcome.OK)

    async with VirtualTime() as vt:
        run = await run_virtual(vt, LoadSpec(rate=10, count=5), late_send)
    assert [r.latency for r in run.results] == pytest.approx([0.3] * 5)
    assert [r.service_latency for r in run.results] == pytest.approx([0.1] * 5)
    assert run.generator is not None
    assert run.generator.send_lag_p99 == pytest.approx(0.2)
    assert not run.generator.trusted
    assert any("send lag p99 200.0 ms" in reason for reason in run.generator.reasons)


async def test_full_in_flight_cap_drops_and_counts_instead_of_queueing() -> None:
    async with VirtualTime() as vt:
        spec = LoadSpec(rate=100, duration=0.5, max_inflight=5)
        run = await run_virtual(vt, spec, fake_sender(vt, 1.0))
    assert run.sent == 5
    assert run.peak_inflight == 5
    assert run.drops == 45
    assert run.scheduled == 50
    assert len(run.results) == 5
    assert run.generator is not None
    assert not run.generator.trusted
    assert run.generator.drops == 45
    assert "45 requests dropped at the in-flight cap" in run.generator.reasons


async def test_cap_frees_up_as_answers_come_back() -> None:
    async with VirtualTime() as vt:
        # 10/s with 0.25 s answers: ~3 in flight, a cap of 3 never drops
        spec = LoadSpec(rate=10, duration=3.0, max_inflight=3)
        run = await run_virtual(vt, spec, fake_sender(vt, 0.25))
    assert (run.sent, run.drops) == (30, 0)
    assert run.peak_inflight == 3


async def test_drain_timeout_cancels_and_counts_timeouts() -> None:
    async def hang(seq: int, intended: float) -> Result:
        await asyncio.get_running_loop().create_future()  # never answers
        raise AssertionError("unreachable")

    async with VirtualTime() as vt:
        spec = LoadSpec(rate=10, count=4, drain_timeout=2.0)
        run = await run_virtual(vt, spec, hang)
    assert run.sent == 4
    assert run.cancelled == 4
    assert sorted(r.seq for r in run.results) == [0, 1, 2, 3]
    assert {r.outcome for r in run.results} == {Outcome.TIMEOUT}
    assert run.elapsed == pytest.approx(0.3 + 2.0)


async def test_drain_waits_for_answers_inside_the_timeout() -> None:
    async with VirtualTime() as vt:
        spec = LoadSpec(rate=10, count=3, drain_timeout=10.0)
        run = await run_virtual(vt, spec, fake_sender(vt, 4.0))
    assert run.cancelled == 0
    assert all(r.ok for r in run.results)
    assert run.elapsed == pytest.approx(0.2 + 4.0)


async def test_a_generator_behind_schedule_still_sends_everything_and_says_so() -> None:
    async def costly_send(seq: int, intended: float) -> Result:
        vt.now += 0.05  # 50 ms of (virtual) CPU per request at a 10 ms interval
        return Result(seq, intended, vt.now, vt.now, Outcome.OK)

    async with VirtualTime() as vt:
        run = await run_virtual(vt, LoadSpec(rate=100, count=100), costly_send)
    assert run.sent == 100
    assert run.drops == 0
    lags = [r.send_lag for r in run.results]
    assert lags[-1] > lags[0]
    assert run.generator is not None
    assert not run.generator.trusted


async def test_poisson_run_is_reproducible() -> None:
    async def run_once() -> list[float]:
        async with VirtualTime() as vt:
            log: list[tuple[int, float]] = []
            spec = LoadSpec(rate=50, count=100, arrival="poisson", seed=4)
            await run_virtual(vt, spec, fake_sender(vt, 0.01, log))
        return [sent for _, sent in log]

    first, second = await run_once(), await run_once()
    assert first == second
    assert len(set(round(b - a, 9) for a, b in itertools.pairwise(first))) > 50


async def test_stop_event_ends_sending_early_and_drains() -> None:
    stop = asyncio.Event()

    async def send(seq: int, intended: float) -> Result:
        if seq == 4:
            stop.set()
        await vt.sleep(0.5)
        return Result(seq, intended, intended, vt.now, Outcome.OK)

    async with VirtualTime() as vt:
        run = await run_virtual(vt, LoadSpec(rate=10, duration=60.0), send, stop=stop)
    assert run.stopped
    assert run.sent == 5
    assert len(run.results) == 5
    assert all(r.ok for r in run.results)


async def test_stop_is_noticed_while_waiting_for_a_distant_due_time() -> None:
    stop = asyncio.Event()

    async def stop_later() -> None:
        await vt.sleep(1.0)
        stop.set()

    async with VirtualTime() as vt:
        stopper = asyncio.ensure_future(stop_later())
        run = await run_virtual(vt, LoadSpec(rate=0.1, count=5), fake_sender(vt), stop=stop)
        await stopper
    assert run.stopped
    assert run.sent == 1  # request 1 was due at 10 s
    assert run.elapsed <= 1.25 + 1e-9


async def test_a_sender_that_raises_becomes_a_bad_response_not_a_crash() -> None:
    async def broken(seq: int, intended: float) -> Result:
        if seq % 2:
            raise RuntimeError("boom")
        return Result(seq, intended, intended, intended, Outcome.OK)

    async with VirtualTime() as vt:
        run = await run_virtual(vt, LoadSpec(rate=10, count=6), broken)
    outcomes = sorted((r.seq, r.outcome) for r in run.results)
    assert [o for _, o in outcomes] == [Outcome.OK, Outcome.BAD_RESPONSE] * 3
    assert run.send_errors == 3
    assert run.first_error == "RuntimeError: boom"


async def test_on_result_sees_every_result_once() -> None:
    seen: list[int] = []
    async with VirtualTime() as vt:
        await run_virtual(
            vt,
            LoadSpec(rate=20, count=10),
            fake_sender(vt, 0.3),
            on_result=lambda r: seen.append(r.seq),
        )
    assert sorted(seen) == list(range(10))


async def test_a_failing_callback_keeps_every_result_and_is_reported() -> None:
    def broken(result: Result) -> None:
        raise KeyError("progress")

    async with VirtualTime() as vt:
        run = await run_virtual(vt, LoadSpec(rate=20, count=4), fake_sender(vt), on_result=broken)
    assert len(run.results) == 4
    assert run.callback_errors == 4
    assert run.first_error == "on_result KeyError: 'progress'"


async def test_cancelling_the_run_cancels_in_flight_requests() -> None:
    async with VirtualTime() as vt:
        started = asyncio.Event()

        async def send(seq: int, intended: float) -> Result:
            started.set()
            await asyncio.get_running_loop().create_future()
            raise AssertionError("unreachable")

        task = asyncio.ensure_future(run_virtual(vt, LoadSpec(rate=10, count=3), send))
        await started.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    assert not [t for t in asyncio.all_tasks() if t.get_coro().__name__ == "one"]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"rate": 0, "count": 1}, "rate 0 must be > 0"),
        ({"rate": 1}, "needs a duration or a count"),
        ({"rate": 1, "count": 1, "max_inflight": 0}, "max_inflight 0 must be >= 1"),
        ({"rate": 1, "count": 1, "drain_timeout": -1}, "drain_timeout -1 must be >= 0"),
        ({"rate": 1, "count": 1, "arrival": "ramp"}, "arrival 'ramp' must be one of"),
    ],
)
def test_load_spec_rejects_bad_values(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        LoadSpec(**kwargs)


# --- real time, real HTTP: the engine driving the client against the mock provider ---


@pytest.fixture
async def fast_mock():
    profile = parse_profile({"latency": {"model": "fixed", "value": 0.0}})
    async with MockServer(MockConfig(providers={"default": profile})) as mock:
        yield mock


async def test_attack_rate_against_the_mock(fast_mock) -> None:
    """vegeta's TestAttackRate: 200 requests at 100/s are 200 sends over ~2 s."""
    async with make_session(max_connections=50, timeout=5.0) as session:
        client = ChatClient(
            session, f"{fast_mock.url}/v1/chat/completions", model="m", run_id="rate-test"
        )
        began = time.perf_counter()
        run = await run_load(LoadSpec(rate=100, count=200), client.send)
        wall = time.perf_counter() - began
    assert run.sent == 200
    assert len(run.results) == 200
    assert sum(r.ok for r in run.results) == 200
    # 100/s held vs another rate: 3% is 60 ms of send lag over the 2 s, 12x the 5 ms max measured
    assert run.achieved_rate == pytest.approx(100, rel=0.03)
    assert wall >= 1.95  # never ahead of the schedule (how late it sends: bench/bench_engine.py)
    lags = sorted(r.send_lag for r in run.results)
    assert lags[0] >= 0.0  # never early


async def test_in_flight_bound_against_the_mock() -> None:
    profile = parse_profile({"latency": {"model": "fixed", "value": 0.5}})
    async with (
        MockServer(MockConfig(providers={"default": profile})) as mock,
        make_session(max_connections=50, timeout=5.0) as session,
    ):
        client = ChatClient(
            session, f"{mock.url}/v1/chat/completions", model="m", run_id="cap-test"
        )
        # 100/s for 1 s at 0.5 s latency wants ~50 in flight; a cap of 10 must drop
        run = await run_load(LoadSpec(rate=100, count=100, max_inflight=10), client.send)
    assert run.sent + run.drops == 100
    assert 10 <= run.sent <= 30
    assert run.drops >= 70
    assert all(r.ok for r in run.results)
    events = sorted([(r.sent, 1) for r in run.results] + [(r.end, -1) for r in run.results])
    level = peak = 0
    for _, step in events:
        level += step
        peak = max(peak, level)
    assert peak == 10  # the cap was reached and never exceeded
    assert run.peak_inflight == 10
