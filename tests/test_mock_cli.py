"""`python -m soak.mock` as a process: the port line, serving, clean exit on SIGTERM."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import sys
from unittest.mock import ANY

import aiohttp
from soak.mock.app import MockConfig, MockServer
from soak.mock.cli import main

LINE_RE = re.compile(
    r"^mock listening on (http://127\.0\.0\.1:\d+) providers=(\S+) instance=([0-9a-f]{16})$"
)


async def test_process_prints_its_port_serves_and_exits_zero_on_sigterm(tmp_path):
    profile = tmp_path / "p.yaml"
    profile.write_text("providers: {primary: {latency: 1ms}}\n")
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "soak.mock", "--port", "0", "--profile", str(profile),
        "--providers", "fallback", "--token-env", "SOAK_TEST_MOCK_TOKEN",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "SOAK_TEST_MOCK_TOKEN": "tok"},
    )  # fmt: skip
    try:
        line = (await asyncio.wait_for(proc.stdout.readline(), 20)).decode().strip()
        m = LINE_RE.match(line)
        assert m, line
        url = m.group(1)
        assert m.group(2) == "default,primary,fallback"
        body = {"model": "m", "messages": [{"role": "user", "content": "x [soak:c:1]"}]}
        async with aiohttp.ClientSession() as s:
            async with s.post(f"{url}/p/fallback/v1/chat/completions", json=body) as r:
                assert r.status == 200
                assert r.headers["x-soak-provider"] == "fallback"
            async with s.get(f"{url}/_mock/stats") as r:
                assert r.status == 401
            auth = {"Authorization": "Bearer tok"}
            async with s.get(f"{url}/_mock/instance", headers=auth) as r:
                me = await r.json()
            assert me["instance_id"] == m.group(3) and me["pid"] == proc.pid
    finally:
        proc.send_signal(signal.SIGTERM)
        rc = await asyncio.wait_for(proc.wait(), 20)
        err = await proc.stderr.read()
    assert rc == 0, err.decode()
    assert b"Traceback" not in err


def test_bad_flags_are_a_one_line_error_and_exit_2(capsys, tmp_path):
    assert main(["--latency", "soon", "--port", "0"]) == 2
    assert main(["--providers", "bad name", "--port", "0"]) == 2
    bad = tmp_path / "bad.yaml"
    bad.write_text("defaults: {faults: {error_rate: 3}}\n")
    assert main(["--profile", str(bad), "--port", "0"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [
        "soak mock: --latency: expected a duration like 250ms or 1s, got 'soon'",
        "soak mock: --providers: provider name 'bad name' must match [A-Za-z0-9_.-]{1,64}",
        "soak mock: defaults.faults.error_rate: expected a number in [0.0, 1.0], got 3",
    ]


def test_instance_id_and_parent_pid_are_checked(capsys):
    assert main(["--instance-id", "no spaces", "--port", "0"]) == 2
    assert main(["--parent-pid", "1", "--port", "0"]) == 2  # pytest's parent is not pid 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [
        "soak mock: --instance-id: expected 1-64 letters, digits, '_' or '-'",
        "soak mock: --parent-pid: process 1 is not our parent (it has exited)",
    ]


async def test_a_given_instance_id_is_answered_with_the_pid():
    async with (
        MockServer(MockConfig(), instance_id="run-42") as mock,
        aiohttp.ClientSession() as s,
        s.get(f"{mock.url}/_mock/instance") as r,
    ):
        assert await r.json() == {"instance_id": "run-42", "pid": os.getpid(), "started_at": ANY}
    assert len(MockServer().instance_id) == 16  # random when not given
