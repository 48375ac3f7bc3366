"""Benchmark the tester's own memory over many short phase runs, in one process.

500 runs (by default) of `run_plan` with `calibration` and `overhead` of 5 requests each,
straight at a mock provider running as its own process (so only the tester's memory is
measured): every run builds and tears down what a scheduled daemon run does (mock control
client, sessions, engine, phase reports, the gateway-said comparison, a temp dir). RSS is read
with psutil after each run; the baseline is the median of the 10 runs after a warm-up of 50;
the end is the median of the last 10. Two loops, each in a fresh process: `daemon` calls
`soak.daemon.release_memory()` (full collection + malloc_trim) after each run as the daemon
does; `phases alone` does not, so any garbage the phases leave behind shows.

Writes the figures under `## Memory over many runs` in docs/RELIABILITY.md (the rest of the
file untouched). Traffic stays on loopback; the mock is stopped by its PID.

    python bench/bench_reliability.py [--runs 500] [--no-write]
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import re
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import psutil
import yaml

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "RELIABILITY.md"
HEADING = "## Memory over many runs"
WARMUP = 50
WINDOW = 10
LIMIT = 0.10
PHASES = ["calibration", "overhead"]
SHAPE = {"rate": 50, "duration": "100ms", "latency": "1ms"}  # 5 requests per phase


async def loop(mock_url: str, runs: int, trim: bool) -> dict[str, object]:
    """`runs` plans in this process; RSS after each."""
    from soak.daemon import release_memory
    from soak.once import new_run_id
    from soak.phases import load_config
    from soak.reports.progress import Progress
    from soak.runner import run_plan
    from soak.summary import RunReport

    config_file = Path(tempfile.mkdtemp(prefix="bench-rel-")) / "soak.yaml"
    config_file.write_text(
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
    config = load_config(config_file)
    me = psutil.Process()
    rss: list[int] = []
    bad = 0
    started = time.monotonic()
    for _ in range(runs):
        run = RunReport(new_run_id(), time.time(), 0.0, "direct", "openai", "quick")
        await run_plan(
            config,
            run,
            PHASES,
            progress=Progress(stream=io.StringIO(), tty=False),
            stop=asyncio.Event(),
        )
        oks = [p.outcomes.get("ok", 0) for p in run.phases]
        bad += run.error is not None or oks != [5, 5]
        if trim:
            release_memory()
        rss.append(me.memory_info().rss)
    return {"rss": rss, "bad_runs": bad, "seconds": time.monotonic() - started}


def child(mock_url: str, runs: int, trim: bool) -> dict[str, object]:
    """Run `loop` in a fresh interpreter, so one loop's heap does not carry into the other."""
    code = (
        "import asyncio, json, sys; sys.path.insert(0, sys.argv[1]);"
        "import bench_reliability as b;"
        "print(json.dumps(asyncio.run(b.loop(sys.argv[2], int(sys.argv[3]), sys.argv[4] == '1'))))"
    )
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            code,
            str(Path(__file__).parent),
            mock_url,
            str(runs),
            "1" if trim else "0",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


def figures(result: dict[str, object]) -> dict[str, float]:
    rss = [r / 2**20 for r in result["rss"]]  # type: ignore[union-attr]
    base = statistics.median(rss[WARMUP : WARMUP + WINDOW])
    end = statistics.median(rss[-WINDOW:])
    return {
        "runs": len(rss),
        "first_mib": rss[0],
        "base_mib": base,
        "end_mib": end,
        "peak_mib": max(rss[WARMUP:]),
        "growth": end / base - 1,
        "bad_runs": float(result["bad_runs"]),  # type: ignore[arg-type]
        "seconds": float(result["seconds"]),  # type: ignore[arg-type]
    }


def start_mock() -> tuple[subprocess.Popen[str], str]:
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
    if not m:
        proc.kill()
        raise SystemExit("the mock did not start")
    return proc, f"http://127.0.0.1:{m[1]}"


def section(trim: dict[str, float], raw: dict[str, float]) -> str:
    verdict = "within" if trim["growth"] < LIMIT else "ABOVE"
    raw_verdict = "within" if raw["growth"] < LIMIT else "ABOVE"
    rows = "\n".join(
        f"| {name} | {f['runs']:.0f} | {f['first_mib']:.1f} | {f['base_mib']:.1f} | "
        f"{f['end_mib']:.1f} | {f['peak_mib']:.1f} | {f['growth']:+.1%} | {f['bad_runs']:.0f} | "
        f"{f['seconds']:.0f} s |"
        for name, f in (("daemon: release_memory() after each run", trim), ("phases alone", raw))
    )
    return f"""{HEADING}

Measured {datetime.now(UTC):%Y-%m-%d %H:%M} UTC by `python bench/bench_reliability.py` on this
2-core machine (shared with other work while it ran). `run_plan` with `calibration` and
`overhead` of 5 requests each, {trim["runs"]:.0f} times in one process, at a mock provider in
its own process. RSS in MiB. Baseline: median RSS of runs {WARMUP + 1}–{WARMUP + WINDOW} (after a
{WARMUP}-run warm-up); end: median of the last {WINDOW}.

| loop | runs | run 1 | baseline | end | peak after warm-up | growth | runs not 5+5 ok | time |
|---|---|---|---|---|---|---|---|---|
{rows}

Both loops must end within the 10% bound: the daemon's ends {verdict} it
({trim["growth"]:+.1%}), the phases alone {raw_verdict} it ({raw["growth"]:+.1%}).
"""


def write_section(text: str) -> None:
    doc = DOC.read_text() if DOC.exists() else "# Reliability\n"
    start = doc.find(HEADING)
    if start < 0:
        DOC.write_text(doc.rstrip("\n") + "\n\n" + text)
        return
    nxt = doc.find("\n## ", start + len(HEADING))
    rest = "" if nxt < 0 else doc[nxt:]
    DOC.write_text(doc[:start] + text.rstrip("\n") + "\n" + rest)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--runs", type=int, default=500)
    p.add_argument("--no-write", action="store_true", help="print, do not update the doc")
    args = p.parse_args()
    if args.runs < WARMUP + 2 * WINDOW:
        p.error(f"--runs must be at least {WARMUP + 2 * WINDOW}")
    mock, url = start_mock()
    try:
        trim = figures(child(url, args.runs, trim=True))
        raw = figures(child(url, args.runs, trim=False))
    finally:
        mock.terminate()
        mock.wait(timeout=10)
    text = section(trim, raw)
    print(text)
    if not args.no_write:
        write_section(text)
    held = all(f["growth"] < LIMIT and f["bad_runs"] == 0 for f in (trim, raw))
    return 0 if held else 1


if __name__ == "__main__":
    sys.exit(main())
