"""PreciseSleeper: never wakes early, wakes soon after, survives cancelled sleepers."""

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
    assert sorted(late)[20] < 0.002  # median well under the loop's millisecond timer granularity


async def test_cancelled_sleeper_does_not_stall_the_others():
    sleeper = PreciseSleeper()
    now = time.monotonic()
    victim = asyncio.ensure_future(sleeper.until(now + 0.003))
    other = asyncio.ensure_future(sleeper.until(now + 0.004))
    await asyncio.sleep(0.0025)
    victim.cancel()
    await asyncio.wait_for(other, 1)
    assert time.monotonic() >= now + 0.004
    assert victim.cancelled()
    await sleeper.until(time.monotonic() - 1)  # a past deadline returns at once
