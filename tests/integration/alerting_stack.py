"""The real alerting path for integration tests and the game day: a Prometheus evaluating the
generated rules, the deploy example's Alertmanager with its receivers pointed at a local
webhook, that webhook recording every notification with the time it arrived, and a watch on
Prometheus' alerts (pending, firing, resolved, with times).

Needs the Debian packages `prometheus` and `prometheus-alertmanager` (amtool comes with the
latter). Every process is started into the caller's list and ended by PID (`stop_all`).
"""

from __future__ import annotations

import json
import subprocess
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import yaml
from once_helpers import ROOT
from test_daemon import free_port, get_json, http, wait_for

PROMETHEUS = "/usr/bin/prometheus"
ALERTMANAGER = "/usr/bin/prometheus-alertmanager"
EXAMPLE = ROOT / "deploy" / "alertmanager" / "alertmanager.yml"

__all__ = [
    "ALERTMANAGER",
    "EXAMPLE",
    "PROMETHEUS",
    "AlertWatch",
    "Episode",
    "Notification",
    "Webhook",
    "alertmanager_config",
    "start_alertmanager",
    "start_prometheus",
    "stop_all",
]


def start_prometheus(
    tmp: Path, procs: list[subprocess.Popen[bytes]], scrape: str, rules: dict[str, Any],
    alertmanager: str | None = None, interval: str = "1s",
) -> str:  # fmt: skip
    """A real Prometheus scraping `scrape` and evaluating `rules` every `interval`."""
    (tmp / "rules.yml").write_text(yaml.safe_dump(rules, sort_keys=False))
    config: dict[str, Any] = {
        "global": {"scrape_interval": interval, "evaluation_interval": interval},
        "rule_files": [str(tmp / "rules.yml")],
        "scrape_configs": [{"job_name": "soak", "static_configs": [{"targets": [scrape]}]}],
    }
    if alertmanager:
        config["alerting"] = {"alertmanagers": [{"static_configs": [{"targets": [alertmanager]}]}]}
    (tmp / "prometheus.yml").write_text(yaml.safe_dump(config))
    check = subprocess.run(["promtool", "check", "config", str(tmp / "prometheus.yml")],
                           capture_output=True, text=True)  # fmt: skip
    assert check.returncode == 0, check.stdout + check.stderr
    port = free_port()
    with open(tmp / "prometheus.log", "wb") as log:  # the child keeps its own descriptor
        procs.append(subprocess.Popen(
            [PROMETHEUS, f"--config.file={tmp / 'prometheus.yml'}",
             f"--storage.tsdb.path={tmp / 'tsdb'}", f"--web.listen-address=127.0.0.1:{port}",
             "--log.level=warn"],
            stdout=subprocess.DEVNULL, stderr=log,
        ))  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    wait_for("prometheus ready", lambda: http(f"{url}/-/ready")[0] == 200, 30)
    return url


def alertmanager_config(
    receiver_url: str, *, group_wait: str = "1s", group_interval: str = "1s",
    repeat_intervals: dict[str, str] | None = None,
) -> dict[str, Any]:  # fmt: skip
    """The deploy example, its receivers pointed at the local webhook, its waits shortened
    (`repeat_intervals`: receiver name → repeat_interval, for compressed time)."""
    config = yaml.safe_load(EXAMPLE.read_text())
    config["route"].update(group_wait=group_wait, group_interval=group_interval)
    for route in [config["route"], *config["route"].get("routes", [])]:
        if repeat_intervals and route.get("receiver") in repeat_intervals:
            route["repeat_interval"] = repeat_intervals[route["receiver"]]
    for receiver in config["receivers"]:
        for hook in receiver.get("webhook_configs", []):
            hook["url"] = receiver_url
    return config


