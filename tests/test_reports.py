"""Reports of `soak once`: markdown, JSON, JUnit XML, step summary, progress, write_reports.

Runs are built by hand so every figure in the assertions is known exactly.
"""

from __future__ import annotations

import io
import json
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from soak.phases import markdown_sections
from soak.reports import parse_json, render_json, render_junit, render_markdown, write_reports
from soak.reports.formatting import NA, check_line, fmt_auto, fmt_time, pick_unit
from soak.reports.jsonfile import details_fields
from soak.reports.progress import Progress
from soak.reports.summary_md import write_step_summary
from soak.summary import (
    Check,
    GeneratorHealth,
    LatencySummary,
    PhaseReport,
    ProcessSummary,
    RunReport,
    Status,
)

T0 = 1_800_000_000.0
MB = 1024 * 1024


def lat(base: float, count: int = 500) -> LatencySummary:
    """A plausible latency distribution around `base` seconds."""
    return LatencySummary(
        count, base, base * 1.01, base * 1.008, base * 1.015, base * 1.02, base * 1.03, base * 1.1
    )


PCT_DIFF = LatencySummary(500, 0.0002, 0.0013, 0.00098, 0.0021, 0.0026, 0.0047, 0.0162)
TRUSTED = GeneratorHealth(
    send_lag_p99=0.0004, loop_lag_max=0.002, cpu_ratio=0.31, drops=0, trusted=True
)
GATEWAY = ProcessSummary(10, 42.5, 87.25, 200.5 * MB, 210.0 * MB, 190 * MB, 205 * MB, 64, 12)


def phase(name: str, kind: str, status: Status, **kw: object) -> PhaseReport:
    """A 500-request, 10 s phase at 50 rps unless `kw` says otherwise."""
    fields = dict(duration_s=10.0, target_rate=50, sent=500, completed=500, success_ratio=1.0)
    fields.update(outcomes={"ok": 500}, params={"rate": 50, "duration": 10, "latency": 0.1})
    fields.update(kw)
    fields.update(details_fields(kind, fields.pop("details", {})))  # type: ignore[arg-type]
    return PhaseReport(name=name, kind=kind, status=status, **fields)


def calibration() -> PhaseReport:
    return phase("calibration", "calibration", Status.BASELINE, throughput=49.9,
                 latency=lat(0.1), generator=TRUSTED)  # fmt: skip


def overhead(p99: float = 0.0041) -> PhaseReport:
    per_request = LatencySummary(500, 0.0003, 0.0012345, 0.0011, 0.0019, 0.0023, p99, 0.2)
    mean = per_request.mean
    checks = [
        Check("overhead_mean", mean, "<", 0.005, "s", mean < 0.005, "target"),
        Check("overhead_p99", p99, "<", 0.1, "s", p99 < 0.1, "target"),
    ]
    distributions = {"overhead_per_request": per_request, "overhead_percentile_diff": PCT_DIFF}
    status = Status.PASSED if p99 < 0.1 else Status.FAILED
    return phase("overhead", "overhead", status, throughput=49.8, latency=lat(0.102),
                 distributions=distributions, checks=checks, process=GATEWAY,
                 generator=TRUSTED)  # fmt: skip


def stress(n: int, ratio: float = 1.0) -> PhaseReport:
    ok = int(500 * ratio)
    return phase(
        f"stress-{n}", "stress", Status.PASSED if ratio == 1 else Status.FAILED,
        duration_s=12.0, throughput=41.7, success_ratio=ratio, latency=lat(2.0),
        outcomes={"ok": ok, "timeout": 500 - ok} if ok < 500 else {"ok": 500},
        checks=[Check("success_ratio", ratio, ">=", 1.0, "ratio", ratio >= 1.0)],
        params={"rate": 50, "duration": 10, "latency": 2.0},
    )  # fmt: skip


def run_of(*phases: PhaseReport, **kw: object) -> RunReport:
    fields = dict(run_id="r-20261123-1", started_at=T0, finished_at=T0 + 60,
                  target="litellm-ci", kind="litellm", profile="quick")  # fmt: skip
    fields.update(kw)
    return RunReport(phases=list(phases), **fields)


@pytest.fixture
def passing() -> RunReport:
    return run_of(calibration(), overhead(), stress(1), stress(2))


@pytest.fixture
def breach() -> RunReport:
    return run_of(calibration(), overhead(p99=0.150), stress(1), stress(2, ratio=0.98))


