"""The `shard` section: index/count from the file, the environment or the pod ordinal, exact
one-line errors, and the phases' hook that sends rate/count per replica (against the real mock)."""

from __future__ import annotations

import asyncio
import io
from pathlib import Path

import pytest
from soak.mock.app import MockConfig, MockServer

from soak.config import ConfigError
from soak.config.shard import UNSHARDED, ShardConfig, pod_ordinal
from soak.mockctl import MockControl
from soak.phases import load_config
from soak.phases.base import PhaseContext, Target, measure, shard_rate
from soak.reports.progress import Progress

BASE = "version: 1\ngateway:\n  url: http://127.0.0.1:4000\n"


def load(tmp_path: Path, extra: str = "", env: dict[str, str] | None = None):
    path = tmp_path / "soak.yaml"
    path.write_text(BASE + extra)
    return load_config(path, env=env or {})


def error(tmp_path: Path, extra: str = "", env: dict[str, str] | None = None) -> str:
    with pytest.raises(ConfigError) as info:
        load(tmp_path, extra, env)
    return str(info.value)


def test_no_section_is_one_shard_of_one(tmp_path):
    config = load(tmp_path)
    assert config.shard == UNSHARDED
    assert (config.shard.index, config.shard.count, config.shard.fraction) == (0, 1, 1.0)
    assert shard_rate(config, 20.0) == 20.0


def test_file_sets_index_and_count(tmp_path):
    shard = load(tmp_path, "shard: {index: 2, count: 4}\n").shard
    assert shard == ShardConfig(index=2, count=4, source="config")
    assert shard.fraction == 0.25


def test_environment_overrides_the_file(tmp_path):
    env = {"SOAK_SHARD_INDEX": "1", "SOAK_SHARD_COUNT": "3", "HOSTNAME": "soak-2"}
    shard = load(tmp_path, "shard: {index: 0, count: 2}\n", env).shard
    assert shard == ShardConfig(index=1, count=3, source="env")


def test_statefulset_ordinal_from_hostname(tmp_path):
    shard = load(tmp_path, "shard: {count: 4}\n", {"HOSTNAME": "llm-soak-3"}).shard
    assert shard == ShardConfig(index=3, count=4, source="hostname")
    env = {"SOAK_SHARD_COUNT": "2", "HOSTNAME": "llm-soak-1"}
    assert load(tmp_path, "", env).shard == ShardConfig(index=1, count=2, source="hostname")
    explicit_auto = load(tmp_path, "shard: {index: auto, count: 2}\n", {"HOSTNAME": "s-0"}).shard
    assert explicit_auto.index == 0


def test_config_rate_scaled_per_replica(tmp_path):
    config = load(tmp_path, "shard: {index: 0, count: 2}\n")
    assert shard_rate(config, 20.0) == 10.0
    assert config.shard.scale(1000.0) == 500.0


@pytest.mark.parametrize(
    ("hostname", "ordinal"),
    [
        ("soak-0", 0),
        ("soak-12", 12),
        ("llm-soak-3.llm-soak.monitoring.svc", 3),
        ("soak-7f9c6d5b8-x2k4q", None),  # a Deployment pod: random suffix, no ordinal
        ("soak", None),
        ("-3", None),
        ("", None),
        (None, None),
    ],
)
def test_pod_ordinal(hostname, ordinal):
    assert pod_ordinal(hostname) == ordinal


@pytest.mark.parametrize(
    ("extra", "env", "message"),
    [
        (
            "shard: {index: 2, count: 2}\n",
            {},
            "soak.yaml: shard.index: shard index 2 is not below the shard count 2 "
            "(indexes run 0..1; set SOAK_SHARD_COUNT or shard.count to the replica count)",
        ),
        (
            "shard: {count: 3}\n",
            {"HOSTNAME": "soak-7f9c6d5b8-x2k4q"},
            "soak.yaml: shard.index: cannot tell which of 3 shards this replica is "
            "(set shard.index or SOAK_SHARD_INDEX, or run in a StatefulSet whose pods are name-N)",
        ),
        (
            "shard: {count: 2}\n",
            {"HOSTNAME": "soak-5"},
            "environment: HOSTNAME: shard index 5 is not below the shard count 2 "
            "(indexes run 0..1; set SOAK_SHARD_COUNT or shard.count to the replica count)",
        ),
        ("shard: {count: 0}\n", {}, "soak.yaml: shard.count: must be at least 1, got 0"),
        ("shard: {count: 5000}\n", {}, "soak.yaml: shard.count: must be at most 1000, got 5000"),
        (
            "shard: {index: first, count: 2}\n",
            {},
            "soak.yaml: shard.index: expected an integer, got string 'first'",
        ),
        ("shard: {idx: 1}\n", {}, "soak.yaml: shard.idx: unknown key (did you mean 'index'?)"),
        ("shard: [1, 2]\n", {}, "soak.yaml: shard: expected a mapping, got list"),
        (
            "",
            {"SOAK_SHARD_COUNT": "two"},
            "environment: SOAK_SHARD_COUNT: expected an integer, got 'two'",
        ),
        (
            "",
            {"SOAK_SHARD_INDEX": "-1"},
            "environment: SOAK_SHARD_INDEX: must be at least 0, got -1",
        ),
        (
            "",
            {"SOAK_SHARD_INDEX": "1"},
            "environment: SOAK_SHARD_INDEX: shard index 1 is not below the shard count 1 "
            "(indexes run 0..0; set SOAK_SHARD_COUNT or shard.count to the replica count)",
        ),
    ],
)
def test_bad_shard_settings_are_one_line(tmp_path, extra, env, message):
    text = error(tmp_path, extra, env)
    assert text.endswith(message), text
    assert "\n" not in text


async def test_each_shard_sends_its_share_to_the_real_mock(tmp_path):
    """Two shards of a 40 req/s, 1 s load: each sends 20 requests, together the whole load."""
    sent = []
    async with MockServer(MockConfig()) as server:
        for index in (0, 1):
            config = load(tmp_path, f"shard: {{index: {index}, count: 2}}\n")
            target = Target("mock", f"{server.url}/v1/chat/completions", "soak-primary")
            ctx = PhaseContext(
                config=config,
                run_id=f"shard{index}",
                mock=MockControl(server.url),
                direct=target,
                gateway=target,
                progress=Progress(stream=io.StringIO(), tty=False),
                stop=asyncio.Event(),
            )
            try:
                run, report = await measure(
                    ctx,
                    name="overhead",
                    kind="overhead",
                    target=target,
                    rate=40.0,
                    duration=1.0,
                    timeout=5.0,
                    params={},
                )
            finally:
                await ctx.mock.close()
            assert report.params["rate"] == 20.0
            assert f"shard {index} of 2: this replica sent 1/2 of the configured rate" in (
                " ".join(report.notes)
            )
            sent.append(len(run.results))
    assert sent == [20, 20]
