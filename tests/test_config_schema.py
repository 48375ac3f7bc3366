"""`soak schema` and `soak check --offline`: the JSON Schema and the validator agree, both ways.

The schema is recorded from the parsers (soak.config.jsonschema); these tests hold it to the
validator: the built-in profiles and the deploy configs pass both; every key the schema names
is one the validator knows; a key the schema does not name is one the validator rejects; a
value of the wrong type is rejected by both.
"""

from __future__ import annotations

import copy
import json
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from soak.config import ConfigError
from soak.config.jsonschema import config_schema
from soak.config.offline import OfflineEnv
from soak.phases import load_config, registry

ROOT = Path(__file__).resolve().parent.parent
PROFILES = sorted((ROOT / "soak" / "config" / "profiles").glob("*.yaml"))
DEPLOY = sorted(p for p in (ROOT / "deploy").rglob("config.yaml"))
BASE = {"version": 1, "gateway": {"url": "http://127.0.0.1:9"}}
PLAN = {"name": "p", "interval": "1h", "phases": ["overhead"]}


@pytest.fixture(scope="module")
def schema() -> dict[str, Any]:
    found = config_schema(registry())
    jsonschema.Draft202012Validator.check_schema(found)
    return found


def _object(node: dict[str, Any]) -> dict[str, Any] | None:
    """The object schema inside `node` (through anyOf-with-null and arrays), or None."""
    for option in node.get("anyOf", [node]):
        if option.get("type") == "array":
            option = option["items"]
        if option.get("type") == "object":
            return option
    return None


def _walk(node: dict[str, Any], path: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...],
                                                                              dict[str, Any]]]:
    """(key path, property schema) of every named property, depth first."""
    for key, sub in node.get("properties", {}).items():
        yield (*path, key), sub
        inner = _object(sub)
        if inner is not None:
            yield from _walk(inner, (*path, key))


def _objects(node: dict[str, Any], path: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...],
                                                                                 dict[str, Any]]]:
    yield path, node
    for key, sub in node.get("properties", {}).items():
        inner = _object(sub)
        if inner is not None:
            yield from _objects(inner, (*path, key))


def _with(path: tuple[str, ...], value: Any) -> dict[str, Any]:
    """BASE with `value` at `path` (a `schedule` item gets a valid plan around it)."""
    data = copy.deepcopy(BASE)
    node: Any = data
    for i, key in enumerate(path[:-1]):
        if key == "schedule":
            node = node.setdefault("schedule", [dict(PLAN)])[0]
            continue
        nxt = node.get(key)
        if not isinstance(nxt, dict):
            nxt = node[key] = {}
        node = nxt
        if path[: i + 1] == ("gateway", "process"):
            data["gateway"]["process"] = node  # process wants exactly one key: the one tested
    if path == ("schedule",):
        node["schedule"] = value
    else:
        node[path[-1]] = value
    return data


def _load(tmp_path: Path, data: dict[str, Any]) -> str | None:
    """The validator's error for `data` (None when valid); secrets not needed (offline)."""
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(data))
    try:
        load_config(path, env=OfflineEnv({}))
    except ConfigError as exc:
        return str(exc)
    return None


def _prop(schema: dict[str, Any], path: tuple[str, ...]) -> dict[str, Any]:
    node: dict[str, Any] | None = schema
    for key in path[:-1]:
        node = _object(node["properties"][key]) if node else None
    return (node or {}).get("properties", {}).get(path[-1], {})


def _sample(prop: dict[str, Any]) -> Any:
    """A value of the type `prop` describes (enough to get past a missing required key)."""
    option = prop.get("anyOf", [prop])[0]
    if "enum" in option:
        return option["enum"][0]
    kind = option.get("type")
    return {"integer": option.get("minimum", 1), "number": 1, "boolean": False,
            "object": {}}.get(kind, "1s" if "pattern" in option and "ms" in option["pattern"]
                              else "x")  # fmt: skip


def _load_filled(tmp_path: Path, data: dict[str, Any], schema: dict[str, Any],
                 target: tuple[str, ...]) -> str | None:  # fmt: skip
    """The validator's error for `data` once the required keys it asks for on the way are
    filled in from the schema; a choice (`dist:`) takes the first value under which `target`
    is no unknown key (a section's keys may depend on it)."""
    error = _load(tmp_path, data)
    for _ in range(8):
        missing = re.search(r": ([\w.]+): missing required key", error or "")
        if missing is None:
            return error
        path = tuple(missing.group(1).split("."))
        node = data
        for key in path[:-1]:
            node = node.setdefault(key, {})
        prop = _prop(schema, path)
        for value in prop.get("enum") or [_sample(prop)]:
            node[path[-1]] = value
            error = _load(tmp_path, data)
            if error is None or f"{_dotted(target)}: unknown key" not in error:
                break
    return error


