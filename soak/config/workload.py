"""The `workload` section: what the requests of every phase look like.

Prompt size (bytes) and answer length (tokens) as distributions, a message-structure mix, a
model mix and a key mix. The defaults (`prompt_bytes: null`, `answer_tokens: null`, no models,
no keys) send exactly the `request` block's tiny request, so a config without the section
behaves as before. Key values are secrets (from an environment variable or a file, one key a
line); only their index (`key-0`, `key-1`, ...) is ever shown.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

from soak.config.fields import Secret, Section

DISTRIBUTIONS = ("fixed", "uniform", "normal", "lognormal", "histogram")
STRUCTURES = ("single", "history", "system", "tools")
MAX_PROMPT_BYTES = 8 * 2**20
"""The largest prompt a workload may ask for (8 MiB): beyond any context window."""
MAX_ANSWER_TOKENS = 100_000
"""The mock's own bound on an answer (profile `tokens`)."""
MAX_VARIANTS = 4096
MAX_MODELS = 32
MAX_KEYS = 100_000
_HEADER = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
_MODEL = re.compile(r"[A-Za-z0-9][A-Za-z0-9_./:-]{0,63}")


@dataclass(frozen=True, slots=True)
class Distribution:
    """One configured distribution of a positive integer (bytes or tokens).

    `fixed`: `value`; `uniform`: `min`..`max`; `normal` and `lognormal`: `mean` and `stddev` of
    the value itself (not of its log), clipped to `min`..`max`; `histogram`: `values` drawn with
    `weights` (an empirical histogram)."""

    kind: str
    value: float = 0.0
    mean: float = 0.0
    stddev: float = 0.0
    min: float = 1.0
    max: float = 0.0
    values: tuple[float, ...] = ()
    weights: tuple[float, ...] = ()


@dataclass(frozen=True, slots=True)
class KeyMix:
    """N virtual keys sent in `header` as `scheme` + key, chosen per request by `weights`
    (uniform when empty). `keys` are secrets: never logged or reported."""

    header: str
    scheme: str
    keys: tuple[Secret, ...]
    source: str
    """Where the keys came from (`env:NAME` or `file:PATH`), for reports; never a key."""


@dataclass(frozen=True, slots=True)
class WorkloadConfig:
    seed: int = 1
    prompt_bytes: Distribution | None = None
    """None: the `request.prompt` as it is."""
    answer_tokens: Distribution | None = None
    """None: `request.max_tokens`."""
    structure: Mapping[str, float] = field(
        default_factory=lambda: MappingProxyType({"single": 1})
    )
    history_turns: int = 4
    tool_count: int = 3
    models: Mapping[str, float] = field(default_factory=lambda: MappingProxyType({}))
    """Model name → weight; empty: `gateway.model` only."""
    keys: KeyMix | None = None
    replay: Path | None = None
    """A local JSONL file of prompts (`{"messages": [...]}` or `{"prompt": "..."}` a line)."""
    variants: int = 64
    """Distinct request bodies built ahead; requests cycle through them in a seeded order."""

    @property
    def default(self) -> bool:
        """True when every request is the `request` block's (today's tiny request)."""
        return (
            self.prompt_bytes is None and self.answer_tokens is None and not self.models
            and self.keys is None and self.replay is None and set(self.structure) == {"single"}
        )  # fmt: skip


DEFAULT_WORKLOAD = WorkloadConfig()


def parse_workload(s: Section, env: Mapping[str, str], base_dir: Path) -> WorkloadConfig:
    """`workload`, strictly validated; key files and the replay file are read now."""
    s.only("seed", "prompt_bytes", "answer_tokens", "structure", "history_turns", "tool_count",
           "models", "keys", "replay", "variants")  # fmt: skip
    prompt = s.section("prompt_bytes", optional=True)
    answer = s.section("answer_tokens", optional=True)
    replay = s.string("replay", None)
    replay_path = None if replay is None else base_dir / Path(replay).expanduser()
    if replay_path is not None:
        _check_replay(s, replay_path)
    keys = s.section("keys", optional=True)
    return WorkloadConfig(
        seed=s.integer("seed", 1, minimum=0),
        prompt_bytes=None if prompt is None else parse_distribution(prompt, MAX_PROMPT_BYTES),
        answer_tokens=None if answer is None else parse_distribution(answer, MAX_ANSWER_TOKENS),
        structure=_weights(s, "structure", {"single": 1}, allowed=STRUCTURES),
        history_turns=s.integer("history_turns", 4, minimum=1, maximum=1000),
        tool_count=s.integer("tool_count", 3, minimum=1, maximum=128),
        models=_weights(s, "models", {}, pattern=_MODEL, limit=MAX_MODELS),
        keys=None if keys is None else _keys(keys, env, base_dir),
        replay=replay_path,
        variants=s.integer("variants", 64, minimum=1, maximum=MAX_VARIANTS),
    )


