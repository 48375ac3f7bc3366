"""The `/_mock/` control API through `soak.mockctl.MockControl`: auth, profiles, faults, traces."""

from __future__ import annotations

import asyncio
import time

import aiohttp
import pytest
from prometheus_client import CollectorRegistry
from soak.mock.app import MockServer
from soak.mock.profile import MockConfig, parse_config

from soak.mockctl import MockControl, MockControlError

TOKEN = "s3cret-token"


def with_token(data: dict) -> MockConfig:
    cfg = parse_config(data)
    return MockConfig(providers=cfg.providers, token=TOKEN, trace_capacity=cfg.trace_capacity)


@pytest.fixture
async def mock():
    async with MockServer(with_token({"providers": {"primary": {}, "fallback": {}}})) as server:
        yield server


@pytest.fixture
async def ctl(mock):
    async with MockControl(mock.url, token=TOKEN) as client:
        yield client


async def post_chat(url: str, nonce: str, provider: str = "primary") -> int:
    body = {"model": "m", "messages": [{"role": "user", "content": f"q {nonce}"}]}
    url = f"{url}/p/{provider}/v1/chat/completions"
    async with aiohttp.ClientSession() as s, s.post(url, json=body) as r:
        await r.read()
        return r.status


async def test_without_the_token_every_call_is_401_and_changes_nothing(mock, ctl):
    before = await ctl.get_profile("primary")
    async with MockControl(mock.url) as anon:
        with pytest.raises(MockControlError, match="HTTP 401"):
            await anon.set_profile("primary", {"latency": "2s"})
        with pytest.raises(MockControlError, match="HTTP 401"):
            await anon.inject_fault("primary", {"error_rate": 1}, ttl=5)
        with pytest.raises(MockControlError, match="HTTP 401"):
            await anon.stats()
    async with MockControl(mock.url, token="wrong") as bad:
        with pytest.raises(MockControlError, match="HTTP 401"):
            await bad.clear_faults()
    assert await ctl.get_profile("primary") == before
    assert (await ctl.stats())["providers"]["primary"]["active_faults"] == []


async def test_profile_roundtrip_and_validation(ctl):
    new = {
        "latency": {"model": "uniform", "min": "1ms", "max": "3ms"},
        "stream": {"ttft": "5ms", "inter_token": 0.001, "tokens": 4},
        "tokens": 3,
        "seed": 9,
    }
    got = await ctl.set_profile("fallback", new)
    assert got["latency"] == {"model": "uniform", "min": 0.001, "max": 0.003}
    assert got["stream"]["tokens"] == 4
    assert await ctl.get_profile("fallback") == got
    assert (await ctl.providers())["fallback"] == got
    with pytest.raises(MockControlError, match=r"profile\.latency\.max: required"):
        await ctl.set_profile("fallback", {"latency": {"model": "uniform", "min": 1}})
    with pytest.raises(MockControlError, match=r"profile\.faults\.error_rate"):
        await ctl.set_profile("fallback", {"faults": {"error_rate": 2}})
    with pytest.raises(MockControlError, match="unknown provider 'ghost'"):
        await ctl.get_profile("ghost")
    assert await ctl.get_profile("fallback") == got


async def test_profile_latency_applies_to_the_data_plane(mock, ctl):
    await ctl.set_profile("primary", {"latency": "30ms"})
    assert await post_chat(mock.url, "[soak:t:1]") == 200
    traces = await ctl.traces(["[soak:t:1]"])
    assert traces["[soak:t:1]"][0]["service_s"] >= 0.030


async def test_injected_fault_applies_then_expires_by_itself(mock, ctl):
    fault_id = await ctl.inject_fault("primary", {"error_rate": 1.0, "status_mix": {503: 1}}, 1.0)
    assert fault_id
    stats = await ctl.stats()
    assert [f["id"] for f in stats["providers"]["primary"]["active_faults"]] == [fault_id]
    assert await post_chat(mock.url, "[soak:t:2]") == 503
    assert await post_chat(mock.url, "[soak:t:3]", provider="fallback") == 200
    for _ in range(100):  # nobody clears it: it expires by itself
        if not (await ctl.stats())["providers"]["primary"]["active_faults"]:
            break
        await asyncio.sleep(0.05)
    assert time.time() >= stats["providers"]["primary"]["active_faults"][0]["expires_at"] - 0.01
    assert await post_chat(mock.url, "[soak:t:4]") == 200


