"""`engine.loop` as a CI job uses it: the real CLI runs a phase through a managed gateway on
uvloop, in soak's process and in its two engine workers, and every report says so; where
uvloop is not installed, asking for it is one line naming the key and exit 2, before any load."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
import yaml
from once_helpers import SOAK, proxy_gateway, run_once

pytestmark = pytest.mark.integration


def config(loop: str) -> dict:
    return {
        "version": 1,
        "gateway": proxy_gateway(),
        "engine": {"loop": loop, "workers": 2},
        "phases": {"overhead": {"rate": 20, "duration": "3s", "latency": "20ms"}},
        "slo": {"overhead": {s: "200ms" for s in ("mean", "p50", "p90", "p95", "p99")}},
    }


def test_a_run_on_uvloop_says_so_in_every_report(tmp_path: Path) -> None:
    done = run_once(tmp_path, config("uvloop"), "--phases", "overhead")
    assert done.code == 0, done.stderr
    phase = done.phase("overhead")
    assert phase["completed"] == 60
    assert phase["details"]["verification"]["checked"] == 60  # every answer the mock's
    # both workers ran uvloop (a worker on another loop would show as "asyncio+uvloop")
    assert phase["generator"]["loop"] == "uvloop"
    md = (done.out / "report.md").read_text()
    assert "| Phase | Trusted | Loop |" in md
    assert any(line.startswith(("| overhead | yes | uvloop |", "| overhead | **NO** | uvloop |"))
               for line in md.splitlines())  # fmt: skip


def test_uvloop_missing_is_a_one_line_config_error(tmp_path: Path) -> None:
    hidden = tmp_path / "no-uvloop"
    hidden.mkdir()
    (hidden / "uvloop.py").write_text("raise ImportError('uvloop is hidden for this test')\n")
    path = tmp_path / "soak.yaml"
    path.write_text(yaml.safe_dump(config("uvloop")))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(hidden), *filter(None, [os.environ.get("PYTHONPATH")])])}  # fmt: skip
    argv = [*SOAK, "once", "--config", str(path), "--out", str(tmp_path / "out")]
    done = subprocess.run(argv, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        "soak: engine.loop: uvloop is not installed (pip install 'llm-soak[fast]', or use asyncio)"
    ]
    assert not (tmp_path / "out").exists()  # refused before anything ran or was written
