"""grafanalib's dashboard JSON as Grafana 11 writes it, in one place.

grafanalib 0.7.1 writes Grafana 5-era JSON: `schemaVersion: 12`, `maxDataPoints: 100` on every
panel and `intervalFactor: 2` on every target (together: ~50 points of ~30 min over 24 h, so a
20 s phase vanishes), row-era fields (`rows`, `span`, `height`), Graphite-era target fields and
nulls for everything unset. `current` drops them, so Grafana's step is the range over the
panel's width in pixels, and marks each target a range query in code mode (what Grafana 11's
query editor writes). Plain JSON in, plain JSON out: no grafanalib here.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

LEGACY = {
    "dashboard": ("__inputs", "gnetId", "hideControls", "rows", "sharedCrosshair", "style"),
    "panel": ("editable", "error", "height", "maxDataPoints", "minSpan", "span"),
    "target": ("intervalFactor", "metric", "query", "step", "target"),
    "variable": ("auto", "auto_count", "auto_min", "tagValuesQuery", "tags", "tagsQuery",
                 "useTags"),
}  # fmt: skip
"""Fields Grafana 11 no longer reads for these objects, or that coarsen the step."""
ROW = frozenset({"collapsed", "gridPos", "id", "panels", "repeat", "title", "type"})
"""A row's own fields: grafanalib gives rows a panel's (targets, fieldConfig, links ...)."""


def panels(items: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    """Every panel, those inside (collapsed) rows included, in layout order."""
    for panel in items:
        yield panel
        yield from panels(panel.get("panels", []))


def pruned(value: Any) -> Any:
    """`value` without null fields (a threshold step's base `value: null` stays)."""
    if isinstance(value, dict):
        return {k: pruned(v) for k, v in value.items() if v is not None or k == "value"}
    if isinstance(value, list):
        return [pruned(v) for v in value]
    return value


def current(dashboard: dict[str, Any], schema_version: int) -> dict[str, Any]:
    """`dashboard` (grafanalib's JSON) without legacy, step-coarsening or null fields, at
    `schema_version`."""
    out = pruned(dashboard)
    for key in LEGACY["dashboard"]:
        out.pop(key, None)
    out["schemaVersion"] = schema_version
    out.get("timepicker", {}).pop("time_options", None)
    for panel in panels(out["panels"]):
        for key in LEGACY["panel"] if panel.get("type") != "row" else set(panel) - ROW:
            panel.pop(key, None)
        for target in panel.get("targets", []):
            for key in LEGACY["target"]:
                target.pop(key, None)
            if not target.get("interval"):
                target.pop("interval", None)
            target.update(range=not target.get("instant", False), editorMode="code")
    for variable in out.get("templating", {}).get("list", []):
        for key in LEGACY["variable"]:
            variable.pop(key, None)
        variable.get("current", {}).pop("tags", None)
    return out
