"""`soak once` checks where it will write before it sends anything (issue 17, item 7).

Unfixed, a report directory that could not be written (a file, a path under a file, /proc, a
read-only file system) was found only after the phases had run: "internal error", no report.
An empty `--phases ""` ran the whole plan. Here each is the real CLI in a subprocess: one line
naming the key, exit 2, and no load (the run ends long before its phase could have)."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

SOAK = [str(Path(sys.executable).with_name("soak"))]
PHASE_S = 60
"""The calibration phase each run asks for: a refusal must come well before it could end."""
REFUSED_WITHIN_S = 10.0
"""A refusal takes ~0.35 s (process start included) vs the 60 s phase the unfixed code ran
first: 28x and 6x."""


def config(tmp: Path, out: str | None = None) -> Path:
    path = tmp / "soak.yaml"
    report = "" if out is None else f"report: {{out: '{out}'}}\n"
    path.write_text(
        "version: 1\n"
        "gateway: {url: 'http://127.0.0.1:9'}\n"
        f"phases: {{calibration: {{rate: 5, duration: {PHASE_S}s, latency: 1ms}}}}\n" + report
    )
    return path


def once(tmp: Path, *args: str, env: dict[str, str] | None = None) -> tuple[int, str, float]:
    t0 = time.monotonic()
    done = subprocess.run(
        [*SOAK, "once", "--config", "soak.yaml", "--phases", "calibration", *args],
        cwd=tmp, capture_output=True, text=True, timeout=PHASE_S * 4,
        env={**os.environ, **(env or {})},
    )  # fmt: skip
    return done.returncode, done.stderr, time.monotonic() - t0


@contextlib.contextmanager
def read_only_dir(tmp: Path) -> Iterator[Path]:
    """A directory nothing may write to: a read-only tmpfs as root (root ignores modes), a
    0555 directory otherwise."""
    where = tmp / "ro"
    where.mkdir()
    if os.geteuid() != 0:
        where.chmod(0o555)
        yield where
        where.chmod(0o755)
        return
    subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=64k", "tmpfs", str(where)], check=True)
    try:
        yield where
    finally:
        subprocess.run(["umount", str(where)], check=True)


@pytest.mark.parametrize(
    ("target", "reason"),
    [
        ("a-file", "it is a file, not a directory"),
        ("a-file/reports", "Not a directory"),
        ("/proc/soak-reports", "No such file or directory"),
        ("taken", "report.md there is a directory"),
    ],
    ids=["file", "under-a-file", "proc", "report-name-taken"],
)
def test_an_unwritable_out_is_refused_before_any_load(
    tmp_path: Path, target: str, reason: str
) -> None:
    config(tmp_path)
    (tmp_path / "a-file").write_text("x")
    (tmp_path / "taken" / "report.md").mkdir(parents=True)
    code, err, took = once(tmp_path, "--out", target)
    assert (code, err) == (2, f"soak: --out {target}: cannot write reports: {reason}\n")
    assert took < REFUSED_WITHIN_S, took  # unfixed: the phase ran its 60 s first


def test_a_read_only_file_system_is_refused_before_any_load(tmp_path: Path) -> None:
    config(tmp_path)
    with read_only_dir(tmp_path) as ro:
        code, err, took = once(tmp_path, "--out", str(ro / "reports"))
    reason = "Read-only file system" if os.geteuid() == 0 else "Permission denied"
    assert (code, err) == (2, f"soak: --out {ro}/reports: cannot write reports: {reason}\n")
    assert took < REFUSED_WITHIN_S, took


def test_the_config_report_out_and_the_step_summary_are_checked_too(tmp_path: Path) -> None:
    config(tmp_path, out="a-file/reports")
    (tmp_path / "a-file").write_text("x")
    code, err, took = once(tmp_path)
    assert (code, err) == (2, "soak: report.out a-file/reports: cannot write reports: "
                              "Not a directory\n")  # fmt: skip
    assert took < REFUSED_WITHIN_S
    config(tmp_path)
    (tmp_path / "summary").mkdir()
    code, err, _ = once(tmp_path, "--out", "out", env={"GITHUB_STEP_SUMMARY": "summary"})
    assert (code, err) == (2, "soak: GITHUB_STEP_SUMMARY summary: cannot write: Is a directory\n")


@pytest.mark.parametrize("phases", ["", ",", " , ", "calibration,,overhead"])
def test_an_empty_phase_selection_is_a_usage_error(tmp_path: Path, phases: str) -> None:
    config(tmp_path)
    t0 = time.monotonic()
    done = subprocess.run(
        [*SOAK, "once", "--config", "soak.yaml", "--phases", phases, "--out", "out"],
        cwd=tmp_path, capture_output=True, text=True, timeout=PHASE_S * 4,
    )  # fmt: skip
    assert done.returncode == 2, (done.stdout, done.stderr)
    shown = ",".join(name.strip() for name in phases.split(","))
    assert done.stderr == (
        f"soak: --phases: an empty phase name in {shown!r} (e.g. --phases "
        "calibration,overhead; leave --phases out to run them all)\n"
    )
    assert time.monotonic() - t0 < REFUSED_WITHIN_S  # unfixed: "" ran the whole plan
    assert not (tmp_path / "out").exists()
