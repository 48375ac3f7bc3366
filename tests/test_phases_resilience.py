"""Resilience phases against the real mock over HTTP (no gateway: the mock's primary is the
target, so nothing fails over), plus the memory trend and tier grading on given figures."""

from __future__ import annotations

import asyncio
import io
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from soak.mock.app import MockConfig, MockServer
from soak.mock.profile import parse_profile

from soak.config.schema import Tier
from soak.mockctl import MockControl
from soak.phases import PhaseContext, Target, load_config
from soak.phases.breaker import run_breaker
from soak.phases.failover import run_failover
from soak.phases.memory import memory_trend, run_memory
from soak.procwatch import Sample
from soak.reports.progress import Progress
from soak.summary import Status
from soak.verdicts import tier_of

MB = 1024 * 1024


def _samples(rss_mb: list[float]) -> list[Sample]:
    return [Sample(float(i), None, int(mb * MB), 10, 4, 1) for i, mb in enumerate(rss_mb)]


def test_memory_trend_fails_a_slow_leak_that_passes_the_ratios() -> None:
    warm_then_leak = [100, 110, 118, 120] + [120 + 0.5 * i for i in range(1, 21)]  # +0.5 MB/s
    trend = memory_trend(_samples(warm_then_leak), warmup=3.0)
    assert trend is not None
    assert (trend.initial, trend.peak, trend.final) == (100 * MB, 130 * MB, 130 * MB)
    assert trend.growth == pytest.approx(0.30) and trend.peak_ratio == pytest.approx(1.30)
    assert trend.slope_mb_per_min == pytest.approx(30.0, rel=0.02)  # fails a 15 MB/min bound
    flat = memory_trend(_samples([100, 130] + [130, 131] * 6), warmup=2.0)
    assert flat is not None and abs(flat.slope_mb_per_min or 0) < 2  # warm-up jump: no leak
    assert memory_trend([], warmup=0) is None
    one = memory_trend(_samples([50]), warmup=0)
    assert one is not None and one.slope_mb_per_min is None and one.growth == 0.0


def test_tiers_grade_both_directions() -> None:
    tiers = {"p95": Tier(3.0, 5.0), "success_ratio": Tier(0.99, 0.95)}
    assert [tier_of("p95", v, tiers) for v in (2.0, 4.0, 5.0)] == [
        "target",
        "acceptable",
        "warning",
    ]
    assert [tier_of("success_ratio", v, tiers) for v in (0.995, 0.96, 0.9)] == [
        "target",
        "acceptable",
        "warning",
    ]
    assert tier_of("p99", 1.0, tiers) is None and tier_of("p95", None, tiers) is None


@pytest.fixture
async def ctx(tmp_path: Path) -> AsyncIterator[PhaseContext]:
    providers = {name: parse_profile({}, f"providers.{name}") for name in ("primary", "fallback")}
    async with MockServer(MockConfig(providers=providers)) as server:
        path = tmp_path / "soak.yaml"
        path.write_text(
            "version: 1\n"
            f"gateway: {{url: '{server.url}', timeout: 5s}}\n"
            f"mock: {{url: '{server.url}'}}\n"
            "phases:\n"
            "  breaker: {rate: 20, duration: 3s, latency: 10ms, lead: 500ms, fault: 1s,"
            " window: 500ms}\n"
            "  failover: {requests: 10, rate: 20, latency: 10ms}\n"
        )
        config = load_config(path, env={})
        url = f"{server.url}/p/primary/v1/chat/completions"
        mock = MockControl(server.url)
        try:
            yield PhaseContext(
                config=config,
                run_id="t1",
                mock=mock,
                direct=Target("mock", url, "m"),
                gateway=Target("mock-primary", url, "m"),
                progress=Progress(stream=io.StringIO(), tty=False),
                stop=asyncio.Event(),
            )
        finally:
            await mock.close()


async def _faults(mock: MockControl, provider: str) -> tuple[int, int]:
    """(active, injected so far) faults of `provider`, from the mock's stats."""
    stats = (await mock.stats())["providers"][provider]
    return len(stats["active_faults"]), stats["faults_injected"]


async def test_breaker_without_a_breaker_never_opens_and_clients_see_the_fault(ctx) -> None:
    report = await run_breaker(ctx)
    d = report.details.to_dict()
    assert report.status == Status.FAILED
    primary = d["observed"]["primary"]
    assert [s for _, s in primary["timeline"]] == ["CLOSED"]  # every request tried it
    assert primary["time_to_open"] is None
    # at the 0.5 s lead, for the 1 s fault (+~20 ms of HTTP) vs off schedule: 0.3 s slack, 14x
    assert 0.4 < d["fault_start"] < 0.8 and 1.4 < d["fault_end"] < 1.9
    assert d["client_errors"]["during"] >= 15 and d["client_errors"]["before"] == 0
    assert d["reported"] == "not reported"
    failed = {c.name for c in report.checks if not c.passed}
    assert failed == {"primary time to open", "success ratio", "fallback tried when needed"}
    assert await ctx.mock.traces([]) == {}
    assert await ctx.mock.attempts("primary", limit=1)  # traffic really went to the mock
    answer = await ctx.mock.get_profile("primary")
    assert answer.get("faults", {}).get("error_rate", 0) == 0  # the injection was cleared


async def test_failover_without_a_fallback_fails_and_clears_the_fault(ctx) -> None:
    report = await run_failover(ctx)
    d = report.details.to_dict()
    assert (d["requests"], d["failed_over"], d["client_errors"], d["timed"]) == (10, 0, 10, 0)
    assert report.status == Status.FAILED and "failover_time" not in report.distributions
    assert await _faults(ctx.mock, "primary") == (0, 1)  # cleared in the phase's finally


async def test_fault_is_cleared_when_the_phase_is_cancelled(ctx) -> None:
    task = asyncio.create_task(run_failover(ctx))
    await asyncio.sleep(0.2)
    assert await _faults(ctx.mock, "primary") == (1, 1)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert await _faults(ctx.mock, "primary") == (0, 1)


async def test_memory_without_a_known_process_is_skipped_with_the_reason(ctx) -> None:
    report = await run_memory(ctx)
    assert report.status == Status.SKIPPED and report.sent == 0
    assert report.error is not None and "gateway.managed" in report.error
