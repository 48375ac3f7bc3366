"""Reports of a `soak once` run: markdown, JSON, JUnit XML, HTML, GitHub step summary, progress.

`write_reports` is the one entry point `soak once` calls when a run ends (passed, failed,
aborted or half-done). Each file is written atomically (temp file + rename), so a reader never
sees a torn report; the JSON goes first because it holds everything that was measured, and one
renderer failing never stops the others from being written.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path

from soak.reports.html import render_html
from soak.reports.jsonfile import SCHEMA, parse_json, render_json
from soak.reports.junit import render_junit
from soak.reports.markdown import PhaseSection, render_markdown
from soak.reports.progress import Progress
from soak.reports.summary_md import StepSummary, render_step_summary, write_step_summary
from soak.summary import RunReport

__all__ = [
    "FILES",
    "SCHEMA",
    "Progress",
    "ReportWriteError",
    "StepSummary",
    "parse_json",
    "render_html",
    "render_json",
    "render_junit",
    "render_markdown",
    "render_step_summary",
    "write_reports",
    "write_step_summary",
]

FILES: dict[str, tuple[str, Callable[[RunReport], str]]] = {
    "json": ("report.json", render_json),
    "junit": ("junit.xml", render_junit),
    "markdown": ("report.md", render_markdown),
    "html": ("report.html", render_html),
}
"""Report key → (file name, renderer), in write order."""


class ReportWriteError(RuntimeError):
    """Some report files could not be written; the others were (see `written`)."""

    def __init__(self, message: str, written: dict[str, Path]) -> None:
        super().__init__(message)
        self.written = written


def umask() -> int:
    """The process umask, read without changing it where Linux says it (/proc), else by the
    set-and-restore dance."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def atomic_write(path: Path, text: str) -> None:
    """Write `text` to `path` via a temp file in the same directory and an atomic rename.

    The file gets 0666 less the umask (0644 under the usual 022), as `open()` would give it:
    mkstemp's 0600 would hide reports from an upload step or a sidecar running as another user.
    """
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, 0o666 & ~umask())
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as out:
            out.write(text)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_reports(
    run: RunReport,
    out_dir: Path | str,
    env: Mapping[str, str] | None = None,
    sections: Mapping[str, PhaseSection] | None = None,
    *,
    summary: StepSummary | None = None,
    final: bool = True,
) -> dict[str, Path]:
    """Write report.json, junit.xml, report.md and report.html into `out_dir` (created) and
    the step summary. `sections` are the report.md sections phases bring (`render_markdown`).
    `summary` is the run's part of the step summary (default: after what `$GITHUB_STEP_SUMMARY`
    holds now); `final=False` for the partial reports of a run under way.

    Returns report key → path of what was written (`step_summary` only when
    `$GITHUB_STEP_SUMMARY` is set). Raises `ReportWriteError` naming every report that failed,
    after writing all the others.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written: dict[str, Path] = {}
    problems: list[str] = []
    for key, (name, render) in FILES.items():
        path = out / name
        try:
            text = render_markdown(run, sections) if render is render_markdown else render(run)
            atomic_write(path, text)
        except (OSError, ValueError, TypeError, AttributeError, KeyError) as exc:
            problems.append(f"{name}: {type(exc).__name__}: {exc}")
            continue
        written[key] = path
    try:
        where = write_step_summary(
            run, os.environ if env is None else env, summary=summary, final=final
        )
    except OSError as exc:
        problems.append(f"step summary: {exc}")
    else:
        if where is not None:
            written["step_summary"] = where
    if problems:
        raise ReportWriteError("could not write " + "; ".join(problems), written)
    return written
