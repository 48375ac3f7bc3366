"""The machine-readable report: `RunReport` as JSON, versioned, and readable back.

Values stay in base units (seconds, ratios, bytes) so tools compute with them; statuses are
their string values; non-finite floats become null (JSON has no NaN). Key order is stable: the
dataclass field order, with free-form maps (outcomes, distributions, params) sorted.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from enum import Enum
from typing import Any

from soak.baseline import Comparison
from soak.phases import details_type
from soak.summary import (
    SHARED_DETAILS,
    Check,
    GeneratorHealth,
    LatencySummary,
    NegativeOverhead,
    PhaseReport,
    PlainDetails,
    ProcessSummary,
    RunReport,
    Status,
)

SCHEMA = "llm-soak/run/v2"
"""v2 added per-phase `histograms` (per-request overhead bucket counts) and the run's
`comparison` with a baseline; v1 reports still read (without them)."""
READABLE = ("llm-soak/run/v1", SCHEMA)
_FREE_FORM = frozenset({"outcomes", "distributions", "params", "histograms"})


class ReportFormatError(ValueError):
    """A JSON document that is not an llm-soak run report of a known schema."""


def _plain(value: Any, sort: bool = False) -> Any:
    """JSON-safe copy: enums to strings, tuples to lists, NaN/inf to None."""
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, bool) or value is None or isinstance(value, int | str):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        items = sorted(value.items(), key=lambda kv: str(kv[0])) if sort else value.items()
        return {str(k): _plain(v, sort=k in _FREE_FORM) for k, v in items}
    if isinstance(value, list | tuple | set | frozenset):
        return [_plain(v) for v in value]
    return str(value)


def run_to_json_dict(run: RunReport) -> dict[str, Any]:
    """The report as plain JSON data, `schema` first."""
    data = {"schema": SCHEMA, **_plain(run.to_dict())}
    if run.comparison is not None:
        data["comparison"] = _plain(run.comparison.to_dict())
    return data


def render_json(run: RunReport) -> str:
    """Pretty, stable JSON text of a run, ending in a newline."""
    return json.dumps(run_to_json_dict(run), indent=2, ensure_ascii=False, allow_nan=False) + "\n"


def _summary(data: dict[str, Any] | None) -> LatencySummary | None:
    return None if data is None else LatencySummary(**data)


def _phase(data: dict[str, Any]) -> PhaseReport:
    data = dict(data)
    data["status"] = Status(data["status"])
    data["latency"] = _summary(data.get("latency"))
    data["distributions"] = {k: _summary(v) for k, v in data.get("distributions", {}).items()}
    data["checks"] = [Check(**c) for c in data.get("checks", [])]
    if data.get("process") is not None:
        data["process"] = ProcessSummary(**data["process"])
    if data.get("generator") is not None:
        gen = dict(data["generator"])
        gen["reasons"] = tuple(gen.get("reasons", ()))
        data["generator"] = GeneratorHealth(**gen)
    details = data.pop("details", None) or {}
    return PhaseReport(**data, **details_fields(data["kind"], details))


def details_fields(kind: str, details: Mapping[str, Any]) -> dict[str, Any]:
    """report.json's flat `details` of a phase of `kind` as `PhaseReport` fields: the shared
    ones by name, the rest as that phase's typed record (kept plain when it declares none)."""
    rest = dict(details)
    shared = {name: rest.pop(name) for name in SHARED_DETAILS if name in rest}
    if shared.get("negative_overhead") is not None:
        shared["negative_overhead"] = NegativeOverhead(**shared["negative_overhead"])
    record = details_type(kind) or PlainDetails
    return {**shared, "details": record.from_dict(rest) if rest else None}


def parse_json(text: str) -> RunReport:
    """Read a report written by `render_json` back into a `RunReport`."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ReportFormatError(f"report is not JSON: {exc}") from None
    if not isinstance(data, dict) or data.get("schema") not in READABLE:
        found = data.get("schema") if isinstance(data, dict) else type(data).__name__
        raise ReportFormatError(f"schema: expected {SCHEMA!r}, got {found!r}")
    schema = data["schema"]
    data = {k: v for k, v in data.items() if k not in ("schema", "passed")}
    try:
        data["phases"] = [_phase(p) for p in data.get("phases", [])]
        if data.get("comparison") is not None:
            data["comparison"] = Comparison.from_dict(data["comparison"])
        return RunReport(**data)
    except (TypeError, ValueError, KeyError, AttributeError) as exc:
        raise ReportFormatError(f"report does not match {schema}: {exc}") from None