def _dotted(path: tuple[str, ...]) -> str:
    return ".".join("schedule[0]" if p == "schedule" and path[-1] != p else p for p in path)


@pytest.mark.parametrize("config", PROFILES + DEPLOY, ids=lambda p: str(p.relative_to(ROOT)))
def test_profiles_and_deploy_configs_pass_the_schema_and_the_validator(
    config: Path, schema: dict[str, Any], tmp_path: Path
) -> None:
    data = yaml.safe_load(config.read_text())
    if config in PROFILES:  # a layer under a user's file, which brings version and gateway
        data = {**data, **BASE}
    jsonschema.validate(data, schema)
    assert _load(tmp_path, data) is None


def test_every_key_of_the_schema_is_known_to_the_validator(
    tmp_path: Path, schema: dict[str, Any]
) -> None:
    paths = [p for p, _ in _walk(schema)]
    assert len(paths) > 100, paths  # every section of every phase is there
    for path in paths:
        error = _load(tmp_path, _with(path, None))
        assert error is None or f"{_dotted(path)}: unknown key" not in error, (path, error)


def test_a_key_the_schema_does_not_name_is_rejected_by_both(
    tmp_path: Path, schema: dict[str, Any]
) -> None:
    closed = [(p, n) for p, n in _objects(schema) if n.get("additionalProperties") is False]
    assert len(closed) > 20
    for path, _ in closed:
        data = _with((*path, "no_such_key"), 1)
        error = _load_filled(tmp_path, data, schema, (*path, "no_such_key"))
        where = _dotted((*path, "no_such_key"))
        assert error is not None and f"{where}: unknown key" in error, (path, error)
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(data, schema)


def test_a_value_of_the_wrong_type_is_rejected_by_both(
    tmp_path: Path, schema: dict[str, Any]
) -> None:
    typed = [(p, s) for p, s in _walk(schema) if s and _object(s) is None and p[0] != "schedule"]
    assert len(typed) > 80
    for path, _ in typed:
        data = _with(path, [[1]])  # a list of lists: no key of a soak config takes that
        error = _load_filled(tmp_path, data, schema, path)
        # the key itself, or its section when a rule across its keys speaks first
        assert error is not None and _dotted(path[:-1] or path) in error, (path, error)
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(data, schema)


def test_soak_schema_prints_the_schema(tmp_path: Path, schema: dict[str, Any]) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "soak", "schema"], capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout) == schema
    slo = _object(schema["properties"]["slo"])
    assert slo is not None
    regression = _object(slo["properties"]["regression"])
    assert regression is not None and set(regression["properties"]) == {
        "phases", "confidence", "tolerance", "fail_on", "resamples", "seed", "runs", "max_steal"}
    runs = regression["properties"]["runs"]
    assert (runs.get("minimum"), runs.get("maximum")) == (1, 20), runs


def test_check_offline_validates_all_but_secrets(tmp_path: Path) -> None:
    """A config naming a secret that is not set: an error online, ok offline; any other
    mistake is still an error offline."""
    config = ROOT / "deploy" / "overlays" / "litellm-example" / "config.yaml"
    env = {k: v for k, v in __import__("os").environ.items() if k != "LITELLM_MASTER_KEY"}

    def check(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "soak", "check", *args], env=env,
                              capture_output=True, text=True, timeout=120)  # fmt: skip

    online = check(str(config))
    assert online.returncode == 2
    assert "LITELLM_MASTER_KEY' is not set" in online.stderr
    offline = check("--offline", str(config))
    assert offline.returncode == 0, offline.stderr
    assert offline.stdout.strip() == f"{config}: ok (secrets not checked: --offline)"
    bad = tmp_path / "bad.yaml"
    data = yaml.safe_load(config.read_text())
    data["gateway"]["timeout"] = "soon"
    data["gateway"]["headers"] = {"X-Key": "${NOT_SET_ANYWHERE}"}
    bad.write_text(yaml.safe_dump(data))
    wrong = check("--no-secrets", str(bad))
    assert wrong.returncode == 2
    assert "gateway.timeout" in wrong.stderr and "Traceback" not in wrong.stderr
    data["gateway"]["timeout"] = "5s"
    bad.write_text(yaml.safe_dump(data))
    assert check("--no-secrets", str(bad)).returncode == 0
