"""The phase is the unit of extension: a phase declared in this module alone (no other file
edited) is parsed from the config, runs through `soak once` and the daemon against the real
mock, and shows in report.md, report.json, junit.xml and on the daemon's /metrics."""

from __future__ import annotations

import asyncio
import json
import socket
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import aiohttp
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families
from soak.mock.app import MockConfig, MockServer
from soak.mock.profile import parse_profile

from soak import phases
from soak.alerting import RuleWriter
from soak.config import ConfigError, describe
from soak.config.fields import Section
from soak.daemon import ConfigSource, Daemon
from soak.once import run_once
from soak.phases import PhaseContext, PhaseSpec, load_config
from soak.phases.base import fixed_rate
from soak.reports import parse_json
from soak.rules import DEFAULT_PHASE_INTERVALS, build_rules
from soak.summary import PhaseDetails, PhaseReport, Status
from soak.verdicts import at_least, settle


@dataclass(frozen=True, slots=True)
class PingPhase:
    rate: float = 20.0
    duration: float = 0.25
    latency: float = 0.005


@dataclass(frozen=True, slots=True)
class PingSlo:
    success_ratio: float = 1.0


def parse_ping(s: Section) -> PingPhase:
    s.only("rate", "duration", "latency")
    d = PingPhase()
    return PingPhase(
        rate=s.number("rate", d.rate, positive=True),
        duration=s.duration("duration", d.duration, positive=True),
        latency=s.duration("latency", d.latency),
    )


def parse_ping_slo(s: Section) -> PingSlo:
    s.only("success_ratio")
    return PingSlo(success_ratio=s.number("success_ratio", 1.0, at_most=1.0))


@dataclass(slots=True)
class PingDetails(PhaseDetails):
    answered: int | None = None
    fastest: float | None = None


async def run_ping(ctx: PhaseContext) -> PhaseReport:
    report = await fixed_rate(ctx, "ping")
    need = ctx.config.slo.ping.success_ratio
    report.checks.append(at_least("success ratio", report.success_ratio, need))
    fastest = report.latency.min if report.latency else None
    report.details = PingDetails(answered=report.completed, fastest=fastest)
    return settle(report)


def ping_section(reports: list[PhaseReport]) -> list[str]:
    lines = [f"- {r.name}: {r.record(PingDetails).answered} pings answered" for r in reports]
    return ["## Ping", "", *lines, ""]


def ping_figure(report: PhaseReport) -> tuple[str, str, str] | None:
    answered = report.record(PingDetails).answered
    svg = f'<svg xmlns="http://www.w3.org/2000/svg"><text>{answered} pings</text></svg>'
    return None if answered is None else ("ping", svg, "Pings answered.")


PING = PhaseSpec(
    name="ping",
    order=25,
    run=run_ping,
    settings=parse_ping,
    slo=parse_ping_slo,
    markdown=ping_section,
    figure=ping_figure,
    details=PingDetails,
)


@pytest.fixture
def ping() -> Iterator[PhaseSpec]:
    phases.register(PING)
    yield PING
    phases.unregister("ping")


def write_config(path: Path, mock_url: str) -> Path:
    path.write_text(yaml.safe_dump({
        "version": 1,
        "gateway": {"name": "direct", "url": mock_url,
                    "chat_path": "/p/primary/v1/chat/completions"},
        "mock": {"url": mock_url},
        "phases": {"ping": {"rate": 20, "duration": "250ms"}},
        "slo": {"ping": {"success_ratio": 0.9}},
        "schedule": [{"name": "pings", "interval": "1h", "phases": ["ping"],
                      "run_on_start": True}],
    }))  # fmt: skip
    return path


def mock_server() -> MockServer:
    profile = parse_profile({}, "providers.primary")
    return MockServer(MockConfig(providers={"primary": profile, "fallback": profile}))


def test_the_registry_finds_every_builtin_phase_in_plan_order() -> None:
    names = phases.names()
    assert names[:8] == ("calibration", "overhead", "stress", "sustained", "breaker",
                         "failover", "memory", "readiness")  # fmt: skip
    assert set(names[8:]) == {"capacity", "streaming", "payload"}
    assert phases.default_plan() == list(names[:8])
    with pytest.raises(ValueError, match="already registered"):
        phases.register(phases.get("stress"))


def test_an_unregistered_phase_is_an_unknown_config_key(tmp_path: Path) -> None:
    path = write_config(tmp_path / "soak.yaml", "http://127.0.0.1:9")
    with pytest.raises(ConfigError, match=r"phases\.ping: unknown key"):
        load_config(path, env={})


def test_a_registered_phase_owns_its_sections(tmp_path: Path, ping: PhaseSpec) -> None:
    config = load_config(write_config(tmp_path / "soak.yaml", "http://127.0.0.1:9"), env={})
    assert config.phases.ping == PingPhase(rate=20.0, duration=0.25, latency=0.005)
    assert config.slo.ping == PingSlo(success_ratio=0.9)
    assert phases.select(["ping", "calibration"]) == ["calibration", "ping"]  # plan order
    shown = describe(config)
    assert shown["phases"]["ping"] == {"rate": 20.0, "duration": 0.25, "latency": 0.005}
    assert shown["slo"]["ping"] == {"success_ratio": 0.9}
    bad = tmp_path / "bad.yaml"
    bad.write_text("version: 1\ngateway: {url: 'http://127.0.0.1:9'}\nphases: {ping: {rate: 0}}\n")
    message = r"bad\.yaml: phases\.ping\.rate: must be greater than 0, got 0$"
    with pytest.raises(ConfigError, match=message):
        load_config(bad, env={})


