"""Failover time and classification from synthetic attempt trails."""

from __future__ import annotations

import pytest

from soak.breaker import Attempt
from soak.failover import failover_stats, failover_time, served_by
from soak.results import Outcome, Result


def _result(seq: int, ok: bool = True) -> Result:
    outcome = Outcome.OK if ok else Outcome.HTTP_5XX
    return Result(seq, 0.0, 0.0, 1.0, outcome, nonce=f"n{seq}")


def test_failover_time_spans_first_primary_attempt_to_fallback_answer() -> None:
    trail = [
        Attempt("primary", 100.0, 0.002, False),
        Attempt("primary", 100.05, 0.002, False),
        Attempt("fallback", 100.1, 0.2, True),
    ]
    assert failover_time(trail, "primary", "fallback") == pytest.approx(0.3)
    assert served_by(trail) == "fallback"
    assert failover_time(trail[2:], "primary", "fallback") is None  # never tried the primary
    assert failover_time(trail[:2], "primary", "fallback") is None  # never reached the fallback
    failed_fallback = [trail[0], Attempt("fallback", 100.1, 0.2, False)]
    assert failover_time(failed_fallback, "primary", "fallback") is None


def test_failover_stats_classify_every_request() -> None:
    trails = {
        "n0": [Attempt("primary", 1.0, 0.001, False), Attempt("fallback", 1.01, 0.1, True)],
        "n1": [Attempt("primary", 2.0, 0.001, False), Attempt("fallback", 2.5, 0.5, True)],
        "n2": [Attempt("fallback", 3.0, 0.1, True)],
        "n3": [Attempt("primary", 4.0, 0.1, True)],
        "n4": [Attempt("primary", 5.0, 0.001, False)],
    }
    results = [_result(0), _result(1), _result(2), _result(3), _result(4, ok=False), _result(5)]
    results[5].provider = "fallback"  # served, per the client's marker, but no trace came back
    stats = failover_stats(results, trails, "primary", "fallback")
    assert stats.requests == 6
    assert stats.failed_over == 4 and stats.direct == 2
    assert stats.timed == pytest.approx([0.11, 1.0])
    assert stats.served_by_primary == 1 and stats.client_errors == 1 and stats.untraced == 1
    assert stats.ratio == pytest.approx(4 / 6)
    assert (stats.mean, stats.min, stats.max) == pytest.approx((0.555, 0.11, 1.0))


def test_no_timed_failover_has_no_figures() -> None:
    stats = failover_stats([], {}, "primary", "fallback")
    assert (stats.ratio, stats.mean, stats.min, stats.max) == (0.0, None, None, None)
