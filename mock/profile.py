"""Provider behaviour profiles: YAML/JSON → frozen dataclasses, strictly validated.

A profile says how one mock provider behaves (latency, stream timing, faults, seed). Every
bad value raises `ProfileError` naming the dotted key, so a typo in a profile file is a
one-line error instead of a surprise in a soak run.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import yaml

from soak import durations

PROVIDER_NAME_RE = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
DEFAULT_PROVIDER = "default"
STATUSES = (429, 500, 502, 503, 529)
LATENCY_MODELS = {
    "fixed": ("value",),
    "uniform": ("min", "max"),
    "normal": ("mean", "stddev"),
    "lognormal": ("median", "sigma"),
}
RATE_KEYS = ("error_rate", "hang_rate", "reset_rate", "malformed_rate", "cut_rate")


class ProfileError(ValueError):
    """A profile value is invalid; the message names the dotted key."""


@dataclass(frozen=True, slots=True)
class Latency:
    """A latency model; `params` are seconds except lognormal's `sigma` (dimensionless)."""

    model: str = "fixed"
    params: tuple[float, ...] = (0.0,)

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            **dict(zip(LATENCY_MODELS[self.model], self.params, strict=True)),
        }


@dataclass(frozen=True, slots=True)
class Stream:
    """Stream timing: time to first token, delay between tokens, tokens per answer."""

    ttft: Latency = Latency()
    inter_token: Latency = Latency()
    tokens: int = 16


@dataclass(frozen=True, slots=True)
class Faults:
    """Per-request fault rates (0..1, drawn once per request) and their details."""

    error_rate: float = 0.0
    status_mix: tuple[tuple[int, float], ...] = ((500, 1.0),)
    retry_after: float = 1.0
    hang_rate: float = 0.0
    reset_rate: float = 0.0
    malformed_rate: float = 0.0
    cut_rate: float = 0.0

    @property
    def any(self) -> bool:
        return any(getattr(self, k) > 0 for k in RATE_KEYS)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {k: getattr(self, k) for k in RATE_KEYS}
        out["status_mix"] = {str(s): w for s, w in self.status_mix}
        out["retry_after"] = self.retry_after
        return out


@dataclass(frozen=True, slots=True)
class Profile:
    """How one provider behaves. `stream` None: streams use `latency` as time to first token."""

    latency: Latency = Latency()
    stream: Stream | None = None
    tokens: int = 16
    faults: Faults = Faults()
    seed: int = 1
    models: tuple[str, ...] = ("mock-model",)

    def stream_timing(self) -> Stream:
        """The effective stream timing (derived from `latency` when no stream block is set)."""
        return self.stream or Stream(ttft=self.latency, inter_token=Latency(), tokens=self.tokens)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"latency": self.latency.to_dict()}
        if self.stream is not None:
            out["stream"] = {
                "ttft": self.stream.ttft.to_dict(),
                "inter_token": self.stream.inter_token.to_dict(),
                "tokens": self.stream.tokens,
            }
        out.update(tokens=self.tokens, faults=self.faults.to_dict(), seed=self.seed)
        out["models"] = list(self.models)
        return out


@dataclass(frozen=True, slots=True)
class MockConfig:
    """Everything a mock process needs: providers (always incl. `default`) and limits."""

    providers: dict[str, Profile] = field(default_factory=lambda: {DEFAULT_PROVIDER: Profile()})
    token: str | None = None
    max_body: int = 1 << 20
    trace_capacity: int = 100_000


def parse_duration(value: Any, where: str) -> float:
    """Seconds from a number or a string like `250ms`, `1s`, `1m30s`: soak's one duration
    grammar (`soak.durations`), its errors as a `ProfileError` naming `where`."""
    try:
        seconds = durations.parse_duration(value)
    except (TypeError, ValueError):
        if isinstance(value, int | float) and not isinstance(value, bool):
            problem = "duration must be finite and >= 0"
        else:
            problem = "expected a duration like 250ms or 1s"
        raise ProfileError(f"{where}: {problem}, got {value!r}") from None
    if seconds > MAX_DURATION_S:  # a 1e308 s latency overflowed the event loop's timer
        raise ProfileError(f"{where}: must be at most 168h (7 days), got {value!r}")
    return seconds


MAX_DURATION_S = 7 * 86400.0
"""The longest latency, delay or TTL a profile may ask for: soak's own bound on a phase."""


