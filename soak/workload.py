"""The workload as a deterministic per-request plan: which body, model and key request `seq` gets.

Pure and seeded: the same config gives the same plan. `variants` bodies are drawn ahead (prompt
size, answer length and message structure each from their configured distribution), encoded
once per model on first use and split around the nonce (`soak.client.encode_template`); per
request only a table lookup and the nonce splice remain. Prompts are words generated from the
seed (nothing is downloaded), or lines of a local JSONL file. Model and key names used as labels
come from the config (`key-<i>`), never from the wire; key values never leave the headers.
"""

from __future__ import annotations

import json
import math
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from soak.client import encode_template
from soak.config.workload import Distribution, WorkloadConfig, replay_messages

VOCABULARY = (
    "the", "gateway", "routes", "each", "request", "to", "a", "provider", "and", "counts",
    "tokens", "for", "budgets", "while", "logs", "keep", "latency", "cache", "retry", "key",
    "tenant", "model", "stream", "answer", "context", "document", "section", "table", "summary",
    "question", "report", "system", "user", "assistant", "tool", "schema", "value", "field",
    "number", "string", "list",
)
_TABLE = 4096
"""Length of the seeded per-request choice table (model, variant); requests cycle through it."""
_TOOL_SCHEMA = {
    "type": "object",
    "properties": {"query": {"type": "string", "description": "what to look up"},
                   "limit": {"type": "integer", "minimum": 1, "maximum": 100}},
    "required": ["query"],
}  # fmt: skip


def sample(dist: Distribution, rng: random.Random) -> int:
    """One draw of `dist`, rounded to an integer ≥ 1 (normal and lognormal clipped to
    min..max)."""
    kind = dist.kind
    if kind == "fixed":
        value = dist.value
    elif kind == "uniform":
        value = rng.uniform(dist.min, dist.max)
    elif kind == "histogram":
        value = rng.choices(dist.values, weights=dist.weights or None)[0]
    else:
        if kind == "normal":
            value = rng.gauss(dist.mean, dist.stddev)
        else:
            sigma2 = math.log1p((dist.stddev / dist.mean) ** 2)
            value = rng.lognormvariate(math.log(dist.mean) - sigma2 / 2, math.sqrt(sigma2))
        value = min(max(value, dist.min), dist.max)
    return max(1, round(value))


def samples(dist: Distribution, n: int, seed: int) -> list[int]:
    """`n` seeded draws of `dist`."""
    rng = random.Random(seed)
    return [sample(dist, rng) for _ in range(n)]


def words(nbytes: int, rng: random.Random) -> str:
    """About `nbytes` of ASCII words (exactly `nbytes` when ≥ 1), seeded; whitespace-separated,
    so the mock counts them as tokens the way it counts its own answer."""
    out: list[str] = []
    size = 0
    while size < nbytes:
        word = rng.choice(VOCABULARY)
        out.append(word)
        size += len(word) + 1
    return " ".join(out)[:nbytes].rstrip() or "hi"


@dataclass(frozen=True, slots=True)
class Variant:
    """One drawn request shape (before the model and the nonce)."""

    structure: str
    prompt_bytes: int
    """Bytes of message text (system and history included; tool schemas not)."""
    max_tokens: int
    messages: tuple[Mapping[str, Any], ...]
    system: str | None = None
    tools: tuple[tuple[str, str, Mapping[str, Any]], ...] = ()


def variants(w: WorkloadConfig, *, prompt: str, max_tokens: int) -> list[Variant]:
    """The workload's drawn request shapes; the default workload gives the one `prompt`."""
    rng = random.Random(w.seed)
    names = list(w.structure)
    weights = list(w.structure.values())
    replay = _replayed(w)
    n = len(replay) if replay and w.prompt_bytes is None else w.variants
    if w.default:
        n = 1
    out = []
    for i in range(n):
        answer = max_tokens if w.answer_tokens is None else sample(w.answer_tokens, rng)
        if replay:
            msgs = replay[i % len(replay)]
            size = sum(len(str(m.get("content", ""))) for m in msgs)
            out.append(Variant("replay", size, answer, tuple(msgs)))
            continue
        shape = rng.choices(names, weights=weights)[0] if len(names) > 1 else names[0]
        size = len(prompt.encode()) if w.prompt_bytes is None else sample(w.prompt_bytes, rng)
        text = prompt if w.prompt_bytes is None else words(size, rng)
        out.append(_shape(shape, text, size, answer, w))
    return out


