"""The chat client against the real mock provider: wires, streams, TTFT, markers, every outcome."""

from __future__ import annotations

import socket

import pytest
from soak.mock.app import MockConfig, MockServer
from soak.mock.profile import parse_profile

from soak.answer import Answer
from soak.client import ChatClient, Session, _encode_body, make_session
from soak.results import Outcome

STREAM = {"ttft": "50ms", "inter_token": "5ms", "tokens": 6}
PROVIDERS = {
    "default": {"latency": "20ms", "stream": STREAM},
    "bedrock": {"latency": "0ms"},
    "s429": {"faults": {"error_rate": 1, "status_mix": {429: 1}, "retry_after": 2}},
    "s503": {"faults": {"error_rate": 1, "status_mix": {503: 1}}},
    "mix": {"faults": {"error_rate": 1, "status_mix": {500: 1, 429: 1}}, "seed": 3},
    "hang": {"faults": {"hang_rate": 1}},
    "reset": {"faults": {"reset_rate": 1}},
    "malformed": {"faults": {"malformed_rate": 1}},
    "cut": {"stream": STREAM, "faults": {"cut_rate": 1}},
}


def latency(value):
    return value if isinstance(value, dict) else {"model": "fixed", "value": value}


@pytest.fixture
async def mock():
    providers = {}
    for name, spec in PROVIDERS.items():
        spec = dict(spec)
        if "latency" in spec:
            spec["latency"] = latency(spec["latency"])
        if "stream" in spec:
            spec["stream"] = {
                k: latency(v) if k != "tokens" else v for k, v in spec["stream"].items()
            }
        providers[name] = parse_profile(spec, f"providers.{name}")
    async with MockServer(MockConfig(providers=providers)) as server:
        yield server


@pytest.fixture
async def session():
    async with make_session(max_connections=20, timeout=10.0) as s:  # 10 s: the hang bound
        yield s


def url(mock, provider: str | None = None, path: str = "chat/completions") -> str:
    base = mock.url if provider is None else f"{mock.url}/p/{provider}"
    return f"{base}/v1/{path}"


async def traces(session: Session, mock, nonces: list[str]) -> dict:
    async with session.post(f"{mock.url}/_mock/traces/query", json={"nonces": nonces}) as resp:
        assert resp.status == 200
        return (await resp.json())["traces"]


async def test_openai_json_ok_with_marker_and_overhead(mock, session) -> None:
    client = ChatClient(session, url(mock), model="gpt-x", run_id="t1", max_tokens=5)
    r = await client.send(7, intended=0.0)
    assert r.outcome is Outcome.OK
    assert r.status == 200
    assert r.nonce == "[soak:t1:7]"
    assert r.provider == "default"
    assert r.service_s is not None
    assert 0.019 <= r.service_s < 1.0  # the 20 ms latency vs 20 s (ms read as s): 50x and 20x
    assert r.overhead is not None
    assert r.overhead >= 0
    assert r.overhead == pytest.approx(r.service_latency - r.service_s)
    assert r.tokens_out == 5
    assert r.bytes_in > 100
    assert r.first_byte is not None
    assert r.sent <= r.first_byte <= r.end
    assert r.first_token is None
    seen = await traces(session, mock, [r.nonce])
    (attempt,) = seen[r.nonce]
    assert attempt["provider"] == "default"
    assert attempt["outcome"] == "ok"
    assert attempt["service_s"] == pytest.approx(r.service_s, abs=1e-6)


async def test_named_provider_is_reported_as_served_by(mock, session) -> None:
    client = ChatClient(session, url(mock, "bedrock"), model="m", run_id="t2")
    results = [await client.send(i, 0.0) for i in range(3)]
    assert [r.provider for r in results] == ["bedrock"] * 3
    assert all(r.ok and r.overhead is not None and r.overhead >= 0 for r in results)
    assert len({r.nonce for r in results}) == 3


