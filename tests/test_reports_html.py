"""report.html: written by write_reports, valid HTML, one inline SVG per plot, figures that match
the report's values, nothing fetched from the network, and partial runs still render.

Runs are built by hand so every figure in the assertions is known exactly.
"""

from __future__ import annotations

import itertools
import re
from html.parser import HTMLParser
from pathlib import Path

import pytest

from soak.phases.base import SERIES_POINTS, process_series
from soak.procwatch import Sample
from soak.reports import write_reports
from soak.reports.html import render_html
from soak.reports.jsonfile import details_fields
from soak.reports.svgplot import log_ticks, nice_ticks
from soak.summary import Check, LatencySummary, PhaseReport, ProcessSummary, RunReport, Status

T0 = 1_800_000_000.0
MB = 2**20


class Page(HTMLParser):
    """Every tag with its attributes, the svg count per figure, and the visible text."""

    def __init__(self, text: str) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str]]] = []
        self.figures: dict[str, int] = {}
        self.text: list[str] = []
        self._figure: str | None = None
        self.open: list[str] = []
        self.feed(text)
        self.close()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        self.tags.append((tag, a))
        if tag == "figure":
            self._figure = a["data-plot"]
            self.figures[self._figure] = 0
        elif tag == "svg" and self._figure is not None:
            self.figures[self._figure] += 1
        if tag not in ("meta", "br", "circle", "line", "rect", "polyline", "path"):
            self.open.append(tag)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, {k: v or "" for k, v in attrs}))

    def handle_endtag(self, tag: str) -> None:
        if tag in ("circle", "line", "rect", "polyline", "path"):
            return
        assert self.open and self.open[-1] == tag, (tag, self.open[-5:])
        self.open.pop()
        if tag == "figure":
            self._figure = None

    def handle_data(self, data: str) -> None:
        self.text.append(data)

    def attr(self, tag: str, **match: str) -> list[dict[str, str]]:
        return [
            a for t, a in self.tags if t == tag and all(a.get(k) == v for k, v in match.items())
        ]


def lat(p50: float, count: int = 400) -> LatencySummary:
    return LatencySummary(
        count, p50 * 0.9, p50 * 1.02, p50, p50 * 1.1, p50 * 1.2, p50 * 1.5, p50 * 2
    )


PER_REQUEST = LatencySummary(400, 0.0002, 0.0009, 0.0008, 0.0012, 0.0015, 0.0041, 0.009)
PCT_DIFF = LatencySummary(400, 0.0001, 0.0011, 0.0009, 0.0016, 0.0019, 0.0052, 0.012)
SERIES = [[0.0, 100 * MB, None], [1.0, 110 * MB, 35.5], [2.0, 120 * MB, 40.0]]


def phase(name: str, kind: str, status: Status, **kw: object) -> PhaseReport:
    fields: dict[str, object] = dict(
        started_at=T0 + 1, duration_s=10.0, sent=400, completed=400, success_ratio=1.0
    )
    fields.update(kw)
    fields.update(details_fields(kind, fields.pop("details", {})))  # type: ignore[arg-type]
    return PhaseReport(name=name, kind=kind, status=status, **fields)  # type: ignore[arg-type]


def full_run() -> RunReport:
    calibration = phase("calibration", "calibration", Status.BASELINE, latency=lat(0.02),
                        details={"process_series": []})  # fmt: skip
    overhead = phase(
        "overhead", "overhead", Status.PASSED, started_at=T0 + 12, latency=lat(0.021),
        distributions={"overhead_per_request": PER_REQUEST, "overhead_percentile_diff": PCT_DIFF},
        checks=[Check("overhead p99", 0.0041, "<", 0.1, "s", True)],
        process=ProcessSummary(3, 37.0, 40.0, 110 * MB, 120 * MB),
        details={"process_series": SERIES},
    )  # fmt: skip
    stress = phase("stress-1", "stress", Status.FAILED, started_at=T0 + 25, latency=lat(0.5),
                   success_ratio=0.97, details={"process_series": [[0.0, 130 * MB, 90.0]]},
                   checks=[Check("success ratio", 0.97, ">=", 1.0, "ratio", False)])  # fmt: skip
    breaker = phase("breaker", "breaker", Status.PASSED, started_at=T0 + 40, latency=lat(0.05),
                    details={
                        "fault_start": 2.0, "fault_end": 6.0,
                        "observed": {
                            "primary": {"timeline": [[0.1, "CLOSED"], [2.3, "OPEN"],
                                                     [6.4, "CLOSED"]], "final": "CLOSED"},
                            "fallback": {"timeline": [[0.1, "CLOSED"]], "final": "CLOSED"},
                        },
                        "reported": {"primary": {"timeline": [[0.5, "CLOSED"], [2.5, "OPEN"],
                                                              [7.0, "HALF_OPEN"],
                                                              [7.5, "CLOSED"]]}},
                    })  # fmt: skip
    return RunReport("r-1", T0, T0 + 60, "litellm-ci", "litellm", "quick",
                     [calibration, overhead, stress, breaker])  # fmt: skip


