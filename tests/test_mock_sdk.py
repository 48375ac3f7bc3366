"""The official openai and anthropic SDKs parse every answer of the mock, JSON and streamed."""

from __future__ import annotations

import anthropic
import openai
import pytest
from soak.mock.app import MockServer
from soak.mock.profile import parse_config

from soak.tracing import find_marker

CONFIG = {
    "defaults": {"stream": {"ttft": "2ms", "inter_token": "1ms", "tokens": 6}, "tokens": 8},
    "providers": {"primary": {"latency": "5ms"}, "fallback": {}, "fast": {"stream": {"tokens": 4}}},
}


@pytest.fixture
async def mock():
    async with MockServer(parse_config(CONFIG)) as server:
        yield server


def user(text: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": text}]


async def test_openai_chat_json_reports_provider_and_service_time(mock):
    async with openai.AsyncOpenAI(
        base_url=f"{mock.url}/p/primary/v1", api_key="k", max_retries=0
    ) as client:
        raw = await client.chat.completions.with_raw_response.create(
            model="gpt-x", messages=user("hello [soak:run1:1]")
        )
        resp = raw.parse()
    assert resp.choices[0].message.role == "assistant"
    assert resp.choices[0].finish_reason == "stop"
    assert resp.usage.completion_tokens == 8
    assert resp.model == "gpt-x"
    marker = find_marker(resp.choices[0].message.content)
    assert marker.provider == "primary"
    assert 0.005 <= marker.service_s < 1  # the 5 ms latency vs 5 s (ms read as s): 200x and 5x
    assert raw.headers["x-soak-provider"] == "primary"
    assert int(raw.headers["x-soak-service-us"]) == round(marker.service_s * 1e6)
    extra = resp.model_extra["soak"]
    assert extra == {
        "provider": "primary",
        "service_us": round(marker.service_s * 1e6),
        "nonce": "[soak:run1:1]",
    }


async def test_openai_chat_stream_with_usage_and_marker_in_last_chunk(mock):
    async with openai.AsyncOpenAI(base_url=f"{mock.url}/v1", api_key="k", max_retries=0) as client:
        stream = await client.chat.completions.create(
            model="gpt-x",
            messages=user("stream me [soak:run1:2]"),
            stream=True,
            stream_options={"include_usage": True},
        )
        chunks = [chunk async for chunk in stream]
    contents = [
        c.choices[0].delta.content for c in chunks if c.choices and c.choices[0].delta.content
    ]
    assert len(contents) == 6
    assert find_marker(contents[-1]).provider == "default"
    assert all(find_marker(c) is None for c in contents[:-1])
    finish = [c.choices[0].finish_reason for c in chunks if c.choices]
    assert finish[-1] == "stop"
    assert chunks[-1].usage.completion_tokens == 6
    assert chunks[-1].choices == []


async def test_openai_max_tokens_caps_the_answer(mock):
    async with openai.AsyncOpenAI(base_url=f"{mock.url}/v1", api_key="k", max_retries=0) as client:
        resp = await client.chat.completions.create(model="m", messages=user("hi"), max_tokens=3)
    assert resp.usage.completion_tokens == 3
    assert resp.choices[0].message.content.startswith("lorem ipsum dolor [mock:default:")


async def test_openai_embeddings_float_and_base64(mock):
    async with openai.AsyncOpenAI(base_url=f"{mock.url}/v1", api_key="k", max_retries=0) as client:
        default = await client.embeddings.create(model="emb", input=["a", "b [soak:run1:3]"])
        floats = await client.embeddings.create(
            model="emb", input="a", encoding_format="float", dimensions=5
        )
    assert [d.index for d in default.data] == [0, 1]
    assert len(default.data[0].embedding) == 16
    assert len(floats.data[0].embedding) == 5
    assert floats.data[0].embedding[:5] == pytest.approx(default.data[0].embedding[:5], abs=1e-6)
    assert default.usage.total_tokens >= 1


async def test_openai_models_lists_the_profile_models(mock):
    async with openai.AsyncOpenAI(
        base_url=f"{mock.url}/p/fallback/v1", api_key="k", max_retries=0
    ) as client:
        page = await client.models.list()
    assert [m.id for m in page.data] == ["mock-model"]
    assert page.data[0].owned_by == "fallback"


async def test_anthropic_messages_json(mock):
    async with anthropic.AsyncAnthropic(
        base_url=f"{mock.url}/p/fallback", api_key="k", max_retries=0
    ) as client:
        msg = await client.messages.create(
            model="claude-x", max_tokens=5, messages=user("hi [soak:run1:4]")
        )
    assert msg.role == "assistant"
    assert msg.stop_reason == "end_turn"
    assert msg.usage.output_tokens == 5
    assert msg.content[0].type == "text"
    assert find_marker(msg.content[0].text).provider == "fallback"


async def test_anthropic_messages_stream_events(mock):
    content = [{"type": "text", "text": "x [soak:run1:5]"}]
    client = anthropic.AsyncAnthropic(base_url=mock.url, api_key="k", max_retries=0)
    async with (
        client,
        client.messages.stream(
            model="claude-x", max_tokens=100, messages=[{"role": "user", "content": content}]
        ) as stream,
    ):
        types = [event.type async for event in stream]
        final = await stream.get_final_message()
    assert types[0] == "message_start"
    assert "content_block_start" in types and "content_block_stop" in types
    assert types[-1] == "message_stop"
    assert final.stop_reason == "end_turn"
    assert final.usage.output_tokens == 6
    marker = find_marker(final.content[0].text)
    assert marker.provider == "default" and marker.service_s >= 0.002


async def test_sync_openai_client_in_a_thread(mock):
    import asyncio

    def call() -> str:
        with openai.OpenAI(base_url=f"{mock.url}/v1", api_key="k", max_retries=0) as client:
            resp = client.chat.completions.create(model="m", messages=user("sync"))
            return resp.choices[0].message.content

    content = await asyncio.to_thread(call)
    assert find_marker(content).provider == "default"


async def test_sdk_errors_are_typed_for_bad_requests(mock):
    async with openai.AsyncOpenAI(
        base_url=f"{mock.url}/p/nowhere/v1", api_key="k", max_retries=0
    ) as client:
        with pytest.raises(openai.NotFoundError, match="unknown mock provider"):
            await client.chat.completions.create(model="m", messages=user("x"))
    async with anthropic.AsyncAnthropic(base_url=mock.url, api_key="k", max_retries=0) as client:
        with pytest.raises(anthropic.BadRequestError, match="messages"):
            await client.messages.create(model="m", max_tokens=5, messages=[])


async def test_stream_attempt_records_chunks_tokens_and_digest_of_what_was_sent(mock):
    import hashlib

    async with openai.AsyncOpenAI(base_url=f"{mock.url}/v1", api_key="k", max_retries=0) as client:
        stream = await client.chat.completions.create(
            model="m", messages=user("digest [soak:run1:6]"), stream=True
        )
        text = "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])
    attempt = mock.state.traces.by_nonces(["[soak:run1:6]"])["[soak:run1:6]"][0]
    assert attempt["digest"] == hashlib.sha256(text.encode()).hexdigest()
    assert (attempt["chunks"], attempt["tokens"], attempt["outcome"]) == (6, 6, "ok")
    # ttft 2 ms, then 5 gaps of 1 ms: the service time covers the last content chunk
    assert 0.002 <= attempt["first_chunk_s"] < attempt["service_s"]
    assert attempt["service_s"] >= 0.007
    assert find_marker(text).service_s == pytest.approx(attempt["service_s"], abs=1e-6)


async def test_zero_delay_streams_parse_in_both_sdks(mock):
    """Without pauses the chunks leave in one write; the bytes and the SDK view are the same."""
    async with openai.AsyncOpenAI(
        base_url=f"{mock.url}/p/fast/v1", api_key="k", max_retries=0
    ) as client:
        stream = await client.chat.completions.create(
            model="m", messages=user("[soak:run1:7]"), stream=True
        )
        parts = [c.choices[0].delta.content async for c in stream if c.choices]
    assert [p for p in parts if p][:3] == ["lorem", " ipsum", " dolor"]
    assert find_marker(parts[-2]).provider == "fast"
    client = anthropic.AsyncAnthropic(base_url=f"{mock.url}/p/fast", api_key="k", max_retries=0)
    async with (
        client,
        client.messages.stream(model="m", max_tokens=50, messages=user("[soak:run1:8]")) as stream,
    ):
        texts = [t async for t in stream.text_stream]
    assert len(texts) == 4
    assert find_marker(texts[-1]).provider == "fast"
    traces = mock.state.traces.by_nonces(["[soak:run1:7]", "[soak:run1:8]"])
    for nonce in ("[soak:run1:7]", "[soak:run1:8]"):
        attempt = traces[nonce][0]
        assert (attempt["chunks"], attempt["outcome"]) == (4, "ok")
        assert attempt["first_chunk_s"] <= attempt["service_s"]
