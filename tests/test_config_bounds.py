"""Config files built to exhaust the loader: a "billion laughs" of nested aliases, a recursive
alias, nesting thousands deep, a 50 MB file. `soak check` (the real CLI, in a subprocess) and a
real daemon's `POST /-/reload` refuse each at once with one line and exit 2 / HTTP 500, where
they used to burn a core for hours, die of RecursionError or read the whole file. Ordinary
anchors, aliases and merge keys still load, and duplicate keys are still errors."""

from __future__ import annotations

import itertools
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from soak.config import ConfigError
from soak.config.source import MAX_DEPTH, MAX_FILE_BYTES, parse_yaml
from soak.phases import load_config

SOAK = [str(Path(sys.executable).with_name("soak"))]
GATEWAY = "gateway: {url: 'http://127.0.0.1:9'}"
REFUSE_WITHIN_S = 10.0
"""Every refusal must come within this. Unfixed, the laughs below got no answer within 60 s
(killed; measured on this 2-core machine; they would take hours): this bound is 6× below
that, while the refusal takes ~0.2 s, process start included (50× below the bound)."""


def laughs(levels: int = 10) -> str:
    """A 468-byte file whose aliases expand to 9**10 (3.5 billion) list items."""
    names = "abcdefghijklmnop"[:levels]
    lines = ["version: 1", f'{names[0]}: &{names[0]} [' + ", ".join(['"lol"'] * 9) + "]"]
    for prev, name in itertools.pairwise(names):
        lines.append(f"{name}: &{name} [" + ", ".join([f"*{prev}"] * 9) + "]")
    return "\n".join(lines) + "\n"


def check(tmp: Path, body: str | bytes) -> tuple[subprocess.CompletedProcess[str], float]:
    path = tmp / "soak.yaml"
    if isinstance(body, bytes):
        path.write_bytes(body)
    else:
        path.write_text(body)
    t0 = time.monotonic()
    done = subprocess.run(
        [*SOAK, "check", path.name], cwd=tmp, capture_output=True, text=True,
        timeout=REFUSE_WITHIN_S,
    )  # fmt: skip
    return done, time.monotonic() - t0


def assert_refused(done: subprocess.CompletedProcess[str], names: str) -> None:
    assert done.returncode == 2, (done.returncode, done.stderr)
    lines = done.stderr.splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("soak: soak.yaml: ") and names in lines[0], lines[0]
    assert "Traceback" not in done.stderr and "RecursionError" not in done.stderr


def test_billion_laughs_are_refused_at_once(tmp_path: Path) -> None:
    body = laughs()
    assert len(body) == 468
    done, took = check(tmp_path, body)
    assert_refused(done, "refused: aliases expand to more than 10936 nodes, the limit for a "
                   "document of 468 characters (line 6, column 8)")  # at the fifth level: 9**5
    assert took < REFUSE_WITHIN_S


@pytest.mark.parametrize(
    ("body", "names"),
    [
        ("a: &a [*a]", "refused: recursive alias *a (line 2, column 8)"),
        ("a: &a {b: [1, {c: *a}]}", "refused: recursive alias *a (line 2, column 19)"),
        ("a: &a {<<: *a}", "refused: recursive alias *a (line 2, column 12)"),
        ("x: " + "[" * 5000 + "]" * 5000, f"refused: nested deeper than {MAX_DEPTH} levels"),
        # Shallow where written, deep once expanded: each alias nests the previous anchor.
        ("a: &a " + "[" * 40 + "1" + "]" * 40 + "\nb: " + "[" * 30 + "*a" + "]" * 30,
         f"refused: nested deeper than {MAX_DEPTH} levels (line 3, column 34)"),
    ],
    ids=["self", "cycle", "merge-cycle", "deep", "deep-via-alias"],
)  # fmt: skip
def test_recursion_is_one_line_not_a_recursion_error(
    tmp_path: Path, body: str, names: str
) -> None:
    done, took = check(tmp_path, f"version: 1\n{body}\n")
    assert_refused(done, names)
    assert took < REFUSE_WITHIN_S


