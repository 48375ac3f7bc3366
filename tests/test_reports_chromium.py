"""report.html in a real browser: headless Chromium lays the page out, a probe script collects
the box of every text of every plot, and no two texts of a plot overlap or leave their plot.

Chromium is the Debian package (scripts/install-system-deps.sh installs it). The report itself
carries no script: the probe is appended to a copy of the page, and `--dump-dom` prints the
boxes it measured.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from test_reports_html import MB, T0, full_run, phase

from soak.baseline import compare_runs
from soak.compare import Histogram
from soak.config.regression import DEFAULT_REGRESSION
from soak.reports import write_reports
from soak.summary import Check, LatencySummary, RunReport, Status

PROBE = """
<script>
addEventListener("load", () => {
  const plots = [];
  for (const svg of document.querySelectorAll("svg.plot")) {
    const frame = svg.getBoundingClientRect();
    const texts = [...svg.querySelectorAll("text")].filter(t => t.textContent.trim()).map(t => {
      const r = t.getBoundingClientRect();
      return {text: t.textContent, x: r.left, y: r.top, w: r.width, h: r.height};
    });
    plots.push({plot: svg.getAttribute("aria-label"), frame: {x: frame.left, y: frame.top,
                w: frame.width, h: frame.height}, texts});
  }
  const out = document.createElement("pre");
  out.id = "probe";
  out.textContent = JSON.stringify(plots);
  document.body.appendChild(out);
});
</script>
"""


def chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    assert found, "chromium is not installed: run scripts/install-system-deps.sh"
    return found


def headless(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """Chromium headless, as root in a container: no sandbox, no GPU, a profile of its own."""
    cmd = [chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
           f"--user-data-dir={tmp_path / 'profile'}", "--no-first-run",
           "--virtual-time-budget=5000", *args]  # fmt: skip
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)


def the_run() -> RunReport:
    """Every plot the page has: the full run, a failing overhead statistic, a comparison."""
    run = full_run()
    overhead = run.phases[1]
    overhead.status = Status.FAILED
    overhead.checks = [
        Check("overhead mean", 0.0009, "<", 0.005, "s", True),
        Check("overhead p50", 0.0008, "<", 0.0005, "s", False),
        Check("overhead p90", 0.0012, "<", 0.01, "s", True),
        Check("overhead p95", 0.0015, "<", 0.02, "s", True),
        Check("overhead p99", 0.0041, "<", 0.1, "s", True),
    ]
    base = [0.0008 + 0.00001 * (i % 50) for i in range(400)]
    overhead.histograms["overhead_per_request"] = Histogram.of_seconds(
        v + 0.0021 for v in base).to_json()  # fmt: skip
    baseline = RunReport("main-1", T0 - 3600, T0 - 3500, run.target, run.kind, run.profile, [
        phase("overhead", "overhead", Status.PASSED, histograms={
            "overhead_per_request": Histogram.of_seconds(base).to_json()},
              latency=LatencySummary(400, 0.02, 0.021, 0.021, 0.022, 0.023, 0.03, 0.04)),
    ])  # fmt: skip
    run.comparison = compare_runs(baseline, run, DEFAULT_REGRESSION, source="main/report.json")
    long = phase("a-phase-with-a-long-name", "sustained", Status.PASSED, started_at=T0 + 50,
                 latency=LatencySummary(400, 0.1, 0.12, 0.11, 0.13, 0.14, 0.2, 0.3),
                 process_series=[[0.0, 140 * MB, 50.0], [5.0, 141 * MB, 55.0]])
    run.phases.append(long)  # fmt: skip
    return run


def overlaps(a: dict[str, float], b: dict[str, float], slack: float = 0.5) -> bool:
    return (a["x"] + slack < b["x"] + b["w"] and b["x"] + slack < a["x"] + a["w"]
            and a["y"] + slack < b["y"] + b["h"] and b["y"] + slack < a["y"] + a["h"])  # fmt: skip


def probe(tmp_path: Path, html: str) -> list[dict[str, Any]]:
    page = tmp_path / "probe.html"
    page.write_text(html.replace("</body>", PROBE + "</body>"), encoding="utf-8")
    done = headless(tmp_path, "--dump-dom", page.as_uri())
    assert done.returncode == 0, done.stderr[-2000:]
    found = re.search(r'<pre id="probe">(.*?)</pre>', done.stdout, re.S)
    assert found, done.stdout[-2000:]
    text = found.group(1).replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")
    return json.loads(text)


def test_no_text_of_any_plot_overlaps_another_or_leaves_its_plot(tmp_path: Path) -> None:
    paths = write_reports(the_run(), tmp_path / "out", env={})
    plots = probe(tmp_path, paths["html"].read_text(encoding="utf-8"))
    names = [p["plot"] for p in plots]
    assert len(plots) == 6, names  # comparison, latency, overhead, breaker, rss, cpu
    assert any(n.startswith("Compared with baseline main-1") for n in names)
    problems = []
    for plot in plots:
        texts, frame = plot["texts"], plot["frame"]
        assert len(texts) >= 5, plot["plot"]
        for i, a in enumerate(texts):
            if a["x"] < frame["x"] - 0.5 or a["x"] + a["w"] > frame["x"] + frame["w"] + 0.5:
                problems.append((plot["plot"], "leaves the plot", a["text"]))
            for b in texts[i + 1 :]:
                if overlaps(a, b):
                    problems.append((plot["plot"], a["text"], b["text"]))
    assert problems == []


def test_a_text_that_does_overlap_is_caught(tmp_path: Path) -> None:
    """The check can fail: two labels drawn at one spot are reported."""
    svg = ('<svg class="plot" aria-label="x" width="200" height="100">'
           '<text x="10" y="50">value 1</text><text x="14" y="52">value 2</text></svg>')
    (plot,) = probe(tmp_path, f"<!DOCTYPE html><html><body>{svg}</body></html>")
    a, b = plot["texts"]
    assert overlaps(a, b)


@pytest.mark.parametrize("name", ["report"])
def test_screenshot_renders(tmp_path: Path, name: str) -> None:
    """The page renders to a PNG of the expected size (kept for a person to look at when
    SOAK_SCREENSHOT_DIR is set)."""
    import os

    paths = write_reports(the_run(), tmp_path / "out", env={})
    shot = Path(os.environ.get("SOAK_SCREENSHOT_DIR", tmp_path)) / f"{name}.png"
    done = headless(tmp_path, f"--screenshot={shot}", "--window-size=1000,4200",
                    paths["html"].as_uri())  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    head = shot.read_bytes()[:24]
    assert head[:8] == b"\x89PNG\r\n\x1a\n"
    assert int.from_bytes(head[16:20], "big") == 1000
