"""Anthropic wire: `POST /v1/messages`, as a JSON message or an SSE event stream.

The marker goes at the end of the text content block (for a stream: in the last
`content_block_delta`), the same place a gateway that rebuilds the body keeps it.
"""

from __future__ import annotations

import hashlib

from aiohttp import web

from soak.tracing import PROVIDER_HEADER, make_marker

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
_BLOCK_START = (
    b'event: content_block_start\ndata: {"type":"content_block_start","index":0,'
    b'"content_block":{"type":"text","text":""}}\n\n'
    b'event: ping\ndata: {"type":"ping"}\n\n'
)
_DELTA = 'event: content_block_delta\ndata: {{"type":"content_block_delta","index":0,"delta":{{"type":"text_delta","text":"{}"}}}}\n\n'  # noqa: E501
_STOP = (
    'event: content_block_stop\ndata: {{"type":"content_block_stop","index":0}}\n\n'
    'event: message_delta\ndata: {{"type":"message_delta","delta":{{"stop_reason":"end_turn",'
    '"stop_sequence":null}},"usage":{{"output_tokens":{}}},{}}}\n\n'
    'event: message_stop\ndata: {{"type":"message_stop"}}\n\n'
)


async def messages(request: web.Request, ex: Exchange) -> web.StreamResponse:
    body = await ex.read_json(request)
    model = checked_model(body)
    msgs = checked_messages(body)
    if "max_tokens" not in body:
        raise BadRequest(400, "max_tokens: required")
    stream = body.get("stream") is True
    ex.nonce = nonce_of(msgs)
    prof = ex.prov.profile
    decision = ex.draw_fault(stream)
    if decision is not None and decision.kind != CUT:
        return await ex.apply_fault(request, decision, stream)
    ex.prompt_tokens = input_tokens = prompt_tokens(body, msgs)
    if stream:
        n = ex.answered = completion_tokens(prof.stream_timing().tokens, body, "max_tokens")
        return await _stream(request, ex, model, n, input_tokens, decision is not None)
    n = ex.answered = completion_tokens(prof.tokens, body, "max_tokens")
    service_s, service_us, text = await served_answer(ex, n)
    name = ex.prov.name
    out = (
        f'{{"id":"msg_mock{next_id()}","type":"message","role":"assistant",'
        f'"model":{json_str(model)},"content":[{{"type":"text","text":"{text}"}}],'
        f'"stop_reason":"end_turn","stop_sequence":null,'
        f'"usage":{{"input_tokens":{input_tokens},"output_tokens":{n}}},'
        f"{soak_field(name, service_us, ex.nonce)}}}"
    )
    ex.finish(200, "ok", service_s)
    headers = ex.marker_headers(service_us)
    return web.Response(body=out.encode(), content_type=_JSON, headers=headers)


async def _stream(
    request: web.Request, ex: Exchange, model: str, n: int, input_tokens: int, cut: bool
) -> web.StreamResponse:
    prov = ex.prov
    timing = prov.profile.stream_timing()
    rng = prov.rng
    resp = web.StreamResponse(headers={**_SSE_HEADERS, PROVIDER_HEADER: prov.name})
    await resp.prepare(request)
    start = (
        f'event: message_start\ndata: {{"type":"message_start","message":{{"id":"msg_mock'
        f'{next_id()}","type":"message","role":"assistant","content":[],"model":'
        f'{json_str(model)},"stop_reason":null,"stop_sequence":null,"usage":{{"input_tokens":'
        f'{input_tokens},"output_tokens":1}}}}}}\n\n'
    )
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
    buffered = gap_zero and not cut  # no pause between events: same bytes, fewer writes
    buf = [start.encode() + _BLOCK_START]
    for i, tok in enumerate(answer_tokens(n)):
        if i:
            if not gap_zero:
                due += sample(timing.inter_token, rng)
                await ex.wait_until(due)
        elif ttft:
            await resp.write(buf.pop())  # message_start goes out before the first token
            await ex.wait_until(due)
        if i == last:
            service_s = ex.elapsed()
            tok = f"{tok} {make_marker(prov.name, service_s)}"
        digest.update(tok.encode())
        buf.append(_DELTA.format(tok).encode())
        if i == last or buffered:
            continue  # the last delta goes out with the closing events
        await resp.write(b"".join(buf))
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
    soak = soak_field(prov.name, max(0, round(service_s * 1e6)), ex.nonce)
    ex.finish(
        200,
        "ok",
        service_s,
        stream=(service_s if first_chunk_s is None else first_chunk_s, n, n, digest.hexdigest()),
    )
    buf.append(_STOP.format(n, soak).encode())
    await resp.write(b"".join(buf))
    await resp.write_eof()
    return resp
