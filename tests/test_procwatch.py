"""ProcessWatch on real child processes; summary and slope math on given samples."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from collections.abc import Iterator

import pytest

from soak.procwatch import ProcessWatch, Sample, find_pid, pid_from_file, rss_slope, summarize

MB = 1024 * 1024

GROWS = """
import sys, time
hold = []
print("go", flush=True)
for _ in range(12):
    hold.append(bytearray(8 * 1024 * 1024))   # touched: zero-filled pages are resident
    for i in range(0, len(hold[-1]), 4096):
        hold[-1][i] = 1
    time.sleep(0.08)
sum(range(3_000_000))                          # some CPU
time.sleep(30)
"""

PARENT_OF_GROWER = f"""
import subprocess, sys, time
subprocess.Popen([sys.executable, "-c", {GROWS!r}])
time.sleep(30)
"""


@pytest.fixture
def spawn() -> Iterator:
    procs: list[subprocess.Popen] = []

    def _spawn(code: str, *args: str) -> subprocess.Popen:
        proc = subprocess.Popen(
            [sys.executable, "-c", code, *args],
            stdout=subprocess.PIPE,
            start_new_session=True,
        )
        procs.append(proc)
        return proc

    yield _spawn
    for proc in procs:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        if proc.stdout:
            proc.stdout.close()


async def test_watch_sees_rss_grow_and_cpu(spawn) -> None:
    proc = spawn(GROWS)
    assert proc.stdout is not None
    await asyncio.to_thread(proc.stdout.readline)
    watch = ProcessWatch(proc.pid, interval=0.1)
    watch.start()
    await asyncio.sleep(1.6)
    samples = await watch.stop()
    assert len(samples) >= 8
    assert samples[0].cpu_percent is None
    assert all(s.cpu_percent is not None for s in samples[1:])
    assert max(s.cpu_percent or 0.0 for s in samples) > 5.0
    assert samples[-1].rss - samples[0].rss > 40 * MB
    assert all(s.threads >= 1 and s.fds >= 3 and s.procs == 1 for s in samples)
    assert [s.t for s in samples] == sorted(s.t for s in samples)
    assert not watch.vanished
    summary = summarize(samples)
    assert summary.rss_peak >= samples[-1].rss > summary.rss_initial


async def test_children_are_included_by_default(spawn) -> None:
    parent = spawn(PARENT_OF_GROWER)
    await asyncio.sleep(1.8)  # the child has allocated ~96 MB by now
    with_children = ProcessWatch(parent.pid, interval=0.1)
    alone = ProcessWatch(parent.pid, interval=0.1, include_children=False)
    with_children.start()
    alone.start()
    await asyncio.sleep(0.35)
    tree, single = await with_children.stop(), await alone.stop()
    assert tree[-1].procs == 2 and single[-1].procs == 1
    assert tree[-1].rss - single[-1].rss > 80 * MB


async def test_vanished_process_ends_the_watch_cleanly(spawn) -> None:
    proc = spawn("import time; time.sleep(0.4)")
    watch = ProcessWatch(proc.pid, interval=0.05)
    watch.start()
    await asyncio.to_thread(proc.wait)
    await asyncio.sleep(0.3)
    samples = await watch.stop()
    assert watch.vanished
    assert 1 <= len(samples) <= 12


async def test_watch_of_a_pid_that_does_not_exist_returns_nothing() -> None:
    watch = ProcessWatch(2**22 + 7, interval=0.05)  # above pid_max
    watch.start()
    await asyncio.sleep(0.05)
    assert await watch.stop() == []
    assert watch.vanished


def test_find_pid_by_command_line(spawn) -> None:
    proc = spawn("import time; time.sleep(30)  # soak-findme-7731")
    assert find_pid(r"soak-findme-7731") == proc.pid
    assert find_pid(r"soak-nobody-has-this-\d{9}") is None


def test_pid_from_file(tmp_path) -> None:
    (tmp_path / "gw.pid").write_text("4242\n")
    (tmp_path / "bad.pid").write_text("not a pid")
    assert pid_from_file(tmp_path / "gw.pid") == 4242
    assert pid_from_file(tmp_path / "bad.pid") is None
    assert pid_from_file(tmp_path / "missing.pid") is None


def _s(t: float, cpu: float | None, rss: int, fds: int = 10, threads: int = 4) -> Sample:
    return Sample(t=t, cpu_percent=cpu, rss=rss, fds=fds, threads=threads, procs=1)


def test_summarize_math() -> None:
    samples = [
        _s(0, None, 100 * MB, fds=10, threads=4),
        _s(1, 50.0, 120 * MB, fds=14, threads=6),
        _s(2, 150.0, 140 * MB, fds=12, threads=5),
        _s(3, 100.0, 110 * MB, fds=11, threads=5),
    ]
    s = summarize(samples)
    assert s.samples == 4
    assert s.cpu_avg == pytest.approx(100.0)
    assert s.cpu_peak == 150.0
    assert s.rss_avg == pytest.approx(117.5 * MB)
    assert s.rss_peak == 140 * MB
    assert (s.rss_initial, s.rss_final) == (100 * MB, 110 * MB)
    assert (s.fds_peak, s.threads_peak) == (14, 6)


def test_summarize_empty() -> None:
    s = summarize([])
    assert s.samples == 0 and s.rss_peak == 0.0


def test_rss_slope_after_warmup() -> None:
    # Warm-up climbs steeply, then a steady 1 MB/s leak with symmetric noise.
    warm = [_s(t, 0.0, 50 * MB * t) for t in range(5)]
    noise = [0, MB // 2, -MB // 2, 0] * 4
    steady = [_s(5 + i, 0.0, 300 * MB + i * MB + noise[i]) for i in range(16)]
    slope = rss_slope(warm + steady, warmup_s=5)
    assert slope == pytest.approx(MB, rel=0.05)
    flat = [_s(t, 0.0, 200 * MB) for t in range(10)]
    assert rss_slope(flat, warmup_s=2) == 0.0
    assert rss_slope(flat, warmup_s=9) is None  # one point left
    assert rss_slope([], warmup_s=0) is None
