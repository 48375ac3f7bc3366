"""A gateway's metrics page is read for its few families only, and never on the event loop.

Found on `soak once`'s own output: parsing LiteLLM's whole page (585 lines after a handful of
requests) held soak's event loop 19-35 ms every scrape, so the breaker phase, which scrapes
every second beside its load, came out untrusted (send lag p99 15-17 ms > 10 ms) on an idle
machine. LiteLLM's real page is checked in tests/integration/test_litellm_gateway.py."""

from __future__ import annotations

import asyncio
import gc
import time

import aiohttp
import pytest
from aiohttp import web

from soak.gateway.kinds.litellm import SELF_REPORT_FAMILIES, LiteLLMKind
from soak.gateway.selfreport import MetricsParseError, parse_samples

PAGE = """\
# HELP process_cpu_seconds_total Total user and system CPU time spent in seconds.
# TYPE process_cpu_seconds_total counter
process_cpu_seconds_total 12.04
# HELP litellm_request_queue_time_seconds Time spent in the queue
# TYPE litellm_request_queue_time_seconds histogram
litellm_request_queue_time_seconds_bucket{le="0.005",model="m"} 3.0
litellm_request_queue_time_seconds_bucket{le="+Inf",model="m"} 4.0
litellm_request_queue_time_seconds_count{model="m"} 4.0
litellm_request_queue_time_seconds_sum{model="m"} 0.03 1700000000000
# TYPE litellm_deployment_state gauge
litellm_deployment_state{api_base="/p/primary/v1",model_id="a"} 2.0
"""


def test_only_the_wanted_families_are_parsed_and_they_are_what_a_whole_parse_holds() -> None:
    whole = parse_samples(PAGE)
    kept = parse_samples(PAGE, SELF_REPORT_FAMILIES)
    assert [s.name for s in kept] == ["process_cpu_seconds_total", "litellm_deployment_state"]
    assert kept == [s for s in whole if s.name.startswith(SELF_REPORT_FAMILIES)]
    assert kept[1].labels == {"api_base": "/p/primary/v1", "model_id": "a"}
    assert kept[1].value == 2.0


@pytest.mark.parametrize(
    "bad",
    ["this is {not prometheus", "<html><body>login</body></html>",
     'litellm_request_queue_time_seconds_count{model="m"} four'],
)  # fmt: skip
def test_a_page_that_is_not_prometheus_text_is_refused_even_outside_the_families(
    bad: str,
) -> None:
    with pytest.raises(MetricsParseError, match=r"^not Prometheus text: line 12 is not a sample$"):
        parse_samples(PAGE + bad + "\n", SELF_REPORT_FAMILIES)


async def test_a_big_page_is_parsed_without_stalling_the_event_loop() -> None:
    rows = 60_000  # every one in a wanted family: the filter keeps them all
    page = "# TYPE litellm_deployment_state gauge\n" + "".join(
        f'litellm_deployment_state{{api_base="/p/primary/v1",model_id="m{i}"}} 0.0\n'
        for i in range(rows)
    )
    t0 = time.perf_counter()
    LiteLLMKind().parse_self_report(page)
    parse_s = time.perf_counter() - t0
    stall_bound = 0.25
    # on the loop, this parse alone would stall it past the bound: so the check below can fail
    assert parse_s > 2 * stall_bound, f"the page parses in {parse_s:.2f} s: make it bigger"

    async def metrics(_: web.Request) -> web.Response:
        return web.Response(text=page)

    app = web.Application()
    app.router.add_get("/metrics/", metrics)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    gaps: list[float] = []

    async def tick() -> None:
        last = time.perf_counter()
        while True:
            await asyncio.sleep(0.005)
            now = time.perf_counter()
            gaps.append(now - last)
            last = now

    # as during a phase's load (soak.engine freezes what lived before it): a full collection
    # of this test session's heap, set off by the parse's allocations, would otherwise hold
    # the interpreter for as long as the whole session's objects take to scan
    gc.collect()
    gc.freeze()
    ticker = asyncio.create_task(tick())
    try:
        async with aiohttp.ClientSession() as session:
            url = f"http://127.0.0.1:{runner.addresses[0][1]}"
            report = await LiteLLMKind().self_report(session, url, None)
    finally:
        ticker.cancel()
        gc.unfreeze()
        await runner.cleanup()
    assert report is not None and report.breaker == {"primary": 0}  # every deployment healthy
    assert max(gaps) < stall_bound, f"the loop stalled {max(gaps) * 1e3:.0f} ms"
