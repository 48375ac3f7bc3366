"""The daemon's wiring without a gateway: a scheduled run end to end against the real mock (in
process), its metrics and history; `soak run` usage errors; JSON logs without secrets."""

from __future__ import annotations

import asyncio
import json
import logging
import socket
from pathlib import Path

import pytest
import yaml
from soak.mock.app import MockConfig, MockServer
from soak.mock.profile import parse_profile

from soak.cli import main
from soak.daemon import ConfigSource, Daemon
from soak.daemon_run import PhaseMetricsFeed, run_status
from soak.logjson import JsonFormatter, TextFormatter, mask
from soak.metrics import SoakMetrics
from soak.phases.breaker import BreakerDetails
from soak.phases.failover import FailoverDetails
from soak.summary import PhaseReport, ProcessSummary, RunReport, Status


def write_config(path: Path, mock_url: str, **extra: object) -> Path:
    path.write_text(yaml.safe_dump({
        "version": 1,
        "gateway": {"name": "direct", "url": mock_url,
                    "chat_path": "/p/primary/v1/chat/completions"},
        "mock": {"url": mock_url},
        "phases": {"overhead": {"rate": 20, "duration": "250ms", "latency": "5ms"}},
        "schedule": [{"name": "tiny", "interval": "1h", "phases": ["overhead"],
                      "run_on_start": True}],
        **extra,
    }))  # fmt: skip
    return path


async def test_a_scheduled_run_lands_in_metrics_and_history(tmp_path: Path) -> None:
    profile = parse_profile({}, "providers.primary")
    providers = {"primary": profile, "fallback": profile}
    async with MockServer(MockConfig(providers=providers)) as mock:
        source = ConfigSource(write_config(tmp_path / "soak.yaml", mock.url))
        daemon = Daemon(source, source.load(), listen="127.0.0.1:0", data_dir=tmp_path / "d")
        daemon.self_watch_window = 0.05
        task = asyncio.create_task(daemon.run())
        reg = daemon.registry
        for _ in range(400):
            if reg.get_sample_value("soak_plan_runs_total", {"plan": "tiny", "status": "passed"}):
                break
            await asyncio.sleep(0.025)
        assert reg.get_sample_value("soak_generator_cpu_ratio") > 0  # the live self-watch
        (run,) = daemon.history.runs()
        full = daemon.history.get(run["id"])
        (phase,) = full["report"]["phases"]
        labels = {"target": "direct", "phase": "overhead"}
        assert run["status"] == "passed" and phase["sent"] == 5
        assert reg.get_sample_value("soak_requests_total", {**labels, "outcome": "ok"}) == 5
        assert reg.get_sample_value("soak_request_duration_seconds_count", labels) == 5
        assert reg.get_sample_value("soak_phase_running", labels) == 0
        assert reg.get_sample_value("soak_phase_last_verdict", {**labels, "round": ""}) == 1
        assert reg.get_sample_value("process_resident_memory_bytes") > 0
        daemon.request_stop()
        assert await asyncio.wait_for(task, 10) == 0


def test_run_status() -> None:
    run = RunReport(run_id="r", started_at=0, finished_at=1, target="t", kind="k", profile="q")
    assert run_status(run) == "passed"
    run.phases.append(PhaseReport(name="overhead", kind="overhead", status=Status.FAILED))
    assert run_status(run) == "failed"
    run.error = "boom"
    assert run_status(run) == "error"
    run.aborted = True
    assert run_status(run) == "aborted"


@pytest.fixture
def keep_logging():
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


