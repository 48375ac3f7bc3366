"""Answers checked against the mock's trace (soak/verify.py), without any load: the verdict per
answer, the tally and its report lines, the batching of trace queries, and the negative
per-request overhead the reports now count instead of hiding."""

from __future__ import annotations

import asyncio

import pytest

from soak.engine import LoadRun, LoadSpec
from soak.results import Outcome, Result
from soak.stats import negative_overhead, report_fields
from soak.summary import NegativeOverhead
from soak.verify import (
    FAILED_REASON,
    PROVIDER_REASON,
    REPLAY_REASON,
    SERVICE_REASON,
    UNTRACED_REASON,
    TraceVerifier,
    Verification,
    classify,
)

OFFSET = 1_700_000_000.0
"""Unix seconds at the results' clock zero."""


def answer(
    seq: int,
    provider: str | None = "primary",
    service_s: float | None = 0.020,
    sent: float = 10.0,
    end: float = 10.030,
    outcome: Outcome = Outcome.OK,
) -> Result:
    return Result(seq, sent, sent, end, outcome, 200, provider=provider, service_s=service_s,
                  nonce=f"[soak:r:{seq}]")  # fmt: skip


def attempt(provider: str = "primary", service_s: float = 0.020, arrival: float = 10.001,
            outcome: str = "ok") -> dict:  # fmt: skip
    return {"provider": provider, "arrival": OFFSET + arrival, "service_s": service_s,
            "status": 200 if outcome == "ok" else 500, "outcome": outcome}  # fmt: skip


@pytest.mark.parametrize(
    ("attempts", "reason"),
    [
        ([attempt()], None),
        ([attempt(service_s=0.020004)], None),  # the marker's microsecond rounding
        ([attempt(service_s=0.0204)], SERVICE_REASON),  # 400 µs off: another attempt's
        ([attempt("primary", outcome="error"), attempt("fallback")], PROVIDER_REASON),
        ([], UNTRACED_REASON),
        ([attempt(arrival=5.0)], UNTRACED_REASON),  # an older request under the same nonce
        ([attempt(arrival=11.0)], UNTRACED_REASON),  # after the answer had ended
        ([attempt(provider="fallback")], PROVIDER_REASON),
        ([attempt(service_s=0.5)], SERVICE_REASON),
        ([attempt(outcome="error")], FAILED_REASON),
        ([{"provider": "primary", "arrival": "soon", "outcome": "ok"}], UNTRACED_REASON),
    ],
    ids=["served", "rounded", "400us-off", "failed-over-marker-disagrees", "no-attempt",
         "older-attempt", "later-attempt", "other-provider", "service-time", "mock-failed",
         "bad-arrival"],
)  # fmt: skip
def test_classify_an_ok_answer_against_its_attempts(attempts: list, reason: str | None) -> None:
    assert classify(answer(1), attempts, offset=OFFSET) == reason


def test_a_failed_over_answer_is_traced_by_its_serving_attempt() -> None:
    attempts = [attempt("primary", outcome="error"), attempt("fallback", arrival=10.002)]
    assert classify(answer(1, provider="fallback"), attempts, offset=OFFSET) is None


def test_an_answer_naming_another_requests_nonce_is_a_replay() -> None:
    """A gateway that calls the mock but serves an earlier answer: the mock's body field names
    the earlier request."""
    replayed = answer(2)
    replayed.answered = "[soak:r:1]"
    assert classify(replayed, [attempt()], offset=OFFSET) == REPLAY_REASON
    replayed.answered = "[soak:r:2]"
    assert classify(replayed, [attempt()], offset=OFFSET) is None
    assert classify(replayed, [], offset=OFFSET) == UNTRACED_REASON  # no attempt comes first


def test_an_answer_without_a_marker_is_traced_when_the_mock_served_it() -> None:
    stripped = answer(1, provider=None, service_s=None)
    assert classify(stripped, [attempt()], offset=OFFSET) is None
    assert classify(stripped, [], offset=OFFSET) == UNTRACED_REASON


def test_apply_reclassifies_and_counts_and_never_leaves_an_overhead() -> None:
    results = [answer(1), answer(2), answer(3, service_s=9.0), answer(4, outcome=Outcome.TIMEOUT)]
    traces = {"[soak:r:1]": [attempt()], "[soak:r:3]": [attempt()]}
    v = Verification()
    v.apply(results, traces, offset=OFFSET)
    assert [r.outcome for r in results] == [Outcome.OK, Outcome.UNTRACED, Outcome.FORGED,
                                             Outcome.TIMEOUT]  # fmt: skip
    assert (v.checked, v.untraced, v.forged, v.failed) == (3, 1, 1, 2)
    assert results[2].overhead is None and results[2].provider is None
    assert v.to_dict() == {"checked": 3, "untraced": 1, "forged": 1,
                           "reasons": {UNTRACED_REASON: 1, SERVICE_REASON: 1}}  # fmt: skip
    note = v.note()
    assert note is not None and "1 untraced and 1 forged of 3 answers" in note
    assert "cache in the gateway" in note and "rewrote" in note
    check = v.check()
    assert check is not None and not check.passed and check.value == 2


def test_a_clean_tally_adds_no_note_and_no_check() -> None:
    v = Verification()
    v.apply([answer(1)], {"[soak:r:1]": [attempt()]}, offset=OFFSET)
    assert (v.checked, v.failed, v.note(), v.check()) == (1, 0, None, None)


