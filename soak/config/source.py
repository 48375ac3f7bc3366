"""Where config values come from: YAML files, the built-in profiles, and their layering.

Reads YAML strictly (duplicate keys and syntax errors become one-line `ConfigError`s with a
line number), loads the packaged profiles with importlib.resources, and deep-merges a user
file over a profile while remembering which layer every key came from, so that an error
names the file the offending key was written in.

Reading is bounded, because `soak check` and the daemon's reload must answer whatever file they
are given: a file over `MAX_FILE_BYTES` is refused before it is parsed, and the composer refuses
a recursive alias, nesting deeper than `MAX_DEPTH` and aliases that would expand the document
past a node budget linear in its size (a "billion laughs" file of a few hundred bytes would
otherwise burn a core for hours), each as a one-line `ConfigError` naming the line.
"""

from __future__ import annotations

import copy
import functools
from collections.abc import Callable, Mapping
from importlib import resources
from pathlib import Path
from typing import Any

import yaml
from yaml.events import AliasEvent

PROFILES = ("quick", "full")
"""Built-in profiles: `quick` for CI on 2 cores, `full` with the seed's rates and durations."""

EMBEDDED_LABEL = "(embedded default)"
Path_ = tuple[str, ...]

MAX_FILE_BYTES = 1 << 20
"""A config file is a few KiB; 1 MiB already takes the pure-Python parser seconds."""
MAX_DEPTH = 64
"""Nesting levels, aliases expanded (the config's own structure is under ten)."""
NODE_BUDGET_BASE = 10_000
"""Nodes any document may expand to; plus two per character of the document, so a file
without aliases is never refused by the budget (the densest YAML, `[?,?,...]`, has three
nodes per two characters: a mapping with a null key and value per `?`)."""


class ConfigError(Exception):
    """A config the user must fix, as one line: `<file>: <dotted.key>: <problem> (<hint>)`."""


class _DuplicateKey(Exception):
    def __init__(self, path: str, line: int, first: int) -> None:
        super().__init__(path)
        self.path, self.line, self.first = path, line, first


def _check_duplicates(node: yaml.Node, path: Path_) -> None:
    """Reject a mapping key written twice (PyYAML would silently keep the last one)."""
    if isinstance(node, yaml.MappingNode):
        seen: dict[str, int] = {}
        for key_node, value_node in node.value:
            key = str(key_node.value) if isinstance(key_node, yaml.ScalarNode) else None
            if key is None or key == "<<":
                continue
            line = key_node.start_mark.line + 1
            if key in seen:
                raise _DuplicateKey(".".join((*path, key)), line, seen[key])
            seen[key] = line
            _check_duplicates(value_node, (*path, key))
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            _check_duplicates(item, (*path, str(index)))


class _Refused(Exception):
    """A document the bounded loader will not expand; `mark` is where it stopped."""

    def __init__(self, problem: str, mark: yaml.Mark) -> None:
        super().__init__(problem)
        self.problem, self.mark = problem, mark


class _BoundedLoader(yaml.SafeLoader):
    """SafeLoader whose composer counts nodes with aliases expanded and nesting depth.

    Each anchored node remembers its expanded size and height once composed, so an alias
    costs O(1) to account for; an alias to a node still being composed is recursive.
    """

    def __init__(self, text: str) -> None:
        super().__init__(text)
        self.size = len(text)
        self.budget = NODE_BUDGET_BASE + 2 * self.size
        self._nodes = 0
        self._depth = 0  # levels enclosing the node being composed
        self._deepest = 0  # deepest level reached, aliases expanded
        self._shapes: dict[int, tuple[int, int]] = {}  # id(anchored node) → (size, height)

    def _reach(self, nodes: int, depth: int, mark: yaml.Mark) -> None:
        self._nodes += nodes
        if self._nodes > self.budget:
            raise _Refused(
                f"aliases expand to more than {self.budget} nodes, "
                f"the limit for a document of {self.size} characters", mark,
            )  # fmt: skip
        if depth > MAX_DEPTH:
            raise _Refused(f"nested deeper than {MAX_DEPTH} levels", mark)
        self._deepest = max(self._deepest, depth)

    def compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node:
        event = self.peek_event()
        if isinstance(event, AliasEvent):
            target = self.anchors.get(event.anchor or "")
            if target is not None:  # an undefined alias is the base class's error
                shape = self._shapes.get(id(target))
                if shape is None:
                    raise _Refused(f"recursive alias *{event.anchor}", event.start_mark)
                self._reach(shape[0], self._depth + shape[1], event.start_mark)
            return super().compose_node(parent, index)
        outer_deepest, before = self._deepest, self._nodes
        self._depth += 1
        self._reach(1, self._depth, event.start_mark)
        try:
            node = super().compose_node(parent, index)
        finally:
            self._depth -= 1
        anchor = getattr(event, "anchor", None)
        if anchor is not None:
            self._shapes[id(node)] = (self._nodes - before, self._deepest - self._depth)
        self._deepest = max(outer_deepest, self._deepest)
        return node


