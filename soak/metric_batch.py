"""Per-request observations recorded in batches: cheap to add, exact by the time anyone reads.

`SoakMetrics.observe` runs once per request (and its stream gaps once per chunk) on the load's
own event loop, so its cost is the tester's. Here an observation is only queued; `apply` turns
a batch into one increment per outcome, token counter and provider, and one update per touched
histogram bucket (`observe_all`). A batch is applied when it is full, before every read of the
registry (`FlushFirst`, registered ahead of the metrics, so a scrape never sees a partial
batch), and before the phase's summary gauges are written.
"""

from __future__ import annotations

import threading
from bisect import bisect_left
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from soak.results import Outcome, Result

BATCH = 512
"""Observations queued at most before they are applied."""


def observe_all(child: Any, values: Sequence[float]) -> None:
    """`child.observe(v)` for each of `values` (a prometheus_client histogram child), as one
    update per touched bucket and one of the sum. Falls back to observing one by one where the
    client's histogram is not built the way this expects."""
    if not values:
        return
    bounds = getattr(child, "_upper_bounds", None)
    buckets = getattr(child, "_buckets", None)
    total = getattr(child, "_sum", None)
    if bounds is None or buckets is None or total is None or len(bounds) != len(buckets):
        for value in values:
            child.observe(value)
        return
    for index, n in Counter(bisect_left(bounds, v) for v in values).items():
        buckets[index].inc(n)  # the first bucket whose bound is >= v, as observe() picks it
    total.inc(sum(values))


class Pending:
    """Observations not applied yet, per (target, phase); `apply(target, phase, results)`
    records a batch. Fed by the load's event loop and flushed by it or by a registry read in
    another thread (the daemon renders /metrics off the loop): the queue is swapped under a
    lock, so no observation is applied twice or lost; batches are applied outside it."""

    def __init__(self, apply: Callable[[str, str, list[Result]], None]) -> None:
        self._apply = apply
        self._items: list[tuple[str, str, Result]] = []
        self._lock = threading.Lock()

    def add(self, result: Result, target: str, phase: str) -> None:
        with self._lock:
            items = self._items
            items.append((target, phase, result))
            full = len(items) >= BATCH
        if full:
            self.flush()

    def flush(self) -> None:
        with self._lock:
            items, self._items = self._items, []
        if not items:
            return
        groups: dict[tuple[str, str], list[Result]] = {}
        for target, phase, result in items:
            groups.setdefault((target, phase), []).append(result)
        for (target, phase), results in groups.items():
            self._apply(target, phase, results)


class FlushFirst:
    """A collector that yields nothing: registered before the metrics, it applies the pending
    observations whenever the registry is collected (a scrape, `get_sample_value`)."""

    def __init__(self, flush: Callable[[], None]) -> None:
        self._flush = flush

    def collect(self) -> Iterable[Any]:
        self._flush()
        return ()


def apply(b: Any, results: list[Result], served: Callable[[str], Any]) -> None:
    """Record `results` into the bound children `b` of one (target, phase) (`_Bound` in
    soak.metrics); `served(provider)` is the served-by counter child of a successful answer's
    provider (a configured name or unknown, never the wire's string)."""
    outcomes: Counter[Outcome] = Counter()
    durations, lags, ttfts, tpots, gaps, overheads = [], [], [], [], [], []
    tokens = 0
    providers: Counter[str] = Counter()
    for r in results:
        outcomes[r.outcome] += 1
        durations.append(max(0.0, r.end - r.intended))
        lags.append(max(0.0, r.sent - r.intended))
        ok = r.outcome is Outcome.OK
        if r.first_token is not None:
            ttft = r.first_token - r.sent
            ttfts.append(max(0.0, ttft))
            if ok and r.tokens_out > 1:  # TPOT = (E2E − TTFT) / (tokens − 1)
                tpots.append(max(0.0, (r.end - r.sent - ttft) / (r.tokens_out - 1)))
        if r.chunk_gaps:
            gaps.extend(r.chunk_gaps)
        if ok and r.service_s is not None:
            # Clock noise can make it slightly negative; a histogram _sum must never decrease.
            overheads.append(max(0.0, r.end - r.sent - r.service_s))
        tokens += r.tokens_out
        if ok and r.provider:
            providers[r.provider] += 1
    for outcome, n in outcomes.items():
        b.outcomes[outcome].inc(n)
    observe_all(b.duration, durations)
    observe_all(b.send_lag, lags)
    observe_all(b.ttft, ttfts)
    observe_all(b.tpot, tpots)
    observe_all(b.itl, gaps)
    observe_all(b.overhead, overheads)
    if tokens:
        b.tokens.inc(tokens)
    for provider, n in providers.items():
        served(provider).inc(n)
