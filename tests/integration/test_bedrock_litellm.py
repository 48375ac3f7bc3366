"""The seed's topology through the real LiteLLM proxy: a Bedrock primary, an OpenAI fallback.

LiteLLM signs its Converse calls with SigV4 (fake keys); the mock parses the Authorization
header's shape and counts it. Tracing works across the translation (nonce in the user text,
marker back in the chat completion), JSON and streamed (AWS event-stream), and a failing
Bedrock primary fails over to the OpenAI fallback, which LiteLLM names in its response header.
"""

from __future__ import annotations

import time
from pathlib import Path

import aiohttp
import pytest
from once_helpers import run_once
from soak.mock.app import MockServer
from soak.mock.bedrock_stream import SIGV4_KEY
from soak.mock.profile import MockConfig, Profile

from soak.client import ChatClient, make_session
from soak.gateway.kinds.litellm import BEDROCK_REGION, LiteLLMKind
from soak.gateway.managed import build_managed
from soak.results import Outcome

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]
NAMES = {"primary": "primary", "fallback": "fallback"}


async def _traces(session: aiohttp.ClientSession, mock_url: str, nonces: list[str]) -> dict:
    async with session.post(f"{mock_url}/_mock/traces/query", json={"nonces": nonces}) as resp:
        assert resp.status == 200
        return (await resp.json())["traces"]


async def test_bedrock_primary_signed_traced_streamed_and_failing_over(tmp_path: Path) -> None:
    profiles = {name: Profile() for name in ("default", "primary", "fallback")}
    kind = LiteLLMKind(primary_api="bedrock", cooldown_time=3.0, request_timeout=10)
    async with MockServer(MockConfig(providers=profiles)) as mock:
        gw = await build_managed(
            kind, None, workdir=tmp_path, mock_url=mock.url, model="soak-primary", **NAMES
        )
        async with gw.process, make_session(8, 300.0) as session:
            headers = kind.request_headers(gw.api_key, mock_url=mock.url, **NAMES)
            url = f"{gw.url}/v1/chat/completions"
            client = ChatClient(
                session, url, model="soak-primary", headers=headers, run_id="br", timeout=20
            )

            # 1. The Bedrock primary serves: signed, traced, marker back, provider recorded.
            first = await client.send(1, time.perf_counter())
            assert first.outcome is Outcome.OK, first
            assert first.provider == "primary" and first.overhead is not None
            trace = await _traces(session, mock.url, [first.nonce or ""])
            assert [(a["provider"], a["endpoint"]) for a in trace[first.nonce]] == [
                ("primary", "converse")
            ]
            sigv4 = mock.app[SIGV4_KEY]
            assert sigv4.counts["valid"] >= 1 and sigv4.counts["malformed"] == 0
            scope = sigv4.last_scope
            assert (scope["region"], scope["service"]) == (BEDROCK_REGION, "bedrock")
            assert {"host", "x-amz-date"} <= set(scope["signed"])
            assert len(scope["date"]) == 8

            # 2. Streamed: LiteLLM calls converse-stream and decodes the event stream.
            streamed = ChatClient(
                session, url, model="soak-primary", headers=headers, run_id="br", stream=True
            )
            chunked = await streamed.send(2, time.perf_counter())
            assert chunked.outcome is Outcome.OK, chunked
            assert chunked.provider == "primary" and chunked.ttft is not None
            trace = await _traces(session, mock.url, [chunked.nonce or ""])
            assert [a["endpoint"] for a in trace[chunked.nonce]] == ["converse_stream"]

            # 3. LiteLLM names the deployment that answered.
            body = {"model": "soak-primary", "messages": [{"role": "user", "content": "hi"}]}
            async with session.post(url, headers=headers, json=body) as resp:
                assert resp.status == 200
                assert kind.served_by(resp.headers, **NAMES) == "primary"

            # 4. The Bedrock primary fails: the OpenAI fallback serves every client request.
            fault = {"faults": {"error_rate": 1.0, "status_mix": {"500": 1}}, "ttl": 60}
            async with session.post(
                f"{mock.url}/_mock/providers/primary/faults", json=fault
            ) as resp:
                assert resp.status == 200
            failed_over = [await client.send(seq, time.perf_counter()) for seq in range(3, 9)]
            assert all(r.outcome is Outcome.OK for r in failed_over), failed_over
            assert {r.provider for r in failed_over} == {"fallback"}
            traces = await _traces(session, mock.url, [r.nonce or "" for r in failed_over])
            first_trail = traces[failed_over[0].nonce]
            assert [(a["provider"], a["status"]) for a in first_trail] == [
                ("primary", 500),
                ("fallback", 200),
            ]
            async with session.post(url, headers=headers, json=body) as resp:
                assert resp.status == 200
                assert kind.served_by(resp.headers, **NAMES) == "fallback"


def test_soak_once_seed_topology_failover_breaker_and_capacity(tmp_path: Path) -> None:
    """`soak once` on the embedded default's gateway (LiteLLM, Bedrock primary, OpenAI
    fallback) with short phases: failover and breaker see a failing Bedrock primary."""
    config = {
        "version": 1,
        "gateway": {
            "name": "litellm",
            "kind": "litellm",
            "primary_api": "bedrock",
            "generate_key": True,
            "timeout": "15s",
            "managed": {"command": [], "ready_timeout": "90s"},
        },
        "phases": {
            "overhead": {"rate": 10, "duration": "3s", "latency": "20ms"},
            "failover": {"requests": 8, "rate": 4, "latency": "20ms"},
            "breaker": {"rate": 10, "duration": "16s", "latency": "20ms", "lead": "2s",
                        "fault": "4s", "window": "1s", "closed_share": 0.9,
                        "scrape_interval": "1s"},
            "capacity": {"start": 10, "factor": 2, "max_rate": 80, "step_duration": "2s",
                         "budget": "25s", "latency": "20ms", "timeout": "5s", "bisect": 0,
                         "pause": "500ms"},
        },
    }  # fmt: skip
    done = run_once(tmp_path, config, "--phases", "overhead,failover,breaker,capacity")
    assert done.code in (0, 1), done.stderr[-2000:]
    report = done.report
    assert report["error"] is None
    names = [p["name"] for p in report["phases"]]
    assert names == ["failover", "breaker", "capacity"] or names[0] == "overhead", names

    overhead = done.phase("overhead")
    assert overhead["success_ratio"] == 1.0
    assert overhead["details"]["gateway_said"]["said"] == {"primary": overhead["completed"]}
    assert overhead["params"]["gateway_reported"]["requests"] >= overhead["completed"]

    failover = done.phase("failover")
    d = failover["details"]
    assert d["failed_over"] == 8 and d["client_errors"] == 0, d
    said = d["gateway_said"]
    assert said["saw"] == {"fallback": 8} and said["disagree"] == 0, said

    breaker = done.phase("breaker")
    assert breaker["success_ratio"] >= 0.99, breaker["outcomes"]
    assert breaker["details"]["gateway_said"]["saw"].get("fallback", 0) >= 10
    reported = breaker["details"]["reported"]  # LiteLLM's deployment state of the Bedrock primary
    assert "OPEN" in [state for _, state in reported["primary"]["timeline"]], reported
    assert reported["primary"]["timeline"][-1][1] == "CLOSED", reported

    capacity = done.phase("capacity")
    cap = capacity["details"]
    print(f"litellm/bedrock capacity: knee {cap['knee']} by {cap['stopped_by']}: {cap['reasons']}")
    assert cap["steps"][0]["rate"] == 10 and cap["stopped_by"]
