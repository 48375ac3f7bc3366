"""A reload can neither wedge the daemon nor hold its SIGTERM (issue 17, item 3).

A real `soak run` process is given, through `POST /-/reload`, a plan the scheduler cannot hold
(it used to swap the config first: the old plan gone, nothing scheduled, every later reload 500,
`/-/ready` still 200) and a config file that never finishes reading (a FIFO: SIGTERM then waited
for the reading thread for ever). `soak check` refuses the same plan with one line, and the
scheduler itself builds every job before it changes anything."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from soak.config.daemon import PlanConfig
from soak.daemon import ConfigSource, Daemon
from soak.metrics import SoakMetrics
from soak.scheduler import PlanScheduler, ScheduleError

SOAK = [str(Path(sys.executable).with_name("soak"))]
HEAD = "version: 1\ngateway: {url: 'http://127.0.0.1:9'}\nserver: {grace: 2s}\n"
YEARLY = "schedule: [{name: yearly, cron: '0 0 1 1 *', phases: [overhead]}]\n"
HUGE = "schedule: [{name: hourly, interval: 99999999h, phases: [overhead]}]\n"
DAILY = "schedule: [{name: daily, cron: '0 3 * * *', phases: [overhead]}]\n"


def http(url: str, method: str = "GET", timeout: float = 10.0) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(
            urllib.request.Request(url, method=method), timeout=timeout
        ) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode()


def samples(url: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    _, text = http(f"{url}/metrics")
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


@pytest.fixture
def daemon(tmp_path: Path) -> Iterator[tuple[str, subprocess.Popen[str], Path]]:
    """A `soak run` process on a yearly plan: (its URL, the process, its config file)."""
    path = tmp_path / "soak.yaml"
    path.write_text(HEAD + YEARLY)
    proc = subprocess.Popen(
        [*SOAK, "run", "--config", path.name, "--listen", "127.0.0.1:0", "--data-dir", "data",
         "--log-level", "error"],
        cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        url = proc.stdout.readline().split()[-1]
        assert url.startswith("http://127.0.0.1:"), url
        yield url, proc, path
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate()


def test_a_plan_the_scheduler_cannot_hold_keeps_the_old_plan(
    daemon: tuple[str, subprocess.Popen[str], Path],
) -> None:
    url, _proc, path = daemon
    before = samples(url)
    yearly = ("soak_plan_next_run_timestamp_seconds", (("plan", "yearly"),))
    assert before[yearly] > time.time()
    path.write_text(HEAD + HUGE)
    for _ in range(2):  # the second used to answer 500 "internal error" too, or swap nothing
        status, body = http(f"{url}/-/reload", "POST")
        assert status == 500 and body.count("\n") == 1, body
        assert "schedule[0].interval: must be at most 8784h (366 days)" in body, body
        after = samples(url)
        assert after[("soak_config_last_reload_successful", ())] == 0
        assert after[yearly] == before[yearly]  # the old plan is still scheduled, unchanged
        assert not any(labels == (("plan", "hourly"),) for _, labels in after)
        assert http(f"{url}/-/ready") == (200, "Ready.\n")
    path.write_text(HEAD + DAILY)  # and the daemon still takes a good config
    assert http(f"{url}/-/reload", "POST") == (200, "Config reloaded.\n")
    after = samples(url)
    assert after[("soak_config_last_reload_successful", ())] == 1
    assert ("soak_plan_next_run_timestamp_seconds", (("plan", "daily"),)) in after
    assert yearly not in after


def test_sigterm_during_a_reload_that_never_ends_exits_within_grace(
    daemon: tuple[str, subprocess.Popen[str], Path],
) -> None:
    url, proc, path = daemon
    path.unlink()
    os.mkfifo(path)  # opening it for reading blocks until a writer comes: none will
    answer: list[tuple[int, str]] = []
    poster = threading.Thread(target=lambda: answer.append(http(f"{url}/-/reload", "POST", 20)))
    poster.start()
    time.sleep(1.0)  # the reload is reading now
    assert not answer
    t0 = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    code = proc.wait(timeout=15)  # unfixed: never (the reading thread was joined at exit)
    took = time.monotonic() - t0
    poster.join(timeout=5)
    assert code == 0 and took < 2.0, (code, took)  # server.grace 2 s: 0.3 s here vs never
    assert answer == [(500, "failed to reload config: reload abandoned: the daemon is stopping\n")]


def test_soak_check_refuses_what_the_daemon_would(tmp_path: Path) -> None:
    for body, key in [
        (HUGE, "schedule[0].interval: must be at most 8784h (366 days), got '99999999h'"),
        ("schedule: [{name: a, interval: 1h, jitter: 1.0e+15, phases: [overhead]}]\n",
         "schedule[0].jitter: must be at most 24h (1 day), got 1e+15s"),
        ("schedule: [{name: a, interval: 1h, misfire_grace_time: 9000h, phases: [overhead]}]\n",
         "schedule[0].misfire_grace_time: must be at most 8784h (366 days), got '9000h'"),
        ("server: {grace: 2h}\n", "server.grace: must be at most 1h, got '2h'"),
        ("server: {keep_runs: 99999999999}\n",
         "server.keep_runs: must be at most 1,000,000, got 99,999,999,999"),
    ]:  # fmt: skip
        (tmp_path / "soak.yaml").write_text(HEAD.replace("server: {grace: 2s}\n", "") + body)
        done = subprocess.run([*SOAK, "check", "soak.yaml"], cwd=tmp_path, capture_output=True,
                              text=True, timeout=30)  # fmt: skip
        assert done.returncode == 2, (body, done.stdout, done.stderr)
        assert done.stderr == f"soak: soak.yaml: {key}\n", done.stderr


class _Runs:
    async def __call__(self, plan: PlanConfig) -> str:
        return "passed"


async def test_the_scheduler_builds_every_job_before_it_changes_anything() -> None:
    """Past the config's bounds (a PlanConfig built in code): the old plans stay scheduled."""
    registry = CollectorRegistry()
    sched = PlanScheduler(_Runs(), SoakMetrics(registry), clock=lambda: 1.8e9)
    keep = PlanConfig(name="keep", phases=("overhead",), interval=3600)
    sched.start([keep], paused=True)
    try:
        before = sched.next_run_times()
        huge = PlanConfig(name="huge", phases=("overhead",), interval=99999999 * 3600.0)
        late = PlanConfig(name="late", phases=("overhead",), cron="0 * * * *", jitter=1e15)
        for bad, key in [(huge, "schedule[0].interval"), (late, "schedule[0].jitter")]:
            for call in (sched.check, sched.set_plans):
                with pytest.raises(ScheduleError, match="^" + re.escape(f"{key}: plan ")):
                    call([bad])
            assert sched.next_run_times() == before and sched.scheduled() == 1
        sched.set_plans([])
        assert sched.scheduled() == 0
    finally:
        sched.shutdown()
        await asyncio.sleep(0)


async def test_ready_says_why_a_daemon_without_a_plan_is_not_ready(tmp_path: Path) -> None:
    path = tmp_path / "soak.yaml"
    path.write_text(HEAD + YEARLY)
    source = ConfigSource(path)
    daemon = Daemon(source, source.load(), listen="127.0.0.1:0", data_dir=tmp_path / "d")
    ports: list[int] = []
    task = asyncio.create_task(daemon.run(on_listening=lambda _h, port: ports.append(port)))
    try:
        while not ports:
            await asyncio.sleep(0.01)
        url = f"http://127.0.0.1:{ports[0]}"
        assert await asyncio.to_thread(http, f"{url}/-/ready") == (200, "Ready.\n")
        daemon.scheduler.set_plans([])  # what a half-applied reload used to leave
        assert await asyncio.to_thread(http, f"{url}/-/ready") == (
            503, "Not ready: no plan is scheduled (see the last config reload)\n"
        )  # fmt: skip
    finally:
        daemon.request_stop()
        assert await task == 0
