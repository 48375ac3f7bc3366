"""The daemon's config sections: `schedule` plans and `server`, strict like the rest."""

from __future__ import annotations

from pathlib import Path

import pytest

from soak.config import ConfigError
from soak.config.daemon import (
    DEFAULT_DAEMON,
    DEFAULT_PLAN,
    PlanConfig,
    ServerConfig,
    split_listen,
)
from soak.config.fields import Secret
from soak.phases import load_config

HEAD = "version: 1\ngateway: {url: 'http://127.0.0.1:4000'}\n"
ENV = {"SOAK_RELOAD_TOKEN": "tok-123"}


def load(tmp_path: Path, body: str, env: dict[str, str] | None = None):
    path = tmp_path / "soak.yaml"
    path.write_text(HEAD + body)
    return load_config(path, env=ENV if env is None else env)


def test_without_sections_the_quick_default_schedule_applies(tmp_path: Path) -> None:
    daemon = load(tmp_path, "").daemon
    assert daemon == DEFAULT_DAEMON
    assert DEFAULT_PLAN.interval == 120.0 and DEFAULT_PLAN.run_on_start
    assert DEFAULT_PLAN.phases == ("calibration", "overhead")
    assert load_config(None).daemon.schedule == (DEFAULT_PLAN,)


def test_full_sections(tmp_path: Path) -> None:
    daemon = load(
        tmp_path,
        """
schedule:
  - name: hourly
    cron: "5 * * * *"
    phases: [calibration, overhead, stress]
    jitter: 30s
    coalesce: false
    misfire_grace_time: 10m
  - {name: quick, interval: 2m, phases: [overhead], run_on_start: true}
server:
  listen: "0.0.0.0:9200"
  reload_token_env: SOAK_RELOAD_TOKEN
  data_dir: state
  keep_runs: 20
  grace: 45s
""",
    ).daemon
    assert daemon.schedule == (
        PlanConfig(
            name="hourly",
            phases=("calibration", "overhead", "stress"),
            cron="5 * * * *",
            jitter=30.0,
            coalesce=False,
            misfire_grace_time=600.0,
        ),
        PlanConfig(name="quick", phases=("overhead",), interval=120.0, run_on_start=True),
    )
    srv = daemon.server
    assert srv.listen == "0.0.0.0:9200" and srv.reload_token == Secret("tok-123")
    assert srv.data_dir == tmp_path / "state"  # relative to the config file
    assert (srv.keep_runs, srv.grace) == (20, 45.0)
    assert srv.reload_token_env == "SOAK_RELOAD_TOKEN"
    assert "tok-123" not in repr(daemon)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("schedule: []", "schedule: expected a non-empty list of plans, got list"),
        ("schedule: [3]", "schedule[0]: expected a mapping (a plan)"),
        (
            "schedule: [{name: a, phases: [overhead]}]",
            "schedule[0]: set exactly one of cron or interval",
        ),
        (
            "schedule: [{name: a, cron: '* * * * *', interval: 1m, phases: [overhead]}]",
            "schedule[0]: set exactly one of cron or interval",
        ),
        (
            "schedule: [{name: a, cron: '61 * * * *', phases: [overhead]}]",
            "schedule[0].cron: invalid cron expression '61 * * * *'",
        ),
        (
            "schedule: [{name: a, cron: 'every hour', phases: [overhead]}]",
            "schedule[0].cron: invalid cron expression 'every hour'",
        ),
        (
            "schedule: [{name: a, interval: 0s, phases: [overhead]}]",
            "schedule[0].interval: must be longer than 0",
        ),
        (
            "schedule: [{name: a, interval: 1m, phases: [warp]}]",
            "schedule[0].phases: unknown phase 'warp'",
        ),
        ("schedule: [{name: a, interval: 1m, phases: []}]", "schedule[0].phases: expected a non"),
        (
            "schedule: [{name: a, interval: 1m, phases: [overhead, overhead]}]",
            "schedule[0].phases: a phase is listed twice",
        ),
        (
            "schedule: [{name: 'Bad Name', interval: 1m, phases: [overhead]}]",
            "schedule[0].name: invalid value 'Bad Name'",
        ),
        (
            "schedule: [{name: a, interval: 1m, phases: [overhead], every: 1}]",
            "schedule[0].every: unknown key",
        ),
        (
            "schedule: [{name: a, interval: 1m, phases: [overhead]},"
            " {name: a, interval: 2m, phases: [stress]}]",
            "schedule[1].name: duplicate plan name 'a'",
        ),
        ("server: {listen: 9105}", "server.listen: expected a string, got integer"),
        ("server: {listen: 'localhost'}", "server.listen: invalid listen address 'localhost'"),
        ("server: {listen: 'h:70000'}", "port must be at most 65535"),
        ("server: {keep_runs: 0}", "server.keep_runs: must be at least 1, got 0"),
        ("server: {grace: 0}", "server.grace: must be longer than 0"),
        ("server: {reload_token_env: NOPE_UNSET}", "environment variable 'NOPE_UNSET' is not set"),
        ("server: {port: 1}", "server.port: unknown key"),
    ],
)
def test_bad_values_are_one_line_errors(tmp_path: Path, body: str, message: str) -> None:
    with pytest.raises(ConfigError) as err:
        load(tmp_path, body)
    text = str(err.value)
    assert message in text and "\n" not in text
    assert text.startswith(str(tmp_path / "soak.yaml"))


def test_split_listen() -> None:
    assert split_listen("127.0.0.1:9105") == ("127.0.0.1", 9105)
    assert split_listen(":9105") == ("0.0.0.0", 9105)
    assert split_listen("[::1]:0") == ("::1", 0)
    with pytest.raises(ValueError, match="use host:port"):
        split_listen("9105")


def test_every_daemon_key_is_documented() -> None:
    docs = (Path(__file__).parents[1] / "docs" / "config.md").read_text()
    assert "## schedule" in docs and "## server" in docs
    plan_keys = set(PlanConfig.__dataclass_fields__)
    server_keys = set(ServerConfig.__dataclass_fields__) - {"reload_token"}  # derived
    missing = {k for k in plan_keys | server_keys if f"`{k}`" not in docs}
    assert missing == set()