@pytest.fixture
def aborted() -> RunReport:
    broken = phase("overhead", "overhead", Status.ERROR, duration_s=3.5, sent=120, completed=80,
                   outcomes={"ok": 70, "connect": 10}, success_ratio=70 / 80, target_rate=0,
                   error="gateway exited with code 137\x00", params={},
                   distributions={"overhead_per_request": LatencySummary(0, 0, 0, 0, 0, 0, 0, 0)},
                   process=ProcessSummary(0, 0, 0, 0, 0))  # fmt: skip
    skipped = PhaseReport("stress-1", "stress", Status.SKIPPED, notes=["not run: aborted"])
    return run_of(calibration(), broken, skipped, aborted=True, error="SIGTERM received")


@pytest.fixture
def untrusted() -> RunReport:
    phase = overhead()
    phase.generator = GeneratorHealth(
        send_lag_p99=0.045,
        loop_lag_max=0.31,
        cpu_ratio=0.98,
        drops=17,
        trusted=False,
        reasons=("send lag p99 45 ms > 10 ms", "generator CPU 98%"),
        loop="uvloop",
    )
    return run_of(calibration(), phase)


def row(text: str, first_cell: str, section: str = "") -> str:
    """The markdown table row whose first cell is `first_cell` (after heading `section`)."""
    if section:
        text = text.split(f"\n{section}\n", 1)[1]
    rows = [ln for ln in text.splitlines() if ln.startswith(f"| {first_cell} |")]
    assert rows, f"no row {first_cell!r}"
    return rows[0]


# --- formatting ---------------------------------------------------------------------------


def test_units_are_picked_by_size_and_none_is_a_dash() -> None:
    assert pick_unit(0.0004) == "µs" and pick_unit(0.05) == "ms" and pick_unit(3.0) == "s"
    assert fmt_time(0.0012345, "µs") == "1234.5 µs"
    assert fmt_time(0.0012345, "ms") == "1.23 ms"
    assert fmt_auto(2.5) == "2.50 s"
    assert fmt_time(None, "ms") == NA and fmt_time(float("nan"), "µs") == NA
    check = Check("overhead_p99", None, "<", 0.1, "s", False)
    assert check_line(check) == "overhead_p99 = — ms (limit < 100.00 ms)"


# --- markdown -----------------------------------------------------------------------------


def test_markdown_of_passing_run_has_seed_tables_with_both_overhead_methods(passing) -> None:
    md = render_markdown(passing, markdown_sections())
    assert md.startswith("# llm-soak report: litellm-ci — PASS\n")
    assert "| litellm-ci | litellm | quick | r-20261123-1 | 2027-01-15 08:00:00 UTC |" in md
    ours = row(md, "Overhead per request (ours, gated)")
    assert "| 49.8 | 10.0s | ~5 | 100.00% | 300.0 µs | 1234.5 µs | 1100.0 µs | 1900.0 µs |" in ours
    assert ours.endswith("| 4100.0 µs | 200000.0 µs |")
    seed = row(md, "Overhead percentile diff (seed, calibration subtracted)")
    assert "| 200.0 µs | 1300.0 µs | 980.0 µs | 2100.0 µs | 2600.0 µs | 4700.0 µs |" in seed
    cal = row(md, "Calibration, direct to mock (calibration)")
    assert "| 49.9 | 10.0s | ~5 | 100.00% | 100.00 ms | 101.00 ms |" in cal
    assert "| 102.00 ms | 103.02 ms |" in row(md, "Through gateway (overhead)")
    stress2 = row(md, "stress-2", "## Stress Rounds (ms)")
    assert (
        "| PASS | 50.0 | 41.7 | 12.0s | ~100 | 100.00% | 2000.00 ms | 500 | 2000.00 ms |" in stress2
    )
    assert (
        "| overhead | 10 | 42.5% | 87.2% | 200.5 MB | 210.0 MB | 190.0 MB | 205.0 MB | 64 | 12 |"
        in md
    )
    assert "| overhead_p99 | 4.10 | < | 100.00 | ms | PASS | target |" in md
    assert "| success_ratio | 100.00 | >= | 100.00 | % | PASS | — |" in md
    assert "| calibration | 500 | 500 | 0 | 500 |" in md  # outcomes
    assert "FAIL" not in md and "UNTRUSTED" not in md
    assert "## Method" in md and "percentile diff" in md.split("## Method")[1]


