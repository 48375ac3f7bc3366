"""Where config values come from: YAML files, the built-in profiles, and their layering.

Reads YAML strictly (duplicate keys and syntax errors become one-line `ConfigError`s with a
line number), loads the packaged profiles with importlib.resources, and deep-merges a user
file over a profile while remembering which layer every key came from, so that an error
names the file the offending key was written in.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

PROFILES = ("quick", "full")
"""Built-in profiles: `quick` for CI on 2 cores, `full` with the seed's rates and durations."""

EMBEDDED_LABEL = "(embedded default)"
Path_ = tuple[str, ...]


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


def _load(text: str) -> Any:
    loader = yaml.SafeLoader(text)
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
    except yaml.MarkedYAMLError as err:
        mark = err.problem_mark or err.context_mark
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        problem = " ".join(str(err.problem or err.context or "syntax error").split())
        raise ConfigError(f"{label}: invalid YAML: {problem}{where}") from None
    except yaml.YAMLError as err:
        raise ConfigError(f"{label}: invalid YAML: {' '.join(str(err).split())}") from None
    if data is None:
        raise ConfigError(f"{label}: empty file (start with 'version: 1')")
    if not isinstance(data, dict):
        kind = "a list" if isinstance(data, list) else f"a {type(data).__name__}"
        raise ConfigError(
            f"{label}: top level must be a mapping, got {kind} (start with 'version: 1')"
        )
    return data


def read_file(path: Path, label: str) -> dict[str, Any]:
    """Parse the user's config file at `path`."""
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise ConfigError(f"{label}: cannot read file (not UTF-8 text)") from None
    except OSError as err:
        raise ConfigError(f"{label}: cannot read file ({err.strerror or err})") from None
    return parse_yaml(text, label)


def read_builtin(name: str) -> dict[str, Any]:
    """A packaged YAML file under soak/config/profiles/ (`quick`, `full`, `embedded`)."""
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
