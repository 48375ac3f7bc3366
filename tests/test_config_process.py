"""`gateway.process`: how soak finds an unmanaged gateway's PID, and the Stack resolving it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from soak.config import ConfigError
from soak.config.schema import ProcessTarget
from soak.phases import load_config
from soak.stack import Stack


def _load(tmp_path: Path, process: str, extra: str = "") -> object:
    path = tmp_path / "soak.yaml"
    path.write_text(
        f"version: 1\ngateway:\n  url: http://127.0.0.1:4000\n{extra}  process: {process}\n"
    )
    return load_config(path, env={})


def test_each_form_parses(tmp_path: Path) -> None:
    assert _load(tmp_path, "{pid: 42}").gateway.process == ProcessTarget(pid=42)
    pid_file = _load(tmp_path, "{pid_file: gw.pid}").gateway.process
    assert pid_file == ProcessTarget(pid_file=tmp_path / "gw.pid")
    match = _load(tmp_path, "{match: 'litellm.*4000'}").gateway.process
    assert match == ProcessTarget(match="litellm.*4000")


@pytest.mark.parametrize(
    ("process", "message"),
    [
        ("{pid: 1, match: x}", "gateway.process: set exactly one of pid, pid_file, match"),
        ("{}", "gateway.process: set exactly one of pid, pid_file, match"),
        ("{pid: 0}", "gateway.process.pid: "),
        ("{match: '(('}", "gateway.process.match: invalid regular expression ("),
        ("{pidfile: x}", "gateway.process.pidfile: unknown key"),
    ],
)
def test_bad_process_section_names_the_key(tmp_path: Path, process: str, message: str) -> None:
    with pytest.raises(ConfigError) as err:
        _load(tmp_path, process)
    text = str(err.value)
    assert text.startswith(f"{tmp_path / 'soak.yaml'}: {message}"), text
    assert "\n" not in text


def test_not_with_managed(tmp_path: Path) -> None:
    path = tmp_path / "soak.yaml"
    path.write_text(
        "version: 1\ngateway:\n  managed: {command: [x], ready_log: ok}\n  process: {pid: 5}\n"
    )
    with pytest.raises(ConfigError, match=r"gateway.process: not with gateway.managed"):
        load_config(path, env={})


def _stack(process: ProcessTarget) -> Stack:
    return Stack("http://m", None, "http://g", None, None, None, None, process)  # type: ignore[arg-type]


def test_stack_resolves_pid_file_and_match(tmp_path: Path) -> None:
    marker = f"soak-process-match-{os.getpid()}"
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)", marker])
    try:
        assert _stack(ProcessTarget(match=marker)).gateway_pid() == child.pid
        pid_file = tmp_path / "gw.pid"
        pid_file.write_text(f"{child.pid}\n")
        assert _stack(ProcessTarget(pid_file=pid_file)).gateway_pid() == child.pid
        assert _stack(ProcessTarget(pid=child.pid)).gateway_pid() == child.pid
    finally:
        child.terminate()
        child.wait(10)
    assert _stack(ProcessTarget(match=marker)).gateway_pid() is None
    assert _stack(ProcessTarget(pid_file=tmp_path / "missing.pid")).gateway_pid() is None