async def test_openai_stream_has_ttft_tokens_and_marker(mock, session) -> None:
    client = ChatClient(session, url(mock), model="m", run_id="t3", stream=True, max_tokens=6)
    r = await client.send(1, 0.0)
    assert r.outcome is Outcome.OK
    assert r.first_token is not None
    assert r.ttft is not None
    assert 0.045 <= r.ttft <= r.service_latency
    assert r.first_byte is not None
    assert r.first_byte <= r.first_token <= r.end
    assert r.tokens_out == 6
    assert r.provider == "default"
    assert r.service_s is not None
    assert r.service_s >= 0.07  # 50 ms to the first token + 5 gaps of 5 ms, on the mock's clock
    assert r.overhead is not None
    assert r.overhead >= 0


async def test_anthropic_json_and_stream(mock, session) -> None:
    plain = ChatClient(
        session,
        url(mock, path="messages"),
        api="anthropic",
        model="claude",
        run_id="t4",
        max_tokens=4,
    )
    r = await plain.send(1, 0.0)
    assert (r.outcome, r.status, r.provider, r.tokens_out) == (Outcome.OK, 200, "default", 4)
    assert r.overhead is not None
    assert r.overhead >= 0
    streamed = ChatClient(
        session,
        url(mock, path="messages"),
        api="anthropic",
        model="claude",
        run_id="t4",
        stream=True,
        max_tokens=6,
    )
    s = await streamed.send(2, 0.0)
    assert s.outcome is Outcome.OK
    assert s.ttft is not None
    assert s.ttft >= 0.045
    assert s.tokens_out == 6
    assert s.provider == "default"
    assert s.service_s is not None
    assert s.service_s >= 0.07  # 50 ms to the first token + 5 gaps of 5 ms


@pytest.mark.parametrize(
    ("provider", "outcome", "status"),
    [
        ("s429", Outcome.HTTP_429, 429),
        ("s503", Outcome.HTTP_5XX, 503),
        ("nope", Outcome.HTTP_4XX, 404),
    ],
)
async def test_http_errors_are_classified_by_status(
    mock, session, provider, outcome, status
) -> None:
    client = ChatClient(session, url(mock, provider), model="m", run_id="t5")
    r = await client.send(1, 0.0)
    assert (r.outcome, r.status) == (outcome, status)
    assert r.provider is None
    assert r.service_s is None
    assert r.overhead is None


async def test_status_mix_gives_both_outcomes(mock, session) -> None:
    client = ChatClient(session, url(mock, "mix"), model="m", run_id="t6")
    outcomes = {(await client.send(i, 0.0)).outcome for i in range(30)}
    assert outcomes == {Outcome.HTTP_429, Outcome.HTTP_5XX}


async def test_hang_is_a_timeout_at_the_client_timeout(mock, session) -> None:
    client = ChatClient(session, url(mock, "hang"), model="m", run_id="t7", timeout=0.3)
    r = await client.send(1, 0.0)
    assert r.outcome is Outcome.TIMEOUT
    assert 0.29 <= r.service_latency < 2.0  # client's 0.3 s timeout vs session's 10 s: 6x, 5x


async def test_reset_is_a_connection_failure(mock, session) -> None:
    client = ChatClient(session, url(mock, "reset"), model="m", run_id="t8")
    r = await client.send(1, 0.0)
    assert r.outcome is Outcome.CONNECT
    assert r.status == 0


async def test_malformed_json_is_a_bad_response(mock, session) -> None:
    client = ChatClient(session, url(mock, "malformed"), model="m", run_id="t9")
    r = await client.send(1, 0.0)
    assert (r.outcome, r.status) == (Outcome.BAD_RESPONSE, 200)


async def test_stream_cut_midway_is_stream_broken(mock, session) -> None:
    client = ChatClient(session, url(mock, "cut"), model="m", run_id="t10", stream=True)
    r = await client.send(1, 0.0)
    assert (r.outcome, r.status) == (Outcome.STREAM_BROKEN, 200)
    assert r.first_token is not None  # the first chunk did arrive
    streamed = ChatClient(
        session, url(mock, "cut", "messages"), api="anthropic", model="m", run_id="t10", stream=True
    )
    assert (await streamed.send(2, 0.0)).outcome is Outcome.STREAM_BROKEN


