"""PreciseSleeper: never wakes early, survives cancelled sleepers (how soon after the deadline
it wakes is a speed figure: bench/bench_mock.py, docs/BENCHMARKS.md)."""

from __future__ import annotations

import asyncio
import time

from soak.mock.timing import PreciseSleeper


async def test_sleepers_never_wake_before_their_deadline():
    sleeper = PreciseSleeper()
    late: list[float] = []

    async def one(delay: float) -> None:
        deadline = time.monotonic() + delay
        await sleeper.until(deadline)
        late.append(time.monotonic() - deadline)

    await asyncio.gather(*(one(0.005 + i * 0.0007) for i in range(40)))
    assert len(late) == 40
    assert min(late) >= 0


async def test_cancelled_sleeper_does_not_stall_the_others():
    sleeper = PreciseSleeper(margin=0.5)  # both go straight to the shared poller
    now = time.monotonic()
    victim = asyncio.ensure_future(sleeper.until(now + 0.3))
    other = asyncio.ensure_future(sleeper.until(now + 0.35))
    await asyncio.sleep(0.05)
    victim.cancel()
    await asyncio.wait_for(other, 5)
    assert time.monotonic() >= now + 0.35
    assert victim.cancelled()
    await sleeper.until(time.monotonic() - 1)  # a past deadline returns at once


async def test_polling_fallback_never_wakes_early():
    sleeper = PreciseSleeper(use_timerfd=False)
    late: list[float] = []

    async def one(delay: float) -> None:
        deadline = time.monotonic() + delay
        await sleeper.until(deadline)
        late.append(time.monotonic() - deadline)

    await asyncio.gather(*(one(0.003 + i * 0.0005) for i in range(20)))
    assert len(late) == 20 and min(late) >= 0


async def test_close_cancels_waiting_sleepers_and_releases_the_timer():
    sleeper = PreciseSleeper()
    waiting = asyncio.ensure_future(sleeper.until(time.monotonic() + 30))
    await asyncio.sleep(0.01)
    sleeper.close()
    await asyncio.sleep(0)
    assert waiting.cancelled()