def test_markdown_of_breach_shows_fail_lines(breach) -> None:
    md = render_markdown(breach)
    assert md.startswith("# llm-soak report: litellm-ci — FAIL\n")
    assert "- FAIL overhead: overhead_p99 = 150.00 ms (limit < 100.00 ms)" in md
    assert "- FAIL stress-2: success_ratio = 98.00% (limit >= 100.00%)" in md
    assert "| overhead_p99 | 150.00 | < | 100.00 | ms | FAIL | target |" in md
    assert "| overhead_mean | 1.23 | < | 5.00 | ms | PASS | target |" in md
    assert "### overhead — FAIL" in md
    assert "| stress-2 | 500 | 500 | 0 | 490 | 10 |" in md  # outcomes: ok, timeout


def test_markdown_of_aborted_partial_run_keeps_what_was_measured(aborted) -> None:
    md = render_markdown(aborted)
    assert md.startswith("# llm-soak report: litellm-ci — FAIL (aborted)\n")
    assert "> **Run aborted**: SIGTERM received" in md
    assert "| overhead | overhead | ERROR | 3.5s |" in md
    assert "error: gateway exited with code 137" in md
    ours = row(md, "Overhead per request (ours, gated)")
    assert ours.endswith("| — | — | — | — | — | — | — |")  # empty distribution: not zeros
    assert "## Gateway Process Stats" not in md  # zero samples: nothing measured
    assert "| 100.00 ms | 101.00 ms |" in row(md, "Calibration, direct to mock (calibration)")
    assert "| overhead | 120 | 80 | 0 | 70 | 10 |" in md  # ok + connect kept
    assert "- stress-1: not run: aborted" in md
    assert "| stress-1 | stress | SKIP |" in md


def test_markdown_flags_untrusted_generator_loudly(untrusted) -> None:
    md = render_markdown(untrusted)
    head = md.split("## Verdict")[0]
    assert "**⚠ UNTRUSTED RESULTS**" in head
    assert "> - **overhead**: send lag p99 45 ms > 10 ms; generator CPU 98%" in head
    assert "| overhead | **NO** | uvloop | 45.00 ms | 310.00 ms | 98.0% | 17 |" in md


# --- JSON ---------------------------------------------------------------------------------


def test_json_round_trips_with_same_values(breach) -> None:
    text = render_json(breach)
    data = json.loads(text)
    assert next(iter(data)) == "schema" and data["schema"] == "llm-soak/run/v2"
    assert data["passed"] is False
    oh = data["phases"][1]
    assert oh["status"] == "failed"
    assert oh["distributions"]["overhead_per_request"]["mean"] == 0.0012345
    assert oh["checks"][1] == {
        "name": "overhead_p99",
        "value": 0.15,
        "op": "<",
        "threshold": 0.1,
        "unit": "s",
        "passed": False,
        "tier": "target",
    }
    assert parse_json(text) == breach
    assert render_json(parse_json(text)) == text


def test_json_turns_nan_into_null_and_keeps_partial_phases(aborted) -> None:
    aborted.phases[0].throughput = float("nan")
    data = json.loads(render_json(aborted))
    assert data["phases"][0]["throughput"] is None
    assert data["aborted"] is True and data["error"] == "SIGTERM received"
    assert [p["status"] for p in data["phases"]] == ["baseline", "error", "skipped"]


# --- JUnit --------------------------------------------------------------------------------


def junit(run: RunReport) -> tuple[ET.Element, ET.Element]:
    root = ET.fromstring(render_junit(run).encode())
    suite = root.find("testsuite")
    assert suite is not None and suite.get("name") == "llm-soak"
    return root, suite


def test_junit_passing_run(passing) -> None:
    root, suite = junit(passing)
    cases = suite.findall("testcase")
    assert [c.get("name") for c in cases] == ["calibration", "overhead", "stress-1", "stress-2"]
    assert {c.get("classname") for c in cases} == {"soak.litellm"}
    assert (suite.get("tests"), suite.get("failures"), suite.get("errors")) == ("4", "0", "0")
    assert root.get("tests") == "4" and cases[1].get("time") == "10.000"
    props = {p.get("name"): p.get("value") for p in suite.iter("property")}
    assert props["target"] == "litellm-ci" and props["run_id"] == "r-20261123-1"
    assert props["profile"] == "quick"
    baseline = cases[0]
    assert baseline.find("failure") is None and baseline.find("skipped") is None
    assert "calibration (calibration): BASELINE" in baseline.findtext("system-out")


