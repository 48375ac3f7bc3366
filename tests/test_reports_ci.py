"""Reports as a CI job reads them: one step summary with the final verdict (rewritten in place
while the run goes on, what the file held before kept), report files readable by other users
(0666 less the umask), the comparison with a baseline in report.md, JUnit, the step summary
and report.json, and report.json of schema v1 still read."""

from __future__ import annotations

import json
import os
import stat
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from soak.baseline import compare_runs
from soak.compare import Histogram
from soak.config.regression import DEFAULT_REGRESSION
from soak.reports import StepSummary, parse_json, render_json, write_reports
from soak.summary import PhaseReport, RunReport, Status, repeat_name

T0 = 1_800_000_000.0


def overhead(shift: float = 0.0, status: Status = Status.PASSED) -> PhaseReport:
    values = [0.0008 + 0.00002 * (i % 40) + shift for i in range(400)]
    report = PhaseReport("overhead", "overhead", status, target_rate=20.0, sent=400,
                         completed=400, success_ratio=1.0)  # fmt: skip
    report.histograms["overhead_per_request"] = Histogram.of_seconds(values).to_json()
    return report


def run_of(*phases: PhaseReport, run_id: str = "run-1") -> RunReport:
    return RunReport(run_id, T0, T0 + 30, "proxy", "openai", "quick", list(phases))


def compared(shift: float) -> RunReport:
    base = run_of(overhead(), run_id="main-7")
    run = run_of(overhead(shift))
    run.comparison = compare_runs(base, run, DEFAULT_REGRESSION, source="main/report.json")
    return run


def test_the_step_summary_is_written_once_and_rewritten_in_place(tmp_path: Path) -> None:
    target = tmp_path / "step.md"
    target.write_text("## earlier command of this step\n", encoding="utf-8")
    summary = StepSummary(target)
    run = run_of(overhead(status=Status.PASSED))
    env = {"GITHUB_STEP_SUMMARY": str(target)}
    for _ in range(4):  # four phases reported, partial reports after each
        write_reports(run, tmp_path / "out", env=env, summary=summary, final=False)
    text = target.read_text(encoding="utf-8")
    assert text.startswith("## earlier command of this step\n### ⏳ llm-soak INCOMPLETE: proxy")
    assert text.count("llm-soak") == 1 and "✅" not in text
    run.phases.append(PhaseReport("stress", "stress", Status.FAILED))
    write_reports(run, tmp_path / "out", env=env, summary=summary)
    text = target.read_text(encoding="utf-8")
    assert text.startswith("## earlier command of this step\n### ❌ llm-soak FAIL: proxy")
    assert text.count("### ") == 1 and "INCOMPLETE" not in text and "llm-soak PASS" not in text


def test_without_a_run_the_step_summary_is_appended_once(tmp_path: Path) -> None:
    target = tmp_path / "step.md"
    target.write_text("before\n", encoding="utf-8")
    write_reports(run_of(overhead()), tmp_path / "out", env={"GITHUB_STEP_SUMMARY": str(target)})
    assert target.read_text(encoding="utf-8").startswith("before\n### ✅ llm-soak PASS: proxy")


