"""`measure()` checks answers through the gateway against the real mock's trace (in process):
an honest path is verified clean and counted live in the same outcome as reported, the
calibration straight to the mock is not checked, and a control API that refuses the trace
query makes the phase an error that says how many answers went unverified."""

from __future__ import annotations

import asyncio
import io
from collections import Counter
from pathlib import Path

from soak.mock.app import MockConfig, MockServer
from soak.mock.profile import parse_profile

from soak.mockctl import MockControl
from soak.phases import PhaseContext, Target, load_config
from soak.phases.base import measure
from soak.reports.progress import Progress
from soak.results import Result
from soak.summary import Status


def context(tmp_path: Path, url: str, mock: MockControl, seen: list[Result]) -> PhaseContext:
    path = tmp_path / "soak.yaml"
    path.write_text(f"version: 1\ngateway: {{url: '{url}'}}\nmock: {{url: '{url}'}}\n")
    target = Target("mock-primary", f"{url}/p/primary/v1/chat/completions", "m")
    return PhaseContext(
        config=load_config(path, env={}),
        run_id="mv",
        mock=mock,
        direct=Target("mock", target.url, "m"),
        gateway=target,
        progress=Progress(stream=io.StringIO(), tty=False),
        stop=asyncio.Event(),
        observe=lambda result, _phase: seen.append(result),
    )


async def run(ctx: PhaseContext, target: Target) -> tuple:
    return await measure(ctx, name="overhead", kind="overhead", target=target, rate=40.0,
                         duration=0.5, timeout=5.0, params={})  # fmt: skip


async def test_answers_through_the_gateway_are_verified_then_observed(tmp_path: Path) -> None:
    providers = {n: parse_profile({}, f"providers.{n}") for n in ("primary", "fallback")}
    async with MockServer(MockConfig(providers=providers)) as server, MockControl(
        server.url
    ) as mock:  # fmt: skip
        seen: list[Result] = []
        ctx = context(tmp_path, server.url, mock, seen)
        _, report = await run(ctx, ctx.gateway)
        assert report.verification == {
            "checked": 20, "untraced": 0, "forged": 0, "reasons": {}
        }  # fmt: skip
        assert len(seen) == 20 and Counter(r.outcome.value for r in seen) == {"ok": 20}
        assert not [c for c in report.checks if not c.passed]
        seen.clear()
        _, direct = await run(ctx, ctx.direct)  # calibration: nothing in between to check
        assert direct.verification is None and len(seen) == 20


async def test_a_refused_trace_query_is_a_phase_error_naming_the_unverified(
    tmp_path: Path,
) -> None:
    providers = {n: parse_profile({}, f"providers.{n}") for n in ("primary", "fallback")}
    config = MockConfig(providers=providers, token="right")
    async with MockServer(config) as server, MockControl(server.url, token="wrong") as mock:
        seen: list[Result] = []
        ctx = context(tmp_path, server.url, mock, seen)
        _, report = await run(ctx, ctx.gateway)
        assert report.status is Status.ERROR
        assert report.error is not None
        assert report.error.startswith(
            "mock control API: answers could not be checked against the mock's trace (20"
            " unverified): POST /_mock/traces/query: HTTP 401"
        ), report.error
        assert "\n" not in report.error and "wrong" not in report.error
        assert len(seen) == 20  # every result still reached the metrics