def _load(text: str) -> Any:
    loader = _BoundedLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        _check_duplicates(node, ())
        return loader.construct_document(node)
    finally:
        loader.dispose()


def parse_yaml(text: str, label: str) -> dict[str, Any]:
    """The top-level mapping of a YAML document; `label` names the source in errors."""
    try:
        data = _load(text)
    except _DuplicateKey as dup:
        raise ConfigError(
            f"{label}: {dup.path}: duplicate key (line {dup.line}, first at line {dup.first})"
        ) from None
    except _Refused as refused:
        mark = refused.mark
        raise ConfigError(
            f"{label}: refused: {refused.problem} (line {mark.line + 1}, column {mark.column + 1})"
        ) from None
    except yaml.MarkedYAMLError as err:
        mark = err.problem_mark or err.context_mark
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        problem = " ".join(str(err.problem or err.context or "syntax error").split())
        raise ConfigError(f"{label}: invalid YAML: {problem}{where}") from None
    except yaml.YAMLError as err:
        raise ConfigError(f"{label}: invalid YAML: {' '.join(str(err).split())}") from None
    except (ValueError, OverflowError) as err:  # a scalar the constructor cannot build
        problem = " ".join(str(err).split())
        if "integer string conversion" in problem:
            problem = "a number longer than 4300 digits"
        raise ConfigError(f"{label}: invalid YAML: cannot read a value: {problem[:120]}") from None
    if data is None:
        raise ConfigError(f"{label}: empty file (start with 'version: 1')")
    if not isinstance(data, dict):
        kind = "a list" if isinstance(data, list) else f"a {type(data).__name__}"
        raise ConfigError(
            f"{label}: top level must be a mapping, got {kind} (start with 'version: 1')"
        )
    return data


def read_file(path: Path, label: str) -> dict[str, Any]:
    """Parse the user's config file at `path`, refusing one over `MAX_FILE_BYTES` unread."""
    try:
        with path.open("rb") as f:
            data = f.read(MAX_FILE_BYTES + 1)  # never more, whatever the file (or device) holds
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        if len(data) > MAX_FILE_BYTES:  # the cut may split a character: say what matters
            raise ConfigError(_too_large(label)) from None
        raise ConfigError(f"{label}: cannot read file (not UTF-8 text)") from None
    except OSError as err:
        raise ConfigError(f"{label}: cannot read file ({err.strerror or err})") from None
    if len(data) > MAX_FILE_BYTES:
        raise ConfigError(_too_large(label))
    return parse_yaml(text, label)


def _too_large(label: str) -> str:
    return (
        f"{label}: file larger than the {MAX_FILE_BYTES // (1 << 20)} MiB limit for a config "
        "(a soak config is a few KiB: is this the right file?)"
    )


def read_builtin(name: str) -> dict[str, Any]:
    """A packaged YAML file under soak/config/profiles/ (`quick`, `full`, `embedded`), a copy
    the caller may change."""
    return copy.deepcopy(_parsed_builtin(name))


@functools.cache
def _parsed_builtin(name: str) -> dict[str, Any]:
    """Parsed once per process: the packaged files do not change while it runs, and parsing
    a profile was nine tenths of a config load (15 ms; a reload, `soak check`, the tests)."""
    text = resources.files("soak.config").joinpath("profiles", f"{name}.yaml").read_text("utf-8")
    return parse_yaml(text, profile_label(name))


def profile_label(name: str) -> str:
    """How errors name a built-in layer: `EMBEDDED_LABEL` or `<profile quick>`."""
    return EMBEDDED_LABEL if name == "embedded" else f"<profile {name}>"


def _mark(tree: Any, path: Path_, label: str, origins: dict[Path_, str]) -> None:
    origins[path] = label
    if isinstance(tree, dict):
        for key, value in tree.items():
            _mark(value, (*path, str(key)), label, origins)


def _merge(base: Any, over: Any) -> Any:
    if isinstance(base, dict) and isinstance(over, dict):
        merged = dict(base)
        for key, value in over.items():
            merged[key] = _merge(base[key], value) if key in base else value
        return merged
    return over


def layer(
    layers: list[tuple[str, Mapping[str, Any]]],
) -> tuple[dict[str, Any], Callable[[Path_], str]]:
    """Deep-merge `(label, mapping)` layers, later ones winning; also a key path → label lookup.

    Mappings merge key by key; any other value (lists included) replaces the one below it.
    The lookup answers with the label of the deepest layer that wrote the path or its
    nearest ancestor: the file a user must edit to fix that key.
    """
    merged: Any = {}
    origins: dict[Path_, str] = {}
    for label, data in layers:
        merged = _merge(merged, dict(data))
        _mark(data, (), label, origins)
    fallback = layers[-1][0]

    def locate(path: Path_) -> str:
        for end in range(len(path), -1, -1):
            if path[:end] in origins:
                return origins[path[:end]]
        return fallback

    return merged, locate
