"""The mock's /metrics: sample values on a fresh registry per test."""

from __future__ import annotations

import asyncio

import aiohttp
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families
from soak.mock.app import MockServer
from soak.mock.profile import parse_config

from soak.mockctl import MockControl


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def key(name: str, **labels: str) -> tuple[str, tuple[tuple[str, str], ...]]:
    return (name, tuple(sorted(labels.items())))


async def test_metrics_count_requests_in_flight_and_faults():
    registry = CollectorRegistry()
    cfg = parse_config({"providers": {"slow": {"latency": "300ms"}, "bad": {}}})
    async with MockServer(cfg, registry) as mock, aiohttp.ClientSession() as s:
        body = {"model": "m", "messages": [{"role": "user", "content": "x"}]}
        for _ in range(3):
            async with s.post(f"{mock.url}/v1/chat/completions", json=body) as r:
                assert r.status == 200
        async with s.post(f"{mock.url}/v1/chat/completions", data=b"{") as r:
            assert r.status == 400
        async with s.post(f"{mock.url}/p/ghost/v1/embeddings", json=body) as r:
            assert r.status == 404
        async with MockControl(mock.url, session=s) as ctl:
            await ctl.inject_fault("bad", {"error_rate": 1, "status_mix": {502: 1}}, 60)
            async with s.post(f"{mock.url}/p/bad/v1/messages", json={**body, "max_tokens": 2}) as r:
                assert r.status == 502
            slow = asyncio.ensure_future(
                s.post(f"{mock.url}/p/slow/v1/chat/completions", json=body)
            )
            await asyncio.sleep(0.1)
            async with s.get(f"{mock.url}/metrics") as r:
                assert r.headers["Content-Type"].startswith("text/plain")
                got = samples(await r.text())
            async with await slow as r:
                assert r.status == 200
            total = "soak_mock_requests_total"
            assert got[key(total, provider="default", endpoint="chat", outcome="ok")] == 3
            assert got[key(total, provider="default", endpoint="chat", outcome="bad_request")] == 1
            assert (
                got[key(total, provider="unknown", endpoint="embeddings", outcome="not_found")] == 1
            )
            assert got[key(total, provider="bad", endpoint="messages", outcome="http_502")] == 1
            assert got[key("soak_mock_in_flight", provider="slow")] == 1
            assert got[key("soak_mock_in_flight", provider="default")] == 0
            assert got[key("soak_mock_faults_injected_total", provider="bad")] == 1
            assert got[key("soak_mock_faults_active", provider="bad")] == 1
            assert got[key("soak_mock_faults_active", provider="slow")] == 0
            await ctl.clear_faults()
            stats = await ctl.stats()
        assert stats["providers"]["default"]["requests"]["chat"] == {"ok": 3, "bad_request": 1}
    text = mock.state.metrics.render().decode()
    after = samples(text)
    assert after[key("soak_mock_faults_active", provider="bad")] == 0
    assert after[key("soak_mock_in_flight", provider="slow")] == 0
    assert (
        after[key("soak_mock_requests_total", provider="slow", endpoint="chat", outcome="ok")] == 1
    )


async def test_fault_expiry_updates_the_active_gauge():
    registry = CollectorRegistry()
    async with MockServer(parse_config({"providers": {"p": {}}}), registry) as mock:
        async with MockControl(mock.url) as ctl:
            await ctl.inject_fault("p", {"hang_rate": 1}, 0.2)
            assert registry.get_sample_value("soak_mock_faults_active", {"provider": "p"}) == 1
            await asyncio.sleep(0.3)
        assert registry.get_sample_value("soak_mock_faults_active", {"provider": "p"}) == 0
        assert registry.get_sample_value("soak_mock_faults_injected_total", {"provider": "p"}) == 1
