"""Typed, strict reads of one mapping in a config: every error names its file and dotted key.

`Section` is the only way config parsing touches raw YAML data: it rejects unknown keys (with
a "did you mean" suggestion), checks types and ranges, parses durations and URLs, expands
`${ENV}` references, and wraps secret values in `Secret` so they never reach a repr, a log
line or an error message.
"""

from __future__ import annotations

import difflib
import hmac
import math
import re
from collections.abc import Callable, Iterator, Mapping
from typing import Any, NoReturn
from urllib.parse import urlsplit

from soak.config.source import ConfigError, Path_
from soak.durations import DURATION_HINT, parse_duration

ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
MAX_DURATION_S = 7 * 86400.0
"""Longest duration any key may hold unless it says otherwise (`at_most`): seven days. A phase,
a timeout or a threshold longer than a week is a typo, and an unbounded one never ends."""
MAX_INTEGER = 2**63 - 1
"""Largest integer any key may hold unless it says otherwise (`maximum`): what SQLite, JSON
readers and C libraries take without overflow."""
MAX_RATE = 100_000.0
"""Requests per second one replica may be asked for: a generator on one core tops out far
below (docs/BENCHMARKS.md); more is a typo (`rate: 1.0e+12` never finished)."""
RATE_HINT = "requests per second, per replica"
MAX_REQUESTS = 100_000_000
"""Requests one phase may send, whatever its keys multiply to (rate x duration, rounds...)."""
MAX_CONCURRENCY = 100_000
"""Requests or streams one phase may hold open at once."""
_ENV_REF = re.compile(r"\$\$|\$\{([^}]*)\}")
_MISSING: Any = object()


class Secret:
    """A credential read from the environment or a file; shown only through `reveal()`."""

    __slots__ = ("_parts", "_value")

    def __init__(self, value: str, parts: tuple[str, ...] = ()) -> None:
        self._value = value
        self._parts = parts

    def reveal(self) -> str:
        """The secret itself: for an HTTP header or a child process's environment only."""
        return self._value

    def redactions(self) -> tuple[str, ...]:
        """Every string to redact for this secret: the value and each `${ENV}` value it was
        built from (a child that inherits the environment may print `$TOKEN` alone, not
        `Bearer $TOKEN`)."""
        return (self._value, *self._parts)

    def __repr__(self) -> str:
        return "Secret('***')"

    def __str__(self) -> str:
        return "***"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Secret):
            return NotImplemented
        return hmac.compare_digest(self._value.encode(), other._value.encode())

    def __hash__(self) -> int:
        return hash((Secret, self._value))

    def __reduce__(self) -> NoReturn:
        raise TypeError("a Secret cannot be pickled")


def _kind(value: object) -> str:
    if value is None:
        return "null"
    names = {bool: "boolean", int: "integer", float: "number", str: "string", list: "list"}
    return names.get(type(value), "mapping" if isinstance(value, dict) else type(value).__name__)


def _shown(value: object) -> str:
    """`value` for a message: scalars quoted and shortened, containers by kind only."""
    if isinstance(value, str):
        text = value if len(value) <= 40 else value[:37] + "..."
        return repr(text)
    if isinstance(value, int) and not isinstance(value, bool):
        return _count(value)
    return repr(value) if isinstance(value, bool | float) else ""