def _shape(shape: str, text: str, size: int, answer: int, w: WorkloadConfig) -> Variant:
    user = {"role": "user", "content": text}
    if shape == "single":
        return Variant(shape, size, answer, (user,))
    if shape == "system":
        half = len(text) // 2
        return Variant(shape, size, answer, ({"role": "user", "content": text[half:] or "hi"},),
                       system=text[:half] or "be brief")  # fmt: skip
    if shape == "tools":
        tools = tuple(
            (f"lookup_{i}", f"looks up records of kind {i}", _TOOL_SCHEMA)
            for i in range(w.tool_count)
        )
        return Variant(shape, size, answer, (user,), tools=tools)
    pieces = 2 * w.history_turns + 1
    step = max(1, len(text) // pieces)
    msgs = [
        {"role": "user" if i % 2 == 0 else "assistant",
         "content": text[i * step : (i + 1) * step if i < pieces - 1 else None] or "ok"}
        for i in range(pieces)
    ]  # fmt: skip
    return Variant(shape, size, answer, tuple(msgs))


def _replayed(w: WorkloadConfig) -> list[list[dict[str, Any]]]:
    if w.replay is None:
        return []
    lines = w.replay.read_text(encoding="utf-8").splitlines()
    return [replay_messages(json.loads(line)) for line in lines if line.strip()]


class RequestPlan:
    """Per request `seq`: body (head, tail split around the nonce), model and key. A
    `soak.client.RequestTemplates`: hand it to `ChatClient(templates=...)`."""

    def __init__(
        self,
        w: WorkloadConfig,
        *,
        api: str,
        stream: bool,
        model: str,
        prompt: str,
        max_tokens: int,
    ) -> None:
        self.api, self.stream = api, stream
        self.variants = variants(w, prompt=prompt, max_tokens=max_tokens)
        self.models: tuple[str, ...] = tuple(w.models) or (model,)
        keys = w.keys
        self.header_sets: Sequence[Mapping[str, str]] = (
            [] if keys is None
            else [{keys.header: keys.scheme + k.reveal()} for k in keys.keys]
        )  # fmt: skip
        self.key_names = tuple(f"key-{i}" for i in range(len(self.header_sets)))
        rng = random.Random(w.seed + 1)
        weights = list(w.models.values()) or [1.0]
        count = len(self.variants)
        self._model = [
            rng.choices(range(len(self.models)), weights=weights)[0] for _ in range(_TABLE)
        ]
        self._variant = [rng.randrange(count) for _ in range(_TABLE)] if count > 1 else [0] * _TABLE
        self._bodies: dict[tuple[int, int], tuple[bytes, bytes]] = {}

    def body(self, variant: int, model: int) -> tuple[bytes, bytes]:
        """Variant `variant` for model `model`, encoded once."""
        key = (variant, model)
        found = self._bodies.get(key)
        if found is None:
            v = self.variants[variant]
            found = encode_template(self.api, self.models[model], list(v.messages), v.max_tokens,
                                    self.stream, system=v.system, tools=v.tools)  # fmt: skip
            self._bodies[key] = found
        return found

    def warm(self) -> None:
        """Encode every body now (before the load: no encoding on the hot path)."""
        for v in range(len(self.variants)):
            for m in range(len(self.models)):
                self.body(v, m)

    def pick(self, seq: int) -> tuple[bytes, bytes, int]:
        i = seq % _TABLE
        head, tail = self.body(self._variant[i], self._model[i])
        return head, tail, seq % len(self.header_sets) if self.header_sets else 0

    def variant_of(self, seq: int) -> Variant:
        return self.variants[self._variant[seq % _TABLE]]

    def model_of(self, seq: int) -> str:
        """The configured model name of request `seq` (a bounded label value)."""
        return self.models[self._model[seq % _TABLE]]

    def key_of(self, seq: int) -> str | None:
        """`key-<i>` of request `seq`, or None without a key mix."""
        return self.key_names[seq % len(self.key_names)] if self.key_names else None

    def sent_bytes(self, seq: int) -> int:
        """The size in bytes of request `seq`'s body without its nonce."""
        i = seq % _TABLE
        head, tail = self.body(self._variant[i], self._model[i])
        return len(head) + len(tail)

    @property
    def max_answer_tokens(self) -> int:
        return max(v.max_tokens for v in self.variants)
