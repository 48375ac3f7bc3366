"""Every counted answer checked against the mock's own trace of its nonce.

A gateway that serves from a cache, or answers without calling the mock at all, returns a
well-formed answer whose nonce the mock never saw: `untraced`. An answer whose marker names
another provider or service time than the mock recorded for that nonce, or that the mock
never answered with success, is `forged`. Neither is ever success: both are outcomes of their
own, counted and reported. `classify` and `Verification` are pure (results and traces in,
reclassified results and counts out); `TraceVerifier` batches the trace queries during a
load: one query per chunk of nonces (`CHUNK`) or per `INTERVAL`, never one per request, and
hands each result on only once it is verified, so live metrics never count an unverified
answer as `ok`.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from soak.results import Outcome, Result
from soak.summary import Check

CLOCK_TOLERANCE = 0.25
"""Seconds an attempt may seem to arrive before its request was sent or after its answer
ended (tester and mock clocks; the same clock for a soak-started mock). Older attempts under
the same nonce belong to an earlier request: nonces repeat across runs and capacity steps."""
SERVICE_TOLERANCE = 20e-6
"""Seconds a marker's service time may differ from the traced one: the mock writes both from
one reading (the marker rounded to microseconds), so only a rewritten or replayed marker
differs by more."""
CHUNK = 1000
"""Nonces per trace query at most (the mock answers up to 10,000)."""
INTERVAL = 0.25
"""Seconds an answer waits at most for its verification during a load (the first one of a
phase is looked up at once: phases time from it, e.g. the breaker's lead)."""

UNTRACED_REASON = "no attempt at the mock"
REPLAY_REASON = "answer to another request"
PROVIDER_REASON = "marker names another provider"
SERVICE_REASON = "marker service time differs"
FAILED_REASON = "the mock answered no success"
REASONS = (UNTRACED_REASON, REPLAY_REASON, PROVIDER_REASON, SERVICE_REASON, FAILED_REASON)
"""Why an answer failed verification: bounded, never the marker or the nonce."""

Traces = Mapping[str, Sequence[Mapping[str, Any]]]
"""The mock's `/_mock/traces/query` answer: attempts per nonce."""
Query = Callable[[list[str]], Awaitable[Traces]]


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def classify(
    result: Result,
    attempts: Iterable[Mapping[str, Any]],
    *,
    offset: float,
    clock_tolerance: float = CLOCK_TOLERANCE,
    service_tolerance: float = SERVICE_TOLERANCE,
) -> str | None:
    """Why the `ok` answer `result` is not what the mock served (one of `REASONS`), or None.

    `offset` turns the result's clock into unix seconds (the attempts' `arrival`). Only the
    attempts between the request's send and its answer's end count. An answer whose body names
    another nonce than its request's is a replay. An answer without any marker (a gateway that
    strips it) is traced when the mock served its nonce.
    """
    start = result.sent + offset - clock_tolerance
    stop = result.end + offset + clock_tolerance
    mine = [a for a in attempts if start <= (_number(a.get("arrival")) or -1.0) <= stop]
    if not mine:
        return UNTRACED_REASON
    if result.answered is not None and result.answered != result.nonce:
        return REPLAY_REASON
    served = [a for a in mine if a.get("outcome") == "ok"]
    if not served:
        return FAILED_REASON
    if result.provider is not None:
        served = [a for a in served if a.get("provider") == result.provider]
        if not served:
            return PROVIDER_REASON
    want = result.service_s
    if want is not None and not any(
        (got := _number(a.get("service_s"))) is not None and abs(got - want) <= service_tolerance
        for a in served
    ):
        return SERVICE_REASON
    return None


@dataclass(slots=True)
class Verification:
    """What the mock's traces said of one phase's answers."""

    checked: int = 0
    """`ok` answers looked up at the mock."""
    untraced: int = 0
    forged: int = 0
    reasons: Counter[str] = field(default_factory=Counter)
    error: str | None = None
    """Why verification stopped (the control API failed); the rest went on unverified."""
    unverified: int = 0
    """`ok` answers passed on without a trace lookup after `error`."""

    @property
    def failed(self) -> int:
        return self.untraced + self.forged

    def apply(self, results: Iterable[Result], traces: Traces, *, offset: float) -> None:
        """Reclassify each `ok` result of `results` the traces do not bear out (in place)."""
        for result in results:
            if result.outcome is not Outcome.OK:
                continue
            self.checked += 1
            reason = classify(result, traces.get(result.nonce or "", ()), offset=offset)
            if reason is None:
                continue
            self.reasons[reason] += 1
            if reason == UNTRACED_REASON:
                self.untraced += 1
                result.outcome = Outcome.UNTRACED
            else:
                self.forged += 1
                result.outcome = Outcome.FORGED
            result.provider = result.service_s = None  # never a served-by or an overhead

    def to_dict(self) -> dict[str, Any]:
        """The phase report's `verification`."""
        out: dict[str, Any] = {
            "checked": self.checked,
            "untraced": self.untraced,
            "forged": self.forged,
            "reasons": {r: self.reasons[r] for r in REASONS if self.reasons[r]},
        }
        if self.error is not None:
            out.update(error=self.error, unverified=self.unverified)
        return out

    def note(self) -> str | None:
        """One line for the report when answers failed verification, else None."""
        if not self.failed:
            return None
        why = ", ".join(f"{n} {r}" for r in REASONS if (n := self.reasons[r]))
        line = (
            f"{self.untraced} untraced and {self.forged} forged of {self.checked} answers checked"
            f" against the mock's trace ({why}); never counted as success."
        )
        if self.untraced:
            line += (
                " Untraced: the mock never saw the request, so the gateway answered by itself;"
                " a response cache in the gateway is the usual reason."
            )
        if self.forged:
            line += (
                " Forged: the answer's marker disagrees with what the mock recorded for it;"
                " the gateway rewrote the answer or made it up."
            )
        return line

    def check(self) -> Check | None:
        """A failing check when any answer failed verification (a phase cannot pass then)."""
        if not self.failed:
            return None
        return Check(name="untraced or forged answers", value=self.failed, op="==",
                     threshold=0, unit="requests", passed=False)  # fmt: skip


class TraceVerifier:
    """Holds `ok` results until the mock's traces bear them out, then hands them to `forward`.

    Failures pass straight on (nothing to verify). `ok` results are looked up in batches: at
    most `chunk` nonces per query, at most `interval` seconds after they arrived, one query at
    a time; the phase's first at once. `close()` verifies what is left. A query that fails
    stops verifying for the rest of the phase (`Verification.error`); later results pass on as
    they are.
    """

    def __init__(
        self,
        query: Query,
        forward: Callable[[Result], None],
        *,
        chunk: int = CHUNK,
        interval: float = INTERVAL,
        offset: Callable[[], float] = lambda: time.time() - time.perf_counter(),
    ) -> None:
        self._query, self._forward = query, forward
        self._chunk, self._interval, self._offset = chunk, interval, offset
        self._pending: list[Result] = []
        self._due = asyncio.Event()
        self._closing = False
        self._started = False
        """An `ok` result has arrived: the first is looked up without waiting."""
        self._task: asyncio.Task[None] | None = None
        self.verification = Verification()
        self.queries = 0
        self.forward_errors = 0
        """`forward` raised (a progress or metrics bug): the result itself is kept."""

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._pump(), name="trace-verifier")

    def add(self, result: Result) -> None:
        """One result of the load (the engine's `on_result`)."""
        if result.outcome is not Outcome.OK or self.verification.error is not None:
            if result.outcome is Outcome.OK:
                self.verification.unverified += 1
            self._hand_on(result)
            return
        self._pending.append(result)
        if len(self._pending) >= self._chunk or not self._started:
            self._started = True
            self._due.set()

    async def _pump(self) -> None:
        while not self._closing:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._due.wait(), self._interval)
            self._due.clear()
            await self._flush()

    async def _flush(self) -> None:
        while self._pending:
            batch = self._pending[: self._chunk]
            del self._pending[: self._chunk]
            if self.verification.error is None:
                try:
                    self.queries += 1
                    traces = await self._query([r.nonce or "" for r in batch])
                except Exception as exc:  # the control API's own error, one line
                    self.verification.error = str(exc).splitlines()[0] if str(exc) else repr(exc)
                else:
                    self.verification.apply(batch, traces, offset=self._offset())
            if self.verification.error is not None:
                self.verification.unverified += sum(r.outcome is Outcome.OK for r in batch)
            for result in batch:
                self._hand_on(result)

    def _hand_on(self, result: Result) -> None:
        try:
            self._forward(result)
        except Exception:  # as the engine does: a callback bug must not cost results
            self.forward_errors += 1

    async def close(self) -> Verification:
        """Stop the periodic queries, verify what is still held; the phase's tally."""
        self._closing = True
        self._due.set()
        if self._task is not None:
            await self._task
        await self._flush()
        return self.verification

    def abort(self) -> None:
        """Stop at once (the load was cancelled): what is held is dropped, unverified."""
        self._closing = True
        if self._task is not None and not self._task.done():
            self._task.cancel()