def test_write_reports_writes_report_html_with_one_svg_per_plot(tmp_path: Path) -> None:
    run = full_run()
    paths = write_reports(run, tmp_path, env={})
    assert paths["html"] == tmp_path / "report.html"
    page = Page(paths["html"].read_text(encoding="utf-8"))
    assert page.open == []  # every element closed in order
    assert page.figures == {
        "latency": 1,
        "overhead-overhead": 1,
        "breaker-breaker": 1,
        "rss": 1,
        "cpu": 1,
    }
    text = " ".join(page.text)
    for p in run.phases:
        assert p.name in text
    assert "llm-soak report: litellm-ci — FAIL" in text


def test_plots_carry_the_reports_values() -> None:
    page = Page(render_html(full_run()))
    bars = {(a["data-series"], a["data-group"]): a["data-label"] for a in page.attr("rect")
            if "data-series" in a}  # fmt: skip
    assert bars[("per request", "p99")] == "4.1"  # 0.0041 s in ms
    assert bars[("percentile diff", "p99")] == "5.2"
    assert bars[("per request", "p50")] == "0.8"
    assert "4.1" in page.text  # written on the bar, not only in its tooltip
    assert len(bars) == 10  # 5 statistics × 2 methods, a panel per statistic
    text = " ".join(page.text)
    assert "limit < 100 ms" in text  # the p99 panel's limit, named in its header
    assert [a["data-limit"] for a in page.attr("line") if "data-limit" in a] == ["p99"]
    assert not [a for a in page.attr("rect") if a.get("data-failed") == "true"]  # all passed
    # latency curve: one point per statistic per phase with a latency summary
    labels = [a["data-label"] for a in page.attr("circle")]
    assert "p99 30.00 ms" in labels  # calibration p99 = 0.02 × 1.5
    assert "p50 500.00 ms" in labels  # stress p50
    assert len(labels) == 4 * 6 + 2  # and the lone RSS and CPU samples of stress-1, marked
    # breaker: bands per provider and source, the fault window shaded
    states = [(a["data-t"], a["data-state"]) for a in page.attr("rect") if "data-state" in a]
    assert ("2.3", "OPEN") in states and ("7", "HALF_OPEN") in states
    assert {"primary observed", "primary reported", "fallback observed"} <= set(page.text)
    assert "fault injected 2s → 6s" in text


def test_no_external_references() -> None:
    page = Page(render_html(full_run()))
    for _, attrs in page.tags:
        for key, value in attrs.items():
            assert "http" not in value.lower(), (key, value)
            if key in ("src", "href"):
                raise AssertionError(f"external reference {key}={value}")
    assert not page.attr("script") and not page.attr("link")


def test_partial_aborted_run_still_renders(tmp_path: Path) -> None:
    broken = phase("overhead", "overhead", Status.ERROR, sent=120, completed=80,
                   success_ratio=70 / 80, error="gateway exited with code 137",
                   distributions={"overhead_per_request": LatencySummary(0, 0, 0, 0, 0, 0, 0, 0)},
                   process=ProcessSummary(0, 0, 0, 0, 0))  # fmt: skip
    skipped = PhaseReport("stress-1", "stress", Status.SKIPPED, notes=["not run: aborted"])
    details = {"observed": {}, "reported": "not reported", "fault_start": None}
    breaker = phase("breaker", "breaker", Status.ERROR, details=details)
    run = RunReport("r-2", T0, T0 + 5, "proxy", "openai", "quick", [broken, skipped, breaker],
                    aborted=True, error="SIGTERM received")  # fmt: skip
    paths = write_reports(run, tmp_path, env={})
    page = Page(paths["html"].read_text(encoding="utf-8"))
    text = " ".join(page.text)
    assert "Run aborted: SIGTERM received" in text
    assert "gateway exited with code 137" in text
    assert "overhead" in text and "stress-1" in text and "SKIP" in text
    assert page.figures == {"breaker-breaker": 1}  # nothing else was measured
    assert "reported: not reported" in page.text

    empty = RunReport("r-3", T0, 0.0, "proxy", "openai", "quick", aborted=True,
                      error="gateway not ready after 90s")  # fmt: skip
    page = Page(render_html(empty))
    assert "No phase ran." in page.text
    assert "No measurements to plot: no phase completed a load." in page.text


