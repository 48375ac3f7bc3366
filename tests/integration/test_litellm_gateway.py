"""The real LiteLLM proxy, configured and started by soak, routing to the real mock.

One proxy start (~8-14 s on 2 cores) serves the whole story: requests (JSON and SSE) served by
the primary with their marker; the primary faulted → the fallback serves and LiteLLM's
cooldown stops the primary attempts, which its self-report shows; the fault cleared → the
primary serves again after the cooldown time and the reported state returns to closed.
"""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

import aiohttp
import pytest
from soak.mock.app import MockServer
from soak.mock.profile import MockConfig, Profile

from soak.client import ChatClient, make_session
from soak.gateway.kinds.litellm import SELF_REPORT_FAMILIES, LiteLLMKind
from soak.gateway.managed import build_managed
from soak.gateway.selfreport import CLOSED, HALF_OPEN, OPEN, parse_samples
from soak.procwatch import ProcessWatch, summarize
from soak.results import Outcome

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

COOLDOWN = 3.0
ALLOWED_FAILS = 1


async def _traces(session: aiohttp.ClientSession, mock_url: str, nonces: list[str]) -> dict:
    async with session.post(f"{mock_url}/_mock/traces/query", json={"nonces": nonces}) as resp:
        assert resp.status == 200
        return (await resp.json())["traces"]