async def test_newest_injection_wins_and_clear_removes_all(mock, ctl):
    await ctl.inject_fault("primary", {"error_rate": 1.0, "status_mix": {500: 1}}, 60)
    await ctl.inject_fault("primary", {"error_rate": 1.0, "status_mix": {429: 1}}, 60)
    assert await post_chat(mock.url, "[soak:t:5]") == 429
    assert await ctl.clear_faults("primary") == 2
    assert await post_chat(mock.url, "[soak:t:6]") == 200
    await ctl.inject_fault("fallback", {"reset_rate": 1.0}, 60)
    await ctl.inject_fault("primary", {"hang_rate": 1.0}, 60)
    assert await ctl.clear_faults() == 2


async def test_fault_ttl_is_required_and_bounded(ctl):
    with pytest.raises(MockControlError, match="ttl"):
        await ctl.inject_fault("primary", {"error_rate": 1.0}, 0)
    with pytest.raises(MockControlError, match="ttl"):
        await ctl.inject_fault("primary", {"error_rate": 1.0}, 7200)
    with pytest.raises(MockControlError, match=r"faults\.status_mix\.418"):
        await ctl.inject_fault("primary", {"error_rate": 1.0, "status_mix": {418: 1}}, 5)


async def test_traces_batch_and_listing(mock, ctl):
    await ctl.inject_fault("primary", {"error_rate": 1.0, "status_mix": {500: 1}}, 60)
    t0 = time.time()
    for i in range(5):
        assert await post_chat(mock.url, f"[soak:b:{i}]") == 500
        assert await post_chat(mock.url, f"[soak:b:{i}]", provider="fallback") == 200
    traces = await ctl.traces([f"[soak:b:{i}]" for i in range(5)] + ["[soak:b:99]"])
    assert traces["[soak:b:99]"] == []
    for i in range(5):
        first, second = traces[f"[soak:b:{i}]"]
        assert (first["provider"], first["status"], first["outcome"]) == (
            "primary",
            500,
            "http_500",
        )
        assert (second["provider"], second["status"], second["outcome"]) == ("fallback", 200, "ok")
        assert first["arrival"] >= t0 - 1 and second["arrival"] > first["arrival"]
        assert set(first) >= {"endpoint", "nonce", "arrival", "service_s", "fault"}
    listed = await ctl.attempts(provider="fallback")
    assert [a["nonce"] for a in listed] == [f"[soak:b:{i}]" for i in range(5)]
    page = await ctl.attempts(since=listed[1]["arrival"], limit=2)
    assert [a["nonce"] for a in page] == ["[soak:b:2]", "[soak:b:2]"]


async def test_trace_queries_are_chunked(mock, ctl, monkeypatch):
    import soak.mockctl

    monkeypatch.setattr(soak.mockctl, "TRACE_CHUNK", 3)
    await post_chat(mock.url, "[soak:c:6]")
    found = await ctl.traces([f"[soak:c:{i}]" for i in range(8)])
    assert len(found) == 8
    assert [a["provider"] for a in found["[soak:c:6]"]] == ["primary"]


async def test_trace_ring_is_bounded():
    cfg = parse_config({"providers": {"primary": {}}, "trace_capacity": 3})
    async with MockServer(cfg, CollectorRegistry()) as mock, MockControl(mock.url) as ctl:
        for i in range(5):
            await post_chat(mock.url, f"[soak:r:{i}]")
        found = await ctl.traces([f"[soak:r:{i}]" for i in range(5)])
        assert [len(found[f"[soak:r:{i}]"]) for i in range(5)] == [0, 0, 1, 1, 1]
        assert len(await ctl.attempts()) == 3


async def test_unreachable_mock_is_a_one_line_error():
    async with MockControl("http://127.0.0.1:9", timeout=2) as ctl:
        with pytest.raises(MockControlError) as info:
            await ctl.stats()
    assert "\n" not in str(info.value)
    assert "127.0.0.1:9" in str(info.value)


def test_trace_index_handles_a_nonce_seen_many_times():
    from soak.mock.traces import TraceBuffer

    buf = TraceBuffer(capacity=1000)
    for i in range(5000):
        buf.add(
            (
                "p",
                "chat",
                "[soak:x:1]" if i % 2 else f"[soak:y:{i}]",
                float(i),
                0.1,
                200,
                "ok",
                None,
            )
        )
    same = buf.by_nonces(["[soak:x:1]"])["[soak:x:1]"]
    assert len(same) == 500 and same[0]["arrival"] == 4001.0 and same[-1]["arrival"] == 4999.0
    found = buf.by_nonces(["[soak:y:4998]", "[soak:y:2]"])
    assert [a["arrival"] for a in found["[soak:y:4998]"]] == [4998.0]
    assert found["[soak:y:2]"] == []  # evicted
    assert len(buf) == 1000