def ping_alerts(r: RuleWriter, slo: PingSlo, *, phase: str, window: str, tiers: object) -> None:
    r.alert("SoakPingLost", f'soak_phase_success_ratio{{phase="{phase}"}} < {slo.success_ratio}',
            "0m", "warning", "pings lost", f"over {window}")  # fmt: skip


def ping_target_alerts(r: RuleWriter, slo: PingSlo) -> None:
    r.alert("SoakPingGauge", f"soak_ping_gauge < {slo.success_ratio}", "5m", "warning",
            "ping gauge low", "held whatever the schedule runs")  # fmt: skip


def test_its_alert_hooks_are_in_the_generated_rules(tmp_path: Path) -> None:
    """A phase's own alerts exist when it is scheduled; its target alerts whatever is."""
    spec = replace(PING, alerts=ping_alerts, target_alerts=ping_target_alerts)
    phases.register(spec)
    try:
        slo = load_config(write_config(tmp_path / "soak.yaml", "http://127.0.0.1:9"), env={}).slo

        def alerts(schedule: dict[str, float]) -> dict[str, dict]:
            groups = build_rules(slo, phases=schedule)["groups"]
            return {r["alert"]: r for g in groups for r in g["rules"] if "alert" in r}

        scheduled = alerts({"ping": 3600})
        assert 'phase="ping"} < 0.9' in scheduled["SoakPingLost"]["expr"]
        assert scheduled["SoakPingGauge"]["expr"] == "soak_ping_gauge < 0.9"
        other = alerts({"overhead": 900})
        assert "SoakPingLost" not in other and "SoakPingGauge" in other
    finally:
        phases.unregister("ping")
    assert "SoakPingGauge" not in alerts({"overhead": 900})


def test_the_reference_schedule_is_what_the_phases_declare() -> None:
    declared = {s.name: s.reference_interval for s in phases.registry() if s.reference_interval}
    assert declared == DEFAULT_PHASE_INTERVALS
    assert DEFAULT_PHASE_INTERVALS["overhead"] == 900 and DEFAULT_PHASE_INTERVALS["memory"] == 3600
    assert not {"calibration", "capacity", "payload"} & set(DEFAULT_PHASE_INTERVALS)


async def test_soak_once_runs_it_into_every_report(tmp_path: Path, ping: PhaseSpec) -> None:
    async with mock_server() as mock:
        config = load_config(write_config(tmp_path / "soak.yaml", mock.url), env={})
        run, paths = await run_once(config, out_dir=tmp_path / "out", only=["ping"])
    (phase,) = run.phases
    assert (phase.name, phase.status, phase.sent) == ("ping", "passed", 5)
    markdown = paths["markdown"].read_text()
    assert "## Ping" in markdown and "- ping: 5 pings answered" in markdown
    data = json.loads(paths["json"].read_text())
    assert [(p["name"], p["status"], p["sent"]) for p in data["phases"]] == [("ping", "passed", 5)]
    (details,) = [p["details"] for p in data["phases"]]
    assert details["answered"] == 5 and 0.005 <= details["fastest"] < 1.0  # the mock's 5 ms
    assert details["scheduled"] == 5 and details["verification"]["checked"] == 5
    (back,) = parse_json(paths["json"].read_text()).phases  # read back as its own record
    assert back.details == PingDetails(answered=5, fastest=details["fastest"])
    assert back.scheduled == 5
    page = paths["html"].read_text()
    assert '<figure id="plot-ping"' in page and "<text>5 pings</text>" in page
    cases = ET.parse(paths["junit"]).getroot().iter("testcase")
    assert [c.get("name") for c in cases] == ["ping"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def test_the_daemon_runs_it_and_exports_it(tmp_path: Path, ping: PhaseSpec) -> None:
    async with mock_server() as mock:
        source = ConfigSource(write_config(tmp_path / "soak.yaml", mock.url))
        listen = f"127.0.0.1:{free_port()}"
        daemon = Daemon(source, source.load(), listen=listen, data_dir=tmp_path / "d")
        task = asyncio.create_task(daemon.run())
        done = {"plan": "pings", "status": "passed"}
        for _ in range(400):
            if daemon.registry.get_sample_value("soak_plan_runs_total", done):
                break
            await asyncio.sleep(0.025)
        async with aiohttp.ClientSession() as http, http.get(f"http://{listen}/metrics") as got:
            text = await got.text()
        daemon.request_stop()
        assert await asyncio.wait_for(task, 10) == 0
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }
    labels = (("phase", "ping"), ("target", "direct"))
    assert samples[("soak_requests_total", (("outcome", "ok"), *labels))] == 5
    last = (("phase", "ping"), ("round", ""), ("target", "direct"))  # one run: round ""
    assert samples[("soak_phase_last_verdict", last)] == 1
    assert samples[("soak_request_duration_seconds_count", labels)] == 5


def test_every_builtin_report_section_resolves() -> None:
    """The sections are imported when a report is written: a wrong name must fail here."""
    sections = phases.markdown_sections()
    assert set(sections) == {"stress", "sustained", "breaker", "failover", "memory",
                             "readiness", "capacity", "payload", "streaming"}  # fmt: skip
    assert all(render([]) == [] for render in sections.values())
    empty = {s.name: s.figure(PhaseReport(s.name, s.name, Status.ERROR))
             for s in phases.registry() if s.figure is not None}  # fmt: skip
    assert empty == {"breaker": None, "capacity": None, "payload": None}