class FakeMock:
    """The control API's trace query: attempts for the nonces it served, every call kept."""

    def __init__(self, served: set[str], fail_after: int | None = None) -> None:
        self.served, self.calls, self.fail_after = served, [], fail_after

    async def traces(self, nonces: list[str]) -> dict:
        self.calls.append(list(nonces))
        if self.fail_after is not None and len(self.calls) > self.fail_after:
            raise RuntimeError("POST /_mock/traces/query: HTTP 401: bad token\nmore")
        await asyncio.sleep(0)
        return {n: [attempt()] if n in self.served else [] for n in nonces}


async def test_the_verifier_batches_queries_and_forwards_only_verified_results() -> None:
    served = {f"[soak:r:{i}]" for i in range(0, 2500) if i % 100}  # every 100th never served
    mock = FakeMock(served)
    seen: list[Outcome] = []
    v = TraceVerifier(mock.traces, lambda r: seen.append(r.outcome), chunk=1000, interval=60,
                      offset=lambda: OFFSET)  # fmt: skip
    v.start()
    v.add(answer(99999, outcome=Outcome.HTTP_5XX))  # a failure is not held
    assert seen == [Outcome.HTTP_5XX]
    for i in range(2500):
        v.add(answer(i))
    tally = await v.close()
    assert [len(c) for c in mock.calls] == [1000, 1000, 500]  # per chunk, never per request
    assert len(seen) == 2501
    assert (tally.checked, tally.untraced, tally.forged) == (2500, 25, 0)
    assert seen.count(Outcome.UNTRACED) == 25


async def test_the_verifier_hands_results_on_within_its_interval() -> None:
    mock = FakeMock({"[soak:r:1]"})
    seen: list[Result] = []
    v = TraceVerifier(mock.traces, seen.append, interval=0.05, offset=lambda: OFFSET)
    v.start()
    v.add(answer(1))
    assert seen == []  # held until verified
    await asyncio.sleep(0.3)  # 6 intervals
    assert len(seen) == 1 and len(mock.calls) == 1
    await v.close()
    assert len(mock.calls) == 1  # nothing left: no empty query


async def test_the_first_answer_is_verified_at_once_the_rest_per_interval() -> None:
    """Phases time from the first answer (the breaker's lead): it never waits an interval."""
    mock = FakeMock({"[soak:r:1]", "[soak:r:2]"})
    seen: list[Result] = []
    v = TraceVerifier(mock.traces, seen.append, interval=60, offset=lambda: OFFSET)
    v.start()
    v.add(answer(1))
    await asyncio.sleep(0.05)  # a few loop turns, not the 60 s interval
    assert len(seen) == 1
    v.add(answer(2))
    await asyncio.sleep(0.05)
    assert len(seen) == 1  # held for the interval (or close)
    await v.close()
    assert len(seen) == 2 and len(mock.calls) == 2


async def test_a_failing_query_stops_verifying_and_says_why() -> None:
    mock = FakeMock({f"[soak:r:{i}]" for i in range(10)}, fail_after=1)
    seen: list[Result] = []
    v = TraceVerifier(mock.traces, seen.append, chunk=4, interval=60, offset=lambda: OFFSET)
    v.start()
    for i in range(10):
        v.add(answer(i))
    tally = await v.close()
    assert len(seen) == 10
    assert tally.error == "POST /_mock/traces/query: HTTP 401: bad token"
    assert (tally.checked, tally.unverified) == (4, 6)
    assert len(mock.calls) == 2  # no query after the failure
    assert tally.to_dict()["unverified"] == 6


async def test_a_raising_forward_costs_no_result() -> None:
    mock = FakeMock({"[soak:r:1]", "[soak:r:2]"})
    kept: list[Result] = []

    def forward(r: Result) -> None:
        kept.append(r)
        raise ValueError("a metrics bug")

    v = TraceVerifier(mock.traces, forward, interval=60, offset=lambda: OFFSET)
    v.start()
    v.add(answer(1))
    v.add(answer(2))
    await v.close()
    assert len(kept) == 2 and v.forward_errors == 2


async def test_abort_stops_the_periodic_queries() -> None:
    mock = FakeMock(set())
    v = TraceVerifier(mock.traces, lambda r: None, interval=0.01, offset=lambda: OFFSET)
    v.start()
    v.add(answer(1))
    v.abort()
    await asyncio.sleep(0.05)
    assert len(mock.calls) <= 1


def test_negative_overhead_is_counted_with_its_worst_value() -> None:
    results = [answer(1, service_s=0.020), answer(2, service_s=0.045), answer(3, service_s=0.031)]
    assert negative_overhead(results) == NegativeOverhead(2, pytest.approx(-0.015))
    assert negative_overhead(results[:1]) is None


def test_negative_overhead_reaches_the_phase_report() -> None:
    run = LoadRun(spec=LoadSpec(rate=1, duration=1), t0=0.0, sent=2,
                  results=[answer(1, service_s=0.020), answer(2, service_s=0.999)])  # fmt: skip
    fields = report_fields(run)
    assert fields["negative_overhead"] == NegativeOverhead(1, pytest.approx(-0.969))
    assert any("1 requests had a negative per-request overhead (worst -969.000 ms)" in n
               for n in fields["notes"])  # fmt: skip
    assert fields["distributions"]["overhead_per_request"].min == 0.0  # the histogram's clamp
