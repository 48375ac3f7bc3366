"""Bedrock Converse wire: what LiteLLM's bedrock provider reads; errors with x-amzn-ErrorType."""

from __future__ import annotations

import os

import aiohttp
import pytest
from soak.mock.app import MockServer
from soak.mock.profile import parse_config

from soak.tracing import find_marker

BODY = {
    "messages": [{"role": "user", "content": [{"text": "hello [soak:br:1]"}]}],
    "inferenceConfig": {"maxTokens": 4},
}


@pytest.fixture
async def mock():
    cfg = parse_config(
        {"providers": {"bedrock": {"latency": "3ms"}, "down": {"faults": {"error_rate": 1}}}}
    )
    async with MockServer(cfg) as server:
        yield server


async def test_converse_answer_and_marker(mock):
    url = f"{mock.url}/p/bedrock/model/anthropic.claude-3-haiku-20240307-v1:0/converse"
    async with aiohttp.ClientSession() as s, s.post(url, json=BODY) as r:
        assert r.status == 200
        data = await r.json()
        assert r.headers["x-soak-provider"] == "bedrock"
    assert data["stopReason"] == "end_turn"
    assert data["usage"]["outputTokens"] == 4
    text = data["output"]["message"]["content"][0]["text"]
    marker = find_marker(text)
    assert marker.provider == "bedrock" and marker.service_s >= 0.003
    attempt = mock.state.traces.by_nonces(["[soak:br:1]"])["[soak:br:1]"][0]
    assert (attempt["endpoint"], attempt["outcome"]) == ("converse", "ok")


async def test_converse_errors_carry_the_aws_error_type(mock):
    async with aiohttp.ClientSession() as s:
        async with s.post(f"{mock.url}/p/down/model/m/converse", json=BODY) as r:
            assert r.status == 500
            assert r.headers["x-amzn-ErrorType"] == "InternalServerException"
            assert "injected fault" in (await r.json())["message"]
        async with s.post(f"{mock.url}/model/m/converse", json={"messages": []}) as r:
            assert r.status == 400
            assert r.headers["x-amzn-ErrorType"] == "ValidationException"
        async with s.post(f"{mock.url}/p/ghost/model/m/converse", json=BODY) as r:
            assert r.status == 404
            assert r.headers["x-amzn-ErrorType"] == "ResourceNotFoundException"


@pytest.mark.integration
@pytest.mark.filterwarnings("ignore::UserWarning", "ignore::DeprecationWarning")
async def test_litellm_bedrock_provider_reads_the_mock(mock, monkeypatch):
    monkeypatch.setenv("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    import litellm  # the `litellm` extra; in-process, as its SDK (the proxy uses the same code)

    resp = await litellm.acompletion(
        model="bedrock/anthropic.claude-3-haiku-20240307-v1:0",
        messages=[{"role": "user", "content": "hi [soak:br:2]"}],
        max_tokens=5,
        aws_bedrock_runtime_endpoint=f"{mock.url}/p/bedrock",
        aws_access_key_id="fake",
        aws_secret_access_key=os.urandom(8).hex(),
        aws_region_name="us-east-1",
    )
    assert find_marker(resp.choices[0].message.content).provider == "bedrock"
    assert resp.usage.completion_tokens == 5