def _mapping(value: Any, where: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ProfileError(f"{where}: expected a mapping, got {type(value).__name__}")
    return value


def _check_keys(data: dict[str, Any], allowed: tuple[str, ...], where: str) -> None:
    for key in data:
        if key not in allowed:
            prefix = f"{where}." if where else ""
            raise ProfileError(f"{prefix}{key}: unknown key (allowed: {', '.join(allowed)})")


def _number(value: Any, where: str, lo: float, hi: float = math.inf) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not lo <= value <= hi:
        raise ProfileError(f"{where}: expected a number in [{lo}, {hi}], got {value!r}")
    return float(value)


def _int(value: Any, where: str, lo: int, hi: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise ProfileError(f"{where}: expected an integer in [{lo}, {hi}], got {value!r}")
    return value


def parse_latency(value: Any, where: str) -> Latency:
    """A latency model from `{model: ..., ...}` or a bare duration (fixed)."""
    if not isinstance(value, dict):
        return Latency("fixed", (parse_duration(value, where),))
    model = value.get("model", "fixed")
    if model not in LATENCY_MODELS:
        raise ProfileError(f"{where}.model: expected one of {', '.join(LATENCY_MODELS)}")
    names = LATENCY_MODELS[model]
    _check_keys(value, ("model", *names), where)
    params = []
    for name in names:
        if name not in value:
            raise ProfileError(f"{where}.{name}: required for model {model}")
        if name == "sigma":
            params.append(_number(value[name], f"{where}.sigma", 0.0, 10.0))
        else:
            params.append(parse_duration(value[name], f"{where}.{name}"))
    if model == "uniform" and params[0] > params[1]:
        raise ProfileError(f"{where}.max: must be >= min")
    return Latency(model, tuple(params))


def parse_faults(value: Any, where: str) -> Faults:
    data = _mapping(value, where)
    _check_keys(data, (*RATE_KEYS, "status_mix", "retry_after"), where)
    rates = {k: _number(data.get(k, 0.0), f"{where}.{k}", 0.0, 1.0) for k in RATE_KEYS}
    if sum(rates.values()) > 1.0 + 1e-9:
        raise ProfileError(f"{where}: the rates add up to more than 1")
    mix_raw = _mapping(data.get("status_mix", {500: 1}), f"{where}.status_mix")
    mix = []
    for status, weight in mix_raw.items():
        key = f"{where}.status_mix.{status}"
        try:
            code = int(status)
        except (TypeError, ValueError):
            raise ProfileError(f"{key}: expected one of {STATUSES}") from None
        if code not in STATUSES:
            raise ProfileError(f"{key}: expected one of {STATUSES}")
        mix.append((code, _number(weight, key, 0.0)))
    if not mix or sum(w for _, w in mix) <= 0:
        raise ProfileError(f"{where}.status_mix: needs at least one positive weight")
    retry_after = parse_duration(data.get("retry_after", 1), f"{where}.retry_after")
    return Faults(status_mix=tuple(mix), retry_after=retry_after, **rates)


def parse_profile(data: Any, where: str = "profile", base: Profile | None = None) -> Profile:
    """A `Profile` from a mapping; keys absent fall back to `base` (or the defaults)."""
    data = _mapping(data, where)
    keys = ("latency", "stream", "tokens", "faults", "seed", "models")
    _check_keys(data, keys, where)
    prof = base or Profile()
    changes: dict[str, Any] = {}
    if "latency" in data:
        changes["latency"] = parse_latency(data["latency"], f"{where}.latency")
    if "tokens" in data:
        changes["tokens"] = _int(data["tokens"], f"{where}.tokens", 1, 100_000)
    if "stream" in data and data["stream"] is not None:
        sdata = _mapping(data["stream"], f"{where}.stream")
        _check_keys(sdata, ("ttft", "inter_token", "tokens"), f"{where}.stream")
        changes["stream"] = Stream(
            ttft=parse_latency(sdata.get("ttft", 0), f"{where}.stream.ttft"),
            inter_token=parse_latency(sdata.get("inter_token", 0), f"{where}.stream.inter_token"),
            tokens=_int(sdata.get("tokens", 16), f"{where}.stream.tokens", 1, 100_000),
        )
    elif "stream" in data:
        changes["stream"] = None
    if "faults" in data:
        changes["faults"] = parse_faults(data["faults"], f"{where}.faults")
    if "seed" in data:
        changes["seed"] = _int(data["seed"], f"{where}.seed", 0, 2**63 - 1)
    if "models" in data:
        models = data["models"]
        if (
            not isinstance(models, list)
            or not models
            or not all(isinstance(m, str) and m for m in models)
        ):
            raise ProfileError(f"{where}.models: expected a non-empty list of names")
        changes["models"] = tuple(models)
    return replace(prof, **changes)


def check_provider_name(name: Any, where: str) -> str:
    if not isinstance(name, str) or not PROVIDER_NAME_RE.match(name):
        raise ProfileError(f"{where}: provider name {name!r} must match [A-Za-z0-9_.-]{{1,64}}")
    return name


def parse_config(data: Any, where: str = "") -> MockConfig:
    """A `MockConfig` from `{defaults, providers, max_body, trace_capacity}`."""
    data = _mapping(data, where or "file")
    _check_keys(data, ("defaults", "providers", "max_body", "trace_capacity"), where)
    dot = f"{where}." if where else ""
    base = parse_profile(data.get("defaults"), f"{dot}defaults")
    providers = {DEFAULT_PROVIDER: base}
    for name, prof in _mapping(data.get("providers"), f"{dot}providers").items():
        key = f"{dot}providers.{name}"
        providers[check_provider_name(name, key)] = parse_profile(prof, key, base)
    max_body = _int(data.get("max_body", 1 << 20), f"{dot}max_body", 1024, 1 << 30)
    capacity = _int(data.get("trace_capacity", 100_000), f"{dot}trace_capacity", 1, 10_000_000)
    return MockConfig(providers=providers, max_body=max_body, trace_capacity=capacity)


def load_profiles(path: str | Path) -> MockConfig:
    """Read a profile file (YAML or JSON). Raises `ProfileError` with a one-line message."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ProfileError(f"{path}: cannot read ({exc.strerror or exc})") from None
    except UnicodeDecodeError:
        raise ProfileError(f"{path}: cannot read (not UTF-8 text)") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f" line {mark.line + 1}" if mark is not None else ""
        raise ProfileError(f"{path}:{line} not valid YAML") from None
    except (ValueError, OverflowError) as exc:  # a scalar yaml cannot build (2024-13-45)
        raise ProfileError(f"{path}: not valid YAML: cannot read a value ({exc})"[:200]) from None
    return parse_config(data)
