"""The tester's own memory over many short runs, in one process: a leak per run (sessions,
tasks, results, temp dirs, reports) would grow RSS run after run. The run count scales, never a
time budget: 60 plans by default (CI), SOAK_TEST_RUNS=N for a longer soak; the bound is the same
at any count. bench/bench_reliability.py runs 500 and records the figure in docs/RELIABILITY.md.
No `gc.collect()` or trim between runs here (the daemon adds both): the phases alone must not
accumulate; before the engine collected after its `gc.freeze()` window, this grew 1.1 MiB a run
(+33 MiB between the two windows at 60 runs, against a 10% bound of ~4.5 MiB)."""

from __future__ import annotations

import asyncio
import io
import os
import re
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
import yaml

from soak.once import new_run_id
from soak.phases import load_config
from soak.reports.progress import Progress
from soak.runner import run_plan
from soak.summary import RunReport

pytestmark = pytest.mark.integration

RUNS = int(os.environ.get("SOAK_TEST_RUNS", "60"))  # ~15 s here; the 120 of before took 93 s in CI
WARMUP, WINDOW = 20, 10
SHAPE = {"rate": 50, "duration": "100ms", "latency": "1ms"}  # 5 requests per phase


@pytest.fixture
def mock_url() -> Iterator[str]:
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "soak",
            "mock",
            "--port",
            "0",
            "--providers",
            "primary,fallback",
            "--log-level",
            "warning",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    assert proc.stdout is not None
    m = re.search(r"127\.0\.0\.1:(\d+)", proc.stdout.readline())
    try:
        assert m, "the mock did not start"
        yield f"http://127.0.0.1:{m[1]}"
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        proc.stdout.close()


async def test_rss_stays_flat_over_many_short_runs(tmp_path: Path, mock_url: str) -> None:
    assert RUNS >= WARMUP + 2 * WINDOW, f"SOAK_TEST_RUNS={RUNS}: at least {WARMUP + 2 * WINDOW}"
    path = tmp_path / "soak.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "version": 1,
                "gateway": {
                    "name": "direct",
                    "url": mock_url,
                    "chat_path": "/p/primary/v1/chat/completions",
                },
                "mock": {"url": mock_url},
                "phases": {"calibration": SHAPE, "overhead": SHAPE},
            }
        )
    )
    config = load_config(path)
    me = psutil.Process()
    rss: list[float] = []
    for _ in range(RUNS):
        run = RunReport(new_run_id(), time.time(), 0.0, "direct", "openai", "quick")
        await run_plan(
            config,
            run,
            ["calibration", "overhead"],
            progress=Progress(stream=io.StringIO(), tty=False),
            stop=asyncio.Event(),
        )
        assert run.error is None
        assert [p.outcomes for p in run.phases] == [{"ok": 5}, {"ok": 5}]
        rss.append(me.memory_info().rss / 2**20)
    base = statistics.median(rss[WARMUP : WARMUP + WINDOW])
    end = statistics.median(rss[-WINDOW:])
    assert end < base * 1.10, f"RSS {base:.1f} -> {end:.1f} MiB over {RUNS - WARMUP} runs"