async def test_an_answer_in_the_wrong_shape_is_a_bad_response(mock, session) -> None:
    """200 JSON without `choices` (an Anthropic answer to an OpenAI client) and vice versa."""
    openai_to_messages = ChatClient(session, url(mock, path="messages"), model="m", run_id="t11")
    r = await openai_to_messages.send(1, 0.0)
    assert (r.outcome, r.status) == (Outcome.BAD_RESPONSE, 200)
    anthropic_to_chat = ChatClient(session, url(mock), api="anthropic", model="m", run_id="t11")
    assert (await anthropic_to_chat.send(2, 0.0)).outcome is Outcome.BAD_RESPONSE
    sse_wrong_wire = ChatClient(
        session, url(mock, path="messages"), model="m", run_id="t11", stream=True
    )
    assert (await sse_wrong_wire.send(3, 0.0)).outcome is Outcome.BAD_RESPONSE


async def test_malformed_answer_to_a_stream_request_is_a_bad_response(mock, session) -> None:
    client = ChatClient(session, url(mock, "malformed"), model="m", run_id="t11", stream=True)
    r = await client.send(1, 0.0)
    assert (r.outcome, r.status) == (Outcome.BAD_RESPONSE, 200)


async def test_connect_error_to_a_closed_port(session) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    client = ChatClient(
        session, f"http://127.0.0.1:{port}/v1/chat/completions", model="m", run_id="t12"
    )
    r = await client.send(1, 0.0)
    assert r.outcome is Outcome.CONNECT
    assert r.first_byte is None


async def test_keep_alive_reuses_one_connection_for_sequential_streams(mock) -> None:
    async with make_session(4, 10.0) as s:
        client = ChatClient(s, url(mock, "bedrock"), model="m", run_id="t13", stream=True)
        results = [await client.send(i, 0.0) for i in range(5)]
        plain = ChatClient(s, url(mock, "bedrock"), model="m", run_id="t13")
        results += [await plain.send(i, 0.0) for i in range(5, 10)]
        assert all(r.ok for r in results)
        assert s.pool.opened == 1


def test_body_is_pre_encoded_around_the_nonce() -> None:
    import json

    head, tail = _encode_body("openai", "m", 'say "hi"\n', 8, True)
    body = json.loads(head + b"[soak:r:42]" + tail)
    assert body["messages"][-1]["content"] == 'say "hi"\n [soak:r:42]'
    assert body["stream_options"] == {"include_usage": True}
    head, tail = _encode_body("anthropic", "c", "hé", 3, False)
    body = json.loads(head + b"[soak:r:1]" + tail)
    assert body == {
        "model": "c",
        "max_tokens": 3,
        "stream": False,
        "messages": [{"role": "user", "content": "hé [soak:r:1]"}],
    }


def test_marker_falls_back_to_headers_then_body_field() -> None:
    read = Answer()
    read.mark("text [mock:a:1500]", {"x-soak-provider": "b", "x-soak-service-us": "9"}, None)
    assert (read.provider, read.service_s) == ("a", 0.0015)
    read = Answer()
    read.mark("rebuilt text", {"x-soak-provider": "b", "x-soak-service-us": "2500"}, None)
    assert (read.provider, read.service_s) == ("b", 0.0025)
    read = Answer()
    read.mark("rebuilt text", {}, {"provider": "c", "service_us": 40})
    assert (read.provider, read.service_s) == ("c", 0.00004)
    read = Answer()
    read.mark("no marker", {"x-soak-service-us": "junk"}, None)
    assert (read.provider, read.service_s) == (None, None)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"api": "grpc"}, "api 'grpc' must be one of openai, anthropic"),
        ({"run_id": "Bad Run"}, "run id 'Bad Run' must match"),
        ({"timeout": 0}, "timeout 0 must be > 0"),
        ({"max_tokens": 0}, "max_tokens 0 must be an integer >= 1"),
    ],
)
async def test_bad_client_settings_are_one_line_errors(session, kwargs, message) -> None:
    with pytest.raises(ValueError, match=message):
        ChatClient(session, "http://127.0.0.1:1/v1/chat/completions", model="m", **kwargs)


def test_bad_session_settings_are_one_line_errors() -> None:
    with pytest.raises(ValueError, match="max_connections 0 must be >= 1"):
        make_session(0, 5.0)
    with pytest.raises(ValueError, match="timeout -1 must be > 0"):
        make_session(10, -1)
