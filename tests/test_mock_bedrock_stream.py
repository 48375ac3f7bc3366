"""Bedrock converse-stream (AWS event-stream framing) and the SigV4 Authorization shape check."""

from __future__ import annotations

import json
import struct
import zlib

import aiohttp
import pytest
from soak.mock.app import MockServer
from soak.mock.bedrock_stream import SIGV4_KEY, parse_sigv4
from soak.mock.profile import parse_config

from soak.tracing import find_marker

BODY = {
    "messages": [{"role": "user", "content": [{"text": "hello [soak:bs:1]"}]}],
    "inferenceConfig": {"maxTokens": 3},
}
SIG = "0123456789abcdef" * 4
AUTH = (
    "AWS4-HMAC-SHA256 Credential=AKIAFAKE/20261123/us-east-1/bedrock/aws4_request, "
    f"SignedHeaders=content-type;host;x-amz-date, Signature={SIG}"
)
SIGNED = {"Authorization": AUTH, "X-Amz-Date": "20261123T150000Z"}


def decode(raw: bytes) -> list[tuple[dict[str, str], dict]]:
    """AWS event-stream messages, every CRC checked (independent of the mock's encoder)."""
    out, pos = [], 0
    while pos < len(raw):
        total, hlen = struct.unpack(">II", raw[pos : pos + 8])
        assert struct.unpack(">I", raw[pos + 8 : pos + 12])[0] == zlib.crc32(raw[pos : pos + 8])
        msg = raw[pos : pos + total]
        assert struct.unpack(">I", msg[-4:])[0] == zlib.crc32(msg[:-4])
        headers, h = {}, 12
        while h < 12 + hlen:
            n = msg[h]
            name = msg[h + 1 : h + 1 + n].decode()
            assert msg[h + 1 + n] == 7  # string
            (vlen,) = struct.unpack(">H", msg[h + 2 + n : h + 4 + n])
            headers[name] = msg[h + 4 + n : h + 4 + n + vlen].decode()
            h += 4 + n + vlen
        out.append((headers, json.loads(msg[12 + hlen : -4])))
        pos += total
    return out


@pytest.fixture
async def mock():
    cfg = parse_config({"providers": {"bedrock": {"stream": {"ttft": "2ms"}}}})
    async with MockServer(cfg) as server:
        yield server


async def test_converse_stream_frames_events_and_marker(mock):
    url = f"{mock.url}/p/bedrock/model/anthropic.claude-3-haiku-20240307-v1:0/converse-stream"
    async with aiohttp.ClientSession() as s, s.post(url, json=BODY, headers=SIGNED) as r:
        assert r.status == 200
        assert r.headers["Content-Type"] == "application/vnd.amazon.eventstream"
        events = decode(await r.read())
    kinds = [h[":event-type"] for h, _ in events]
    assert kinds == [
        "messageStart",
        "contentBlockDelta",
        "contentBlockDelta",
        "contentBlockDelta",
        "contentBlockStop",
        "messageStop",
        "metadata",
    ]
    assert all(h[":message-type"] == "event" for h, _ in events)
    text = "".join(p["delta"]["text"] for h, p in events if h[":event-type"] == "contentBlockDelta")
    assert find_marker(text).provider == "bedrock"
    assert events[-1][1]["usage"]["outputTokens"] == 3
    attempt = mock.state.traces.by_nonces(["[soak:bs:1]"])["[soak:bs:1]"][0]
    assert (attempt["endpoint"], attempt["outcome"]) == ("converse_stream", "ok")
    assert mock.app[SIGV4_KEY].counts["valid"] == 1
    assert mock.app[SIGV4_KEY].last_scope["region"] == "us-east-1"


async def test_malformed_signature_is_403_unsigned_is_served(mock):
    url = f"{mock.url}/p/bedrock/model/m/converse"
    bad = {**SIGNED, "Authorization": AUTH.replace(SIG, "xyz")}
    async with aiohttp.ClientSession() as s:
        async with s.post(url, json=BODY, headers=bad) as r:
            assert r.status == 403
            assert r.headers["x-amzn-ErrorType"] == "InvalidSignatureException"
            assert "Signature=<64 hex>" in (await r.json())["message"]
        async with s.post(url, json=BODY) as r:
            assert r.status == 200
    assert dict(mock.app[SIGV4_KEY].counts) == {"malformed": 1, "unsigned": 1}


@pytest.mark.parametrize(
    ("header", "message"),
    [
        ("Bearer abc", "is not AWS4-HMAC-SHA256"),
        (AUTH.replace("/bedrock/", "/s3/"), "service is 's3', not 'bedrock'"),
        (AUTH.replace("content-type;host;x-amz-date", "content-type;host"), "lacks x-amz-date"),
    ],
)
def test_parse_sigv4_names_what_is_wrong(header, message):
    with pytest.raises(ValueError, match=message):
        parse_sigv4(header)


def test_parse_sigv4_scope():
    assert parse_sigv4(AUTH) == {
        "date": "20261123",
        "region": "us-east-1",
        "service": "bedrock",
        "signed": ["content-type", "host", "x-amz-date"],
    }


async def test_stream_faults_malformed_frame_and_cut():
    cfg = parse_config(
        {
            "providers": {
                "bad": {"faults": {"malformed_rate": 1}},
                "cut": {"stream": {"inter_token": "1ms"}, "faults": {"cut_rate": 1}},
            }
        }
    )
    async with MockServer(cfg) as server, aiohttp.ClientSession() as s:
        async with s.post(f"{server.url}/p/bad/model/m/converse-stream", json=BODY) as r:
            raw = await r.read()
        with pytest.raises(AssertionError):
            decode(raw)  # the message CRC does not match: what a decoder must reject
        with pytest.raises(aiohttp.ClientPayloadError):
            async with s.post(f"{server.url}/p/cut/model/m/converse-stream", json=BODY) as r:
                await r.read()
        outcomes = [
            a["outcome"] for a in server.state.traces.by_nonces(["[soak:bs:1]"])["[soak:bs:1]"]
        ]
    assert outcomes == ["malformed", "cut"]
