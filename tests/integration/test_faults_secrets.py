"""Security faults: planted secrets (gateway key from the environment, a header with ${ENV},
a managed gateway's env, the mock's control token, the daemon's reload token) must appear in
no output: stdout, stderr, report.md / report.json / junit.xml, the daemon's log, /metrics,
/runs. A gateway that prints its secrets to its log and dies is quoted redacted. The mock's
control API and the daemon's reload change nothing without their token."""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import yaml
from once_helpers import PROXY, SOAK, run_once
from test_daemon import SoakDaemon, daemons, get_json, http, wait_for

pytestmark = pytest.mark.integration
__all__ = ["daemons"]  # fixture shared with test_daemon.py

SECRETS = {
    "FAULT_GW_KEY": "sk-planted-gw-3f9a7c1e",
    "FAULT_HDR": "hdr-planted-b28e41d0",
    "FAULT_MENV": "menv-planted-71c0aa9f",
    "FAULT_MOCK_TOKEN": "mocktok-planted-5d3e9b27",
    "FAULT_RELOAD_TOKEN": "reload-planted-e8a1046c",
}

LEAKY_START = """
import os, sys
marker = sys.argv[1]
if not os.path.exists(marker):  # first start: print every secret in reach, then die
    open(marker, "w").close()
    print("failing with", os.environ["PLANTED_ENV"],
          *(os.environ.get(k, "") for k in {names!r}), flush=True)
    sys.exit(3)
os.execv(sys.executable, [sys.executable, {proxy!r}, *sys.argv[2:]])
"""


