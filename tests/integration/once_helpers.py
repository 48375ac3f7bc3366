"""Running `soak once` as a user would (a subprocess of the real CLI) and reading its reports."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
PROXY = ROOT / "tests" / "proxy_gateway.py"
SOAK = [sys.executable, "-m", "soak"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Once:
    code: int
    stdout: str
    stderr: str
    out: Path

    @property
    def report(self) -> dict[str, Any]:
        return json.loads((self.out / "report.json").read_text())

    def phase(self, name: str) -> dict[str, Any]:
        (found,) = [p for p in self.report["phases"] if p["name"] == name]
        return found

    def junit(self) -> ET.Element:
        return ET.parse(self.out / "junit.xml").getroot()


def run_once(tmp: Path, config: dict[str, Any] | None, *args: str, timeout: float = 240) -> Once:
    """`soak once` with `config` written to a file (None: the embedded default)."""
    tmp.mkdir(parents=True, exist_ok=True)
    out = tmp / "results"
    argv = [*SOAK, "once", "--out", str(out), *args]
    if config is not None:
        path = tmp / "soak.yaml"
        path.write_text(yaml.safe_dump(config))
        argv += ["--config", str(path)]
    env = {k: v for k, v in os.environ.items() if k != "GITHUB_STEP_SUMMARY"}
    done = subprocess.run(argv, cwd=tmp, env=env, capture_output=True, text=True, timeout=timeout)
    return Once(done.returncode, done.stdout, done.stderr, out)


def small_phases(rate: float = 20, duration: str = "3s", latency: str = "20ms") -> dict[str, Any]:
    shape = {"rate": rate, "duration": duration, "latency": latency}
    return {
        "calibration": dict(shape),
        "overhead": dict(shape),
        "stress": {**shape, "latency": "500ms", "rounds": 2, "gap": "1s", "timeout": "10s"},
    }


def proxy_gateway(*proxy_args: str) -> dict[str, Any]:
    """A managed `openai`-kind gateway: tests/proxy_gateway.py in front of soak's mock."""
    return {
        "name": "proxy",
        "kind": "openai",
        "chat_path": "/p/primary/v1/chat/completions",
        "model": "soak-model",
        "timeout": "5s",
        "managed": {
            "command": [
                sys.executable,
                str(PROXY),
                "--port",
                "{port}",
                "--upstream",
                "{mock_url}",
                *proxy_args,
            ],
            "ready_log": "proxy listening",
            "ready_timeout": "30s",
        },
    }


def nginx_binary() -> str:
    found = shutil.which("nginx") or (
        "/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None
    )
    assert found, "nginx is installed by scripts/install-system-deps.sh (make test)"
    return found
