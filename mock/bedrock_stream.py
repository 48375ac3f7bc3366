"""Bedrock Converse streaming and SigV4 shape checks: `POST /model/{model_id}/converse-stream`.

The stream is AWS event-stream framing (what botocore's `EventStreamBuffer`, and so LiteLLM,
decodes): per message a 12-byte prelude (total length, headers length, CRC32 of both), string
headers `:message-type`/`:event-type`/`:content-type`, a JSON payload and a CRC32 of the whole
message. Events: messageStart, one contentBlockDelta per token (the last carries the marker),
contentBlockStop, messageStop, metadata (usage).

`signed(handler)` checks a request's SigV4 `Authorization` header *shape* (no key is known, so
the signature is not verified): `AWS4-HMAC-SHA256 Credential=<key>/<yyyymmdd>/<region>/bedrock/
aws4_request, SignedHeaders=<a;b;..>, Signature=<64 hex>` with `host` and `x-amz-date` signed.
A malformed one is answered 403 like AWS; an unsigned request is served (direct tests). What was
seen is counted in `SigV4Log` (never the key id or the signature).
"""

from __future__ import annotations

import hashlib
import json
import re
import struct
import zlib
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from soak.tracing import PROVIDER_HEADER, make_marker

from .content import answer_tokens, checked_messages, completion_tokens, nonce_of, text_of
from .exchange import ConnectionAborted, Exchange, Handler, abort_connection
from .faults import CUT, MALFORMED
from .timing import is_zero, sample

EVENT_STREAM = "application/vnd.amazon.eventstream"
_SIGV4 = re.compile(
    r"AWS4-HMAC-SHA256 Credential=(?P<key>[A-Za-z0-9]{1,128})/(?P<date>\d{8})/"
    r"(?P<region>[a-z0-9-]{1,32})/(?P<service>[a-z0-9-]{1,32})/aws4_request,\s*"
    r"SignedHeaders=(?P<signed>[a-z0-9-]+(?:;[a-z0-9-]+)*),\s*Signature=(?P<sig>[0-9a-f]{64})"
)
_REQUIRED_SIGNED = ("host", "x-amz-date")


@dataclass(slots=True)
class SigV4Log:
    """What the mock saw of SigV4 signatures: counts by verdict and the last credential scope."""

    counts: Counter[str] = field(default_factory=Counter)
    """`valid`, `unsigned`, `malformed`."""
    last_scope: dict[str, Any] = field(default_factory=dict)
    """date, region, service and signed header names of the last valid signature."""


SIGV4_KEY = web.AppKey("soak_mock_sigv4", SigV4Log)


def parse_sigv4(header: str) -> dict[str, Any]:
    """The credential scope of a SigV4 `Authorization` value; ValueError names what is wrong."""
    m = _SIGV4.fullmatch(header.strip())
    if m is None:
        raise ValueError("Authorization is not AWS4-HMAC-SHA256 Credential=.., SignedHeaders=.., "
                         "Signature=<64 hex>")  # fmt: skip
    if m["service"] != "bedrock":
        raise ValueError(f"credential scope service is {m['service']!r}, not 'bedrock'")
    signed = m["signed"].split(";")
    missing = [h for h in _REQUIRED_SIGNED if h not in signed]
    if missing:
        raise ValueError(f"SignedHeaders lacks {', '.join(missing)}")
    return {"date": m["date"], "region": m["region"], "service": m["service"], "signed": signed}


def signed(fn: Handler) -> Handler:
    """`fn` behind a SigV4 shape check (403 with the AWS error type when malformed)."""

    async def check(request: web.Request, ex: Exchange) -> web.StreamResponse:
        log = request.app.get(SIGV4_KEY)
        auth = request.headers.get("Authorization")
        if auth is None:
            if log is not None:
                log.counts["unsigned"] += 1
            return await fn(request, ex)
        try:
            scope = parse_sigv4(auth)
            if "X-Amz-Date" not in request.headers:
                raise ValueError("the signed x-amz-date header is missing")
        except ValueError as exc:
            if log is not None:
                log.counts["malformed"] += 1
            headers = {"x-amzn-ErrorType": "InvalidSignatureException"}
            return ex.error(403, f"SigV4: {exc}", "bad_request", headers)
        if log is not None:
            log.counts["valid"] += 1
            log.last_scope = scope
        return await fn(request, ex)

    return check


