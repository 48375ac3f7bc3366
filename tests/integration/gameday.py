"""The game day's stage: every real component of the alerting path, in compressed time.

`GameDay` starts, on loopback and each as its own process: soak's mock (`soak mock`), the
controllable gateway (tests/game_gateway.py) in front of it, the daemon (`soak run --config`,
killable and restartable on the same port and data dir), a Prometheus scraping the daemon
and evaluating the rules `soak rules --config` generates for that config (compressed by
`AlertOptions(time_scale=...)`), the deploy example's Alertmanager (receivers pointed at a
local webhook, waits compressed) and that webhook, recording every notification; an
`AlertWatch` polls Prometheus for each alert's pending, firing and resolved times. Every
process is ended by PID when the `with` block ends. The scenarios are in gameday_scenarios.py.

Compression (`Compression`): a production schedule of 15 minutes is replayed as `interval`
seconds, so time_scale = 900 / interval divides every nominal duration of the rules (`for:`,
burn-rate windows and margins, memory and staleness windows) and of the Alertmanager routes
(group_wait, group_interval, repeat_interval); schedule intervals are the config's own.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from alerting_stack import AlertWatch, Webhook, start_alertmanager, start_prometheus, stop_all
from once_helpers import ROOT
from test_daemon import free_port, get_json, http, read_line, wait_for

from soak.phases import load_config
from soak.promql import duration
from soak.rules import SCHEDULE, AlertOptions, build_rules

SOAK = [sys.executable, "-m", "soak"]
GATEWAY = ROOT / "tests" / "game_gateway.py"
NOMINAL_INTERVAL = 900.0
"""The production schedule the game day compresses: every 15 minutes."""
TARGET = "game"


@dataclass(frozen=True, slots=True)
class Compression:
    """How production time maps onto the game day's."""

    interval: float = 30.0
    """Seconds between scheduled runs (production: `NOMINAL_INTERVAL`)."""
    min_requests: int = 20
    """`AlertOptions.min_requests`: a compressed run sends tens of requests, not hundreds."""
    scrape: float = 2.0
    """Prometheus scrape and evaluation interval (seconds). Each scrape holds the daemon's event
    loop ~6-12 ms while /metrics renders: at 1 s, two or three sends of every 200-request phase
    went out late by more than 10 ms and the generator flagged the run as untrusted."""

    @property
    def scale(self) -> float:
        return NOMINAL_INTERVAL / self.interval

    def options(self) -> AlertOptions:
        return AlertOptions(time_scale=self.scale, min_requests=self.min_requests)

    def span(self, nominal: str | float) -> float:
        """Seconds of a nominal duration in game time (at least 1 s)."""
        return max(1.0, self.options().scaled(nominal))

    def alertmanager(self) -> dict[str, Any]:
        """The example's route timings (30s, 5m; repeats 1h page, 24h ticket) compressed."""
        return {
            "group_wait": duration(self.span("30s")),
            "group_interval": duration(self.span("5m")),
            "repeat_intervals": {"soak-page": duration(self.span("1h")),
                                 "soak-ticket": duration(self.span("24h"))},
        }  # fmt: skip


@dataclass(frozen=True, slots=True)
class Load:
    """The scheduled plan's phases and their shape (seconds, requests per second)."""

    phases: tuple[str, ...] = ("calibration", "overhead", "stress")
    rate: float = 40.0
    duration: float = 5.0
    """200 requests a phase: a p99 (the SLO's, and the generator's own send-lag p99, which
    flags a run it cannot trust) is not decided by one or two requests of a compressed run."""
    latency: float = 0.02
    stress_rate: float = 50.0
    stress_duration: float = 2.0
    stress_latency: float = 0.3

    def sections(self) -> dict[str, Any]:
        shape = {"rate": self.rate, "duration": f"{self.duration:g}s",
                 "latency": f"{self.latency * 1000:g}ms"}  # fmt: skip
        out: dict[str, Any] = {"calibration": dict(shape), "overhead": dict(shape)}
        if "stress" in self.phases:
            out["stress"] = {
                "rate": self.stress_rate, "duration": f"{self.stress_duration:g}s",
                "latency": f"{self.stress_latency * 1000:g}ms", "rounds": 2, "gap": "1s",
                "timeout": "300s",  # a held request (scenario 6) ends when released, not here
            }  # fmt: skip
        return {k: v for k, v in out.items() if k in self.phases}