class Section:
    """One mapping of the merged config at `path`; `locate` maps a key path to its file."""

    def __init__(self, data: Mapping[str, Any], path: Path_, locate: Callable[[Path_], str]):
        self.data, self.path, self.locate = data, path, locate

    def fail(self, key: str | None, problem: str, hint: str | None = None) -> NoReturn:
        """Raise the one-line error for `key` of this section (the section itself if None)."""
        path = self.path if key is None else (*self.path, key)
        dotted = ".".join(path) or "(top level)"
        suffix = f" ({hint})" if hint else ""
        raise ConfigError(f"{self.locate(path)}: {dotted}: {problem}{suffix}")

    def only(self, *allowed: str) -> None:
        """Reject keys other than `allowed`, suggesting the closest allowed one."""
        for key in self.data:
            if not isinstance(key, str):
                self.fail(None, f"key {key!r} must be a string", "quote it")
            if key not in allowed:
                close = difflib.get_close_matches(key, allowed, n=1, cutoff=0.6)
                hint = f"did you mean '{close[0]}'?" if close else f"allowed: {', '.join(allowed)}"
                self.fail(key, "unknown key", hint)

    def has(self, key: str) -> bool:
        return self.data.get(key) is not None

    def _get(self, key: str, default: Any) -> Any:
        if key in self.data:
            return self.data[key]
        if default is _MISSING:
            self.fail(key, "missing required key")
        return default

    def wrong_type(
        self, key: str, expected: str, value: object, *, secret: bool = False
    ) -> NoReturn:
        shown = "" if secret else _shown(value)
        self.fail(key, f"expected {expected}, got {_kind(value)}{' ' + shown if shown else ''}")

    def section(
        self, key: str, *, optional: bool = False, hint: str | None = None
    ) -> Section | None:
        """The nested mapping at `key`; None when `optional` and absent or null.

        `hint` says what to do when a required section is missing.
        """
        if not optional and key not in self.data:
            self.fail(key, "missing required key", hint)
        value = self._get(key, None if optional else _MISSING)
        if value is None and optional:
            return None
        if not isinstance(value, dict):
            self.wrong_type(key, "a mapping", value)
        return Section(value, (*self.path, key), self.locate)

    def entries(self) -> Iterator[tuple[str, Any]]:
        """(key, value) pairs of a free-form mapping, keys checked to be strings."""
        for key, value in self.data.items():
            if not isinstance(key, str):
                self.fail(None, f"key {key!r} must be a string", "quote it")
            yield key, value

    def string(
        self,
        key: str,
        default: Any = _MISSING,
        *,
        pattern: re.Pattern[str] | None = None,
        hint: str | None = None,
    ) -> Any:
        """A non-empty string, optionally matching `pattern`; `default` when absent or null
        (a required string, without `default`, must be present and not null)."""
        value = self._get(key, default)
        if value is None and default is not _MISSING:
            return default
        if not isinstance(value, str):
            self.wrong_type(key, "a string", value)
        if not value.strip():
            self.fail(key, "must not be empty", hint)
        if pattern is not None and not pattern.fullmatch(value):
            self.fail(key, f"invalid value {_shown(value)}", hint)
        return value

    def choice(self, key: str, choices: tuple[str, ...], default: Any = _MISSING) -> str:
        value = self._get(key, default)
        if not isinstance(value, str):
            self.wrong_type(key, "a string", value)
        if value not in choices:
            self.fail(key, f"unknown value {_shown(value)}", f"use {_alternatives(choices)}")
        return value

    def boolean(self, key: str, default: Any = _MISSING) -> bool:
        value = self._get(key, default)
        if not isinstance(value, bool):
            self.wrong_type(key, "a boolean (true or false)", value)
        return value

    def integer(
        self,
        key: str,
        default: Any = _MISSING,
        *,
        minimum: int | None = None,
        maximum: int = MAX_INTEGER,
    ) -> int:
        """An integer in [`minimum`, `maximum`] (a boolean is not an integer)."""
        value = self._get(key, default)
        if isinstance(value, bool) or not isinstance(value, int):
            self.wrong_type(key, "an integer", value)
        if minimum is not None and value < minimum:
            self.fail(key, f"must be at least {minimum}, got {_count(value)}")
        if value > maximum:
            self.fail(key, f"must be at most {_count(maximum)}, got {_count(value)}")
        return value

    def number(
        self,
        key: str,
        default: Any = _MISSING,
        *,
        positive: bool = False,
        at_most: float | None = None,
        hint: str | None = None,
    ) -> float:
        """A finite number; `positive` demands > 0, otherwise >= 0; `at_most` an upper bound
        (`hint` says what the number is; a bound of 1 is a ratio)."""
        value = self._get(key, default)
        if isinstance(value, bool) or not isinstance(value, int | float):
            self.wrong_type(key, "a number", value)
        if isinstance(value, int) and abs(value) > MAX_INTEGER:
            self.fail(key, f"must be a finite number, got {_count(value)}")
        if not math.isfinite(value):
            self.fail(key, f"must be a finite number, got {value}")
        if positive and value <= 0:
            self.fail(key, f"must be greater than 0, got {value:g}")
        if value < 0:
            self.fail(key, f"must not be negative, got {value:g}")
        if at_most is not None and value > at_most:
            hint = hint or ("a ratio: 1.0 is 100%" if at_most == 1.0 else None)
            self.fail(key, f"must be between 0 and {at_most:g}, got {value:g}", hint)
        return float(value)

    def duration(
        self,
        key: str,
        default: Any = _MISSING,
        *,
        positive: bool = False,
        at_least: float = 0.0,
        at_most: float = MAX_DURATION_S,
    ) -> float:
        """Seconds from a number or a `1m30s`-style string; `positive` rejects zero; shorter
        than `at_least` (a poll or a period that would spin) or longer than `at_most` (seven
        days unless the key says otherwise) is refused."""
        value = self._get(key, default)
        try:
            seconds = parse_duration(value)
        except TypeError:
            self.wrong_type(key, "a duration", value)
        except ValueError as err:
            problem = str(err) if len(str(err)) <= 80 else f"invalid duration {_shown(value)}"
            self.fail(key, problem, DURATION_HINT)
        if positive and seconds == 0:
            self.fail(key, "must be longer than 0", DURATION_HINT)
        shown = _shown(value) if isinstance(value, str) else f"{seconds:g}s"
        if seconds > at_most:
            self.fail(key, f"must be at most {span(at_most)}, got {shown}")
        if seconds < at_least:
            self.fail(key, f"must be at least {span(at_least)}, got {shown}")
        return seconds

    def load_bound(self, key: str, *, requests: float = 0.0, seconds: float = 0.0) -> None:
        """A phase's whole load as its keys multiply out: at most `MAX_REQUESTS` requests and
        `MAX_DURATION_S` of running time, else a one-line error on `key` saying the product."""
        if requests > MAX_REQUESTS:
            self.fail(
                key,
                f"the phase would send {requests:,.0f} requests, more than {MAX_REQUESTS:,}",
                "lower the rate, the duration or the count",
            )
        if seconds > MAX_DURATION_S:
            self.fail(
                key,
                f"the phase would run {seconds / 3600:,.6g}h, longer than {span(MAX_DURATION_S)}",
                "raise the rate or lower the count",
            )

    def url(self, key: str, default: Any = _MISSING) -> str | None:
        """An http(s) URL with a host and no credentials, without a trailing slash."""
        value = self._get(key, default)
        if value is None:
            return None
        if not isinstance(value, str):
            self.wrong_type(key, "a URL string", value)
        hint = "use http://host:port or https://host/prefix"
        try:
            parts = urlsplit(value)
            parts.port  # noqa: B018 - raises ValueError on a bad port
        except ValueError:
            self.fail(key, f"invalid URL {_shown(value)}", hint)
        if "@" in parts.netloc:
            self.fail(key, "URL must not carry credentials", "use gateway.headers or api_key_env")
        if parts.scheme not in ("http", "https") or not parts.hostname:
            self.fail(key, f"invalid URL {_shown(value)}", hint)
        if parts.query or parts.fragment:
            self.fail(key, f"URL must not have a query or fragment: {_shown(value)}", hint)
        return value.rstrip("/")

    def env_name(self, key: str, default: Any = _MISSING) -> str | None:
        """The *name* of an environment variable; never echoes a value that is not a name."""
        value = self._get(key, default)
        if value is None:
            return None
        if not isinstance(value, str):
            self.wrong_type(key, "an environment variable name", value, secret=True)
        if not ENV_NAME.fullmatch(value):
            self.fail(
                key,
                "not a valid environment variable name",
                "give the variable's name, not the secret itself",
            )
        return value

    def from_env(self, key: str, name: str, env: Mapping[str, str], hint: str) -> Secret:
        """The value of environment variable `name`, which `key` refers to."""
        value = env.get(name)
        if value is None and getattr(env, "secrets_optional", False):  # soak check --offline
            return Secret(f"offline-placeholder:{name}")
        if value is None:
            self.fail(key, f"environment variable {_shown(name)} is not set", hint)
        if not value:
            self.fail(key, f"environment variable {_shown(name)} is empty", hint)
        return Secret(value)

    def expand(self, key: str, template: str, env: Mapping[str, str]) -> Secret:
        """`template` with each `${NAME}` taken from `env` (`$$` is a literal `$`), as a Secret."""

        parts: list[str] = []

        def substitute(match: re.Match[str]) -> str:
            if match.group(0) == "$$":
                return "$"
            name = match.group(1)
            if not ENV_NAME.fullmatch(name):
                self.fail(
                    key, "invalid ${...} reference", "use ${ENV_NAME}; write $$ for a literal $"
                )
            if name not in env and getattr(env, "secrets_optional", False):
                return match.group(0)  # soak check --offline: the reference stands for itself
            if name not in env:
                self.fail(
                    key,
                    f"environment variable '{name}' is not set",
                    "export it or remove the reference",
                )
            parts.append(env[name])
            return env[name]

        value = _ENV_REF.sub(substitute, template)
        return Secret(value, tuple(p for p in parts if p and p != value))


def span(seconds: float) -> str:
    """A bound in the duration grammar, with days spelled out: `168h (7 days)`, `30s`."""
    if seconds >= 86400 and seconds % 86400 == 0:
        days = int(seconds // 86400)
        return f"{int(seconds // 3600)}h ({days} day{'s' if days > 1 else ''})"
    return f"{seconds / 3600:g}h" if seconds >= 3600 else f"{seconds:g}s"


def _count(value: int) -> str:
    """An integer for a message: a huge one by its size, not its thousand digits."""
    if abs(value) >= 10**4000:  # str() refuses past 4300 digits
        return "an integer of more than 4000 digits"
    digits = len(str(abs(value)))
    if digits <= 5:
        return str(value)
    return f"{value:,}" if digits <= 24 else f"an integer of {digits} digits"


def _alternatives(choices: tuple[str, ...]) -> str:
    return ", ".join(choices[:-1]) + f" or {choices[-1]}" if len(choices) > 1 else choices[0]
