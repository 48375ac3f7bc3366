"""AWS Bedrock Converse wire (non-streamed): `POST /model/{model_id}/converse`.

Lets one mock play the seed scenario's failing Bedrock primary behind a gateway such as
LiteLLM (`model: bedrock/<id>`, `aws_bedrock_runtime_endpoint: http://127.0.0.1:PORT[/p/NAME]`,
any fake AWS keys: the SigV4 signature is not checked). The marker goes at the end of the text
content block, like on the other wires.
"""

from __future__ import annotations

import json
from typing import ClassVar

from aiohttp import web

from .content import (
    checked_messages,
    completion_tokens,
    nonce_of,
    served_answer,
    soak_field,
    text_of,
)
from .exchange import Dialect, Exchange

_JSON = "application/json"


class BedrockDialect(Dialect):
    """Bedrock errors: `{"message": ...}` and the error type in `x-amzn-ErrorType`."""

    name = "bedrock"
    _types: ClassVar[dict[int, str]] = {
        400: "ValidationException",
        404: "ResourceNotFoundException",
        413: "ValidationException",
        429: "ThrottlingException",
        503: "ServiceUnavailableException",
        529: "ServiceUnavailableException",
    }

    def error_body(self, status: int, message: str) -> bytes:
        return json.dumps({"message": message}).encode()

    def error_headers(self, status: int) -> dict[str, str]:
        return {"x-amzn-ErrorType": self._types.get(status, "InternalServerException")}


BEDROCK = BedrockDialect()


async def converse(request: web.Request, ex: Exchange) -> web.StreamResponse:
    body = await ex.read_json(request)
    msgs = checked_messages(body)
    ex.nonce = nonce_of(msgs)
    decision = ex.draw_fault(False)
    if decision is not None:
        return await ex.apply_fault(request, decision)
    prof = ex.prov.profile
    config = body.get("inferenceConfig")
    n = completion_tokens(prof.tokens, config if isinstance(config, dict) else {}, "maxTokens")
    service_s, service_us, text = await served_answer(ex, n)
    name = ex.prov.name
    in_tokens = sum(len(text_of(m.get("content"))) for m in msgs) // 4 + 1
    out = (
        f'{{"output":{{"message":{{"role":"assistant","content":[{{"text":"{text}"}}]}}}},'
        f'"stopReason":"end_turn","usage":{{"inputTokens":{in_tokens},"outputTokens":{n},'
        f'"totalTokens":{in_tokens + n}}},"metrics":{{"latencyMs":{service_us // 1000}}},'
        f"{soak_field(name, service_us, ex.nonce)}}}"
    )
    ex.finish(200, "ok", service_s)
    headers = ex.marker_headers(service_us)
    return web.Response(body=out.encode(), content_type=_JSON, headers=headers)
