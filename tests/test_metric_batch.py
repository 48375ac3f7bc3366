"""Batched metric updates (soak.metric_batch): the same samples as one observe per request, read
exactly whenever the registry is collected, never a series resurrected after it was forgotten."""

from __future__ import annotations

import sys
import threading
from array import array

from prometheus_client import CollectorRegistry, Histogram

from soak.metric_batch import BATCH, observe_all
from soak.metrics import SoakMetrics
from soak.results import Outcome, Result

BOUNDS = (0.001, 0.005, 0.01, 0.1, 1.0)


def samples(registry: CollectorRegistry) -> dict[tuple[str, tuple], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in registry.collect()
        for s in family.samples
        if not s.name.endswith("_created")
    }


def test_observe_all_gives_the_samples_of_one_observe_per_value() -> None:
    values = [0.0, 0.0005, 0.001, 0.001, 0.0010001, 0.005, 0.05, 1.0, 2.5, 1e9, 0.01]
    one, bulk = CollectorRegistry(), CollectorRegistry()
    h1 = Histogram("h", "h", ["x"], buckets=BOUNDS, registry=one).labels("a")
    h2 = Histogram("h", "h", ["x"], buckets=BOUNDS, registry=bulk).labels("a")
    for v in values:
        h1.observe(v)
    observe_all(h2, values)
    got = samples(bulk)
    assert got == samples(one)
    assert got[("h_bucket", (("le", "0.001"), ("x", "a")))] == 4  # a value on a bound is in it
    assert got[("h_count", (("x", "a"),))] == len(values)


def result(seq: int, outcome: Outcome = Outcome.OK, *, provider: str | None = "primary",
           stream: bool = False) -> Result:  # fmt: skip
    r = Result(seq, 0.0, 0.001, 0.051, outcome, 200, provider=provider, service_s=0.05,
               tokens_out=4, nonce=f"[soak:t:{seq}]")  # fmt: skip
    if stream:
        r.first_token, r.chunk_gaps = 0.011, array("d", [0.01, 0.01, 0.02])
    return r


def test_batched_results_read_exactly_at_any_collect() -> None:
    registry = CollectorRegistry()
    m = SoakMetrics(registry, providers=("primary", "fallback"))
    results = [result(i, stream=i % 2 == 0) for i in range(10)]
    results += [result(10, Outcome.HTTP_5XX, provider=None), result(11, provider="wire-made")]
    for r in results:
        m.observe(r, target="gw", phase="overhead")
    get = registry.get_sample_value
    labels = {"target": "gw", "phase": "overhead"}
    assert get("soak_requests_total", {**labels, "outcome": "ok"}) == 11
    assert get("soak_requests_total", {**labels, "outcome": "http_5xx"}) == 1
    assert get("soak_request_duration_seconds_count", labels) == 12
    assert get("soak_gateway_overhead_seconds_count", labels) == 11
    assert get("soak_time_to_first_token_seconds_count", labels) == 5
    assert get("soak_inter_token_gap_seconds_count", labels) == 15
    assert get("soak_output_tokens_total", labels) == 48
    assert get("soak_served_requests_total", {**labels, "provider": "primary"}) == 10
    assert get("soak_served_requests_total", {**labels, "provider": "unknown"}) == 1
    m.observe(result(12), target="gw", phase="overhead")  # after a read: read again, counted
    assert get("soak_requests_total", {**labels, "outcome": "ok"}) == 12


def test_a_full_batch_is_applied_without_a_read() -> None:
    registry = CollectorRegistry()
    m = SoakMetrics(registry)
    for i in range(BATCH):
        m.observe(result(i), target="gw", phase="overhead")
    child = m.bind(target="gw", phase="overhead").outcomes[Outcome.OK]
    assert child._value.get() == BATCH  # applied at the BATCH-th, before any collect


def test_reads_in_another_thread_lose_and_double_nothing() -> None:
    """The daemon renders /metrics in a worker thread while the loop keeps observing: every
    result is counted exactly once however the reads interleave with the queue."""
    registry = CollectorRegistry()
    m = SoakMetrics(registry)
    n, done = 20 * BATCH + 7, threading.Event()

    def scrape() -> None:
        while not done.is_set():
            registry.get_sample_value("soak_requests_total", {})  # a collect: flushes
    reader = threading.Thread(target=scrape)
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # switch threads as often as the interpreter can
    reader.start()
    try:
        for i in range(n):
            m.observe(result(i), target="gw", phase="overhead")
    finally:
        done.set()
        reader.join()
        sys.setswitchinterval(interval)
    labels = {"target": "gw", "phase": "overhead"}
    assert registry.get_sample_value("soak_requests_total", {**labels, "outcome": "ok"}) == n
    assert registry.get_sample_value("soak_request_duration_seconds_count", labels) == n


def test_a_forgotten_target_is_not_brought_back_by_its_queued_results() -> None:
    registry = CollectorRegistry()
    m = SoakMetrics(registry)
    m.observe(result(1), target="old", phase="overhead")
    m.forget_target("old")
    assert not [k for k in samples(registry) if ("target", "old") in k[1]]
