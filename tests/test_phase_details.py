"""Typed phase details: each phase's record round-trips through report.json, an older or newer
report reads without error, and every phase that writes a record declares it in its spec."""

from __future__ import annotations

import ast
import dataclasses
import json
import re
from pathlib import Path

import pytest

from soak import phases
from soak.reports import parse_json, render_json
from soak.reports.jsonfile import ReportFormatError, details_fields
from soak.summary import (
    SHARED_DETAILS,
    NegativeOverhead,
    PhaseDetails,
    PhaseReport,
    PlainDetails,
    RunReport,
    Status,
)

PHASES_DIR = Path(phases.__file__).parent
WITH_DETAILS = [s for s in phases.registry() if s.details is not None]


def test_the_phases_that_keep_results_declare_a_record() -> None:
    names = {s.name for s in WITH_DETAILS}
    assert names == {"breaker", "failover", "memory", "readiness", "capacity", "payload",
                     "streaming"}  # fmt: skip
    for spec in WITH_DETAILS:
        assert dataclasses.is_dataclass(spec.details) and issubclass(spec.details, PhaseDetails)
        shadowed = {f.name for f in dataclasses.fields(spec.details)} & set(SHARED_DETAILS)
        assert not shadowed, (spec.name, shadowed)  # one flat JSON object holds both


def test_every_record_a_phase_writes_is_the_one_its_spec_declares() -> None:
    """`report.details = X(...)` in a phase module names the class its `PhaseSpec` declares,
    so report.json reads it back as what was written."""
    seen = set()
    for spec in phases.registry():
        module = PHASES_DIR / f"{spec.run.__module__.rpartition('.')[2]}.py"
        written = set()
        for node in ast.walk(ast.parse(module.read_text())):
            if (
                isinstance(node, ast.Assign)
                and any(ast.unparse(t).endswith(".details") for t in node.targets)
                and isinstance(node.value, ast.Call)
            ):
                written.add(ast.unparse(node.value.func))
        declared = {spec.details.__name__} if spec.details is not None else set()
        assert written <= declared, (spec.name, written, declared)
        seen |= written
    assert seen == {s.details.__name__ for s in WITH_DETAILS if s.details is not None}


def _filled(kind: type[PhaseDetails]) -> PhaseDetails:
    """A record with a distinct, JSON-safe value in every field."""
    values: dict[str, object] = {}
    for n, f in enumerate(dataclasses.fields(kind)):  # type: ignore[arg-type]
        text = str(f.type)
        if text.startswith("list"):
            values[f.name] = [n, n + 0.5]
        elif text.startswith("dict"):
            values[f.name] = {"k": {"v": n}}
        elif "str" in text:
            values[f.name] = f"s{n}"
        elif "float" in text:
            values[f.name] = n + 0.25
        else:
            values[f.name] = n
    return kind(**values)


@pytest.mark.parametrize("spec", WITH_DETAILS, ids=lambda s: s.name)
def test_each_record_round_trips_through_report_json(spec: phases.PhaseSpec) -> None:
    assert spec.details is not None
    record = _filled(spec.details)
    report = PhaseReport(spec.name, spec.name, Status.PASSED, details=record, scheduled=7,
                         negative_overhead=NegativeOverhead(2, -0.001))  # fmt: skip
    run = RunReport("r", 0.0, 1.0, "gw", "openai", "quick", [report])
    text = render_json(run)
    flat = json.loads(text)["phases"][0]["details"]
    assert flat == {**record.to_dict(), "scheduled": 7,
                    "negative_overhead": {"count": 2, "worst": -0.001}}  # fmt: skip
    (back,) = parse_json(text).phases
    assert type(back.details) is spec.details and back.details == record
    assert (back.scheduled, back.negative_overhead) == (7, NegativeOverhead(2, -0.001))


@pytest.mark.parametrize("spec", WITH_DETAILS, ids=lambda s: s.name)
def test_an_older_or_newer_record_reads_with_defaults(spec: phases.PhaseSpec) -> None:
    assert spec.details is not None
    empty = spec.details.from_dict({"a_key_from_a_newer_soak": 1})
    assert empty == spec.details()  # unknown keys ignored, missing ones defaulted
    fields = details_fields(spec.name, {"breakdown": {"model": {}}})
    assert fields == {"breakdown": {"model": {}}, "details": None}


def test_a_report_of_an_unknown_phase_keeps_its_details_plain() -> None:
    data = {"widgets": 3, "verification": {"checked": 3}}
    report = PhaseReport("plugin", "plugin", Status.PASSED, **details_fields("plugin", data))
    assert report.details == PlainDetails({"widgets": 3})
    assert report.verification == {"checked": 3}
    run = RunReport("r", 0.0, 1.0, "gw", "openai", "quick", [report])
    assert json.loads(render_json(run))["phases"][0]["details"] == data
    assert parse_json(render_json(run)) == run


def test_a_report_without_a_record_reads_an_empty_one() -> None:
    breaker = next(s for s in WITH_DETAILS if s.name == "breaker").details
    assert breaker is not None
    report = PhaseReport("breaker", "breaker", Status.ERROR)
    assert report.record(breaker) == breaker()
    plain = PhaseReport("breaker", "breaker", Status.PASSED,
                        details=PlainDetails({"fault_start": 1.5}))  # fmt: skip
    assert report.record(breaker).fault_start is None  # type: ignore[attr-defined]
    assert plain.record(breaker).fault_start == 1.5  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("kind", "data", "message"),
    [
        ("breaker", {"observed": 1}, "details.observed: int is not dict[str, dict[str, Any]]"),
        ("breaker", {"fault_start": "3s"}, "details.fault_start: str is not float | None"),
        ("failover", {"requests": True}, "details.requests: bool is not int | None"),
        ("capacity", {"steps": {"rate": 1}}, "details.steps: dict is not list[dict[str, Any]]"),
        ("readiness", {"verdict": ["READY"]}, "details.verdict: list is not str | None"),
    ],
)
def test_a_record_of_the_wrong_type_is_a_one_line_format_error(
    kind: str, data: dict[str, object], message: str
) -> None:
    report = PhaseReport(kind, kind, Status.PASSED)
    run = RunReport("r", 0.0, 1.0, "gw", "openai", "quick", [report])
    doc = json.loads(render_json(run))
    doc["phases"][0]["details"] = data
    expected = re.escape(f"report does not match llm-soak/run/v2: {message}")
    with pytest.raises(ReportFormatError, match=f"^{expected}$"):
        parse_json(json.dumps(doc))
    fine = {"breaker": {"reported": "not reported", "fault_start": 3}}.get(kind)
    if fine is not None:  # a union takes any of its types; an int is a float
        doc["phases"][0]["details"] = fine
        assert parse_json(json.dumps(doc)).phases[0].details.fault_start == 3  # type: ignore[union-attr]
