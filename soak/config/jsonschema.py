"""`soak schema`: the JSON Schema of a config file, recorded from the validator itself.

There is no second list of keys to keep in step: `config_schema()` runs the real loader (and so
every registered phase's own parser) over a `Recorder`, a `Section` that holds no data and
writes down what the parsers ask of it: the keys `only()` allows, and each typed read (string,
choice, integer with its bounds, duration, URL, ...). A parser that branches on what is present
(`has()`, or a raw read such as `schedule`) is run again with that key present, and once per
value of a choice (a section whose keys depend on its `dist:`), until no new key turns up.
Keys the parsers read raw (lists such as `phases`) are in the schema without a type; the loader
still checks them. A test holds the two together (tests/test_config_schema.py).
"""

from __future__ import annotations

import contextlib
import re
import sys
from collections.abc import Iterator, Sequence
from typing import Any

from soak.config import fields
from soak.config.fields import ENV_NAME, Secret, Section
from soak.config.schema import PhaseSections
from soak.durations import parse_duration

DRAFT = "https://json-schema.org/draft/2020-12/schema"
SCHEMA_ID = "https://llm-soak.invalid/config.schema.json"
_MISSING = fields._MISSING
_DURATION = {"anyOf": [{"type": "number", "minimum": 0},
                       {"type": "string", "pattern": r"^\s*(\d+(\.\d+)?\s*(ms|s|m|h|d)?\s*)+$"}],
             "description": "seconds, or a duration such as 250ms, 1m30s, 2h"}  # fmt: skip
_ITEM = re.compile(r"^(.*)\[\d+\]$")
Path_ = tuple[str, ...]


class _Node:
    """What the parsers asked of one mapping: allowed keys, each key's schema, child mappings."""

    def __init__(self) -> None:
        self.keys: list[str] | None = None
        self.props: dict[str, dict[str, Any]] = {}
        self.children: dict[str, _Node] = {}
        self.arrays: set[str] = set()
        self.free = False
        self.nullable: set[str] = set()


class _Probe:
    """One pass: which keys (paths) read as present, and with what raw value."""

    def __init__(self) -> None:
        self.root = _Node()
        self.present: dict[Path_, Any] = {}
        self.seen: set[Path_] = set()
        """Keys a parser looked up in the data (has, in, get): it branches on them."""
        self.typed_unprobed: set[Path_] = set()
        """Keys read with a typed read in the pass where no key was present."""
        self.choices: dict[Path_, tuple[str, ...]] = {}
        """Choice keys: a parser may allow other keys for each choice (`dist: normal`)."""

    def node(self, path: Path_) -> _Node:
        node = self.root
        for part in path:
            match = _ITEM.match(part)
            name = match.group(1) if match else part
            if match:
                node.arrays.add(name)
            node = node.children.setdefault(name, _Node())
        return node

    def is_array(self, path: Path_) -> bool:
        node = self.root
        for part in path[:-1]:
            node = node.children.get(part, _Node())
        return path[-1] in node.arrays


_PROBE: _Probe | None = None


def _norm(path: Path_) -> Path_:
    return tuple(m.group(1) if (m := _ITEM.match(p)) else p for p in path)


class _Data(dict):  # type: ignore[type-arg]
    """A recorder's data: empty, except the one key the current pass makes present."""

    def __init__(self, path: Path_) -> None:
        super().__init__()
        self.path = path

    def _key(self, key: object) -> Path_ | None:
        probe = _PROBE
        if probe is None or not isinstance(key, str):
            return None
        path = (*_norm(self.path), key)
        probe.seen.add(path)
        return path if path in probe.present else None

    def get(self, key: object, default: Any = None) -> Any:
        path = self._key(key)
        return default if path is None or _PROBE is None else _PROBE.present[path]

    def __contains__(self, key: object) -> bool:
        return self._key(key) is not None

    def __getitem__(self, key: object) -> Any:
        path = self._key(key)
        if path is None or _PROBE is None:
            raise KeyError(key)
        return _PROBE.present[path]


