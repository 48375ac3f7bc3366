"""Odd numbers through `soak check` (issue 17, item 7 and its fuzzing): absurd rates and counts
are refused with one line, and no value gives a traceback or a run without end.

Unfixed, `rate: 1.0e+12` passed `check` (and the run never finished), as did a failover at
`rate: 1.0e-300` (20 requests over 10^290 years), a 400-digit duration (infinite), and a
YAML timestamp or integer Python cannot build ("internal error")."""

from __future__ import annotations

import copy
import dataclasses
import math
import os
import subprocess
import sys
from collections.abc import Iterator
from importlib import resources
from pathlib import Path
from typing import Any

import pytest
import yaml

from soak.cli import main
from soak.config.fields import MAX_DURATION_S, MAX_RATE, MAX_REQUESTS
from soak.phases import load_config

SOAK = [str(Path(sys.executable).with_name("soak"))]
GATEWAY = "gateway: {url: 'http://127.0.0.1:9'}"
ODD = [float("nan"), float("inf"), 1e308, -0.0, 10**30, True, 1e-300, "1" * 400 + "h", "é" * 5000]


def check(tmp: Path, body: str) -> subprocess.CompletedProcess[str]:
    (tmp / "soak.yaml").write_text(f"version: 1\n{GATEWAY}\n{body}\n")
    return subprocess.run([*SOAK, "check", "soak.yaml"], cwd=tmp, capture_output=True,
                          text=True, timeout=30)  # fmt: skip


@pytest.mark.parametrize(
    ("body", "line"),
    [
        ("phases: {calibration: {rate: 1.0e+12, duration: 10s, latency: 1ms}}",
         "phases.calibration.rate: must be between 0 and 100000, got 1e+12 (requests per "
         "second, per replica)"),
        ("phases: {sustained: {rate: 100000, duration: 168h, latency: 1ms}}",
         "phases.sustained.duration: the phase would send 60,480,000,000 requests, more than "
         "100,000,000 (lower the rate, the duration or the count)"),
        ("phases: {overhead: {rate: 10, duration: 169h, latency: 1ms}}",
         "phases.overhead.duration: must be at most 168h (7 days), got '169h'"),
        ("phases: {failover: {requests: 20, rate: 1.0e-300, latency: 1ms}}",
         "phases.failover.rate: the phase would run 5.55556e+297h, longer than 168h (7 days) "
         "(raise the rate or lower the count)"),
        ("phases: {memory: {requests: 100000000, concurrency: 1, latency: 1s}}",
         "phases.memory.requests: the phase would run 27,777.8h, longer than 168h (7 days) "
         "(raise the rate or lower the count)"),
        ("phases: {stress: {rounds: 1000}}", "phases.stress.rounds: must be at most 100, got 1000"),
        ("phases: {streaming: {streams: 1000000}}",
         "phases.streaming.streams: must be at most 100,000, got 1,000,000"),
        ("phases: {capacity: {max_rate: 1.0e+9}}",
         "phases.capacity.max_rate: must be between 0 and 100000, got 1e+09 (requests per "
         "second, per replica)"),
        ("phases: {breaker: {scrape_interval: 1ms}}",
         "phases.breaker.scrape_interval: must be at least 0.1s, got '1ms'"),
        ("schedule: [{name: a, interval: 1ms, phases: [overhead]}]",
         "schedule[0].interval: must be at least 1s, got '1ms'"),
        ("phases: {calibration: {rate: 5, duration: " + "9" * 400 + "h, latency: 1ms}}",
         "phases.calibration.duration: invalid duration: a number too large to hold (use "
         "500ms, 30s, 5m, 1h30m)"),
        ("engine: {seed: " + "9" * 30 + "}",
         "engine.seed: must be at most 9,223,372,036,854,775,807, got an integer of 30 digits"),
        ("x: " + "9" * 5000, "invalid YAML: cannot read a value: a number longer than 4300 digits"),
        ("x: 2024-13-45", "invalid YAML: cannot read a value: month must be in 1..12"),
        ("x: !!float abc", "invalid YAML: cannot read a value: could not convert string to "
         "float: 'abc'"),
    ],
    ids=["rate-1e12", "rate-x-duration", "week", "failover-forever", "memory-forever",
         "rounds", "streams", "capacity-rate", "scrape-spin", "plan-spin", "inf-duration",
         "huge-int", "5000-digits", "bad-timestamp", "bad-float"],
)  # fmt: skip
def test_absurd_values_are_one_line_refusals(tmp_path: Path, body: str, line: str) -> None:
    done = check(tmp_path, body)
    assert (done.returncode, done.stdout) == (2, ""), done.stderr
    assert done.stderr == f"soak: soak.yaml: {line}\n"


