"""The `shard` section: which slice of the load this replica sends when N replicas share it.

N soak replicas (a StatefulSet, or N Deployments) each send rate/N, so together they offer the
configured rate and Prometheus sums their counters and histogram buckets (`sum by (le)`).
Precedence, highest first: the environment (`SOAK_SHARD_INDEX`, `SOAK_SHARD_COUNT`), the file's
`shard.index` / `shard.count`, and, for the index only, the pod ordinal at the end of
`HOSTNAME` (`soak-3` → 3, what a StatefulSet gives each pod). A config without the section is
one shard of one: it sends the full rate.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from soak.config.fields import Section
from soak.config.source import ConfigError

ENV_INDEX = "SOAK_SHARD_INDEX"
ENV_COUNT = "SOAK_SHARD_COUNT"
MAX_SHARDS = 1000
"""Bound on `count`: the shard index may end up in a label or a log line."""
_ORDINAL = re.compile(r".-(\d+)")


@dataclass(frozen=True, slots=True)
class ShardConfig:
    """This replica's slice: shard `index` of `count`; `source` says where the index came from."""

    index: int = 0
    count: int = 1
    source: str = "default"
    """default | config | env | hostname."""

    @property
    def fraction(self) -> float:
        """Share of every phase's rate this replica sends: 1/count."""
        return 1.0 / self.count

    def scale(self, rate: float) -> float:
        """`rate` (requests per second, the whole fleet's) for this replica."""
        return rate * self.fraction


UNSHARDED = ShardConfig()
"""The default: one replica sends the full rate."""


def pod_ordinal(hostname: str | None) -> int | None:
    """The StatefulSet ordinal at the end of a pod's host name (`soak-3` → 3), else None."""
    if not hostname:
        return None
    match = _ORDINAL.search(hostname.split(".", 1)[0])
    if match is None or match.end() != len(hostname.split(".", 1)[0]):
        return None
    return int(match[1])


def parse_shard(root: Section, env: Mapping[str, str]) -> ShardConfig:
    """The `shard` section of the merged config at `root`, with environment overrides applied."""
    s = root.section("shard", optional=True)
    if s is not None:
        s.only("index", "count")
    count = _env_int(env, ENV_COUNT, minimum=1)
    if count is None:
        count = 1 if s is None else s.integer("count", 1, minimum=1)
    if count > MAX_SHARDS:
        where = f"environment: {ENV_COUNT}" if ENV_COUNT in env else _key(root, "count")
        raise ConfigError(f"{where}: must be at most {MAX_SHARDS}, got {count}")
    index, source = _index(root, s, env, count)
    if index >= count:
        where = {"env": f"environment: {ENV_INDEX}", "hostname": "environment: HOSTNAME"}.get(
            source, _key(root, "index")
        )
        raise ConfigError(
            f"{where}: shard index {index} is not below the shard count {count} "
            f"(indexes run 0..{count - 1}; set {ENV_COUNT} or shard.count to the replica count)"
        )
    return ShardConfig(index=index, count=count, source=source)


def _index(root: Section, s: Section | None, env: Mapping[str, str], count: int) -> tuple[int, str]:
    from_env = _env_int(env, ENV_INDEX, minimum=0)
    if from_env is not None:
        return from_env, "env"
    raw: Any = None if s is None else s.data.get("index", "auto")
    if raw != "auto" and raw is not None:
        assert s is not None
        return s.integer("index", minimum=0), "config"
    if count == 1:
        return 0, "default"
    ordinal = pod_ordinal(env.get("HOSTNAME"))
    if ordinal is None:
        raise ConfigError(
            f"{_key(root, 'index')}: cannot tell which of {count} shards this replica is "
            f"(set shard.index or {ENV_INDEX}, or run in a StatefulSet whose pods are name-N)"
        )
    return ordinal, "hostname"


def _env_int(env: Mapping[str, str], name: str, *, minimum: int) -> int | None:
    raw = env.get(name)
    if raw is None or raw.strip() == "":
        return None
    try:
        value = int(raw.strip())
    except ValueError:
        shown = raw if len(raw) <= 20 else raw[:17] + "..."
        raise ConfigError(f"environment: {name}: expected an integer, got {shown!r}") from None
    if value < minimum:
        raise ConfigError(f"environment: {name}: must be at least {minimum}, got {value}")
    return value


def _key(root: Section, key: str) -> str:
    path = (*root.path, "shard", key)
    return f"{root.locate(path)}: {'.'.join(path)}"