class Recorder(Section):
    """A `Section` that records every read instead of validating data (see module doc)."""

    def __init__(self, data: Any, path: Path_, locate: Any = None) -> None:
        super().__init__(_Data(path), path, locate or (lambda _p: "(schema)"))

    @property
    def _node(self) -> _Node:
        assert _PROBE is not None
        return _PROBE.node(self.path)

    def _put(self, key: str, schema: dict[str, Any], default: Any = _MISSING,
             nullable: bool = False) -> None:  # fmt: skip
        node = self._node
        if _PROBE is not None and not _PROBE.present:
            _PROBE.typed_unprobed.add((*_norm(self.path), key))
        if default is not _MISSING and default is not None and "default" not in schema:
            plain = default if isinstance(default, str | int | float | bool) else None
            if plain is not None:
                schema = {**schema, "default": plain}
        node.props.setdefault(key, schema)
        if nullable:
            node.nullable.add(key)

    # what a parser may do besides typed reads
    def fail(self, key: str | None, problem: str, hint: str | None = None) -> Any:  # type: ignore[override]
        return None

    def wrong_type(self, key: str, expected: str, value: object, *, secret: bool = False) -> Any:  # type: ignore[override]
        return None

    def only(self, *allowed: str) -> None:
        node = self._node
        node.keys = list(dict.fromkeys([*(node.keys or []), *allowed]))

    def has(self, key: str) -> bool:
        return key in self.data

    def _get(self, key: str, default: Any) -> Any:
        self._put(key, {})
        return self.data.get(key, None if default is _MISSING else default)

    def section(self, key: str, *, optional: bool = False, hint: str | None = None) -> Section:  # type: ignore[override]
        self._put(key, {}, nullable=optional)
        self._node.children.setdefault(key, _Node())
        return Recorder(None, (*self.path, key), self.locate)

    def entries(self) -> Iterator[tuple[str, Any]]:
        self._node.free = True
        return iter(())

    # typed reads: record, and answer a value the parser accepts
    def string(self, key: str, default: Any = _MISSING, *, pattern: re.Pattern[str] | None = None,
               hint: str | None = None) -> Any:  # fmt: skip
        schema: dict[str, Any] = {"type": "string", "minLength": 1}
        if pattern is not None:
            schema["pattern"] = f"^(?:{pattern.pattern})$"
        self._put(key, schema, default, nullable=default is not _MISSING)
        return default if default is not _MISSING else "x"

    def choice(self, key: str, choices: tuple[str, ...], default: Any = _MISSING) -> str:
        known = self._node.props.get(key)
        if known and "type" in known:  # a number or a word (`engine.workers: 4 | auto`)
            self._node.props[key] = {"anyOf": [known, {"enum": list(choices)}]}
        self._put(key, {"enum": list(choices)}, default)
        path = (*_norm(self.path), key)
        if _PROBE is not None:
            _PROBE.choices[path] = tuple(choices)
            if _PROBE.present.get(path) in choices:  # this pass explores that choice
                return str(_PROBE.present[path])
        return default if default is not _MISSING else choices[0]

    def boolean(self, key: str, default: Any = _MISSING) -> bool:
        self._put(key, {"type": "boolean"}, default)
        return bool(default) if default is not _MISSING else False

    def integer(self, key: str, default: Any = _MISSING, *, minimum: int | None = None,
                maximum: int | None = None, **_: Any) -> int:  # fmt: skip
        schema: dict[str, Any] = {"type": "integer"}
        if minimum is not None:
            schema["minimum"] = minimum
        if maximum is not None:
            schema["maximum"] = maximum
        self._put(key, schema, default)
        if isinstance(default, int) and not isinstance(default, bool):
            return default
        return minimum if minimum is not None else 1

    def number(self, key: str, default: Any = _MISSING, *, positive: bool = False,
               at_most: float | None = None, **_: Any) -> float:  # fmt: skip
        schema: dict[str, Any] = {"type": "number"}
        schema["exclusiveMinimum" if positive else "minimum"] = 0
        if at_most is not None:
            schema["maximum"] = at_most
        self._put(key, schema, default)
        return float(default) if isinstance(default, int | float) else min(1.0, at_most or 1.0)

    def duration(self, key: str, default: Any = _MISSING, *, positive: bool = False,
                 at_most: float | None = None, **_: Any) -> float:  # fmt: skip
        self._put(key, dict(_DURATION), default)
        try:
            return parse_duration(default) if default not in (_MISSING, None) else 1.0
        except (TypeError, ValueError):
            return 1.0

    def url(self, key: str, default: Any = _MISSING) -> str | None:
        schema = {"type": "string", "pattern": r"^https?://[^/@?#\s]+(/[^?#\s]*)?$"}
        self._put(key, schema, default, nullable=True)
        return default if default is not _MISSING else "http://127.0.0.1:1"

    def env_name(self, key: str, default: Any = _MISSING) -> str | None:
        schema = {"type": "string", "pattern": f"^{ENV_NAME.pattern}$",
                  "description": "an environment variable's name (never the secret)"}  # fmt: skip
        self._put(key, schema, default, nullable=True)
        return default if default is not _MISSING else "SOAK_SCHEMA"

    def from_env(self, key: str, name: str, env: Any, hint: str) -> Secret:
        return Secret("x")

    def expand(self, key: str, template: str, env: Any) -> Secret:
        return Secret("x")


