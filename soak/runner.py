"""One run of a phase plan: start what soak manages, run the phases in order, hand each
`PhaseReport` on as it completes. Shared by `soak once` and the daemon's scheduled runs.

A phase that cannot talk to the mock's control API becomes an error report, not an exception;
injected faults are cleared whatever happens.
"""

from __future__ import annotations

import asyncio
import contextlib
import tempfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import AsyncExitStack
from pathlib import Path
from typing import TYPE_CHECKING

from soak import phases
from soak.client import make_session
from soak.config.schema import Config
from soak.gateway.said import GatewaySaid
from soak.mockctl import MockControl, MockControlError
from soak.phases import PhaseContext, Target
from soak.procwatch import Sample
from soak.reports.progress import Progress
from soak.results import Result
from soak.stack import Stack, StackError, start_stack
from soak.summary import PhaseReport, RunReport, Status, repeat_name

if TYPE_CHECKING:
    from soak.config.daemon import BackgroundConfig
    from soak.supervisor import StackSupervisor


async def run_plan(
    config: Config,
    run: RunReport,
    names: Sequence[str],
    *,
    progress: Progress,
    stop: asyncio.Event,
    on_phase: Callable[[PhaseReport], None] = lambda _report: None,
    observe: Callable[[Result, str], None] | None = None,
    on_process_sample: Callable[[Sample], object] | None = None,
    supervisor: StackSupervisor | None = None,
    background: BackgroundConfig | None = None,
    repeats: Mapping[str, int] | None = None,
) -> RunReport:
    """Run `names` into `run` (phases appended as they finish); errors land in `run.error`.

    `repeats` (phase → times): such a phase runs that often back to back, its later reports
    named `overhead#2`, `overhead#3` (`soak once --repeat`, for a comparison with a baseline).

    With a `supervisor` (the daemon) the run uses its long-lived stack, which outlives the run,
    and its `background` load (paused for the whole run); else the run starts its own."""
    if supervisor is None:
        return await _run_plan(config, run, names, progress=progress, stop=stop,
                               on_phase=on_phase, observe=observe,
                               on_process_sample=on_process_sample,
                               repeats=repeats or {})  # fmt: skip
    async with supervisor.background.paused():
        try:
            stack = await supervisor.acquire(config)
        except StackError as exc:
            run.error = str(exc)
            return run
        finally:
            run.notes.extend(supervisor.take_notes())
        await _run_plan(config, run, names, progress=progress, stop=stop, on_phase=on_phase,
                        observe=observe, on_process_sample=on_process_sample,
                        stack=stack, supervisor=supervisor, repeats=repeats or {})  # fmt: skip
        supervisor.background.configure(
            config,
            background,
            target=gateway_target(config, stack),
            mock_url=stack.mock_url,
            mock_token=stack.mock_token,
        )
    return run


async def _run_plan(
    config: Config,
    run: RunReport,
    names: Sequence[str],
    *,
    progress: Progress,
    stop: asyncio.Event,
    on_phase: Callable[[PhaseReport], None],
    observe: Callable[[Result, str], None] | None,
    on_process_sample: Callable[[Sample], object] | None,
    stack: Stack | None = None,
    supervisor: StackSupervisor | None = None,
    repeats: Mapping[str, int],
) -> RunReport:
    async with AsyncExitStack() as exits:
        if stack is None:
            workdir = Path(exits.enter_context(tempfile.TemporaryDirectory(prefix="soak-")))
            try:
                stack = await start_stack(config, workdir, exits)
            except StackError as exc:
                run.error = str(exc)
                return run
        mock = MockControl(stack.mock_url, token=stack.mock_token)
        exits.push_async_callback(mock.close)
        scrape_session = make_session(2, 10.0)
        exits.push_async_callback(scrape_session.close)
        exits.push_async_callback(_clear_faults, mock)
        said = GatewaySaid(stack.kind, config.mock.primary, config.mock.fallback)
        ctx = PhaseContext(
            config=config,
            run_id=run.run_id,
            mock=mock,
            progress=progress,
            stop=stop,
            direct=direct_target(config, stack),
            gateway=gateway_target(config, stack),
            gateway_pid=stack.gateway_pid,
            restart_gateway=(
                stack.restart_gateway if supervisor is None else supervisor.restart_for_phase
            ),
            observe=said.observe(observe),  # the gateway's say per request, then `observe`
            on_process_sample=on_process_sample,
            self_report=lambda: stack.kind.self_report(
                scrape_session, stack.gateway_url, stack.api_key
            ),
        )
        for name, number in _steps(names, repeats):
            if stop.is_set():
                run.aborted = True
                break
            for report in await _run_one(ctx, name, stack, supervisor):
                report.name = repeat_name(report.name, number)
                await said.attach(report, ctx.self_report)  # next to what the mock saw
                run.phases.append(report)
                progress.phase_finished(report)
                on_phase(report)
    if stop.is_set():
        run.aborted = True
    if supervisor is not None and (note := supervisor.long_slope_note(config)) is not None:
        run.notes.append(note)  # what SoakGatewayMemoryLongSlope reads, where the run is read
    return run


def _steps(names: Sequence[str], repeats: Mapping[str, int]) -> Iterator[tuple[str, int]]:
    """Each phase of the plan with its repeat number, a repeated phase's runs back to back."""
    for name in names:
        for number in range(1, max(1, repeats.get(name, 1)) + 1):
            yield name, number


async def _run_one(
    ctx: PhaseContext, name: str, stack: Stack, supervisor: StackSupervisor | None
) -> list[PhaseReport]:
    crashes = supervisor.restarts["crash"] if supervisor is not None else 0
    try:
        result = await phases.get(name).run(ctx)
    except MockControlError as exc:
        result = PhaseReport(
            name=name, kind=name, status=Status.ERROR, error=f"mock control API: {exc}"
        )
    reports = result if isinstance(result, list) else [result]
    if stack.gateway is not None and not stack.gateway.alive:
        for report in reports:
            report.status = Status.ERROR
            report.error = f"the gateway exited (code {stack.gateway.returncode}) during {name}"
    elif supervisor is not None and supervisor.restarts["crash"] > crashes:
        for report in reports:
            report.status = Status.ERROR
            report.error = f"the gateway exited during {name}; soak restarted it"
    return reports


async def _clear_faults(mock: MockControl) -> None:
    with contextlib.suppress(MockControlError):
        await mock.clear_faults()


def direct_target(config: Config, stack: Stack) -> Target:
    """The mock's primary provider, with no gateway in between (calibration)."""
    url = f"{stack.mock_url.rstrip('/')}/p/{config.mock.primary}/v1/chat/completions"
    return Target("mock", url, config.gateway.model)


def gateway_target(config: Config, stack: Stack) -> Target:
    """The gateway's chat endpoint with its kind's auth and routing headers plus the user's."""
    gw = config.gateway
    headers = stack.kind.request_headers(
        stack.api_key,
        mock_url=stack.mock_url,
        primary=config.mock.primary,
        fallback=config.mock.fallback,
    )
    headers.update({k: v.reveal() for k, v in gw.headers.items()})
    api = "anthropic" if gw.chat_path.rstrip("/").endswith("/messages") else "openai"
    return Target(gw.name, stack.gateway_url.rstrip("/") + gw.chat_path, gw.model, headers, api)