def test_junit_breach_lists_failed_checks(breach) -> None:
    _, suite = junit(breach)
    assert (suite.get("failures"), suite.get("errors")) == ("2", "0")
    failure = suite.find("testcase[@name='overhead']/failure")
    assert failure.get("message") == "overhead_p99 = 150.00 ms (limit < 100.00 ms)"
    assert "PASS overhead_mean" in failure.text and "FAIL overhead_p99" in failure.text
    assert "\n" not in failure.get("message")


def test_junit_aborted_run_has_errors_and_skips(aborted) -> None:
    _, suite = junit(aborted)
    assert suite.get("tests") == "4"
    assert (suite.get("failures"), suite.get("errors"), suite.get("skipped")) == ("0", "2", "1")
    error = suite.find("testcase[@name='overhead']/error")
    assert error.get("message") == "gateway exited with code 137"  # NUL stripped
    assert suite.find("testcase[@name='stress-1']/skipped") is not None
    run_error = suite.find("testcase[@name='run']/error")
    assert run_error.get("message") == "run aborted: SIGTERM received"


# --- step summary -------------------------------------------------------------------------


def test_step_summary_appends_only_when_env_is_set(tmp_path: Path, breach) -> None:
    target = tmp_path / "summary.md"
    target.write_text("earlier step\n", encoding="utf-8")
    assert write_step_summary(breach, env={}) is None
    assert target.read_text(encoding="utf-8") == "earlier step\n"
    assert write_step_summary(breach, env={"GITHUB_STEP_SUMMARY": str(target)}) == target
    text = target.read_text(encoding="utf-8")
    assert text.startswith("earlier step\n### ❌ llm-soak FAIL: litellm-ci")
    assert "| overhead: per request (gated) | 1234.5 µs | 1100.0 µs |" in text
    assert "- FAIL overhead: overhead_p99 = 150.00 ms (limit < 100.00 ms)" in text


# --- progress -----------------------------------------------------------------------------


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_progress_plain_lines_are_rate_limited() -> None:
    out, clock = io.StringIO(), FakeClock()
    progress = Progress(stream=out, tty=False, clock=clock, interval=5.0)
    progress.phase_started("sustained", 1000, 60)
    for t, counts in ((1, (10, 9, 0)), (6, (100, 95, 2)), (7, (110, 100, 2)), (12, (200, 190, 3))):
        clock.now = 100.0 + t
        progress.update(*counts)
    progress.phase_finished(stress(1))
    lines = out.getvalue().splitlines()
    assert lines == [
        "=== sustained: ~1000 requests over 60s, 16.7 RPS ===",
        "  Progress: 100 requests sent, 95 completed, 2 failed, 15.8 RPS",
        "  Progress: 200 requests sent, 190 completed, 3 failed, 15.8 RPS",
        "PASS stress-1: 500 sent · 100.00% ok · 41.7 rps · p99 2.06 s (12.0s)",
    ]
    assert "\r" not in out.getvalue()


def test_progress_tty_redraws_one_line(breach) -> None:
    out, clock = io.StringIO(), FakeClock()
    progress = Progress(stream=out, tty=True, clock=clock)
    progress.phase_started("overhead", 500, 10)
    clock.now += 5
    progress.update(250, 240, 1)
    clock.now += 0.05
    progress.update(255, 250, 1)  # inside the interval: no redraw
    text = out.getvalue()
    assert text.count("\r") == 1 and "Progress:" not in text
    assert "\roverhead [############------------]  50% 250 sent, 240 completed, 1 failed" in text
    progress.phase_finished(breach.phases[1])
    progress.run_finished(breach)
    tail = out.getvalue()[len(text) :]
    assert tail.startswith("\r" + " " * len(text.split("\r")[1]) + "\r")
    assert "FAIL overhead: " in tail and "failed: overhead_p99" in tail
    assert "Overall: FAIL (1 BASELINE, 2 FAIL, 1 PASS), run r-20261123-1" in tail


def test_progress_run_finished_warns_about_untrusted(untrusted) -> None:
    out = io.StringIO()
    Progress(stream=out, tty=False, clock=FakeClock()).run_finished(untrusted)
    assert "WARNING untrusted results in overhead: send lag p99 45 ms > 10 ms" in out.getvalue()