def frame(event_type: str, payload: bytes) -> bytes:
    """One AWS event-stream message of `event_type` carrying a JSON `payload`."""
    headers = b"".join(
        _header(name, value)
        for name, value in (
            (":event-type", event_type),
            (":content-type", "application/json"),
            (":message-type", "event"),
        )
    )
    total = 12 + len(headers) + len(payload) + 4
    prelude = struct.pack(">II", total, len(headers))
    prelude += struct.pack(">I", zlib.crc32(prelude))
    body = prelude + headers + payload
    return body + struct.pack(">I", zlib.crc32(body))


def _header(name: str, value: str) -> bytes:
    raw_name, raw_value = name.encode(), value.encode()
    length = struct.pack(">H", len(raw_value))
    return bytes([len(raw_name)]) + raw_name + b"\x07" + length + raw_value  # 7: string


def _event(event_type: str, data: dict[str, Any]) -> bytes:
    return frame(event_type, json.dumps(data, separators=(",", ":")).encode())


async def converse_stream(request: web.Request, ex: Exchange) -> web.StreamResponse:
    """The Converse answer as an event stream; the marker ends the last text delta."""
    body = await ex.read_json(request)
    msgs = checked_messages(body)
    ex.nonce = nonce_of(msgs)
    decision = ex.draw_fault(True)
    if decision is not None and decision.kind not in (CUT, MALFORMED):
        return await ex.apply_fault(request, decision)
    prov = ex.prov
    timing = prov.profile.stream_timing()
    config = body.get("inferenceConfig")
    n = completion_tokens(timing.tokens, config if isinstance(config, dict) else {}, "maxTokens")
    in_tokens = sum(len(text_of(m.get("content"))) for m in msgs) // 4 + 1
    resp = web.StreamResponse(headers={"Content-Type": EVENT_STREAM, PROVIDER_HEADER: prov.name})
    await resp.prepare(request)
    ttft = 0.0 if is_zero(timing.ttft) else sample(timing.ttft, prov.rng)
    due = ex.t0 + ttft
    await ex.wait_until(due)
    if decision is not None and decision.kind == MALFORMED:
        ex.finish(200, MALFORMED)
        await resp.write(_event("messageStart", {"role": "assistant"})[:-4] + b"\0\0\0\0")
        await resp.write_eof()
        return resp
    cut = decision is not None and decision.kind == CUT and n >= 2
    if decision is not None and not cut:
        ex.fault = None  # a cut of a one-token answer is no fault
    gap_zero = is_zero(timing.inter_token)
    digest = hashlib.sha256()
    out = [_event("messageStart", {"role": "assistant"})]
    first_chunk_s: float | None = None
    service_s = 0.0
    tokens = answer_tokens(n)
    for i, tok in enumerate(tokens):
        if i and not gap_zero:
            due += sample(timing.inter_token, prov.rng)
            await ex.wait_until(due)
        if i == len(tokens) - 1:
            service_s = ex.elapsed()
            tok = f"{tok} {make_marker(prov.name, service_s)}"
        digest.update(tok.encode())
        out.append(_event("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"text": tok}}))
        if i < len(tokens) - 1 and (cut or not gap_zero):
            await resp.write(b"".join(out))
            out.clear()
            first_chunk_s = ex.elapsed() if first_chunk_s is None else first_chunk_s
            if cut:  # one chunk, then a reset
                ex.finish(200, CUT, first_chunk_s, stream=(first_chunk_s, 1, 1, digest.hexdigest()))
                abort_connection(request)
                raise ConnectionAborted
    service_us = max(0, round(service_s * 1e6))
    usage = {"inputTokens": in_tokens, "outputTokens": n, "totalTokens": in_tokens + n}
    out += [
        _event("contentBlockStop", {"contentBlockIndex": 0}),
        _event("messageStop", {"stopReason": "end_turn"}),
        _event(
            "metadata",
            {"usage": usage, "metrics": {"latencyMs": service_us // 1000}},
        ),
    ]
    first = service_s if first_chunk_s is None else first_chunk_s
    ex.finish(200, "ok", service_s, stream=(first, n, n, digest.hexdigest()))
    await resp.write(b"".join(out))
    await resp.write_eof()
    return resp
