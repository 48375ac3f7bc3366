"""The duty cycle: a steady background load through the gateway between scheduled phases.

A plan's `background: {rate, latency}` keeps the gateway busy between its phases and runs, so
it is soaked continuously and not only in bursts. The load is paused while a phase measures
(a phase's figures stay its own) and resumes after; it sends in chunks of `CHUNK` seconds
through the engine, so a pause or a SIGTERM ends it within one drain of in-flight requests
(answers at `latency`). Its requests are counted under `phase="background"`, each `ok` answer
only once the mock's trace bears it out (`TraceVerifier`, as a phase's): a gateway that
answers the background from a cache counts `untraced`, never `ok`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable

from soak.client import ChatClient, make_session
from soak.config.daemon import BackgroundConfig
from soak.config.schema import Config
from soak.engine import LoadSpec, run_load
from soak.metrics import SoakMetrics
from soak.mockctl import MockControl, MockControlError
from soak.phases.base import Target
from soak.results import Result
from soak.verify import TraceVerifier

log = logging.getLogger(__name__)

PHASE = "background"
CHUNK = 60.0
"""Seconds of load per engine run; a pause stops the current one early."""
DRAIN = 5.0
"""Seconds in-flight background requests get to finish when paused or stopped."""


class Background:
    """Runs `BackgroundConfig` load at a target while not paused; one task, bounded."""

    def __init__(self, metrics: SoakMetrics) -> None:
        self.metrics = metrics
        self._task: asyncio.Task[None] | None = None
        self._stop: asyncio.Event | None = None
        self._paused = 0
        self._spec: tuple[Config, BackgroundConfig, Target, str] | None = None
        self._mock_token: str | None = None
        self.sent = 0
        self._chunks = 0

    def configure(
        self,
        config: Config,
        load: BackgroundConfig | None,
        *,
        target: Target,
        mock_url: str,
        mock_token: str | None = None,
    ) -> None:
        """What to send from now on (None: no background load); takes effect on resume."""
        self._spec = None if load is None else (config, load, target, mock_url)
        self._mock_token = mock_token

    @contextlib.asynccontextmanager
    async def paused(self) -> AsyncIterator[None]:
        """No background request is in flight inside this block (a phase measures)."""
        self._paused += 1
        try:
            await self._halt()
            yield
        finally:
            self._paused -= 1
            self.resume()

    def pause_now(self) -> None:
        """Stop sending at once (the stack restarts); `resume()` starts again."""
        if self._stop is not None:
            self._stop.set()

    def resume(self) -> None:
        """Start the load unless paused, unconfigured or already running."""
        if self._paused or self._spec is None:
            return
        if self._task is not None and not self._task.done():
            return
        self._stop = asyncio.Event()
        self._task = asyncio.create_task(self._run(self._stop), name="background-load")

    async def _halt(self, bound: float = DRAIN + 1.0) -> None:
        if self._stop is not None:
            self._stop.set()
        task, self._task = self._task, None
        if task is not None:
            try:
                await asyncio.wait_for(asyncio.shield(task), bound)
            except TimeoutError:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task

    async def close(self, bound: float = DRAIN + 1.0) -> None:
        """Stop for good (the daemon stops): within `bound` seconds, then cancelled."""
        self._spec = None
        await self._halt(bound)

    async def _run(self, stop: asyncio.Event) -> None:
        spec = self._spec
        if spec is None:
            return
        config, load, gateway, mock_url = spec
        target = config.gateway.name
        try:
            await self._set_latency(config, load.latency, mock_url)
        except MockControlError as exc:
            log.warning("background load: mock control API: %s", exc)
        self.metrics.bind(target=target, phase=PHASE)
        observe: Callable[..., None] = self.metrics.observe
        mock = MockControl(mock_url, token=self._mock_token)
        verifier = TraceVerifier(mock.traces, lambda r: observe(r, target=target, phase=PHASE))

        def counted(result: Result) -> None:
            self.sent += 1  # when it ends, whatever its trace says later
            verifier.add(result)

        session = make_session(max(4, int(load.rate * (load.latency + 1.0)) + 4), 30.0)
        verifier.start()
        try:
            while not stop.is_set():
                self._chunks += 1  # nonces restart with every engine run: a fresh run id each
                client = ChatClient(
                    session,
                    gateway.url,
                    api=gateway.api,
                    model=gateway.model,
                    headers=gateway.headers,
                    stream=config.request.stream,
                    max_tokens=config.request.max_tokens,
                    prompt=config.request.prompt,
                    run_id=f"{PHASE}-{self._chunks}",
                    timeout=config.gateway.timeout,
                )
                chunk = LoadSpec(rate=load.rate, duration=CHUNK, drain_timeout=DRAIN)
                await run_load(chunk, client.send, on_result=counted, stop=stop)
        except Exception as exc:  # the load is best effort: never take the daemon down
            log.warning(
                "background load stopped: %s", str(exc).splitlines()[0] if str(exc) else exc
            )
        finally:
            try:
                verification = await verifier.close()
                if verification.untraced or verification.forged:
                    log.warning("background load: %d answers the mock never served, %d forged",
                                verification.untraced, verification.forged)  # fmt: skip
            finally:
                verifier.abort()
                await mock.close()
                await session.close()

    async def _set_latency(self, config: Config, latency: float, mock_url: str) -> None:
        fixed = {"model": "fixed", "value": latency}
        async with MockControl(mock_url, token=self._mock_token) as mock:
            for provider in (config.mock.primary, config.mock.fallback):
                await mock.set_profile(provider, {"latency": fixed, "stream": {"ttft": fixed}})
