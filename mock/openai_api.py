"""OpenAI wire: chat completions (JSON and SSE), embeddings, models.

Bodies are assembled from pre-built strings: only the model name (from the client) goes
through JSON escaping. The service time is taken just before the body is handed to aiohttp;
the marker carrying it goes into the content, where it survives a gateway that rebuilds the
body. A stream carries the marker in its last content chunk.
"""

from __future__ import annotations

import base64
import hashlib
import json
import struct
import time
import zlib
from typing import Any

from aiohttp import web

from soak.tracing import PROVIDER_HEADER, find_nonce, make_marker

from .content import (
    answer_tokens,
    checked_messages,
    checked_model,
    completion_tokens,
    json_str,
    next_id,
    nonce_of,
    prompt_tokens,
    served_answer,
    soak_field,
)
from .exchange import BadRequest, ConnectionAborted, Exchange, abort_connection
from .faults import CUT
from .timing import is_zero, sample

_JSON = "application/json"
_SSE_HEADERS = {"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}
_DONE = b"data: [DONE]\n\n"


async def chat(request: web.Request, ex: Exchange) -> web.StreamResponse:
    body = await ex.read_json(request)
    model = checked_model(body)
    messages = checked_messages(body)
    stream = body.get("stream") is True
    ex.nonce = nonce_of(messages)
    prof = ex.prov.profile
    decision = ex.draw_fault(stream)
    if decision is not None and decision.kind != CUT:
        return await ex.apply_fault(request, decision, stream)
    ex.prompt_tokens = counted = prompt_tokens(body, messages)
    if stream:
        timing = prof.stream_timing()
        n = completion_tokens(timing.tokens, body, "max_completion_tokens", "max_tokens")
        ex.answered = n
        opts = body.get("stream_options")
        usage = isinstance(opts, dict) and opts.get("include_usage") is True
        return await _chat_stream(request, ex, model, n, counted, usage, decision is not None)
    n = ex.answered = completion_tokens(prof.tokens, body, "max_completion_tokens", "max_tokens")
    service_s, service_us, content = await served_answer(ex, n)
    name = ex.prov.name
    out = (
        f'{{"id":"chatcmpl-{next_id()}","object":"chat.completion","created":{int(time.time())},'
        f'"model":{json_str(model)},"choices":[{{"index":0,"message":{{"role":"assistant",'
        f'"content":"{content}","refusal":null}},"logprobs":null,"finish_reason":"stop"}}],'
        f'"usage":{{"prompt_tokens":{counted},"completion_tokens":{n},'
        f'"total_tokens":{counted + n}}},{soak_field(name, service_us, ex.nonce)}}}'
    )
    ex.finish(200, "ok", service_s)
    headers = ex.marker_headers(service_us)
    return web.Response(body=out.encode(), content_type=_JSON, headers=headers)


async def _chat_stream(
    request: web.Request,
    ex: Exchange,
    model: str,
    n: int,
    prompt_tokens: int,
    usage: bool,
    cut: bool,
) -> web.StreamResponse:
    prov = ex.prov
    timing = prov.profile.stream_timing()
    rng = prov.rng
    resp = web.StreamResponse(headers={**_SSE_HEADERS, PROVIDER_HEADER: prov.name})
    await resp.prepare(request)
    base = (
        f'data: {{"id":"chatcmpl-{next_id()}","object":"chat.completion.chunk",'
        f'"created":{int(time.time())},"model":{json_str(model)}'
    )
    head = f'{base},"choices":[{{"index":0,'
    digest = hashlib.sha256()
    ttft = 0.0 if is_zero(timing.ttft) else sample(timing.ttft, rng)
    gap_zero = is_zero(timing.inter_token)
    due = ex.t0 + ttft
    first_chunk_s: float | None = None
    service_s = 0.0
    last = n - 1
    if cut and n < 2:
        cut = False
        ex.fault = None
    buffered = gap_zero and not cut  # no pause between chunks: same bytes, fewer writes
    buf: list[str] = []
    for i, tok in enumerate(answer_tokens(n)):
        if i:
            if not gap_zero:
                due += sample(timing.inter_token, rng)
                await ex.wait_until(due)
        elif ttft:
            await ex.wait_until(due)
        role = '"role":"assistant",' if i == 0 else ""
        if i == last:
            service_s = ex.elapsed()
            tok = f"{tok} {make_marker(prov.name, service_s)}"
            soak = soak_field(prov.name, max(0, round(service_s * 1e6)), ex.nonce)
            delta = f'"delta":{{{role}"content":"{tok}"}},"finish_reason":null}}]'
            buf.append(f"{head}{delta},{soak}}}\n\n")
        else:
            buf.append(f'{head}"delta":{{{role}"content":"{tok}"}},"finish_reason":null}}]}}\n\n')
        digest.update(tok.encode())
        if i == last or buffered:
            continue  # the last chunk goes out with the tail
        await resp.write("".join(buf).encode())
        buf.clear()
        if first_chunk_s is None:
            first_chunk_s = ex.elapsed()
        if cut:
            ex.finish(
                200,
                CUT,
                first_chunk_s,
                stream=(first_chunk_s, 1, 1, digest.hexdigest()),
            )
            abort_connection(request)
            raise ConnectionAborted
    tail = f'{head}"delta":{{}},"finish_reason":"stop"}}]}}\n\n'
    if usage:
        tail += (
            f'{base},"choices":[],"usage":{{"prompt_tokens":{prompt_tokens},'
            f'"completion_tokens":{n},"total_tokens":{prompt_tokens + n}}}}}\n\n'
        )
    ex.finish(
        200,
        "ok",
        service_s,
        stream=(service_s if first_chunk_s is None else first_chunk_s, n, n, digest.hexdigest()),
    )
    buf.append(tail)
    await resp.write("".join(buf).encode() + _DONE)
    await resp.write_eof()
    return resp


async def embeddings(request: web.Request, ex: Exchange) -> web.StreamResponse:
    body = await ex.read_json(request)
    model = checked_model(body)
    texts = _inputs(body.get("input"))
    dims = body.get("dimensions", 16)
    if isinstance(dims, bool) or not isinstance(dims, int) or not 1 <= dims <= 4096:
        raise BadRequest(400, "dimensions: expected an integer in [1, 4096]")
    fmt = body.get("encoding_format", "float")
    if fmt not in ("float", "base64"):
        raise BadRequest(400, "encoding_format: expected float or base64")
    ex.nonce = find_nonce(texts[-1]) if texts else None
    decision = ex.draw_fault(False)
    if decision is not None:
        return await ex.apply_fault(request, decision)
    prof = ex.prov.profile
    if not is_zero(prof.latency):
        await ex.wait_until(ex.t0 + sample(prof.latency, ex.prov.rng))
    data = []
    for i, text in enumerate(texts):
        vec = _vector(text, dims)
        emb: Any = vec
        if fmt == "base64":
            emb = base64.b64encode(struct.pack(f"<{dims}f", *vec)).decode()
        data.append({"object": "embedding", "index": i, "embedding": emb})
    tokens = sum(len(t) for t in texts) // 4 + 1
    service_s = ex.elapsed()
    service_us = max(0, round(service_s * 1e6))
    payload = json.dumps(
        {
            "object": "list",
            "data": data,
            "model": model,
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
        }
    )
    out = f"{payload[:-1]},{soak_field(ex.prov.name, service_us, ex.nonce)}}}"
    ex.finish(200, "ok", service_s)
    headers = ex.marker_headers(service_us)
    return web.Response(body=out.encode(), content_type=_JSON, headers=headers)


def _inputs(value: Any) -> list[str]:
    """Embedding inputs as texts (token arrays become their decimal spelling)."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, list) and value:
        if all(isinstance(v, str) for v in value):
            return value
        if all(isinstance(v, int) for v in value):
            return [" ".join(map(str, value))]
        if all(isinstance(v, list) and all(isinstance(t, int) for t in v) for v in value):
            return [" ".join(map(str, v)) for v in value]
    raise BadRequest(400, "input: required, a string, a list of strings or token arrays")


def _vector(text: str, dims: int) -> list[float]:
    """A deterministic unit-ish vector per text."""
    seed = zlib.crc32(text.encode())
    return [((seed * (i + 1) * 2654435761) % 2000 - 1000) / 1000.0 for i in range(dims)]


async def models(request: web.Request, ex: Exchange) -> web.StreamResponse:
    created = int(ex.mock.started)
    owner = ex.prov.name
    data = [
        {"id": m, "object": "model", "created": created, "owned_by": owner}
        for m in ex.prov.profile.models
    ]
    ex.finish(200, "ok")
    return web.Response(
        body=json.dumps({"object": "list", "data": data}).encode(), content_type=_JSON
    )
