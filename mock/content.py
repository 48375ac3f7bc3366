"""Answer text and request parsing shared by the OpenAI and Anthropic wires.

Static pieces are built once: the words of an answer of n tokens are cached, ids come from a
counter, and everything the mock writes itself is plain ASCII that needs no JSON escaping.
"""

from __future__ import annotations

import itertools
import json
from functools import lru_cache
from typing import Any

from soak.tracing import BODY_FIELD, find_nonce, make_marker

from .exchange import BadRequest, Exchange
from .timing import is_zero, sample

WORDS = ("lorem", "ipsum", "dolor", "sit", "amet", "consectetur", "adipiscing", "elit", "sed")
_ids = itertools.count(1)


def next_id() -> str:
    return f"{next(_ids):012x}"


@lru_cache(maxsize=256)
def answer_tokens(n: int) -> tuple[str, ...]:
    """The n tokens of an answer; every token after the first starts with a space."""
    return tuple(
        w if i == 0 else " " + w for i, w in enumerate(itertools.islice(itertools.cycle(WORDS), n))
    )


@lru_cache(maxsize=256)
def answer_text(n: int) -> str:
    return "".join(answer_tokens(n))


async def served_answer(ex: Exchange, n: int) -> tuple[float, int, str]:
    """Wait out the provider's latency, then the non-streamed answer's text ending in the
    marker, with the service time it reports (seconds and whole µs); every wire shares it."""
    prof = ex.prov.profile
    if not is_zero(prof.latency):
        await ex.wait_until(ex.t0 + sample(prof.latency, ex.prov.rng))
    service_s = ex.elapsed()
    text = f"{answer_text(n)} {make_marker(ex.prov.name, service_s)}"
    return service_s, max(0, round(service_s * 1e6)), text


def text_of(content: Any) -> str:
    """The text of a message's content: a string or a list of text parts/blocks."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = []
        for part in content:
            if isinstance(part, dict) and isinstance(part.get("text"), str):
                parts.append(part["text"])
            elif isinstance(part, str):
                parts.append(part)
        return "".join(parts)
    return ""


def count_tokens(text: str) -> int:
    """Tokens of `text` as the mock counts its own answers: whitespace-separated words."""
    return len(text.split())


def prompt_tokens(body: dict[str, Any], messages: list[Any]) -> int:
    """The request's prompt tokens: its messages' text and a system prompt (string or text
    blocks), counted by `count_tokens`; tool definitions are not counted."""
    total = count_tokens(text_of(body.get("system")))
    for msg in messages:
        total += count_tokens(text_of(msg.get("content")))
    return total


def checked_messages(body: dict[str, Any]) -> list[Any]:
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise BadRequest(400, "messages: required, a non-empty list")
    for i, msg in enumerate(messages):
        if not isinstance(msg, dict) or not isinstance(msg.get("role"), str):
            raise BadRequest(400, f"messages[{i}]: expected an object with a role")
    return messages


def checked_model(body: dict[str, Any]) -> str:
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise BadRequest(400, "model: required, a non-empty string")
    return model


def nonce_of(messages: list[Any]) -> str | None:
    """The nonce in the last user message (gateways forward content unchanged)."""
    for msg in reversed(messages):
        if msg.get("role") == "user":
            return find_nonce(text_of(msg.get("content")))
    return None


def completion_tokens(profile_tokens: int, body: dict[str, Any], *keys: str) -> int:
    """The profile's token count, capped by the request's max tokens when it sets one."""
    for key in keys:
        cap = body.get(key)
        if isinstance(cap, int) and not isinstance(cap, bool):
            if cap < 1:
                raise BadRequest(400, f"{key}: must be >= 1")
            return min(profile_tokens, cap)
    return profile_tokens


def soak_field(provider: str, service_us: int, nonce: str | None) -> str:
    """The `"soak": {...}` JSON member (provider names and nonces need no escaping)."""
    n = "null" if nonce is None else f'"{nonce}"'
    return f'"{BODY_FIELD}":{{"provider":"{provider}","service_us":{service_us},"nonce":{n}}}'


def json_str(value: str) -> str:
    return json.dumps(value)