@pytest.fixture
def planted(monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    for name, value in SECRETS.items():
        monkeypatch.setenv(name, value)
    return SECRETS


def leaky_gateway(tmp: Path) -> dict[str, Any]:
    """Managed: dies on its first start printing its secrets; the forwarding proxy after."""
    script = tmp / "leaky_start.py"
    script.write_text(LEAKY_START.format(names=sorted(SECRETS), proxy=str(PROXY)))
    return {
        "name": "leaky",
        "kind": "openai",
        "chat_path": "/p/primary/v1/chat/completions",
        "model": "soak-model",
        "timeout": "5s",
        "api_key_env": "FAULT_GW_KEY",
        "headers": {"X-Planted": "v ${FAULT_HDR}"},
        "managed": {
            "command": [
                sys.executable,
                str(script),
                str(tmp / "started-once"),
                "--port",
                "{port}",
                "--upstream",
                "{mock_url}",
            ],
            "env": {"PLANTED_ENV": "${FAULT_MENV}"},
            "ready_log": "proxy listening",
            "ready_timeout": "20s",
        },
    }


def secret_config(tmp: Path) -> dict[str, Any]:
    return {
        "version": 1,
        "gateway": leaky_gateway(tmp),
        "mock": {"control_token_env": "FAULT_MOCK_TOKEN"},
        "phases": {
            "calibration": {"rate": 10, "duration": "1s", "latency": "10ms"},
            "overhead": {"rate": 10, "duration": "1s", "latency": "10ms"},
            "breaker": {
                "rate": 10,
                "duration": "5s",
                "latency": "10ms",
                "lead": "1s",
                "fault": "2s",
            },
        },
        "server": {"reload_token_env": "FAULT_RELOAD_TOKEN"},
    }


def leaks(text: str) -> list[str]:
    return [name for name, value in SECRETS.items() if value in text]


def outputs(out: Path) -> str:
    return "".join(p.read_text(errors="replace") for p in sorted(out.rglob("*")) if p.is_file())


def test_soak_once_outputs_carry_no_secret(tmp_path: Path, planted: dict[str, str]) -> None:
    config = secret_config(tmp_path)
    phases = ("--phases", "calibration,overhead,breaker", "--log-level", "debug")
    failed = run_once(tmp_path / "first", config, *phases, timeout=60)
    assert failed.code == 1
    assert "exited" in failed.report["error"] and "***" in failed.report["error"]
    worked = run_once(tmp_path / "second", config, *phases, timeout=90)
    assert [p["name"] for p in worked.report["phases"]] == ["calibration", "overhead", "breaker"]
    assert worked.phase("breaker")["status"] != "error"  # the mock token was used and worked
    assert worked.phase("overhead")["outcomes"] == {"ok": worked.phase("overhead")["sent"]}
    for done in (failed, worked):
        everything = done.stdout + done.stderr + outputs(done.out)
        assert "Traceback" not in everything
        assert leaks(everything) == [], leaks(everything)


def test_the_daemon_shows_no_secret_and_reload_needs_its_token(
    tmp_path: Path, daemons: list[SoakDaemon], planted: dict[str, str]
) -> None:
    config = secret_config(tmp_path)
    config["schedule"] = [
        {
            "name": "sec",
            "interval": "3s",
            "run_on_start": True,
            "phases": ["calibration", "overhead", "breaker"],
        }
    ]
    daemon = SoakDaemon(tmp_path, config)
    daemons.append(daemon)
    wait_for(
        "a failed and a passing run",
        lambda: (
            {"error", "passed"} <= {r["status"] for r in daemon.runs()}
            or {"error", "failed"} <= {r["status"] for r in daemon.runs()}
        ),
        60,
        every=0.5,
    )
    runs = daemon.runs()
    shown = json.dumps(runs) + "".join(
        json.dumps(get_json(f"{daemon.url}/runs/{r['id']}")) for r in runs
    )
    assert "***" in shown  # the dead gateway's log line, quoted redacted
    _, metrics = http(f"{daemon.url}/metrics")
    assert 'phase="breaker"' in metrics

    # reload: a new plan on disk; without the token, or with a wrong one, nothing changes
    config["schedule"] = [{"name": "other", "interval": "1h", "phases": ["overhead"]}]
    daemon.config_path.write_text(yaml.safe_dump(config))
    for headers in (
        {},
        {"Authorization": "Bearer wrong"},
        {"Authorization": SECRETS["FAULT_RELOAD_TOKEN"]},
    ):
        status, body = http(f"{daemon.url}/-/reload", method="POST", headers=headers)
        assert status == 401, (status, body)
        assert daemon.metric("soak_plan_next_run_timestamp_seconds", plan="other") is None
        assert daemon.metric("soak_plan_next_run_timestamp_seconds", plan="sec") is not None
    token = {"Authorization": f"Bearer {SECRETS['FAULT_RELOAD_TOKEN']}"}
    status, body = http(f"{daemon.url}/-/reload", method="POST", headers=token)
    assert status == 200, body
    assert daemon.metric("soak_plan_next_run_timestamp_seconds", plan="other") is not None
    shown += body
    _, metrics = http(f"{daemon.url}/metrics")
    assert daemon.stop()[0] == 0
    log = (tmp_path / "daemon.log").read_text()
    assert log.count("\n") > 10  # the daemon did log: the grep below is not of nothing
    everything = shown + metrics + log
    assert "Traceback" not in everything
    assert leaks(everything) == [], leaks(everything)


def test_the_mock_control_api_changes_nothing_without_its_token(planted: dict[str, str]) -> None:
    proc = subprocess.Popen(
        [
            *SOAK,
            "mock",
            "--port",
            "0",
            "--providers",
            "primary,fallback",
            "--token-env",
            "FAULT_MOCK_TOKEN",
            "--log-level",
            "warning",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        url = "http://127.0.0.1:" + proc.stdout.readline().split("127.0.0.1:")[1].split()[0]
        good = {"Authorization": f"Bearer {SECRETS['FAULT_MOCK_TOKEN']}"}
        before = _call(url, "GET", "stats", headers=good)[1]
        calls = [
            ("PUT", "providers/primary/profile", {"latency": {"model": "fixed", "value": 5}}),
            ("POST", "providers/primary/faults", {"faults": {"error_rate": 1}, "ttl": 60}),
            ("DELETE", "faults", None),
            ("DELETE", "providers/primary/faults", None),
            ("GET", "stats", None),
            ("GET", "providers", None),
            ("POST", "traces/query", {"nonces": ["x"]}),
        ]
        for headers in (
            {},
            {"Authorization": "Bearer nope"},
            {"Authorization": SECRETS["FAULT_MOCK_TOKEN"]},
        ):
            for method, path, body in calls:
                status, answer = _call(url, method, path, body, headers)
                assert status == 401, (method, path, headers, answer)
                assert leaks(json.dumps(answer)) == []
        after = _call(url, "GET", "stats", headers=good)[1]
        assert after["providers"] == before["providers"]  # no profile, no fault changed
        status, _ = _call(
            url, "POST", "providers/primary/faults", {"faults": {"error_rate": 1}, "ttl": 60}, good
        )
        assert status == 200  # the token works: the refusals above were about the token
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=10)
    assert leaks(err) == []


def _call(
    url: str, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None
) -> tuple[int, Any]:
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(
        f"{url}/_mock/{path}",
        data=data,
        method=method,
        headers={"Content-Type": "application/json", **(headers or {})},
    )
    try:
        with urllib.request.urlopen(req, timeout=5) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())
