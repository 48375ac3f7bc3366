"""Observed breaker inference on synthetic attempt trails (no gateway, no sleeping)."""

from __future__ import annotations

from soak.breaker import (
    STATE_NAMES,
    Attempt,
    BreakerState,
    ClientRequest,
    WindowRule,
    compress,
    observe,
    parse_trails,
    state_name,
    window_states,
)

CLOSED, HALF_OPEN, OPEN = BreakerState.CLOSED, BreakerState.HALF_OPEN, BreakerState.OPEN

RATE = 10  # requests per second in the synthetic story


def _story(
    fault: tuple[float, float], probes: set[int], opens_after: int, recovers_at: float
) -> tuple[list[ClientRequest], dict[str, list[Attempt]]]:
    """30 s at 10 req/s. Before the fault every request is served by the primary. During it the
    first `opens_after` requests fail at the primary then succeed at the fallback; afterwards
    only request numbers in `probes` still try the primary. From `recovers_at` on, the primary
    serves again."""
    start, end = fault
    requests, trails = [], {}
    faulted = 0
    for i in range(30 * RATE):
        t = 1000.0 + i / RATE
        nonce = f"n{i}"
        requests.append(ClientRequest(nonce, t))
        if t < start or t >= recovers_at:
            trails[nonce] = [Attempt("primary", t + 0.01, 0.1, True)]
            continue
        tries_primary = faulted < opens_after or i in probes
        faulted += 1
        trail = []
        if tries_primary:
            ok = t >= end
            trail.append(Attempt("primary", t + 0.01, 0.001, ok))
            if ok:
                trails[nonce] = trail
                continue
        trail.append(Attempt("fallback", t + 0.02, 0.1, True))
        trails[nonce] = trail
    return requests, trails


def test_fault_opens_probes_read_half_open_then_recovers() -> None:
    fault = (1005.0, 1015.0)
    probes = {130, 131}  # a cooldown expiring at t=1013: two probes
    requests, trails = _story(fault, probes, opens_after=2, recovers_at=1018.0)
    obs = observe("primary", requests, trails, fault_start=fault[0], fault_end=fault[1])
    states = [s for _, s in obs.timeline]
    assert states == [CLOSED, HALF_OPEN, OPEN, HALF_OPEN, OPEN, HALF_OPEN, CLOSED]
    assert obs.reached_open and obs.final_state == CLOSED
    assert [s.name for _, s in obs.timeline[:3]] == ["CLOSED", "HALF_OPEN", "OPEN"]
    assert obs.transitions == 6
    # the first window with no primary attempt starts at the third faulted request (t=1005.2)
    assert obs.time_to_open is not None and abs(obs.time_to_open - 0.2) < 1e-6
    # the primary serves again from 1018.0; the window [1017.9, 1018.9) is the first with
    # >= 90% of its requests at the primary (resolution: one request in a 1 s window)
    assert obs.time_to_recover is not None and abs(obs.time_to_recover - 2.9) < 1e-6


def test_fallback_is_judged_only_on_requests_the_primary_did_not_serve() -> None:
    fault = (1005.0, 1015.0)
    requests, trails = _story(fault, set(), opens_after=2, recovers_at=1015.0)
    fallback = observe("fallback", requests, trails, served_before=("primary",))
    assert [s for _, s in fallback.timeline] == [CLOSED]  # healthy periods say nothing
    assert fallback.timeline[0][0] == fault[0]
    naive = observe("fallback", requests, trails)  # every request counted: looks open
    assert OPEN in naive.states_seen()


def test_never_opening_gateway_reads_closed_and_has_no_time_to_open() -> None:
    fault = (1005.0, 1015.0)
    requests, trails = _story(fault, set(), opens_after=10**6, recovers_at=1015.0)
    obs = observe("primary", requests, trails, fault_start=fault[0], fault_end=fault[1])
    assert [s for _, s in obs.timeline] == [CLOSED]
    assert obs.time_to_open is None and not obs.reached_open
    assert obs.time_to_recover == 0.0


def test_requests_without_trail_count_as_not_attempting() -> None:
    requests = [ClientRequest(f"n{i}", float(i) / 10) for i in range(20)]
    obs = observe("primary", requests, {})
    assert [s for _, s in obs.timeline] == [OPEN]


def test_sparse_windows_carry_no_state() -> None:
    points = [(0.0, True), (5.0, False), (10.0, False), (10.1, False), (10.2, False)]
    states = window_states(points, WindowRule(window=1.0, min_requests=3))
    assert [s for _, s in states] == [None, None, OPEN, None, None]
    assert compress(states) == [(10.0, OPEN)]


def test_high_threshold_separates_closed_from_half_open() -> None:
    points = [(i / 10, i != 3) for i in range(10)]  # 9 of 10 attempted
    assert window_states(points, WindowRule(high=0.9))[0][1] == CLOSED
    assert window_states(points, WindowRule(high=0.95))[0][1] == HALF_OPEN


def test_parse_trails_reads_the_mock_answer() -> None:
    traces = {
        "a": [
            {"provider": "fallback", "arrival": 2.0, "service_s": 0.1, "status": 200,
             "outcome": "ok"},
            {"provider": "primary", "arrival": 1.0, "service_s": 0.0, "status": 500,
             "outcome": "fault_error", "fault": "error"},
        ],
        "b": [],
    }  # fmt: skip
    trails = parse_trails(traces)
    assert [(a.provider, a.ok) for a in trails["a"]] == [("primary", False), ("fallback", True)]
    assert trails["b"] == []


def test_one_breaker_state_enum_everywhere() -> None:
    from soak import metrics
    from soak.gateway import selfreport

    assert [(s.name, int(s)) for s in BreakerState] == [("CLOSED", 0), ("HALF_OPEN", 1),
                                                         ("OPEN", 2)]  # fmt: skip
    assert metrics.BreakerState is BreakerState
    assert (selfreport.CLOSED, selfreport.HALF_OPEN, selfreport.OPEN) == (CLOSED, HALF_OPEN, OPEN)
    assert isinstance(selfreport.OPEN, BreakerState)
    assert BreakerState.named("HALF_OPEN") is HALF_OPEN
    assert BreakerState.named("half-open") is None and BreakerState.named(2) is None
    assert state_name(2) == "OPEN" and state_name(7) == "7"
    assert STATE_NAMES == {0: "CLOSED", 1: "HALF_OPEN", 2: "OPEN"}
