"""Broken config files through the real CLI, as an operator meets them: `soak check`,
`soak once --config` and `soak run --config` each answer one line on stderr that names the
offending key, exit 2, no traceback, and never echo a secret. (The exact messages of the
loader are pinned in tests/test_config.py; this table proves the commands around it.)"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

SOAK = [sys.executable, "-m", "soak"]
PLANTED = "sk-fault-planted-5e7a"
GATEWAY = 'gateway: {url: "http://127.0.0.1:9"}'

BROKEN = {
    "wrong-type": (f"{GATEWAY}\nengine: {{max_inflight: lots}}", "engine.max_inflight:"),
    "wrong-type-bool": (f"{GATEWAY}\nrequest: {{stream: 'yes'}}", "request.stream:"),
    "unknown-key": (f"{GATEWAY}\nphases: {{stres: {{rate: 1}}}}", "phases.stres: unknown key"),
    "bad-duration": (f"{GATEWAY}\nphases: {{stress: {{gap: 5x}}}}", "phases.stress.gap:"),
    "infinite-rate": (f"{GATEWAY}\nphases: {{overhead: {{rate: .inf}}}}", "phases.overhead.rate"),
    "bad-cron": (
        f"{GATEWAY}\nschedule: [{{name: a, cron: '61 * * * *', phases: [overhead]}}]",
        "schedule[0].cron: invalid cron expression",
    ),
    "cron-words": (
        f"{GATEWAY}\nschedule: [{{name: a, cron: 'every hour', phases: [overhead]}}]",
        "schedule[0].cron: invalid cron expression",
    ),
    "bad-interval": (
        f"{GATEWAY}\nschedule: [{{name: a, interval: 5x, phases: [overhead]}}]",
        "schedule[0].interval:",
    ),
    "missing-api-key-env": (
        'gateway: {url: "http://127.0.0.1:9", api_key_env: SOAK_FAULT_UNSET_KEY}',
        "gateway.api_key_env: environment variable 'SOAK_FAULT_UNSET_KEY' is not set",
    ),
    "missing-header-env": (
        'gateway: {url: "http://127.0.0.1:9", headers: {X-Key: "k ${SOAK_FAULT_UNSET_H}"}}',
        "gateway.headers.X-Key: environment variable 'SOAK_FAULT_UNSET_H' is not set",
    ),
    "missing-managed-env": (
        'gateway: {managed: {command: [sleep, "1"], env: {K: "${SOAK_FAULT_UNSET_M}"}}}',
        "gateway.managed.env.K: environment variable 'SOAK_FAULT_UNSET_M' is not set",
    ),
    "missing-mock-token-env": (
        f"{GATEWAY}\nmock: {{control_token_env: SOAK_FAULT_UNSET_T}}",
        "mock.control_token_env: environment variable 'SOAK_FAULT_UNSET_T' is not set",
    ),
    "missing-reload-token-env": (
        f"{GATEWAY}\nserver: {{reload_token_env: SOAK_FAULT_UNSET_R}}",
        "server.reload_token_env: environment variable 'SOAK_FAULT_UNSET_R' is not set",
    ),
    "key-file-missing": (
        'gateway: {url: "http://127.0.0.1:9", api_key_file: nowhere/gateway.key}',
        "gateway.api_key_file: cannot read 'nowhere/gateway.key'",
    ),
    "key-file-is-a-directory": (
        'gateway: {url: "http://127.0.0.1:9", api_key_file: keys}',
        "gateway.api_key_file: cannot read 'keys': Is a directory",
    ),
    "secret-as-env-name": (
        f'gateway: {{url: "http://127.0.0.1:9", api_key_env: "{PLANTED}"}}',
        "gateway.api_key_env: not a valid environment variable name",
    ),
}

COMMANDS = {
    "check": lambda name: ["check", name],
    "once": lambda name: ["once", "--config", name, "--out", "out"],
    "run": lambda name: ["run", "--config", name, "--listen", "127.0.0.1:0", "--data-dir", "data"],
}
"""Each command with the config named relative to the working directory (the tmp dir)."""


def soak(tmp: Path, *args: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SOAK_FAULT_")}
    return subprocess.run(
        [*SOAK, *args], cwd=tmp, env=env, capture_output=True, text=True, timeout=timeout
    )


def assert_one_line(done: subprocess.CompletedProcess[str], names: str) -> None:
    assert done.returncode == 2, (done.returncode, done.stderr)
    assert "Traceback" not in done.stderr
    lines = done.stderr.splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("soak: ") and names in lines[0], lines[0]
    assert PLANTED not in done.stderr + done.stdout


@pytest.mark.parametrize("command", sorted(COMMANDS))
@pytest.mark.parametrize("case", sorted(BROKEN))
def test_a_broken_file_is_one_line_naming_the_key_and_exit_2(
    tmp_path: Path, case: str, command: str
) -> None:
    body, names = BROKEN[case]
    (tmp_path / "keys").mkdir()
    path = tmp_path / "soak.yaml"
    path.write_text(f"version: 1\n{body}\n")
    done = soak(tmp_path, *COMMANDS[command](path.name))
    assert_one_line(done, names)
    assert not (tmp_path / "out").exists()  # nothing ran, nothing was written
    assert not (tmp_path / "data").exists()


@pytest.mark.parametrize(
    ("where", "names"),
    [("config", "server.data_dir: data dir"), ("flag", "--data-dir: data dir")],
)
def test_an_unusable_data_dir_is_one_line_and_exit_2(
    tmp_path: Path, where: str, names: str
) -> None:
    (tmp_path / "a-file").write_text("not a directory\n")
    path = tmp_path / "soak.yaml"
    server = "\nserver: {data_dir: a-file/history}" if where == "config" else ""
    path.write_text(f"version: 1\n{GATEWAY}{server}\n")
    args = ["run", "--config", str(path), "--listen", "127.0.0.1:0"]
    if where == "flag":
        args += ["--data-dir", str(tmp_path / "a-file")]
    done = soak(tmp_path, *args)
    assert_one_line(done, names)
    assert "directory" in done.stderr
    assert (tmp_path / "a-file").read_text() == "not a directory\n"  # left alone