def game_config(
    *, mock_url: str, gateway_url: str, gateway_pid: int, comp: Compression, load: Load
) -> dict[str, Any]:
    """The daemon's config: one plan every `comp.interval` through the game gateway, whose
    process soak watches by PID (gateway RSS, continuous across runs)."""
    return {
        "version": 1,
        "gateway": {"name": TARGET, "kind": "openai", "url": gateway_url,
                    "chat_path": "/v1/chat/completions", "model": "soak-model",
                    "timeout": "10s", "process": {"pid": gateway_pid}},
        "mock": {"url": mock_url},
        "phases": load.sections(),
        "schedule": [{"name": "slo", "interval": f"{comp.interval:g}s",
                      "phases": list(load.phases), "run_on_start": True}],
        "server": {"grace": "10s"},
    }  # fmt: skip


def generated_rules(config_path: Path, options: AlertOptions) -> dict[str, Any]:
    """The rules `soak rules --config` writes for the config, compressed by `options`.

    The CLI's file is read back; its schedule constants give each phase's interval, and the
    same build with default options must reproduce it, so the compressed rules differ from
    what a user would deploy only by `options`."""
    done = subprocess.run([*SOAK, "rules", "--config", str(config_path)],
                          capture_output=True, text=True, timeout=60)  # fmt: skip
    assert done.returncode == 0, done.stderr
    cli = yaml.safe_load(done.stdout)
    constants = [r for g in cli["groups"] for r in g["rules"] if r.get("record") == SCHEDULE]
    intervals = {r["labels"]["phase"]: float(r["expr"].removeprefix("vector(").rstrip(")"))
                 for r in constants}  # fmt: skip
    slo = load_config(config_path, env={}).slo
    assert build_rules(slo, phases=intervals) == cli, "soak rules differs from build_rules"
    return build_rules(slo, phases=intervals, options=options)


RESERVED_PRIORITY = 1
"""SCHED_FIFO priority of the stage's data path (mock, gateway, daemon) where allowed (root).
A shared machine's other work (here: other test suites saturating both cores) must not
starve the tester in the healthy stretch, as a dedicated node or a Kubernetes CPU request
keeps it from doing in production. The three are light and bounded (tens of requests per
second); the kernel's real-time throttling still leaves 5% of each second to the rest."""


def reserve_cpu(pid: int) -> bool:
    """Run `pid` (its main thread, and the threads it starts later) under SCHED_FIFO at
    `RESERVED_PRIORITY`; False where not permitted (not root), where it stays as it was."""
    try:
        os.sched_setscheduler(pid, os.SCHED_FIFO, os.sched_param(RESERVED_PRIORITY))
    except PermissionError:
        return False
    return True


def threads(pid: int) -> list[int]:
    """The thread ids of process `pid` now (Linux /proc): policy is per thread."""
    return [int(tid) for tid in os.listdir(f"/proc/{pid}/task")]


CPU_V1 = Path("/sys/fs/cgroup/cpu")
CPU_V2 = Path("/sys/fs/cgroup")


def _cpu_hierarchy() -> tuple[Path, bool]:
    """The cgroup hierarchy that has the cpu controller and whether it is cgroup v2."""
    controllers = CPU_V2 / "cgroup.controllers"
    if controllers.exists() and "cpu" in controllers.read_text().split():
        return CPU_V2, True
    if (CPU_V1 / "cpu.cfs_quota_us").exists():
        return CPU_V1, False
    raise RuntimeError("no writable cgroup cpu controller (v1 or v2) on this machine")


@dataclass(slots=True)
class CpuLimit:
    """`pid` in a cgroup of its own with a CFS quota of `share` of one CPU: what a Kubernetes
    CPU limit does to a container. Once the process used its quota in a 100 ms period it is
    throttled until the next one, so a light process that is runnable only now and then still
    waits up to the rest of the period; busy neighbours cannot do that to it (the kernel gives
    a waking thread the CPU at once whatever their niceness). Real-time threads are exempt from
    the quota, so `pid`'s threads go back to the time-sharing scheduler first; `undo` puts the
    process back in its own cgroup, reserved again where permitted (root)."""

    pid: int
    share: float
    path: Path | None = None
    home: Path | None = None
    seen: float = 0.0
    """Seconds throttled, as of the last `throttled()` (kept after `undo`)."""

    def apply(self) -> None:
        root, v2 = _cpu_hierarchy()
        for tid in threads(self.pid):
            with contextlib.suppress(ProcessLookupError):  # a thread that ended meanwhile
                os.sched_setscheduler(tid, os.SCHED_OTHER, os.sched_param(0))
        self.home = root / self._current(v2).lstrip("/")
        self.path = self.home / f"soak-gameday-{self.pid}"
        self.path.mkdir(exist_ok=True)
        period = 100_000
        quota = max(1000, int(period * self.share))
        if v2:
            (self.path / "cpu.max").write_text(f"{quota} {period}")
        else:
            (self.path / "cpu.cfs_period_us").write_text(str(period))
            (self.path / "cpu.cfs_quota_us").write_text(str(quota))
        (self.path / "cgroup.procs").write_text(str(self.pid))

    def throttled(self) -> float:
        """Seconds the process was throttled so far (the cgroup's cpu.stat)."""
        if self.path is None:
            return self.seen
        stat = dict(line.split() for line in (self.path / "cpu.stat").read_text().splitlines())
        if "throttled_usec" in stat:
            self.seen = int(stat["throttled_usec"]) / 1e6
        else:
            self.seen = int(stat.get("throttled_time", 0)) / 1e9
        return self.seen

    def undo(self) -> None:
        if self.path is None or self.home is None:
            return
        self.throttled()
        with contextlib.suppress(ProcessLookupError):
            (self.home / "cgroup.procs").write_text(str(self.pid))
        self.path.rmdir()
        self.path = None
        with contextlib.suppress(ProcessLookupError, FileNotFoundError):
            for tid in threads(self.pid):
                reserve_cpu(tid)

    def _current(self, v2: bool) -> str:
        """`pid`'s cgroup path in the cpu hierarchy (from /proc/PID/cgroup)."""
        for line in Path(f"/proc/{self.pid}/cgroup").read_text().splitlines():
            _, controllers, path = line.split(":", 2)
            if (v2 and controllers == "") or (not v2 and "cpu" in controllers.split(",")):
                return path
        return "/"