def parse_distribution(s: Section, limit: int) -> Distribution:
    """One distribution section; every value positive and at most `limit`."""
    s.only("dist", "value", "min", "max", "mean", "stddev", "values", "weights")
    kind = s.choice("dist", DISTRIBUTIONS, _inferred(s))
    allowed = {
        "fixed": ("value",), "uniform": ("min", "max"),
        "normal": ("mean", "stddev", "min", "max"), "lognormal": ("mean", "stddev", "min", "max"),
        "histogram": ("values", "weights"),
    }[kind]  # fmt: skip
    for key in s.data:
        if key != "dist" and key not in allowed and s.data[key] is not None:
            s.fail(key, f"not a key of dist {kind}", f"{kind} takes {', '.join(allowed)}")
    hint = f"at most {limit}"
    if kind == "fixed":
        return Distribution(kind, value=s.number("value", positive=True, at_most=limit, hint=hint))
    if kind == "histogram":
        values = _numbers(s, "values", limit)
        weights = _numbers(s, "weights", None) if s.has("weights") else (1.0,) * len(values)
        if len(weights) != len(values):
            s.fail("weights", f"needs one weight per value ({len(values)}), got {len(weights)}")
        if not sum(weights) > 0:
            s.fail("weights", "must not all be 0")
        return Distribution(kind, values=values, weights=weights)
    low = s.number("min", 1, positive=True, at_most=limit, hint=hint)
    high = s.number("max", limit, positive=True, at_most=limit, hint=hint)
    if kind == "uniform" and not s.has("max"):
        s.fail("max", "missing required key")
    if high < low:
        s.fail("max", f"must be at least min ({low:g}), got {high:g}")
    if kind == "uniform":
        return Distribution(kind, min=low, max=high)
    stddev = s.number("stddev", 0.0)  # read first: its own error before a missing mean
    mean = s.number("mean", positive=True, at_most=limit, hint=hint)
    return Distribution(kind, mean=mean, stddev=stddev, min=low, max=high)


def _inferred(s: Section) -> str:
    """The distribution a section without `dist` means, from its keys (else fixed)."""
    if s.has("values"):
        return "histogram"
    if s.has("mean") or s.has("stddev"):
        return "normal"
    return "uniform" if s.has("min") or s.has("max") else "fixed"


def _numbers(s: Section, key: str, limit: int | None) -> tuple[float, ...]:
    raw = s.data.get(key)
    if not isinstance(raw, list) or not raw or len(raw) > 10_000:
        s.wrong_type(key, "a list of 1 to 10,000 numbers", raw)
    out = []
    for v in raw:
        bad = isinstance(v, bool) or not isinstance(v, int | float) or v < 0 or v != v
        if bad or (limit is not None and not 0 < v <= limit):
            s.fail(key, f"invalid value {v!r}", f"numbers in (0, {limit}]" if limit else "≥ 0")
        out.append(float(v))
    return tuple(out)


def _weights(
    s: Section,
    key: str,
    default: dict[str, float],
    *,
    allowed: tuple[str, ...] = (),
    pattern: re.Pattern[str] | None = None,
    limit: int = 64,
) -> Mapping[str, float]:
    """A name → weight mapping (weights ≥ 0, not all 0)."""
    sub = s.section(key, optional=True)
    if sub is None:
        return MappingProxyType(dict(default))
    if allowed:
        sub.only(*allowed)
    names = [name for name, _ in sub.entries()]
    if len(names) > limit:
        s.fail(key, f"at most {limit} entries, got {len(names)}")
    out = {}
    for name in names:
        if pattern is not None and not pattern.fullmatch(name):
            sub.fail(name, "invalid name", "letters, digits, '_./:-'; at most 64 characters")
        out[name] = sub.number(name)
    if out and not sum(out.values()) > 0:
        s.fail(key, "weights must not all be 0")
    return MappingProxyType(out)


