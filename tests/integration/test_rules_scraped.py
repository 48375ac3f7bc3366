"""The generated rules, unit-tested by promtool on what a real daemon exports.

A daemon runs calibration, overhead and two stress rounds against the real mock; the stress
rounds time out on purpose. Its /metrics, scraped over HTTP, become promtool's input series as
they are (label sets untouched, counters rising at one run, timestamps moved onto promtool's
clock), so a selector that does not match the daemon's labels fails here. Before one
dimension per label, stress exported `phase="stress-1"`: `SoakPhaseNeverRan{phase="stress"}`
fired for ever and `SoakStressRequestsFailed` could never fire.
"""

from __future__ import annotations

import asyncio
import shutil
import socket
import subprocess
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families
from soak.mock.app import MockConfig, MockServer
from soak.mock.profile import parse_profile

from soak.daemon import ConfigSource, Daemon
from soak.rules import AlertOptions, build_rules

pytestmark = pytest.mark.integration

RUN_AT = 100
"""Minute of promtool's clock at which the scraped run happened."""
EVAL_AT = 130
"""Minute the alerts are evaluated: past two schedule intervals of uptime (NeverRan), within
each phase's window of the run (interval + 5 min)."""
INTERVAL = 3600.0
SCRAPED = ("soak_requests_total", "soak_phase_last_run_timestamp_seconds",
           "soak_phase_last_verdict", "soak_generator_trusted", "soak_phase_running")  # fmt: skip


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def scrape_a_daemon_run(tmp_path: Path) -> str:
    """/metrics of a daemon after one scheduled run of calibration, overhead and stress."""
    profile = parse_profile({}, "providers.primary")
    async with MockServer(MockConfig(providers={"primary": profile, "fallback": profile})) as mock:
        path = tmp_path / "soak.yaml"
        path.write_text(yaml.safe_dump({
            "version": 1,
            "gateway": {"name": "direct", "url": mock.url,
                        "chat_path": "/p/primary/v1/chat/completions"},
            "mock": {"url": mock.url},
            "phases": {
                "calibration": {"rate": 20, "duration": "250ms", "latency": "5ms"},
                "overhead": {"rate": 20, "duration": "250ms", "latency": "5ms"},
                # 100 ms answers against a 40 ms client timeout: every stress request fails
                "stress": {"rate": 20, "duration": "250ms", "latency": "100ms", "rounds": 2,
                           "gap": "100ms", "timeout": "40ms"},
            },
            "schedule": [{"name": "slo", "interval": "1h", "run_on_start": True,
                          "phases": ["calibration", "overhead", "stress"]}],
        }))  # fmt: skip
        source = ConfigSource(path)
        listen = f"127.0.0.1:{free_port()}"
        daemon = Daemon(source, source.load(), listen=listen, data_dir=tmp_path / "d")
        task = asyncio.create_task(daemon.run())
        try:
            for _ in range(600):
                runs = daemon.registry.get_sample_value("soak_plan_runs_total",
                                                        {"plan": "slo", "status": "failed"})
                if runs:
                    break
                await asyncio.sleep(0.025)
            assert runs == 1, "the scheduled run did not finish (failed, as stress must)"
            async with aiohttp.ClientSession() as http, http.get(f"http://{listen}/metrics") as r:
                text = await r.text()
        finally:
            daemon.request_stop()
            assert await asyncio.wait_for(task, 15) == 0
    return text


def input_series(text: str) -> list[dict[str, str]]:
    """The scraped samples as promtool input: counters 0 until `RUN_AT`, then their value;
    gauges their value from `RUN_AT` (timestamps: `RUN_AT` on promtool's clock); the daemon
    up from minute 0 (`process_start_time_seconds` 0, `up` 1)."""
    out = [
        {"series": 'up{job="soak", instance="d"}', "values": f"1x{EVAL_AT + 10}"},
        {"series": 'process_start_time_seconds{job="soak", instance="d"}',
         "values": f"0x{EVAL_AT + 10}"},
    ]  # fmt: skip
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name not in SCRAPED:
                continue
            labels = ", ".join(f'{k}="{v}"' for k, v in sorted({**s.labels, "job": "soak"}.items()))
            value = RUN_AT * 60 if s.name.endswith("_timestamp_seconds") else s.value
            before = "0" if s.name.endswith("_total") else "_"
            values = f"{before}x{RUN_AT - 1} {value:g}x{EVAL_AT - RUN_AT + 10}"
            out.append({"series": f"{s.name}{{{labels}}}", "values": values})
    return out


def firing(alert: str, labels: dict[str, str]) -> dict[str, Any]:
    """A promql test that `alert` fires with `labels` (annotations are checked elsewhere)."""
    selector = ", ".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    return {
        "expr": f'count by (alertname) (ALERTS{{alertname="{alert}", alertstate="firing", '
        f"{selector}}})",
        "eval_time": f"{EVAL_AT}m",
        "exp_samples": [{"labels": f'{{alertname="{alert}"}}', "value": 1}],
    }


def test_rules_hold_on_the_label_sets_a_daemon_exports(tmp_path: Path) -> None:
    text = asyncio.run(scrape_a_daemon_run(tmp_path))
    assert 'phase="stress"' in text and 'phase="stress-1"' not in text
    assert 'round="1"' in text and 'round="2"' in text
    phases = {"calibration": INTERVAL, "overhead": INTERVAL, "stress": INTERVAL}
    from soak.phases import load_config

    slo = load_config(tmp_path / "soak.yaml", env={}).slo
    rules = build_rules(slo, phases=phases, options=AlertOptions(min_requests=1))
    (tmp_path / "rules.yml").write_text(yaml.safe_dump(rules))
    # (not SoakGeneratorUntrusted: whether the generator kept up depends on the machine's load,
    # not on the labels this test is about)
    quiet = ["SoakPhaseNeverRan", "SoakPhaseNotRunning", "SoakErrorBudgetFastBurn",
             "SoakErrorBudgetSlowBurn"]  # fmt: skip
    tests = {
        "rule_files": ["rules.yml"],
        "evaluation_interval": "1m",
        "tests": [{
            "interval": "1m",
            "input_series": input_series(text),
            "alert_rule_test": [
                {"eval_time": f"{EVAL_AT}m", "alertname": name, "exp_alerts": []}
                for name in quiet
            ],
            "promql_expr_test": [
                firing("SoakStressRequestsFailed", {"target": "direct", "phase": "stress"}),
                firing("SoakPhaseFailed", {"phase": "stress", "round": "1"}),
                firing("SoakPhaseFailed", {"phase": "stress", "round": "2"}),
            ],
        }],
    }  # fmt: skip
    (tmp_path / "scraped.test.yml").write_text(yaml.safe_dump(tests, sort_keys=False))
    promtool = shutil.which("promtool") or "/usr/bin/promtool"
    done = subprocess.run([promtool, "test", "rules", "scraped.test.yml"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=120)  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
