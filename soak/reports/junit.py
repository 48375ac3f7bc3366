"""JUnit XML of a run, so CI (Jenkins, GitLab, GitHub test reporters) shows one test per phase.

Shape: `<testsuites>` holding one `<testsuite name="llm-soak">` with run properties and one
`<testcase classname="soak.<kind>" name="<phase>">` per phase. A failed phase carries
`<failure message="which checks failed">` with the details; an error phase `<error>`; a skipped
phase `<skipped/>`; a baseline phase passes with its figures in `<system-out>`. An aborted run or
a run-level error adds a `run` test case with an `<error>`, so CI never reports it green; a
comparison with a baseline run (`--baseline`) adds a `regression vs baseline <id>` test case,
failed when a gated statistic regressed beyond its tolerance.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from datetime import UTC, datetime

from soak.reports.comparison_md import change_text, headline
from soak.reports.formatting import (
    check_line,
    failed_checks,
    is_number,
    key_figures,
    one_line,
    overall_word,
    reasons_text,
    status_word,
)
from soak.summary import PhaseReport, RunReport, Status

SUITE = "llm-soak"
_ILLEGAL_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")


def _clean(text: object) -> str:
    """Strip characters XML 1.0 cannot carry (ElementTree would write them, readers reject them)."""
    return _ILLEGAL_XML.sub("", str(text))


def _secs(value: float) -> str:
    return f"{value:.3f}" if is_number(value) and value >= 0 else "0.000"


def _details(phase: PhaseReport) -> str:
    """Multi-line text: every check, then error and notes, for the body of a result element."""
    lines = [f"{phase.name} ({phase.kind}): {status_word(phase.status)}"]
    lines.append(key_figures(phase))
    lines += [f"{'PASS' if c.passed else 'FAIL'} {check_line(c)}" for c in phase.checks]
    if phase.error:
        lines.append(f"error: {phase.error}")
    lines += [f"note: {n}" for n in phase.notes]
    if phase.generator is not None and not phase.generator.trusted:
        reasons = reasons_text(phase.generator)
        lines.append(f"UNTRUSTED: generator could not keep up: {reasons}")
    return _clean("\n".join(lines))


def _failure_message(phase: PhaseReport) -> str:
    failed = failed_checks(phase)
    if failed:
        return "; ".join(check_line(c) for c in failed)
    return phase.error or "phase failed"


def _testcase(suite: ET.Element, run: RunReport, phase: PhaseReport) -> str:
    """Append one test case; returns its JUnit result (passed/failure/error/skipped)."""
    case = ET.SubElement(
        suite,
        "testcase",
        classname=_clean(f"soak.{run.kind}"),
        name=_clean(phase.name),
        time=_secs(phase.duration_s),
    )
    details = _details(phase)
    status = Status(phase.status)
    if status is Status.FAILED:
        result = "failure"
        elem = ET.SubElement(case, "failure", message=_clean(one_line(_failure_message(phase))))
        elem.set("type", "SLOBreach")
        elem.text = details
    elif status is Status.ERROR:
        result = "error"
        elem = ET.SubElement(
            case, "error", message=_clean(one_line(phase.error or "phase error")), type="PhaseError"
        )
        elem.text = details
    elif status is Status.SKIPPED:
        result = "skipped"
        ET.SubElement(case, "skipped", message=_clean(one_line(phase.error or "skipped")))
    else:
        result = "passed"
    if result in ("passed", "skipped"):  # failure/error bodies already carry the details
        ET.SubElement(case, "system-out").text = details
    return result


def _run_case(suite: ET.Element, run: RunReport) -> None:
    what = "run aborted" if run.aborted else "run error"
    case = ET.SubElement(suite, "testcase", classname=_clean(f"soak.{run.kind}"), name="run")
    case.set("time", _secs(run.finished_at - run.started_at))
    message = f"{what}: {run.error}" if run.error else what
    elem = ET.SubElement(case, "error", message=_clean(one_line(message)), type="RunAborted")
    elem.text = _clean(message)


def _comparison_case(suite: ET.Element, run: RunReport) -> str:
    """The comparison with a baseline run as one test case: a failure when the gate failed."""
    c = run.comparison
    case = ET.SubElement(suite, "testcase", classname=_clean(f"soak.{run.kind}"),
                         name=_clean(f"regression vs baseline {c.baseline_run_id}"), time="0.000")
    lines = [headline(c)]
    lines += [f"{p.phase} {s.stat}{' (gate)' if s.gated else ''}: {change_text(s)}"
              f" (tolerance {s.tolerance * 1e3:g} ms): {s.verdict}"
              for p in c.phases for s in p.stats]  # fmt: skip
    lines += [f"note: {n}" for n in c.notes]
    body = _clean("\n".join(lines))
    if c.failed:
        elem = ET.SubElement(case, "failure", message=_clean(one_line(headline(c))))
        elem.set("type", "Regression")
        elem.text = body
        return "failure"
    ET.SubElement(case, "system-out").text = body
    return "passed"


def render_junit(run: RunReport) -> str:
    """The JUnit XML document (UTF-8 declaration included) for a run."""
    root = ET.Element("testsuites", name=SUITE)
    suite = ET.SubElement(root, "testsuite", name=SUITE)
    props = ET.SubElement(suite, "properties")
    for name, value in (
        ("target", run.target),
        ("kind", run.kind),
        ("profile", run.profile),
        ("run_id", run.run_id),
        ("result", overall_word(run)),
    ):
        ET.SubElement(props, "property", name=name, value=_clean(value))
    counts = {"passed": 0, "failure": 0, "error": 0, "skipped": 0}
    for phase in run.phases:
        counts[_testcase(suite, run, phase)] += 1
    if run.comparison is not None:
        counts[_comparison_case(suite, run)] += 1
    if run.aborted or run.error:
        _run_case(suite, run)
        counts["error"] += 1
    tests = sum(counts.values())
    elapsed = run.finished_at - run.started_at
    stamp = (
        datetime.fromtimestamp(run.started_at, UTC).strftime("%Y-%m-%dT%H:%M:%S")
        if is_number(run.started_at) and run.started_at > 0
        else None
    )
    for elem in (root, suite):
        elem.set("tests", str(tests))
        elem.set("failures", str(counts["failure"]))
        elem.set("errors", str(counts["error"]))
        elem.set("skipped", str(counts["skipped"]))
        elem.set("time", _secs(elapsed))
    if stamp:
        suite.set("timestamp", stamp)
    ET.indent(root)
    body = ET.tostring(root, encoding="unicode")
    return f'<?xml version="1.0" encoding="UTF-8"?>\n{body}\n'