def start_alertmanager(
    tmp: Path, procs: list[subprocess.Popen[bytes]], url: str, **waits: Any
) -> str:
    """The example Alertmanager (`alertmanager_config(url, **waits)`); returns host:port."""
    (tmp / "alertmanager.yml").write_text(yaml.safe_dump(alertmanager_config(url, **waits)))
    port = free_port()
    with open(tmp / "alertmanager.log", "wb") as log:
        procs.append(subprocess.Popen(
            [ALERTMANAGER, f"--config.file={tmp / 'alertmanager.yml'}",
             f"--storage.path={tmp / 'am'}", f"--web.listen-address=127.0.0.1:{port}",
             "--cluster.listen-address=", "--log.level=warn"],
            stdout=subprocess.DEVNULL, stderr=log,
        ))  # fmt: skip
    wait_for("alertmanager ready",
             lambda: http(f"http://127.0.0.1:{port}/-/ready")[0] == 200, 30)  # fmt: skip
    return f"127.0.0.1:{port}"


def stop_all(procs: list[subprocess.Popen[bytes]], timeout: float = 15) -> None:
    """Terminate every process of `procs` by PID (kill those that outlive `timeout`) and close
    the pipes this side held."""
    for proc in procs:
        if proc.poll() is None:
            proc.terminate()
    for proc in procs:
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        for pipe in (proc.stdout, proc.stderr):
            if pipe is not None:
                pipe.close()


@dataclass(frozen=True, slots=True)
class Notification:
    """One webhook call of the Alertmanager: when it arrived and what it said."""

    at: float
    """time.time() on arrival."""
    body: dict[str, Any]

    @property
    def status(self) -> str:
        """The group's status: firing (any alert of the group firing) or resolved."""
        return str(self.body["status"])

    @property
    def alertnames(self) -> set[str]:
        return {a["labels"].get("alertname", "") for a in self.body["alerts"]}


class Webhook:
    """A local Alertmanager webhook receiver on loopback, recording every notification.

    Use as a context manager; `url` is the receiver URL, `received` the bodies in order (a
    live list), `notifications` the same with their arrival times."""

    def __init__(self) -> None:
        self.notifications: list[Notification] = []
        self.received: list[dict[str, Any]] = []
        hook = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))))
                hook.notifications.append(Notification(time.time(), body))
                hook.received.append(body)
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}/soak"

    def since(self, t0: float) -> list[Notification]:
        return [n for n in list(self.notifications) if n.at >= t0]

    def __enter__(self) -> Webhook:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()


@dataclass(slots=True)
class Episode:
    """One alert (a label set) from pending through firing to resolved, in time.time()."""

    labels: dict[str, str]
    pending_at: float
    firing_at: float | None = None
    resolved_at: float | None = None

    @property
    def name(self) -> str:
        return self.labels["alertname"]


class AlertWatch:
    """Polls Prometheus' /api/v1/alerts and keeps every alert's episodes."""

    def __init__(self, prometheus: str, every: float = 0.5) -> None:
        self.url, self.every = f"{prometheus}/api/v1/alerts", every
        self.episodes: list[Episode] = []
        self._open: dict[frozenset[tuple[str, str]], Episode] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="alert-watch", daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(self.every):
            try:
                active = get_json(self.url)["data"]["alerts"]
            except (OSError, ValueError, AssertionError):
                continue
            self.observe(active, time.time())

    def observe(self, active: list[dict[str, Any]], now: float) -> None:
        seen = set()
        for alert in active:
            key = frozenset(alert["labels"].items())
            seen.add(key)
            episode = self._open.get(key)
            if episode is None:
                episode = self._open[key] = Episode(dict(alert["labels"]), now)
                self.episodes.append(episode)
            if alert["state"] == "firing" and episode.firing_at is None:
                episode.firing_at = now
        for key in set(self._open) - seen:
            episode = self._open.pop(key)
            episode.resolved_at = now

    def active(self) -> list[Episode]:
        """Alerts pending or firing now."""
        return list(self._open.values())

    def __enter__(self) -> AlertWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)