def _keys(s: Section, env: Mapping[str, str], base_dir: Path) -> KeyMix:
    s.only("header", "scheme", "env", "file", "count")
    header = s.string("header", "Authorization", pattern=_HEADER, hint="an HTTP header name")
    scheme = s.data.get("scheme", "Bearer ")
    if not isinstance(scheme, str):
        s.wrong_type("scheme", "a string", scheme)
    count = s.integer("count", MAX_KEYS, minimum=1, maximum=MAX_KEYS)  # type checked first
    if s.has("env") == s.has("file"):
        s.fail(None, "set exactly one of env, file")
    if s.has("env"):
        name = s.env_name("env")
        raw = s.from_env("env", name, env, "export it: one key a line").reveal()
        source = f"env:{name}"
    else:
        path = base_dir / Path(s.string("file")).expanduser()
        source = f"file:{path}"
        try:
            raw = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as err:
            s.fail("file", f"cannot read '{path}': {getattr(err, 'strerror', None) or 'not text'}")
    keys = [k.strip() for k in raw.replace(",", "\n").splitlines() if k.strip()]
    if not keys:
        s.fail("env" if s.has("env") else "file", "holds no keys", "one key a line")
    count = count if s.has("count") else len(keys)
    if count > len(keys):
        s.fail("count", f"only {len(keys)} keys given, asked for {count}")
    if any("\r" in k or "\n" in k for k in keys):
        s.fail("file", "a key must be one line")
    return KeyMix(header, scheme, tuple(Secret(k) for k in keys[:count]), source)


def _check_replay(s: Section, path: Path) -> None:
    """The replay file exists and each line is a prompt soak can send (checked at load)."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as err:
        s.fail("replay", f"cannot read '{path}': {getattr(err, 'strerror', None) or 'not text'}")
    found = 0
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            replay_messages(json.loads(line))
        except (ValueError, TypeError) as err:
            s.fail("replay", f"'{path}' line {number}: {err}")
        found += 1
    if not found:
        s.fail("replay", f"'{path}' holds no prompts", 'one {"messages": [...]} a line')


def replay_messages(item: Any) -> list[dict[str, Any]]:
    """The messages of one replay line; the last must be a user message with string content
    (the nonce goes at its end). Raises ValueError naming what is wrong."""
    if isinstance(item, dict) and isinstance(item.get("prompt"), str):
        return [{"role": "user", "content": item["prompt"]}]
    messages = item.get("messages") if isinstance(item, dict) else None
    if not isinstance(messages, list) or not messages:
        raise ValueError('expected {"messages": [...]} or {"prompt": "..."}')
    for m in messages:
        if not isinstance(m, dict) or not isinstance(m.get("role"), str):
            raise ValueError("every message needs a role")
    last = messages[-1]
    if last["role"] != "user" or not isinstance(last.get("content"), str):
        raise ValueError("the last message must be a user message with string content")
    return messages


def describe_workload(w: WorkloadConfig) -> dict[str, Any]:
    """A JSON-safe, secret-free view for reports."""
    def dist(d: Distribution | None) -> Any:
        if d is None:
            return None
        fields = {k: v for k, v in asdict(d).items() if k != "kind" and v not in (0.0, ())}
        return {"dist": d.kind, **fields}

    keys = None if w.keys is None else {
        "header": w.keys.header, "scheme": w.keys.scheme, "env": None,
        "file": None, "count": len(w.keys.keys), "source": w.keys.source,
    }  # fmt: skip
    return {
        "seed": w.seed, "prompt_bytes": dist(w.prompt_bytes),
        "answer_tokens": dist(w.answer_tokens), "structure": dict(w.structure),
        "history_turns": w.history_turns, "tool_count": w.tool_count, "models": dict(w.models),
        "keys": keys, "replay": None if w.replay is None else str(w.replay),
        "variants": w.variants,
    }  # fmt: skip
