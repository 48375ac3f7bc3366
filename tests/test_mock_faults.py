"""Faults over real HTTP: error statuses, hang, reset, malformed JSON, cut streams, bad input."""

from __future__ import annotations

import asyncio
import json
import time

import aiohttp
import anthropic
import openai
import pytest
from soak.mock.app import MockServer
from soak.mock.profile import parse_config


def chat(nonce: str, stream: bool = False) -> dict:
    return {
        "model": "m",
        "stream": stream,
        "messages": [{"role": "user", "content": f"hi {nonce}"}],
    }


async def serve(providers: dict, **extra):
    return MockServer(parse_config({"providers": providers, **extra}))


@pytest.fixture
async def session():
    async with aiohttp.ClientSession() as s:
        yield s


async def test_error_status_429_carries_retry_after(session):
    faults = {"error_rate": 1.0, "status_mix": {429: 1}, "retry_after": 2.5}
    async with await serve({"p": {"faults": faults}}) as mock:
        async with session.post(
            f"{mock.url}/p/p/v1/chat/completions", json=chat("[soak:r:1]")
        ) as r:
            body = await r.json()
            assert r.status == 429
            assert r.headers["Retry-After"] == "3"
            assert r.headers["retry-after-ms"] == "2500"
        assert body["error"]["type"] == "rate_limit_error"
        attempt = mock.state.traces.by_nonces(["[soak:r:1]"])["[soak:r:1]"][0]
        assert (attempt["status"], attempt["outcome"], attempt["fault"]) == (
            429,
            "http_429",
            "error",
        )


async def test_status_mix_is_seeded_and_covers_every_status():
    mix = {429: 1, 500: 1, 502: 1, 503: 1, 529: 1}
    seen = []
    for _ in range(2):
        async with await serve(
            {"p": {"faults": {"error_rate": 1.0, "status_mix": mix}, "seed": 7}}
        ) as mock:
            async with aiohttp.ClientSession() as s:
                statuses = []
                for i in range(60):
                    url = f"{mock.url}/p/p/v1/chat/completions"
                    async with s.post(url, json=chat(f"[soak:r:{i}]")) as r:
                        statuses.append(r.status)
            seen.append(statuses)
    assert seen[0] == seen[1]
    assert set(seen[0]) == {429, 500, 502, 503, 529}


async def test_anthropic_529_is_an_overloaded_error():
    faults = {"error_rate": 1.0, "status_mix": {529: 1}}
    async with (
        await serve({"p": {"faults": faults}}) as mock,
        anthropic.AsyncAnthropic(base_url=f"{mock.url}/p/p", api_key="k", max_retries=0) as client,
    ):
        with pytest.raises(anthropic.APIStatusError) as info:
            await client.messages.create(
                model="m", max_tokens=4, messages=[{"role": "user", "content": "x"}]
            )
    assert info.value.status_code == 529
    assert info.value.body["error"]["type"] == "overloaded_error"


async def test_error_rate_is_an_exact_share_over_many_requests(session):
    async with await serve({"p": {"faults": {"error_rate": 0.3}, "seed": 3}}) as mock:
        statuses = []
        for i in range(400):
            async with session.post(
                f"{mock.url}/p/p/v1/chat/completions", json=chat(f"[soak:r:{i}]")
            ) as r:
                statuses.append(r.status)
    share = statuses.count(500) / len(statuses)
    assert 0.22 < share < 0.38
    assert set(statuses) == {200, 500}


async def test_hang_is_recorded_when_the_client_gives_up(session):
    async with await serve({"p": {"faults": {"hang_rate": 1.0}}}) as mock:
        with pytest.raises(asyncio.TimeoutError):
            async with session.post(
                f"{mock.url}/p/p/v1/chat/completions",
                json=chat("[soak:r:9]"),
                timeout=aiohttp.ClientTimeout(total=0.3),
            ):
                pass
        for _ in range(100):
            found = mock.state.traces.by_nonces(["[soak:r:9]"])["[soak:r:9]"]
            if found:
                break
            await asyncio.sleep(0.01)
        assert found[0]["outcome"] == "hang"
        assert found[0]["service_s"] >= 0.25
        assert mock.state.providers["p"].in_flight == 0


async def test_stop_does_not_wait_for_hung_requests(session):
    mock = await serve({"p": {"faults": {"hang_rate": 1.0}}})
    await mock.start()
    url = f"{mock.url}/p/p/v1/chat/completions"
    pending = asyncio.ensure_future(session.post(url, json=chat("[soak:r:5]")))
    while mock.state.providers["p"].in_flight == 0:
        await asyncio.sleep(0.01)
    t0 = time.monotonic()
    await mock.stop()
    # hangs ended at once (SHUTDOWN_S 2 s at worst) vs aiohttp's 60 s default wait: 5x and 6x
    assert time.monotonic() - t0 < 10
    with pytest.raises(aiohttp.ClientError):
        await pending
    assert mock.state.providers["p"].in_flight == 0


async def test_reset_closes_the_connection_without_an_answer(session):
    async with await serve({"p": {"faults": {"reset_rate": 1.0}}}) as mock:
        with pytest.raises(aiohttp.ClientError):
            async with session.post(
                f"{mock.url}/p/p/v1/chat/completions", json=chat("[soak:r:1]")
            ) as r:
                await r.read()
        attempt = mock.state.traces.by_nonces(["[soak:r:1]"])["[soak:r:1]"][0]
        assert attempt["outcome"] == "reset"
        # the server keeps serving
        async with session.post(f"{mock.url}/v1/chat/completions", json=chat("[soak:r:2]")) as r:
            assert r.status == 200