@contextlib.contextmanager
def _recording() -> Iterator[None]:
    """Every module of ours that bound `Section` builds Recorders while recording."""
    swapped = [m for name, m in list(sys.modules.items())
               if name.startswith("soak.") and name != __name__
               and getattr(m, "Section", None) is Section]  # fmt: skip
    for module in swapped:
        module.Section = Recorder  # type: ignore[attr-defined]
    try:
        yield
    finally:
        for module in swapped:
            module.Section = Section  # type: ignore[attr-defined]


_RAW_VALUES: tuple[Any, ...] = ([{}], 1, "x")
"""What a key made present reads as: a list of one mapping (schedule), a number, a string."""


def _pass(probe: _Probe, phases: Sequence[PhaseSections]) -> None:
    global _PROBE
    from soak.config.loader import load_config

    _PROBE = probe
    try:
        with _recording(), contextlib.suppress(Exception):
            load_config(None, phases=phases, env={})
    finally:
        _PROBE = None


def _record(phases: Sequence[PhaseSections]) -> _Node:
    probe = _Probe()
    _pass(probe, phases)
    done: set[Path_] = set()
    while todo := sorted((probe.seen | set(probe.choices)) - done):
        for path in todo:
            done.add(path)
            arrays = {path[:i]: [{}] for i in range(1, len(path)) if probe.is_array(path[:i])}
            for raw in (*_RAW_VALUES, *probe.choices.get(path, ())):
                probe.present = {**arrays, path: raw}
                _pass(probe, phases)
    for path in probe.seen - probe.typed_unprobed:
        # read raw, typed only when present (`port = data.get("port"); if port is not None`):
        # null is accepted
        probe.node(path[:-1]).nullable.add(path[-1])
    return probe.root


def _schema(node: _Node, name: str) -> dict[str, Any]:
    keys = node.keys if node.keys is not None else list(node.props)
    props: dict[str, Any] = {}
    for key in keys:
        if key in node.children:
            child = _schema(node.children[key], f"{name}.{key}")
            props[key] = {"type": "array", "items": child} if key in node.arrays else child
        else:
            props[key] = dict(node.props.get(key, {}))
        if key in node.nullable and props[key]:
            props[key] = {"anyOf": [props[key], {"type": "null"}]}
    out: dict[str, Any] = {"type": "object", "properties": props}
    if node.free and not props:
        out["additionalProperties"] = {"type": ["string", "number"]}
    elif node.keys is not None:
        out["additionalProperties"] = False  # the parser's only(): any other key is an error
    return out


def config_schema(phases: Sequence[PhaseSections]) -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of a soak config file with `phases` (the registered
    phases, `soak.phases.registry()`: each parses its own sections)."""
    root = _schema(_record(phases), "")
    return {
        "$schema": DRAFT,
        "$id": SCHEMA_ID,
        "title": "llm-soak config",
        "description": "A soak config file (`soak once --config`, `soak run --config`), layered"
        " over a built-in profile. Generated by `soak schema` from the validator's own"
        " definitions; `soak check` is the authority.",
        **root,
        "required": ["version"],
    }
