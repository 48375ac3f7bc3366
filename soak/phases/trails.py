"""The mock's side of a fault phase: a provider faulted for a bounded time, and the attempt
trails the mock recorded for the client's requests (breaker and failover read both)."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Sequence

from soak.breaker import Attempt as TrailAttempt
from soak.breaker import ClientRequest, parse_trails
from soak.phases.base import PhaseContext
from soak.results import Result

FAULT = {"error_rate": 1.0, "status_mix": {"500": 1}}
"""Every request to the faulted provider answers HTTP 500 at once."""
TTL_MARGIN = 10.0
"""Seconds an injected fault outlives its planned end if soak dies before clearing it."""


@contextlib.asynccontextmanager
async def faulted(ctx: PhaseContext, provider: str, ttl: float) -> AsyncIterator[None]:
    """The provider fails every request inside the block; cleared on the way out, TTL-bounded."""
    await ctx.mock.inject_fault(provider, FAULT, ttl=min(3600.0, ttl + TTL_MARGIN))
    try:
        yield
    finally:
        await asyncio.shield(ctx.mock.clear_faults(provider))


CLOCK_TOLERANCE = 0.25
"""Seconds an attempt may seem to arrive before its request was sent (tester and mock clocks;
the same clock for a soak-started mock). Older attempts under the same nonce are left out:
nonces (`run:seq`) repeat in every phase of a run, so a trail would otherwise mix phases."""


async def client_trails(
    ctx: PhaseContext, results: Sequence[Result]
) -> tuple[list[ClientRequest], dict[str, list[TrailAttempt]]]:
    """Client requests on the wall clock (sent time) and their attempt trails from the mock,
    each trail holding only the attempts that came after its request was sent."""
    offset = time.time() - time.perf_counter()  # the engine's clock is perf_counter
    requests = [ClientRequest(r.nonce, r.sent + offset) for r in results if r.nonce]
    trails = parse_trails(await ctx.mock.traces([r.nonce for r in requests]))
    for req in requests:
        trail = trails.get(req.nonce)
        if trail:
            trails[req.nonce] = [a for a in trail if a.arrival >= req.t - CLOCK_TOLERANCE]
    return requests, trails