@dataclass(slots=True)
class DaemonProcess:
    """`soak run --config` on a fixed loopback port, so Prometheus finds a restarted one."""

    config_path: Path
    data_dir: Path
    port: int
    log_path: Path
    proc: subprocess.Popen[bytes] | None = None
    starts: list[float] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                [*SOAK, "run", "--config", str(self.config_path), "--listen",
                 f"127.0.0.1:{self.port}", "--data-dir", str(self.data_dir),
                 "--log-format", "json"],
                stdout=subprocess.PIPE, stderr=log, start_new_session=True,
            )  # fmt: skip
        reserve_cpu(self.proc.pid)
        read_line(self.proc, r"listening on http://127\.0\.0\.1:\d+", 60)
        self.starts.append(time.time())

    def kill(self) -> None:
        """SIGKILL, as an OOM kill or a node loss does: no drain, no goodbye."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)
        self._close()

    def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._close()

    def _close(self) -> None:
        if self.proc is not None and self.proc.stdout is not None:
            self.proc.stdout.close()

    def runs(self, since: float = 0.0) -> list[dict[str, Any]]:
        """Finished runs (from the persisted history) that started at or after `since`."""
        got = get_json(f"{self.url}/runs?limit=1000")["runs"]
        return [r for r in got if r["finished_at"] and r["started_at"] >= since]

    def untrusted(self, since: float, until: float) -> list[str]:
        """Each phase, of the runs that finished between `since` and `until`, whose generator
        flagged itself untrusted, with its reasons (the daemon's own reports, /runs/<id>)."""
        out = []
        for r in self.runs(since):
            if r["finished_at"] > until:
                continue
            report = get_json(f"{self.url}/runs/{r['id']}")["report"]
            for phase in report.get("phases", []):
                health = phase.get("generator") or {}
                if health and not health.get("trusted", True):
                    out.append(f"{phase['name']}: {'; '.join(health.get('reasons', []))}")
        return out


class GameDay:
    """Everything running, on loopback, until the `with` block ends."""

    def __init__(
        self, workdir: Path, comp: Compression | None = None, load: Load | None = None,
        say: Callable[[str], None] = lambda _line: None,
    ) -> None:  # fmt: skip
        self.dir, self.say = workdir, say
        self.comp, self.load = comp or Compression(), load or Load()
        self.procs: list[subprocess.Popen[bytes]] = []
        self.started_at = time.time()

    def __enter__(self) -> GameDay:
        try:
            self._start()
        except BaseException:
            self.__exit__()
            raise
        return self

    def _spawn(self, argv: list[str], pattern: str, log: str) -> tuple[Any, str]:
        with open(self.dir / log, "wb") as out:
            proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=out,
                                    start_new_session=True)  # fmt: skip
        self.procs.append(proc)
        self.reserved = reserve_cpu(proc.pid)
        return proc, read_line(proc, pattern, 30)[1]

    def _start(self) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        self.hook = Webhook().__enter__()
        me = str(os.getpid())
        _, port = self._spawn([*SOAK, "mock", "--port", "0", "--providers", "primary,fallback",
                               "--log-level", "warning", "--parent-pid", me],
                              r"listening on http://127\.0\.0\.1:(\d+)", "mock.log")  # fmt: skip
        self.mock_url = f"http://127.0.0.1:{port}"
        gw_port = free_port()
        self.gateway_proc, _ = self._spawn(
            [sys.executable, str(GATEWAY), "--port", str(gw_port), "--upstream", self.mock_url,
             "--parent-pid", me], r"game gateway listening on (\S+)", "gateway.log")  # fmt: skip
        self.gateway_url = f"http://127.0.0.1:{gw_port}"
        config = game_config(mock_url=self.mock_url, gateway_url=self.gateway_url,
                             gateway_pid=self.gateway_proc.pid, comp=self.comp,
                             load=self.load)  # fmt: skip
        config_path = self.dir / "soak.yaml"
        config_path.write_text(yaml.safe_dump(config, sort_keys=False))
        self.rules = generated_rules(config_path, self.comp.options())
        am = start_alertmanager(self.dir, self.procs, self.hook.url, **self.comp.alertmanager())
        self.alertmanager = f"http://{am}"
        self.daemon = DaemonProcess(config_path, self.dir / "data", free_port(),
                                    self.dir / "daemon.log")  # fmt: skip
        scrape = f"{self.comp.scrape:g}s"
        self.prometheus = start_prometheus(self.dir, self.procs, f"127.0.0.1:{self.daemon.port}",
                                           self.rules, am, interval=scrape)  # fmt: skip
        self.watch = AlertWatch(self.prometheus).__enter__()
        self.daemon.start()
        self.say(f"stage up: daemon {self.daemon.url}, prometheus {self.prometheus}, "
                 f"alertmanager {self.alertmanager}, time scale {self.comp.scale:g}")  # fmt: skip

    def __exit__(self, *exc: object) -> None:
        for stop in (lambda: self.daemon.stop(), lambda: self.watch.__exit__(),
                     lambda: stop_all(self.procs), lambda: self.hook.__exit__()):  # fmt: skip
            with contextlib.suppress(AttributeError, OSError, subprocess.SubprocessError):
                stop()  # not started, or already gone: the others still stop

    def gateway(self, **changes: Any) -> dict[str, Any]:
        """Switch the gateway's behaviour (tests/game_gateway.py's control document)."""
        req = urllib.request.Request(
            f"{self.gateway_url}/_game/state", data=json.dumps(changes).encode(), method="POST",
            headers={"Content-Type": "application/json"},
        )  # fmt: skip
        with urllib.request.urlopen(req, timeout=10) as resp:
            return json.loads(resp.read())  # type: ignore[no-any-return]

    def query(self, expr: str) -> float | None:
        """The single value of an instant PromQL query at Prometheus (None: no result)."""
        found = get_json(f"{self.prometheus}/api/v1/query?"
                         + urllib.parse.urlencode({"query": expr}))["data"]["result"]  # fmt: skip
        return float(found[0]["value"][1]) if found else None

    def gateway_rss(self) -> float:
        _, text = http(f"{self.gateway_url}/metrics")
        return float(text.rsplit(" ", 1)[1])

    def wait_runs(self, count: int, since: float, timeout: float) -> list[dict[str, Any]]:
        """Block until `count` runs that started after `since` have finished."""
        if count <= 0:
            return []
        return wait_for(f"{count} finished runs", lambda: (r := self.daemon.runs(since))
                        and len(r) >= count and r, timeout, every=1.0)  # fmt: skip

    def wait_for_notes(self, names: tuple[str, ...], since: float, timeout: float) -> None:
        """Block until each of `names` has reached the webhook firing since `since`."""

        def arrived() -> bool:
            got = {a for n in self.hook.since(since) if n.status == "firing" for a in n.alertnames}
            return set(names) <= got

        wait_for(f"firing notifications of {', '.join(names)}", arrived, timeout, every=0.5)

    def wait_resolved_notes(self, since: float, timeout: float) -> bool:
        """Block until every group notified firing since `since` was notified resolved after
        its last firing notification; False on timeout."""

        def settled() -> bool:
            last: dict[str, tuple[float, str]] = {}
            for n in self.hook.since(since):
                last[n.body["groupKey"]] = (n.at, n.status)
            return all(status == "resolved" for _, status in last.values())

        try:
            wait_for("resolved notifications", settled, timeout, every=0.5)
        except AssertionError:
            return False
        return True

    def quiet(self, timeout: float) -> bool:
        """Wait until no alert is pending or firing (two polls in a row); False on timeout."""
        deadline = time.monotonic() + timeout
        calm = 0
        while time.monotonic() < deadline:
            calm = calm + 1 if not self.watch.active() else 0
            if calm >= 2:
                return True
            time.sleep(1.0)
        return False


def alerts_firing(watch: AlertWatch) -> Iterator[str]:
    """Names of the alerts firing now."""
    return (e.name for e in watch.active() if e.firing_at is not None)