def test_run_usage_errors_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], keep_logging: None
) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("version: 1\ngateway: {url: 'http://127.0.0.1:9'}\nschedule: []\n")
    assert main(["run", "--config", str(bad)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("soak: ") and "schedule: expected a non-empty list" in err
    assert err.count("\n") == 1
    good = write_config(tmp_path / "soak.yaml", "http://127.0.0.1:9")
    assert main(["run", "--config", str(good), "--listen", "nope"]) == 2
    assert "--listen: invalid listen address 'nope'" in capsys.readouterr().err


def test_run_on_a_taken_port_exits_1(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], keep_logging: None
) -> None:
    good = write_config(tmp_path / "soak.yaml", "http://127.0.0.1:9")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        code = main(["run", "--config", str(good), "--listen", f"127.0.0.1:{port}",
                     "--data-dir", str(tmp_path / "d"), "--log-level", "error"])  # fmt: skip
    assert code == 1
    err = capsys.readouterr().err
    assert f"soak: cannot listen on 127.0.0.1:{port}" in err and "Traceback" not in err


def record(msg: str, *args: object, **extra: object) -> logging.LogRecord:
    rec = logging.LogRecord("soak.daemon", logging.INFO, __file__, 1, msg, args, None)
    rec.__dict__.update(extra)
    return rec


def test_json_logs_one_object_per_line_with_context_and_no_secrets() -> None:
    line = JsonFormatter().format(
        record("run started: %s", "overhead", run_id="abc-1", plan="hourly", status=None)
    )
    data = json.loads(line)
    assert data["msg"] == "run started: overhead" and data["level"] == "info"
    assert (data["run_id"], data["plan"], data["logger"]) == ("abc-1", "hourly", "soak.daemon")
    assert "status" not in data and data["ts"].endswith("+00:00")
    leaky = record("gateway said: Authorization: Bearer abc.def sk-1234567890 http://u:pw@h/x")
    shown = JsonFormatter().format(leaky) + TextFormatter().format(leaky)
    for secret in ("abc.def", "sk-1234567890", ":pw@"):
        assert secret not in shown
    assert mask("Bearer tok") == "Bearer ***"
    assert mask("http://user:pass@host/") == "http://user:***@host/"


def test_phase_reports_feed_breaker_failover_and_gateway_metrics(registry) -> None:
    feed = PhaseMetricsFeed(SoakMetrics(registry), "gw")
    breaker = PhaseReport(name="breaker", kind="breaker", status=Status.PASSED)
    breaker.process = ProcessSummary(samples=3, cpu_avg=50.0, cpu_peak=80.0, rss_avg=2e8,
                                     rss_peak=3e8, rss_initial=1e8, rss_final=2.5e8,
                                     fds_peak=40, threads_peak=9)  # fmt: skip
    timeline = [[0.1, "CLOSED"], [3.2, "OPEN"], [8.0, "HALF_OPEN"], [9.0, "CLOSED"]]
    breaker.details = BreakerDetails(
        observed={"primary": {"timeline": timeline}, "fallback": {"timeline": [[0, "CLOSED"]]}},
        reported="not reported",
    )
    feed.phase_done(breaker)
    failover = PhaseReport(name="failover", kind="failover", status=Status.PASSED)
    failover.details = FailoverDetails(times=[0.02, 0.3, 1.5])
    feed.phase_done(failover)

    def get(name: str, **labels: str) -> float | None:
        return registry.get_sample_value(name, {"target": "gw", **labels})

    primary = {"provider": "primary", "source": "observed"}
    assert get("soak_breaker_state", **primary) == 0  # closed again at the end
    assert get("soak_breaker_transitions_total", **primary) == 3
    assert get("soak_breaker_transitions_total", provider="fallback", source="observed") == 0
    assert get("soak_breaker_state", provider="primary", source="reported") is None
    assert get("soak_gateway_resident_memory_bytes") == 2.5e8
    assert get("soak_gateway_cpu_ratio") == 0.5
    assert (get("soak_gateway_open_fds"), get("soak_gateway_threads")) == (40, 9)
    assert get("soak_failover_seconds_count", phase="failover") == 3
    assert get("soak_failover_seconds_bucket", phase="failover", le="0.25") == 1
    assert get("soak_failover_seconds_sum", phase="failover") == pytest.approx(1.82)
    assert get("soak_phase_last_verdict", phase="breaker", round="") == 1