# --- write_reports ------------------------------------------------------------------------


def test_write_reports_writes_every_file_for_a_partial_run(tmp_path: Path, aborted) -> None:
    out = tmp_path / "a" / "b"
    summary = tmp_path / "step.md"
    paths = write_reports(aborted, out, env={"GITHUB_STEP_SUMMARY": str(summary)})
    assert paths == {
        "json": out / "report.json",
        "junit": out / "junit.xml",
        "markdown": out / "report.md",
        "html": out / "report.html",
        "step_summary": summary,
    }
    names = sorted(p.name for p in out.iterdir())
    assert names == ["junit.xml", "report.html", "report.json", "report.md"]
    assert parse_json(paths["json"].read_text(encoding="utf-8")) == aborted
    assert "FAIL (aborted)" in paths["markdown"].read_text(encoding="utf-8")
    ET.parse(paths["junit"])
    assert "SIGTERM received" in summary.read_text(encoding="utf-8")


def test_write_reports_without_step_summary_env(tmp_path: Path, passing) -> None:
    paths = write_reports(passing, tmp_path, env={})
    assert set(paths) == {"json", "junit", "markdown", "html"}
    paths2 = write_reports(passing, tmp_path, env={})  # overwrite in place, atomically
    assert paths2 == paths and len(list(tmp_path.iterdir())) == 4


def test_run_that_never_started_a_phase_still_fails_in_every_report(tmp_path: Path) -> None:
    run = run_of(aborted=True, error="gateway not ready after 90s")
    paths = write_reports(run, tmp_path, env={})
    assert "No phase ran." in paths["markdown"].read_text(encoding="utf-8")
    suite = ET.parse(paths["junit"]).getroot().find("testsuite")
    assert (suite.get("tests"), suite.get("errors")) == ("1", "1")
    assert parse_json(paths["json"].read_text(encoding="utf-8")) == run


def resilience_run() -> RunReport:
    """One phase of each resilience kind with known details."""
    sustained = phase("sustained", "sustained", Status.PASSED, throughput=16.38, sent=1000,
                      completed=987, success_ratio=0.987, outcomes={"ok": 987, "http_5xx": 13},
                      latency=lat(1.234), process=GATEWAY)  # fmt: skip
    breaker = phase("breaker", "breaker", Status.PASSED, params={"provider": "bedrock"},
                    details={
                        "fault_start": 3.0, "fault_end": 13.0,
                        "observed": {
                            "bedrock": {"timeline": [[1.2, "CLOSED"], [3.2, "OPEN"],
                                                     [13.3, "CLOSED"]],
                                        "transitions": 2, "time_to_open": 0.2,
                                        "time_to_recover": 0.31, "final": "CLOSED"},
                            "openai": {"timeline": [[3.0, "CLOSED"]], "transitions": 0,
                                       "time_to_open": None, "time_to_recover": None,
                                       "final": "CLOSED"},
                        },
                        "reported": "not reported",
                        "client_errors": {"before": 0, "during": 1, "after": 0},
                    })  # fmt: skip
    failover = phase("failover", "failover", Status.PASSED, details={
        "requests": 10, "failed_over": 10, "timed": 4, "direct": 6, "served_by_primary": 0,
        "client_errors": 0, "untraced": 0, "mean": 0.063, "min": 0.045, "max": 0.127,
    })  # fmt: skip
    memory = phase("memory", "memory", Status.FAILED, details={
        "samples": 21, "initial": 156.25 * MB, "peak": 205.75 * MB, "final": 201.5 * MB,
        "mean": 192.5 * MB, "growth": 0.2896, "peak_ratio": 1.3168, "slope_mb_per_min": 42.0,
    }, checks=[Check("RSS slope after warm-up", 42.0, "<", 15.0, "MB/min", False)])  # fmt: skip
    ready_checks = [
        Check("success ratio", 0.9783, ">=", 0.95, "ratio", True, "acceptable"),
        Check("throughput", 9.95, ">=", 9.0, "req/s", True, "warning"),
        Check("latency p95", 2.345, "<", 5.0, "s", True, "acceptable"),
        Check("latency p99", 3.456, "<", 10.0, "s", True, "target"),
    ]
    readiness = phase("readiness", "readiness", Status.PASSED, throughput=9.95,
                      latency=lat(1.123), checks=ready_checks,
                      details={"verdict": "READY",
                               "tiers": {"p50": {"value": 1.123, "tier": "acceptable"}}},
                      )  # fmt: skip
    return RunReport("r1", T0, T0 + 300, "litellm", "litellm", "full",
                     [sustained, breaker, failover, memory, readiness])  # fmt: skip