def test_an_oversized_file_is_refused_unread(tmp_path: Path) -> None:
    body = f"version: 1\n{GATEWAY}\n# " + "x" * (50 << 20) + "\n"  # 50 MB of comment
    done, took = check(tmp_path, body)
    assert_refused(done, "file larger than the 1 MiB limit for a config")
    assert took < REFUSE_WITHIN_S
    # Cut inside a multi-byte character at the limit: still "too large", not "not UTF-8".
    done, _ = check(tmp_path, b"version: 1\n# " + "é".encode() * MAX_FILE_BYTES)
    assert_refused(done, "file larger than the 1 MiB limit")


def test_a_file_at_the_limit_and_ordinary_aliases_still_load(tmp_path: Path) -> None:
    path = tmp_path / "soak.yaml"
    head = (
        f"version: 1\n{GATEWAY}\n"
        "phases:\n"
        "  calibration: &base {rate: 5, duration: 2s, latency: 100ms}\n"
        "  overhead: *base\n"
        "  stress: {<<: *base, rounds: 1}\n"
    )
    path.write_text(head + "#" * (MAX_FILE_BYTES - len(head) - 1) + "\n")
    assert path.stat().st_size == MAX_FILE_BYTES
    config = load_config(path)
    assert config.phases.overhead.rate == 5 and config.phases.stress.rounds == 1
    done = subprocess.run([*SOAK, "check", str(path)], capture_output=True, text=True, timeout=60)
    assert (done.returncode, done.stdout) == (0, f"{path}: ok\n"), done.stderr


def test_the_node_budget_never_refuses_a_file_without_aliases() -> None:
    """The densest alias-free YAML, 1.5 nodes per character (`[?,?,...]`: each `?` a
    mapping with a null key and value), stays within a budget of two nodes per character."""
    body = "version: 1\nx: [" + ",".join(["?"] * 20_000) + "]\n"
    assert parse_yaml(body, "dense")["x"] == [{None: None}] * 20_000
    with pytest.raises(ConfigError, match=r"^five: refused: aliases expand to more than"):
        parse_yaml(laughs(5), "five")  # 9**5 = 59049 items: over the budget
    assert len(parse_yaml(laughs(4), "four")["d"]) == 9  # 9**4 = 6561 items: within it


def test_duplicate_keys_stay_errors() -> None:
    with pytest.raises(ConfigError, match=r"^f: a\.b: duplicate key \(line 4, first at line 3\)$"):
        parse_yaml("version: 1\na:\n  b: 1\n  b: 2\n", "f")


def test_the_daemon_refuses_laughs_on_reload_and_still_stops(tmp_path: Path) -> None:
    path = tmp_path / "soak.yaml"
    yearly = "schedule: [{name: yearly, cron: '0 0 1 1 *', phases: [overhead]}]"
    path.write_text(f"version: 1\n{GATEWAY}\n{yearly}\n")
    proc = subprocess.Popen(
        [*SOAK, "run", "--config", path.name, "--listen", "127.0.0.1:0", "--data-dir", "data",
         "--log-level", "error"],
        cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        url = proc.stdout.readline().split()[-1]
        assert url.startswith("http://127.0.0.1:"), url
        path.write_text(laughs())
        t0 = time.monotonic()
        with pytest.raises(urllib.error.HTTPError) as failed:
            urllib.request.urlopen(
                urllib.request.Request(f"{url}/-/reload", method="POST"), timeout=REFUSE_WITHIN_S
            )
        assert time.monotonic() - t0 < REFUSE_WITHIN_S
        body = failed.value.read().decode()
        assert failed.value.code == 500 and body.count("\n") == 1
        assert "refused: aliases expand to more than" in body
        with urllib.request.urlopen(f"{url}/-/healthy", timeout=5) as healthy:
            assert healthy.status == 200
        os.kill(proc.pid, signal.SIGTERM)
        assert proc.wait(timeout=REFUSE_WITHIN_S) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        _, err = proc.communicate()
    logged = [json.loads(line) for line in err.splitlines() if line.startswith("{")]
    assert any("refused: aliases expand" in rec["msg"] for rec in logged), err