def test_markup_in_names_is_escaped() -> None:
    run = full_run()
    run.target = "<script>alert(1)</script>"
    run.phases[1].notes.append("a & <b>")
    html = render_html(run)
    assert "<script>" not in html and "&lt;script&gt;" in html
    assert "a &amp; &lt;b&gt;" in html


@pytest.mark.parametrize(
    ("lo", "hi", "expected"),
    [(0.0, 9.0, [0, 2, 4, 6, 8, 10]), (100.0, 118.0, [100, 105, 110, 115, 120])],
)
def test_axis_ticks_are_round(lo: float, hi: float, expected: list[float]) -> None:
    assert nice_ticks(lo, hi) == expected
    assert log_ticks(0.9, 600.0) == [1, 2, 5, 10, 20, 50, 100, 200, 500]
    assert log_ticks(18.0, 45.0) == [20, 30, 40]  # a narrow range still gets three ticks
    assert log_ticks(101.0, 108.0) == [102, 104, 106, 108]


def test_time_axes_fall_on_round_clock_times() -> None:
    from soak.reports.svgplot import clock, time_ticks

    t0 = 1_800_000_007.0  # 08:00:07 UTC
    ticks = time_ticks(t0, 0.0, 58.0)
    assert [clock(t0 + t) for t in ticks] == ["08:00:10", "08:00:20", "08:00:30", "08:00:40",
                                              "08:00:50", "08:01:00"]  # fmt: skip
    rss = render_html(full_run()).split('data-plot="rss"')[1].split("</figure>")[0]
    # RSS samples from T0 + 12 s to T0 + 25 s (T0 is 08:00:00 UTC): ticks every 5 s of the clock
    assert "time (UTC)" in rss
    assert re.findall(r">(\d\d:\d\d:\d\d)<", rss) == ["08:00:15", "08:00:20", "08:00:25"]


def test_a_failing_overhead_value_is_marked_on_its_own_scale() -> None:
    run = full_run()
    overhead = run.phases[1]
    overhead.status = Status.FAILED
    overhead.checks = [Check("overhead p50", 0.0008, "<", 0.0005, "s", False),
                       Check("overhead p99", 0.0041, "<", 0.1, "s", True)]  # fmt: skip
    page = Page(render_html(run))
    failed = [(a["data-series"], a["data-group"]) for a in page.attr("rect")
              if a.get("data-failed") == "true"]  # fmt: skip
    assert failed == [("per request", "p50")]
    assert "0.8 ✗" in page.text and "limit < 0.5 ms" in page.text


def test_process_series_is_thinned_and_relative() -> None:
    samples = [Sample(100.0 + i, None if i == 0 else 12.34, MB * (100 + i), 10, 4, 1)
               for i in range(1500)]  # fmt: skip
    rows = process_series(samples)
    assert len(rows) == 500 <= SERIES_POINTS  # every 3rd sample
    assert rows[0] == [0.0, 100 * MB, None] and rows[1] == [3.0, 103 * MB, 12.3]
    assert process_series(samples[:5]) == [[float(i), (100 + i) * MB, None if i == 0 else 12.3]
                                           for i in range(5)]  # fmt: skip


def test_ticks_stay_few_on_any_range() -> None:
    """A report edited by hand (a time of 1e308 s) must not make the page loop for ever."""
    from soak.reports.svgplot import nice_ticks, time_ticks

    assert len(time_ticks(T0, 0.0, 1e308)) <= 12
    assert len(time_ticks(T0, 0.0, 90 * 86400.0)) <= 12  # 90 days: no tick every day
    assert len(nice_ticks(-1e308, 1e308)) <= 12
    short = time_ticks(T0, 0.0, 60.0)  # a minute: still on round clock times, 10 s apart
    assert {round(b - a, 6) for a, b in itertools.pairwise(short)} == {10.0}
    assert all((T0 + t) % 10 == 0 for t in short)