def _full() -> dict[str, Any]:
    """Every phase, the schedule and the server, as a user's file would spell them."""
    with resources.as_file(resources.files("soak.config") / "profiles" / "full.yaml") as path:
        data = yaml.safe_load(path.read_text())
    data.update(version=1, gateway={"url": "http://127.0.0.1:9", "process": {"pid": 123}},
                schedule=[{"name": "p", "interval": "1h", "jitter": "1s",
                           "phases": ["overhead"]}],
                server={"keep_runs": 10, "grace": "5s"})  # fmt: skip
    data["phases"]["capacity"] = {"start": 5, "max_rate": 50, "step_duration": "10s"}
    return data


def _numbers(node: Any, path: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    if isinstance(node, dict):
        for key, value in node.items():
            yield from _numbers(value, (*path, key))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from _numbers(value, (*path, index))
    elif (isinstance(node, int | float) and not isinstance(node, bool)) or (
        isinstance(node, str) and node[:1].isdigit()
    ):
        yield path


def _bounded(value: Any, where: str) -> None:
    """Every number a loaded phase holds is a bounded one: no run without end."""
    if dataclasses.is_dataclass(value):
        for f in dataclasses.fields(value):
            _bounded(getattr(value, f.name), f"{where}.{f.name}")
    elif isinstance(value, float | int) and not isinstance(value, bool):
        assert math.isfinite(value) and abs(value) <= MAX_REQUESTS, (where, value)


def test_odd_numbers_in_every_numeric_key_give_one_line_or_a_bounded_config(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    base = _full()
    path = tmp_path / "soak.yaml"
    leaves = [p for p in _numbers(base) if p[0] in ("phases", "schedule", "server", "engine")]
    assert len(leaves) > 50
    for leaf in leaves:
        for odd in ODD:
            data = copy.deepcopy(base)
            node = data
            for key in leaf[:-1]:
                node = node[key]
            node[leaf[-1]] = odd
            path.write_text(yaml.safe_dump(data, allow_unicode=True))
            code = main(["check", str(path)])
            err = capsys.readouterr().err
            where = f"{'.'.join(map(str, leaf))} = {odd!r:.40}"
            assert code in (0, 2) and "internal error" not in err, (where, err)
            if code == 2:
                assert err.count("\n") == 1 and len(err) < 300, (where, err)
                continue
            config = load_config(path)
            for name in config.phases:
                _bounded(config.phases[name], name)
            assert all(p.interval is None or p.interval <= 366 * 86400
                       for p in config.daemon.schedule), where  # fmt: skip
    assert MAX_RATE < MAX_REQUESTS and MAX_DURATION_S < MAX_REQUESTS  # what _bounded relies on



HEADER = "gateway: {url: 'http://127.0.0.1:9', headers: {X-Tenant: %s}}"
ENV = ("gateway: {url: 'http://127.0.0.1:9', managed: {command: ['true'], "
       "ready_url: 'http://127.0.0.1:9/', env: {TOKEN: %s}}}")  # fmt: skip


@pytest.mark.parametrize(
    ("section", "key", "value", "environ"),
    [
        (HEADER, "gateway.headers.X-Tenant", '"a\\0b"', {}),
        (HEADER, "gateway.headers.X-Tenant", '"a\\x1bb"', {}),
        (HEADER, "gateway.headers.X-Tenant", '"${SOAK_TEST_ODD}"', {"SOAK_TEST_ODD": "a\x7fb"}),
        (ENV, "gateway.managed.env.TOKEN", '"a\\0b"', {}),
        (ENV, "gateway.managed.env.TOKEN", '"${SOAK_TEST_ODD}"', {"SOAK_TEST_ODD": "a\nb"}),
    ],
)  # fmt: skip
def test_a_control_character_in_a_header_or_env_value_is_one_line(
    tmp_path: Path, section: str, key: str, value: str, environ: dict[str, str]
) -> None:
    """A NUL passed `soak check` and then made every request a `bad_response` (aiohttp refuses
    the header; execve an environment). Refused at load, written in the file or coming from
    the environment variable it names, without echoing the value (it may be a secret)."""
    (tmp_path / "soak.yaml").write_text(f"version: 1\n{section % value}\n")
    env = {k: v for k, v in os.environ.items() if k != "SOAK_TEST_ODD"} | environ
    done = subprocess.run([*SOAK, "check", "soak.yaml"], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=30)  # fmt: skip
    assert done.returncode == 2, done
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and f"{key}: has a control character" in lines[0], done.stderr
    assert all(v not in done.stderr for v in environ.values())