def test_markdown_renders_the_seeds_resilience_blocks() -> None:
    md = render_markdown(resilience_run(), markdown_sections())
    assert "## Sustained Load Results (sustained)" in md
    assert "| Requests completed | 987 |" in md and "| Requests failed | 13 |" in md
    assert "| Throughput | 16.38 requests/second |" in md
    assert "| Latency (p95) | 1258.68 ms |" in md and "| Memory (max) | 210.0 MB |" in md
    assert "## Circuit Breaker (breaker) — PASS" in md
    assert "from 3.00 s to 13.00 s" in md and "Fault on `bedrock`" in md
    assert (
        "| bedrock | observed (mock traces) | CLOSED | CLOSED @1.2s → OPEN @3.2s → "
        "CLOSED @13.3s | 2 | 0.20 s | 0.31 s |"
    ) in md
    assert "| all | reported (gateway) | not reported |" in md
    assert "before / during / after the fault: 0 / 1 / 0." in md
    assert "| Mean failover time | 63.00 ms |" in md and "| Max failover time | 127.00 ms |" in md
    assert "| Successful failovers | 10/10 |" in md
    assert "| Initial memory | 156.2 MB |" in md and "| Peak memory | 205.8 MB |" in md
    assert "| Memory increase | 45.2 MB (29.0%) |" in md
    assert "| Trend after warm-up | 42.00 MB/min |" in md
    assert "## Memory Usage Results (memory) — FAIL" in md
    assert "| ✓ | success ratio >= 95.00 | 97.83 | acceptable |" in md
    assert "| ✓ | throughput >= 9.00 req/s | 9.95 req/s | warning |" in md
    assert "- FAIL memory: RSS slope after warm-up = 42.00 MB/min (limit < 15.00 MB/min)" in md
    assert "| ✓ | latency p95 < 5.00 s | 2.35 s | acceptable |" in md
    assert "| · | latency p50 (graded, no gate) | 1123.00 ms | acceptable |" in md
    assert "**Overall: ✓ READY FOR PRODUCTION**" in md
    assert "| readiness | readiness | PASS | 10.0s | 500 sent · 100.00% ok · 9.9 rps" in md
    assert "p99 1.16 s · READY |" in md  # the verdict table and JUnit carry the verdict too


def test_markdown_not_ready_and_reported_breaker_states() -> None:
    run = resilience_run()
    ready = run.phases[-1]
    ready.status, ready.details.verdict = Status.FAILED, "NOT READY"
    ready.checks[0] = Check("success ratio", 0.9, ">=", 0.95, "ratio", False, "warning")
    run.phases[1].details.reported = {
        "bedrock": {"timeline": [[2.3, "CLOSED"], [3.3, "OPEN"], [14.6, "CLOSED"]],
                    "transitions": 2, "final": "CLOSED"},
    }  # fmt: skip
    md = render_markdown(run, markdown_sections())
    assert "**Overall: ✗ NOT READY**" in md
    assert "| ✗ | success ratio >= 95.00 | 90.00 | warning |" in md
    assert (
        "| bedrock | reported (gateway) | CLOSED | CLOSED @2.3s → OPEN @3.3s → CLOSED @14.6s" in md
    )


def test_resilience_details_round_trip_through_json_and_junit() -> None:
    run = resilience_run()
    back = parse_json(render_json(run))
    assert back.phases[1].details == run.phases[1].details
    assert back.phases[-1].details.verdict == "READY"
    sections = markdown_sections()
    assert render_markdown(back, sections) == render_markdown(run, sections)
    assert "Production Readiness Criteria" in render_markdown(back, sections)
    suite = ET.fromstring(render_junit(run)).find("testsuite")
    assert suite is not None
    cases = {c.get("name"): c for c in suite.iter("testcase")}
    assert set(cases) >= {"sustained", "breaker", "failover", "memory", "readiness"}
    failure = cases["memory"].find("failure")
    assert failure is not None and "RSS slope after warm-up" in failure.get("message", "")
