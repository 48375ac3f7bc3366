"""The continuous soak's parts: the background and long-window config keys, the long-window RSS
trend, what a reload must restart, and the supervisor's restarts against real processes."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import pytest

from soak.config import ConfigError
from soak.config.daemon import BackgroundConfig
from soak.metrics import SoakMetrics, new_registry
from soak.phases import load_config
from soak.procwatch import LongTrend, Sample
from soak.runner import gateway_target
from soak.supervisor import StackSupervisor, long_trend, what_runs

ROOT = Path(__file__).resolve().parent.parent
HEAD = "version: 1\ngateway: {url: 'http://127.0.0.1:4000'}\n"
PLAN = "schedule:\n  - {name: p, interval: 1m, phases: [overhead]%s}\n"


def load(tmp_path: Path, body: str):
    path = tmp_path / "soak.yaml"
    path.write_text(HEAD + body)
    return load_config(path, env={})


def test_background_is_parsed_and_bounded(tmp_path: Path) -> None:
    plan = load(tmp_path, PLAN % ", background: {rate: 2, latency: 100ms}").daemon.schedule[0]
    assert plan.background == BackgroundConfig(rate=2.0, latency=0.1)
    assert load(tmp_path, PLAN % "").daemon.schedule[0].background is None
    with pytest.raises(ConfigError, match=r"schedule\[0\]\.background\.rate"):
        load(tmp_path, PLAN % ", background: {rate: 0}")
    with pytest.raises(ConfigError, match=r"schedule\[0\]\.background\.burst: unknown key"):
        load(tmp_path, PLAN % ", background: {rate: 1, burst: 3}")


def test_long_window_keys_have_defaults_and_bounds(tmp_path: Path) -> None:
    memory = load(tmp_path, "").slo.memory
    assert (memory.long_window, memory.long_slope_mb_per_hour) == (6 * 3600.0, 50.0)
    assert memory.long_slope_bytes_per_second == pytest.approx(50 * 1024 * 1024 / 3600)
    memory = load(tmp_path, "slo: {memory: {long_window: 30m, long_slope_mb_per_hour: 5}}").slo
    assert (memory.memory.long_window, memory.memory.long_slope_mb_per_hour) == (1800.0, 5.0)
    with pytest.raises(ConfigError, match=r"slo\.memory\.long_window"):
        load(tmp_path, "slo: {memory: {long_window: 5s}}")


def sample(t: float, rss: float) -> Sample:
    return Sample(t, None, int(rss), 10, 2, 1)


def test_long_trend_keeps_one_point_per_step_in_a_bounded_ring() -> None:
    trend = LongTrend(window=600.0, step=10.0)
    for second in range(3600):  # an hour at 1 Hz, growing 1 KB/s
        trend.add(sample(float(second), 50e6 + 1024 * second))
    assert len(trend.points) == 61  # the last 600 s, one point per 10 s
    assert trend.span() == 600.0
    assert trend.slope() == pytest.approx(1024.0)
    trend.reset()
    assert trend.slope() is None and trend.span() == 0.0


def test_a_reload_restarts_only_for_what_the_processes_run(tmp_path: Path) -> None:
    base = load(tmp_path, "")
    assert what_runs(base) == what_runs(load(tmp_path, ""))  # new Secret objects, same values
    slo_only = load(tmp_path, "slo: {memory: {long_slope_mb_per_hour: 5}}")
    assert what_runs(slo_only) == what_runs(base)
    schedule_only = load(tmp_path, PLAN % "")
    assert what_runs(schedule_only) == what_runs(base)
    path = tmp_path / "client.yaml"
    path.write_text("version: 1\ngateway: {url: 'http://127.0.0.1:4000', timeout: 3s, name: b}\n")
    client_side = load_config(path, env={})
    assert what_runs(client_side) == what_runs(base)  # the tester's own keys restart nothing
    path = tmp_path / "other.yaml"
    path.write_text("version: 1\ngateway: {url: 'http://127.0.0.1:4001'}\n")
    assert what_runs(load_config(path, env={})) != what_runs(base)


def managed(tmp_path: Path, *extra: str) -> Path:
    proxy = ROOT / "tests" / "proxy_gateway.py"
    command = [sys.executable, str(proxy), "--port", "{port}", "--upstream", "{mock_url}", *extra]
    path = tmp_path / "managed.yaml"
    path.write_text(
        "version: 1\n"
        "gateway:\n  name: proxy\n  kind: openai\n  chat_path: /p/primary/v1/chat/completions\n"
        f"  managed: {{command: {command!r}, ready_log: proxy listening, ready_timeout: 30s}}\n"
    )
    return path


def restarts(registry, reason: str) -> float | None:
    return registry.get_sample_value(
        "soak_gateway_restarts_total", {"target": "proxy", "reason": reason}
    )


async def test_the_supervisor_keeps_the_stack_and_counts_each_restart(tmp_path: Path) -> None:
    registry = new_registry()
    supervisor = StackSupervisor(SoakMetrics(registry), interval=0.2)
    config = load_config(managed(tmp_path), env={})
    try:
        stack = await supervisor.acquire(config)
        first = stack.gateway_pid()
        assert first is not None and restarts(registry, "reload") == 0
        again = await supervisor.acquire(load_config(managed(tmp_path), env={}))  # same config
        assert again is stack and again.gateway_pid() == first
        # Sampled continuously, outside any phase.
        for _ in range(50):
            if registry.get_sample_value("soak_gateway_resident_memory_bytes", {"target": "proxy"}):
                break
            await asyncio.sleep(0.1)
        assert registry.get_sample_value("soak_gateway_resident_memory_bytes",
                                         {"target": "proxy"}) > 1e6  # fmt: skip
        await supervisor.restart_for_phase()
        assert restarts(registry, "phase") == 1 and stack.gateway_pid() not in (None, first)
        changed = load_config(managed(tmp_path, "--delay", "0.001"), env={})
        new = await supervisor.acquire(changed)
        assert new is not stack and restarts(registry, "reload") == 1
        assert stack.gateway is not None and not stack.gateway.alive  # the old one was stopped
        assert restarts(registry, "crash") == 0
    finally:
        await supervisor.close(grace=5)
    assert supervisor.stack is None


async def test_background_load_pauses_for_a_phase_and_stops_within_its_bound(
    tmp_path: Path,
) -> None:
    registry = new_registry()
    supervisor = StackSupervisor(SoakMetrics(registry), interval=0.2)
    config = load_config(managed(tmp_path), env={})
    background = supervisor.background
    try:
        stack = await supervisor.acquire(config)
        background.configure(
            config,
            BackgroundConfig(rate=20.0, latency=0.01),
            target=gateway_target(config, stack),
            mock_url=stack.mock_url,
            mock_token=stack.mock_token,
        )
        background.resume()
        for _ in range(100):
            if background.sent >= 10:
                break
            await asyncio.sleep(0.05)
        async with background.paused():
            held = background.sent
            await asyncio.sleep(0.5)
            assert background.sent == held  # nothing sent, nothing in flight, while a phase runs
        await asyncio.sleep(0.5)
        assert background.sent > held  # resumed after the phase
        ok = registry.get_sample_value(
            "soak_requests_total", {"target": "proxy", "phase": "background", "outcome": "ok"}
        )
        assert ok is not None and ok >= 10
        loop = asyncio.get_running_loop()
        began = loop.time()
        await background.close(bound=2.0)
        assert loop.time() - began < 2.5
        stopped = background.sent
        await asyncio.sleep(0.3)
        assert background.sent == stopped
    finally:
        await supervisor.close(grace=5)


async def test_background_answers_the_mock_never_served_are_not_ok(tmp_path: Path) -> None:
    """The background load is verified like a phase: through a gateway that caches (replays its
    first answer to every later request), the replays count `untraced` or `forged`, never
    `ok` (unverified, they counted `ok` under phase="background")."""
    hostile = ROOT / "tests" / "hostile_gateway.py"
    command = [sys.executable, str(hostile), "--port", "{port}", "--mode", "cache",
               "--upstream", "{mock_url}"]  # fmt: skip
    path = tmp_path / "hostile.yaml"
    path.write_text(
        "version: 1\n"
        "gateway:\n  name: proxy\n  kind: openai\n  chat_path: /p/primary/v1/chat/completions\n"
        f"  managed: {{command: {command!r}, ready_log: hostile gateway listening, "
        "ready_timeout: 30s}\n"
    )
    registry = new_registry()
    supervisor = StackSupervisor(SoakMetrics(registry), interval=0.2)
    config = load_config(path, env={})
    background = supervisor.background
    try:
        stack = await supervisor.acquire(config)
        background.configure(config, BackgroundConfig(rate=20.0, latency=0.01),
                             target=gateway_target(config, stack), mock_url=stack.mock_url,
                             mock_token=stack.mock_token)  # fmt: skip
        background.resume()
        for _ in range(100):
            if background.sent >= 20:
                break
            await asyncio.sleep(0.05)
        await background.close(bound=3.0)  # verifies what it still held
    finally:
        await supervisor.close(grace=5)

    def count(outcome: str) -> float:
        labels = {"target": "proxy", "phase": "background", "outcome": outcome}
        return registry.get_sample_value("soak_requests_total", labels) or 0.0

    assert background.sent >= 20
    assert count("ok") <= 1  # the one answer the cache really fetched
    assert count("untraced") + count("forged") >= background.sent - 1 - 4, (
        count("ok"), count("untraced"), count("forged"), background.sent)  # fmt: skip


def test_the_long_trend_leaves_a_process_start_up_out() -> None:
    """LiteLLM grows ~160 MB in its first minute, then stays flat: no trend once warmed up."""
    trend = LongTrend(window=1800.0, step=10.0, warmup=180.0)
    for second in range(1200):
        rss = 240e6 + 160e6 * min(second, 60) / 60  # the start-up, then flat
        trend.add(sample(float(second), rss))
    assert trend.points[0][0] >= 180.0
    assert trend.slope() == pytest.approx(0.0, abs=1e-6)
    unwarmed = LongTrend(window=1800.0, step=10.0)
    for second in range(1200):
        unwarmed.add(sample(float(second), 240e6 + 160e6 * min(second, 60) / 60))
    assert (unwarmed.slope() or 0) * 3600 / 2**20 > 50  # what the alert saw without it


def test_the_run_report_says_the_long_window_slope_as_the_alert_reads_it(tmp_path: Path) -> None:
    config = load(tmp_path, "slo: {memory: {long_window: 30m, long_slope_mb_per_hour: 5}}")
    supervisor = StackSupervisor(SoakMetrics(new_registry()), interval=0.2)
    assert supervisor.long_slope_note(config) is None  # no samples: no gateway of ours
    supervisor._trend = trend = long_trend(1800.0)  # what a reload to this config sets
    for second in range(600):  # 7 min at 12 MB/h after the first 180 s (warm-up) left out
        trend.add(sample(float(second), 300e6 + 12 * 2**20 * second / 3600))
    early = supervisor.long_slope_note(config)
    assert early == ("gateway memory over the long window: +12.0 MB/h from 7 min of samples"
                     " (window 1800s); judged from 900s of samples on")  # fmt: skip
    for second in range(600, 1400):
        trend.add(sample(float(second), 300e6 + 12 * 2**20 * second / 3600))
    assert supervisor.long_slope_note(config) == (
        "gateway memory over the long window: +12.0 MB/h from 20 min of samples"
        " (window 1800s), ABOVE the 5 MB/h limit")  # fmt: skip
    calm = load(tmp_path, "slo: {memory: {long_window: 30m, long_slope_mb_per_hour: 50}}")
    assert supervisor.long_slope_note(calm).endswith(", within the 50 MB/h limit")
