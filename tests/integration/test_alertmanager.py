"""End to end: an SLO breach measured by `soak run` pages a person through real Prometheus and a
real Alertmanager.

The daemon measures tests/proxy_gateway.py adding 50 ms to every request (overhead p50 limit:
5 ms); Prometheus scrapes it and evaluates the rules `soak.rules.build_rules` generates from the
config's SLO (only `for:` and the request minimum shortened, through `AlertOptions`); the
Alertmanager routes with deploy/alertmanager/alertmanager.yml (receivers pointed at a local
webhook, waits shortened) and the webhook must receive SoakGatewayOverheadHigh with the labels
and annotations a person needs.

Needs the Debian packages `prometheus` and `prometheus-alertmanager`.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from alerting_stack import (
    Webhook,
    alertmanager_config,
    start_alertmanager,
    start_prometheus,
    stop_all,
)
from once_helpers import proxy_gateway
from test_daemon import SoakDaemon, daemons, get_json, wait_for

from soak.phases import load_config
from soak.rules import AlertOptions, build_rules

pytestmark = pytest.mark.integration
__all__ = ["daemons", "start_prometheus"]


@pytest.fixture
def procs() -> Iterator[list[subprocess.Popen[bytes]]]:
    """Processes this test started; terminated (by PID) at the end."""
    started: list[subprocess.Popen[bytes]] = []
    yield started
    stop_all(started)


@pytest.fixture
def webhook() -> Iterator[tuple[str, list[dict[str, Any]]]]:
    """A local Alertmanager webhook receiver: yields (URL, received notification bodies)."""
    with Webhook() as hook:
        yield hook.url, hook.received


def overhead_alerts(received: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [a for body in received for a in body["alerts"]
            if a["labels"].get("alertname") == "SoakGatewayOverheadHigh"
            and a["status"] == "firing"]  # fmt: skip


def test_overhead_breach_reaches_the_webhook_through_alertmanager(
    tmp_path: Path,
    daemons: list[SoakDaemon],
    procs: list[subprocess.Popen[bytes]],
    webhook: tuple[str, list[dict[str, Any]]],
) -> None:
    config = {
        "version": 1,
        "gateway": proxy_gateway("--mode", "delay", "--delay", "0.05"),
        "phases": {
            "calibration": {"rate": 10, "duration": "4s", "latency": "20ms"},
            "overhead": {"rate": 10, "duration": "6s", "latency": "20ms"},
        },
        # calibration first: Prometheus is scraping before the overhead counters first appear
        # (increase() cannot count what a series held at its first scrape)
        "schedule": [{"name": "slo", "interval": "1h", "phases": ["calibration", "overhead"],
                      "run_on_start": True}],
    }  # fmt: skip
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
    slo = load_config(tmp_path / "config.yaml", env={}).slo
    options = AlertOptions(for_override="1s", min_requests=5)
    rules = build_rules(slo, phases={"overhead": 3600}, options=options)
    url, received = webhook
    am = start_alertmanager(tmp_path, procs, url)
    daemon = SoakDaemon(tmp_path, config)
    daemons.append(daemon)
    prom = start_prometheus(tmp_path, procs, daemon.url.removeprefix("http://"), rules, am)

    run = daemon.finished_run(timeout=60)
    _, phase = run["report"]["phases"]
    assert phase["distributions"]["overhead_per_request"]["p50"] > 0.045  # the breach is real
    try:
        firing: list[dict[str, Any]] = wait_for(
            "SoakGatewayOverheadHigh at the webhook", lambda: overhead_alerts(received), 45, 0.5
        )
    except AssertionError as exc:  # say where it stopped: rule state at Prometheus
        states = get_json(f"{prom}/api/v1/rules?type=alert")["data"]["groups"]
        brief = [(r["name"], r["state"], r["health"], r.get("lastError"), len(r["alerts"]))
                 for g in states for r in g["rules"] if "Overhead" in r["name"]]  # fmt: skip
        raise AssertionError(f"{exc}; rules: {brief}; webhook got {received}") from None
    alert = firing[0]
    labels, notes = alert["labels"], alert["annotations"]
    assert labels["severity"] == "warning"
    assert labels["target"] == "proxy" and labels["phase"] == "overhead"
    assert labels["statistic"] in {"mean", "p50", "p90", "p95", "p99"}
    assert "on proxy (overhead)" in notes["summary"] and "above" in notes["summary"]
    assert "overhead" in notes["description"] and "{{" not in notes["description"]
    assert notes["runbook_url"].endswith("docs/alerts.md#soakgatewayoverheadhigh")
    port = prom.rpartition(":")[2]
    assert f":{port}/graph?g0.expr=" in alert["generatorURL"]  # a link back to the rule's query
    # every statistic the 50 ms proxy breaches arrives; none of another gateway or phase
    stats = {a["labels"]["statistic"] for a in overhead_alerts(received)}
    wait_for("the p50 alert", lambda: "p50" in {a["labels"]["statistic"]
                                               for a in overhead_alerts(received)}, 20)  # fmt: skip
    assert {a["labels"]["target"] for a in overhead_alerts(received)} == {"proxy"}
    assert stats <= {"mean", "p50", "p90", "p95", "p99"}
    # routed by the example config: warnings go to the ticket receiver
    assert {b["receiver"] for b in received if overhead_alerts([b])} == {"soak-ticket"}
    code, _ = daemon.stop()
    assert code == 0


def test_for_override_shortens_every_alert_and_keeps_the_rest() -> None:
    slo = load_config(None, env={}).slo
    normal = build_rules(slo, phases={"overhead": 3600})
    short = build_rules(slo, phases={"overhead": 3600}, options=AlertOptions(for_override="1s"))
    alerts = [r for g in short["groups"] for r in g["rules"] if "alert" in r]
    assert alerts and {r["for"] for r in alerts} == {"1s"}
    assert [{**r, "for": "1s"} if "alert" in r else r for g in normal["groups"]
            for r in g["rules"]] == [r for g in short["groups"] for r in g["rules"]]  # fmt: skip


def test_alertmanager_example_config_is_valid(tmp_path: Path) -> None:
    path = tmp_path / "am.yml"
    path.write_text(yaml.safe_dump(alertmanager_config("http://127.0.0.1:9/soak")))
    amtool = "/usr/bin/amtool"  # shipped with Debian's prometheus-alertmanager
    done = subprocess.run([amtool, "check-config", str(path)], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