async def test_litellm_routes_fails_over_cools_down_and_recovers(tmp_path: Path) -> None:
    profiles = {name: Profile() for name in ("default", "primary", "fallback")}
    kind = LiteLLMKind(allowed_fails=ALLOWED_FAILS, cooldown_time=COOLDOWN, request_timeout=10)
    async with MockServer(MockConfig(providers=profiles)) as mock:
        gw = await build_managed(
            kind,
            None,
            workdir=tmp_path,
            mock_url=mock.url,
            primary="primary",
            fallback="fallback",
            model="soak-primary",
        )
        started = time.monotonic()
        async with gw.process, make_session(8, 300.0) as session:
            ready_s = time.monotonic() - started
            print(f"litellm ready in {ready_s:.1f}s (pid {gw.process.pid})")
            assert gw.process.pid is not None
            watch = ProcessWatch(gw.process.pid, interval=0.5)
            watch.start()
            headers = kind.request_headers(
                gw.api_key, mock_url=mock.url, primary="primary", fallback="fallback"
            )
            client = ChatClient(
                session,
                f"{gw.url}/v1/chat/completions",
                model="soak-primary",
                headers=headers,
                run_id="itest",
                timeout=20,
            )

            # 1. Healthy: the primary serves, its marker comes back, the mock saw the nonce.
            first = await client.send(1, time.perf_counter())
            assert first.outcome is Outcome.OK, first
            assert first.provider == "primary"
            assert first.service_s is not None and first.overhead is not None
            trace = await _traces(session, mock.url, [first.nonce or ""])
            assert [a["provider"] for a in trace[first.nonce]] == ["primary"]
            streamed = ChatClient(
                session,
                f"{gw.url}/v1/chat/completions",
                model="soak-primary",
                headers=headers,
                run_id="itest",
                timeout=20,
                stream=True,
            )
            chunked = await streamed.send(2000, time.perf_counter())
            assert chunked.outcome is Outcome.OK, chunked
            assert chunked.provider == "primary" and chunked.ttft is not None
            async with session.post(
                f"{gw.url}/v1/chat/completions",
                headers=headers,
                json={"model": "soak-primary", "messages": [{"role": "user", "content": "hi"}]},
            ) as resp:
                assert resp.status == 200
                names = {"primary": "primary", "fallback": "fallback"}
                assert kind.served_by(resp.headers, **names) == "primary"

            # 2. Primary fails every request: clients still succeed via the fallback, and the
            #    cooldown keeps all but the first few requests away from the primary.
            fault = {"faults": {"error_rate": 1.0, "status_mix": {"500": 1}}, "ttl": 60}
            async with session.post(
                f"{mock.url}/_mock/providers/primary/faults", json=fault
            ) as resp:
                assert resp.status == 200
            failed_over = [await client.send(seq, time.perf_counter()) for seq in range(2, 14)]
            assert all(r.outcome is Outcome.OK for r in failed_over), failed_over
            assert {r.provider for r in failed_over} == {"fallback"}
            traces = await _traces(session, mock.url, [r.nonce or "" for r in failed_over])
            primary_attempts = sum(
                1 for attempts in traces.values() for a in attempts if a["provider"] == "primary"
            )
            print(f"primary attempts during the fault: {primary_attempts} of {len(failed_over)}")
            assert 1 <= primary_attempts <= ALLOWED_FAILS + 2

            report = await kind.self_report(session, gw.url, gw.api_key)
            assert report is not None
            assert report.breaker.get("primary") == OPEN
            # the fallback served every request, so it is not in cooldown; LiteLLM may still
            # mark it "partial outage" (HALF_OPEN here) for a moment after the primary's failures
            # (a fresh-clone run with a busy core saw it once), so only OPEN fails
            assert report.breaker.get("fallback") in (CLOSED, HALF_OPEN), report.breaker
            assert report.cooldowns.get("primary", 0) >= 1
            assert (report.fallbacks or 0) >= len(failed_over)
            assert report.overhead is not None and report.overhead.count >= 1
            assert report.rss_bytes is not None and report.rss_bytes > 50e6
            # the report read only its families of LiteLLM's real page, and they are exactly
            # what a parse of the whole page holds (the rest of it is never parsed)
            page = await kind.scrape(session, gw.url, gw.api_key)
            assert page is not None
            whole = parse_samples(page)
            kept = parse_samples(page, SELF_REPORT_FAMILIES)
            assert kept == [s for s in whole if s.name.startswith(SELF_REPORT_FAMILIES)]
            print(f"litellm /metrics/: {len(page.splitlines())} lines, {len(whole)} samples,"
                  f" {len(kept)} read")  # fmt: skip
            assert 0 < len(kept) < len(whole)
            print(
                f"litellm self-reported overhead: mean {report.overhead.mean * 1e3:.1f} ms,"
                f" p50 {report.overhead.quantile(0.5) * 1e3:.1f} ms"
            )

            # 3. Fault cleared: after the cooldown the primary serves again, reported closed.
            async with session.delete(f"{mock.url}/_mock/providers/primary/faults") as resp:
                assert resp.status == 200
            cleared = time.monotonic()
            await asyncio.sleep(COOLDOWN)
            seq, back = 100, None
            # back after the cooldown (3.0 s here) vs never: a 30 s window is 10x the cooldown
            while time.monotonic() - cleared < 10 * COOLDOWN:
                seq += 1
                result = await client.send(seq, time.perf_counter())
                assert result.outcome is Outcome.OK
                if result.provider == "primary":
                    back = time.monotonic() - cleared
                    break
                await asyncio.sleep(0.25)
            assert back is not None, "primary never served again after the fault cleared"
            print(f"primary back {back:.1f}s after the fault cleared (cooldown {COOLDOWN:g}s)")
            # LiteLLM sets the deployment-state gauge from a success callback it runs after the
            # answer is sent, so the gauge can lag the first answer by a moment: poll it (each
            # poll also sends a request), bounded; OPEN for 10 s after serving is a real failure
            state = None
            for _ in range(20):
                report = await kind.self_report(session, gw.url, gw.api_key)
                assert report is not None
                state = report.breaker.get("primary")
                if state == CLOSED:
                    break
                seq += 1
                assert (await client.send(seq, time.perf_counter())).outcome is Outcome.OK
                await asyncio.sleep(0.5)
            assert state == CLOSED, f"primary still {state} 10 s after it served again"

            samples = await watch.stop()
            stats = summarize(samples)
            print(
                f"litellm rss peak {stats.rss_peak / 1e6:.0f} MB, cpu peak {stats.cpu_peak:.0f}%,"
                f" {samples[-1].procs} process(es)"
            )
            assert stats.samples >= 2 and stats.rss_peak > 50e6
            pid = gw.process.pid
        assert not gw.process.alive
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
