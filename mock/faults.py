"""Fault decisions per request, and injected faults that always expire by themselves.

One uniform draw per request picks at most one fault: the rates are stacked (error, hang,
reset, malformed, cut) so a profile's rates are exact shares of its requests. Injected faults
override the profile's own while they are active; each carries a TTL and a timer removes it, so
a tester that crashes never leaves a provider broken.
"""

from __future__ import annotations

import asyncio
import itertools
import random
import time
from collections.abc import Callable
from dataclasses import dataclass

from .profile import Faults

ERROR, HANG, RESET, MALFORMED, CUT = "error", "hang", "reset", "malformed", "cut"
MAX_TTL = 3600.0


@dataclass(frozen=True, slots=True)
class Decision:
    """The fault drawn for one request: its kind and, for errors, the HTTP status."""

    kind: str
    status: int = 0
    retry_after: float = 0.0


def decide(faults: Faults, rng: random.Random, stream: bool) -> Decision | None:
    """The fault for one request, or None. A cut on a non-streamed request is no fault."""
    u = rng.random()
    edge = faults.error_rate
    if u < edge:
        return Decision(ERROR, _pick_status(faults, rng), faults.retry_after)
    for rate, kind in (
        (faults.hang_rate, HANG),
        (faults.reset_rate, RESET),
        (faults.malformed_rate, MALFORMED),
        (faults.cut_rate, CUT),
    ):
        edge += rate
        if u < edge:
            return Decision(kind) if (kind != CUT or stream) else None
    return None


def _pick_status(faults: Faults, rng: random.Random) -> int:
    mix = faults.status_mix
    if len(mix) == 1:
        return mix[0][0]
    x = rng.random() * sum(w for _, w in mix)
    for status, weight in mix:
        x -= weight
        if x < 0:
            return status
    return mix[-1][0]


@dataclass(frozen=True, slots=True)
class Injection:
    id: str
    faults: Faults
    expires_mono: float
    expires_at: float
    """Unix seconds (mock wall clock), for humans and the control API."""

    def to_dict(self) -> dict[str, object]:
        return {"id": self.id, "expires_at": self.expires_at, "faults": self.faults.to_dict()}


_ids = itertools.count(1)


class InjectedFaults:
    """The active injected faults of one provider; the newest active one wins."""

    def __init__(self, on_change: Callable[[int], None] | None = None) -> None:
        self._active: list[Injection] = []
        self._timers: dict[str, asyncio.TimerHandle] = {}
        self._on_change = on_change
        self.injected_total = 0

    def current(self) -> Faults | None:
        """The overriding faults now, or None (hot path: one list check when nothing is set)."""
        if not self._active:
            return None
        now = time.monotonic()
        while self._active and self._active[-1].expires_mono <= now:
            self._expire(self._active[-1].id)
        return self._active[-1].faults if self._active else None

    def add(self, faults: Faults, ttl: float) -> Injection:
        """Activate `faults` for `ttl` seconds (0 < ttl <= MAX_TTL)."""
        if not 0 < ttl <= MAX_TTL:
            raise ValueError(f"ttl: expected seconds in (0, {MAX_TTL:g}], got {ttl!r}")
        inj = Injection(
            id=f"f{next(_ids)}",
            faults=faults,
            expires_mono=time.monotonic() + ttl,
            expires_at=time.time() + ttl,
        )
        self._active.append(inj)  # insertion order = precedence: the newest wins
        self._timers[inj.id] = asyncio.get_running_loop().call_later(ttl, self._expire, inj.id)
        self.injected_total += 1
        self._changed()
        return inj

    def clear(self) -> int:
        """Remove every injected fault; returns how many were active."""
        n = len(self._active)
        for timer in self._timers.values():
            timer.cancel()
        self._timers.clear()
        self._active.clear()
        self._changed()
        return n

    def active(self) -> list[Injection]:
        self.current()
        now = time.monotonic()
        return [i for i in self._active if i.expires_mono > now]

    def _expire(self, inj_id: str) -> None:
        timer = self._timers.pop(inj_id, None)
        if timer is not None:
            timer.cancel()
        before = len(self._active)
        self._active = [i for i in self._active if i.id != inj_id]
        if len(self._active) != before:
            self._changed()

    def _changed(self) -> None:
        if self._on_change is not None:
            self._on_change(len(self._active))
