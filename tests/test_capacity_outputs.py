"""The capacity search's knee reaches Prometheus as its own gauge and the HTML report as a curve."""

from __future__ import annotations

from html.parser import HTMLParser

from prometheus_client import CollectorRegistry

from soak import phases
from soak.metrics import SoakMetrics
from soak.phases.capacity import CapacityDetails
from soak.reports.html import render_html
from soak.summary import PhaseReport, RunReport, Status


def _step(rate: float, p50: float, p99: float, success: float) -> dict[str, object]:
    return {"rate": rate, "achieved": rate, "throughput": rate * success, "success": success,
            "overhead_p50": p50, "overhead_p99": p99, "latency_p50": p50, "latency_p99": p99,
            "drops": 0, "trusted": True}  # fmt: skip


def _capacity(knee: float | None) -> PhaseReport:
    steps = [_step(20, 0.004, 0.02, 1.0), _step(40, 0.005, 0.03, 1.0), _step(80, 0.4, 2.5, 0.7)]
    return PhaseReport(
        name="capacity", kind="capacity", status=Status.PASSED, target_rate=knee or 0.0,
        details=CapacityDetails(knee=knee, steps=steps, stopped_by="slo"),
    )  # fmt: skip


def test_knee_is_exported_per_target(registry: CollectorRegistry) -> None:
    metrics = SoakMetrics(registry)
    phases.record(_capacity(40.0), metrics, target="gw", finished_at=1000.0)
    value = registry.get_sample_value("soak_capacity_knee_requests_per_second", {"target": "gw"})
    assert value == 40.0
    phases.record(_capacity(None), metrics, target="gw", finished_at=2000.0)
    value = registry.get_sample_value("soak_capacity_knee_requests_per_second", {"target": "gw"})
    assert value == 0.0


class _Figures(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.ids: list[str] = []
        self.titles: list[str] = []
        self._in_title = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "figure":
            self.ids.append(dict(attrs).get("id") or "")
        self._in_title = tag == "title"

    def handle_data(self, data: str) -> None:
        if self._in_title:
            self.titles.append(data)


def test_html_report_plots_the_capacity_curve() -> None:
    run = RunReport("r1", 0.0, 60.0, "gw", "openai", "quick", phases=[_capacity(40.0)])
    html = render_html(run)
    figures = _Figures()
    figures.feed(html)
    assert "capacity" in " ".join(figures.ids)
    assert "knee 40 req/s" in html
    assert "80 req/s: 2500.00 ms, 70.0% ok" in html  # the p99 point of the step that broke