@pytest.mark.parametrize(("mask", "mode"), [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_report_files_get_0666_less_the_umask(tmp_path: Path, mask: int, mode: int) -> None:
    old = os.umask(mask)
    try:
        step = tmp_path / f"step-{mask:o}.md"
        paths = write_reports(run_of(overhead()), tmp_path / f"out-{mask:o}",
                              env={"GITHUB_STEP_SUMMARY": str(step)})  # fmt: skip
    finally:
        os.umask(old)
    assert {k: stat.S_IMODE(p.stat().st_mode) for k, p in paths.items()} == {
        k: mode for k in ("json", "junit", "markdown", "html", "step_summary")}


def test_a_regression_shows_in_every_report(tmp_path: Path) -> None:
    run = compared(0.002)
    assert not run.passed and run.comparison.failed
    target = tmp_path / "step.md"
    paths = write_reports(run, tmp_path / "out", env={"GITHUB_STEP_SUMMARY": str(target)})
    md = paths["markdown"].read_text(encoding="utf-8")
    assert "## Compared with baseline run `main-7`" in md
    assert "**Verdict: regressed beyond tolerance: overhead p50 +2.00 ms [" in md
    assert "|  | p50 (gate) | 1.18 | 3.18 | +2.00 ms [+1.94, +2.06] | +169% | ±1.00 |" in md
    assert "▲ REGRESSED" in md
    suite = ET.parse(paths["junit"]).getroot().find("testsuite")
    case = suite.find("testcase[@name='regression vs baseline main-7']")
    assert case is not None and case.find("failure").get("type") == "Regression"
    assert suite.get("failures") == "1"
    step = target.read_text(encoding="utf-8")
    assert step.startswith("### ❌ llm-soak FAIL: proxy")
    assert "**vs baseline `main-7`: regressed beyond tolerance: overhead p50" in step
    data = json.loads(paths["json"].read_text(encoding="utf-8"))
    assert data["comparison"]["failed"] is True and data["comparison"]["verdict"] == "regressed"
    assert data["passed"] is False
    back = parse_json(paths["json"].read_text(encoding="utf-8"))
    assert back.comparison == run.comparison and not back.passed
    html = paths["html"].read_text(encoding="utf-8")
    assert 'data-plot="comparison"' in html and "regressed beyond tolerance" in html


def test_no_change_passes_and_says_so(tmp_path: Path) -> None:
    run = compared(0.0)
    assert run.passed
    paths = write_reports(run, tmp_path, env={})
    md = paths["markdown"].read_text()
    assert "**Verdict: no significant change (gated: p50 +0.00 ms [" in md
    case = ET.parse(paths["junit"]).getroot().find(
        "testsuite/testcase[@name='regression vs baseline main-7']")  # fmt: skip
    assert case.find("failure") is None and "no significant change" in case.find("system-out").text


def test_a_v1_report_still_reads(tmp_path: Path) -> None:
    data = json.loads(render_json(run_of(overhead())))
    data["schema"] = "llm-soak/run/v1"
    for p in data["phases"]:
        del p["histograms"]
    del data["comparison"]
    old = parse_json(json.dumps(data))
    assert old.phases[0].histograms == {} and old.comparison is None
    result = compare_runs(old, run_of(overhead()), DEFAULT_REGRESSION)
    assert not result.failed
    assert result.phases[0].notes == [
        "not compared: no per-request overhead histogram in the baseline run"]
    with pytest.raises(ValueError, match="schema: expected 'llm-soak/run/v2', got 'llm-soak/x'"):
        parse_json(json.dumps({**data, "schema": "llm-soak/x"}))


def test_a_repeated_phase_names_the_runs_judged_in_every_report(tmp_path: Path) -> None:
    """Three runs a side (`--repeat 3`), the current side's second one slowed by a burst: every
    report says which run each value comes from, and the burst decides nothing."""
    base = run_of(overhead(), overhead(0.0001), overhead(0.0002), run_id="main-7")
    run = run_of(overhead(0.0003), overhead(0.003), overhead(0.0001))
    for side in (base, run):
        for number, phase in enumerate(side.phases, 1):
            phase.name = repeat_name("overhead", number)
    run.comparison = compare_runs(base, run, DEFAULT_REGRESSION, source="main/report.json")
    assert run.passed and run.comparison.verdict == "no significant change"
    paths = write_reports(run, tmp_path / "out", env={})
    md = paths["markdown"].read_text(encoding="utf-8")
    assert "|  | p50 (gate) | 1.18 (run 1) | 1.28 (run 3) | +0.10 ms [" in md
    assert "Samples: overhead: 1200 vs 1200 requests in 3 vs 3 runs." in md
    html = paths["html"].read_text(encoding="utf-8")
    assert "1.18 (run 1 of 3)" in html and "1.28 (run 3 of 3)" in html
    names = [c.get("name") for c in ET.parse(paths["junit"]).getroot().iter("testcase")]
    assert names[:3] == ["overhead", "overhead#2", "overhead#3"]
    back = parse_json(paths["json"].read_text(encoding="utf-8"))
    assert back.comparison == run.comparison
    assert [p.name for p in back.phases] == ["overhead", "overhead#2", "overhead#3"]