async def test_malformed_is_200_with_a_body_that_is_not_json(session):
    async with await serve({"p": {"faults": {"malformed_rate": 1.0}}}) as mock:
        async with session.post(
            f"{mock.url}/p/p/v1/chat/completions", json=chat("[soak:r:1]")
        ) as r:
            text = await r.text()
            assert r.status == 200
        with pytest.raises(ValueError):
            json.loads(text)
        async with openai.AsyncOpenAI(
            base_url=f"{mock.url}/p/p/v1", api_key="k", max_retries=0
        ) as client:
            with pytest.raises((openai.APIResponseValidationError, ValueError)):
                await client.chat.completions.create(
                    model="m", messages=[{"role": "user", "content": "x"}]
                )


async def test_malformed_stream_is_an_event_stream_with_broken_data(session):
    async with await serve({"p": {"faults": {"malformed_rate": 1.0}}}) as mock:
        url = f"{mock.url}/p/p/v1/chat/completions"
        async with session.post(url, json=chat("[soak:r:1]", stream=True)) as r:
            assert r.status == 200
            assert r.headers["Content-Type"].startswith("text/event-stream")
            first = (await r.text()).split("\n")[0]
        assert first.startswith("data: {")
        with pytest.raises(ValueError):
            json.loads(first.removeprefix("data: "))


async def test_cut_stream_stops_after_the_first_chunk(session):
    prof = {"faults": {"cut_rate": 1.0}, "stream": {"tokens": 5}}
    async with await serve({"p": prof}) as mock:
        got = b""
        with pytest.raises(aiohttp.ClientPayloadError):
            async with session.post(
                f"{mock.url}/p/p/v1/chat/completions", json=chat("[soak:r:1]", stream=True)
            ) as r:
                assert r.status == 200
                async for line in r.content:
                    got += line
        assert got.count(b"data: ") == 1 and b"[DONE]" not in got
        attempt = mock.state.traces.by_nonces(["[soak:r:1]"])["[soak:r:1]"][0]
        assert (attempt["outcome"], attempt["chunks"], attempt["tokens"]) == ("cut", 1, 1)
        # a non-streamed request is not cut
        async with session.post(
            f"{mock.url}/p/p/v1/chat/completions", json=chat("[soak:r:2]")
        ) as r:
            assert r.status == 200


@pytest.mark.parametrize(
    ("path", "data", "status", "needle"),
    [
        ("/v1/chat/completions", b"{not json", 400, "not valid JSON"),
        ("/v1/chat/completions", b"[1, 2]", 400, "JSON object"),
        ("/v1/chat/completions", b'{"messages": []}', 400, "model"),
        ("/v1/chat/completions", b'{"model": "m"}', 400, "messages"),
        ("/v1/chat/completions", b'{"model":"m","messages":[1]}', 400, "messages[0]"),
        ("/v1/embeddings", b'{"model": "m"}', 400, "input"),
        (
            "/v1/messages",
            b'{"model":"m","messages":[{"role":"user","content":"x"}]}',
            400,
            "max_tokens",
        ),
        ("/p/ghost/v1/chat/completions", b"{}", 404, "ghost"),
        ("/v2/whatever", b"{}", 404, "no route"),
    ],
)
async def test_bad_input_gets_a_shaped_error_and_the_server_keeps_serving(
    session, path, data, status, needle
):
    async with await serve({}) as mock:
        async with session.post(mock.url + path, data=data) as r:
            body = await r.json()
            assert r.status == status
        assert needle in body["error"]["message"]
        async with session.post(f"{mock.url}/v1/chat/completions", json=chat("[soak:r:1]")) as r:
            assert r.status == 200


async def test_oversized_body_is_413_in_both_dialects(session):
    async with await serve({}, max_body=2048) as mock:
        big = {"model": "m", "max_tokens": 1, "messages": [{"role": "user", "content": "x" * 5000}]}
        async with session.post(f"{mock.url}/v1/chat/completions", json=big) as r:
            assert r.status == 413
            assert (await r.json())["error"]["type"] == "invalid_request_error"
        async with session.post(f"{mock.url}/v1/messages", json=big) as r:
            assert r.status == 413
            body = await r.json()
        assert body["type"] == "error" and body["error"]["type"] == "request_too_large"
        async with session.post(f"{mock.url}/v1/chat/completions", json=chat("[soak:r:1]")) as r:
            assert r.status == 200


async def test_cut_anthropic_stream_breaks_the_sdk_stream(session):
    prof = {"faults": {"cut_rate": 1.0}, "stream": {"tokens": 5}}
    async with await serve({"p": prof}) as mock:
        client = anthropic.AsyncAnthropic(base_url=f"{mock.url}/p/p", api_key="k", max_retries=0)
        texts: list[str] = []
        broken = None
        msgs = [{"role": "user", "content": "[soak:r:3]"}]
        try:
            async with client, client.messages.stream(model="m", max_tokens=9, messages=msgs) as st:
                texts.extend([t async for t in st.text_stream])
        except Exception as exc:  # the SDK surfaces its transport's read error as is
            broken = type(exc).__name__
        assert broken in {"ReadError", "RemoteProtocolError", "APIConnectionError"}
        attempt = mock.state.traces.by_nonces(["[soak:r:3]"])["[soak:r:3]"][0]
        assert (attempt["outcome"], attempt["chunks"]) == ("cut", 1)
        assert texts in ([], ["lorem"])
