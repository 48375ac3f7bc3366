"""Per-model and per-key results of one load: which configured model or key fares worse.

A gateway may route one model to a slower provider or keep per-key state that costs one
tenant more than another; a phase's aggregate hides both. Names come from the config
(`workload.models`, `key-<i>` for `workload.keys`), never from the wire. Models are few (at
most 32); keys may number 100,000, so per key only the `KEY_ROWS` worst are kept, with counts
over all of them.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any, Protocol

from soak.results import Result

KEY_ROWS = 10
"""Keys listed by name in a breakdown: the worst by success, then overhead p99."""


class Plan(Protocol):
    """What a breakdown needs of a request plan (`soak.workload.RequestPlan`)."""

    def model_of(self, seq: int) -> str: ...

    def key_of(self, seq: int) -> str | None: ...


@dataclass(frozen=True, slots=True)
class Group:
    """The requests of one model or key."""

    requests: int
    success_ratio: float
    overhead_p50: float | None
    overhead_p99: float | None


@dataclass(frozen=True, slots=True)
class KeyCounts:
    """Over every key of the mix, not only the listed ones."""

    keys: int
    """Keys that sent at least one request."""
    failing: int
    """Keys with at least one request not answered well."""
    worst_success_ratio: float


def group(results: Sequence[Result]) -> Group:
    """Success and per-request overhead p50/p99 (nearest rank) of `results`."""
    over = sorted(o for r in results if (o := r.overhead) is not None)

    def pick(q: float) -> float | None:
        return over[min(len(over) - 1, int(q * len(over)))] if over else None

    ok = sum(1 for r in results if r.ok)
    return Group(len(results), ok / len(results) if results else 0.0, pick(0.5), pick(0.99))


def _by(results: Sequence[Result], name_of: Callable[[int], str | None]) -> dict[str, Group]:
    groups: dict[str, list[Result]] = {}
    for r in results:
        name = name_of(r.seq)
        if name is not None:
            groups.setdefault(name, []).append(r)
    return {name: group(rs) for name, rs in sorted(groups.items())}


def _worst_first(item: tuple[str, Group]) -> tuple[float, float, int, str]:
    """Lowest success first, then highest overhead p99, then key-2 before key-10."""
    name, g = item
    return (g.success_ratio, -(g.overhead_p99 or 0.0), len(name), name)


def breakdown(results: Sequence[Result], plan: Plan | None) -> dict[str, Any]:
    """`{"model": {name: group}, "key": {name: group}, "keys": counts}` as plain data; a part
    only where the mix has two or more; empty without a plan."""
    if plan is None:
        return {}
    out: dict[str, Any] = {}
    models = _by(results, plan.model_of)
    if len(models) >= 2:
        out["model"] = {name: asdict(g) for name, g in models.items()}
    keys = _by(results, plan.key_of)
    if len(keys) >= 2:
        ranked = sorted(keys.items(), key=_worst_first)
        out["key"] = {name: asdict(g) for name, g in ranked[:KEY_ROWS]}
        counts = KeyCounts(
            keys=len(keys),
            failing=sum(1 for g in keys.values() if g.success_ratio < 1.0),
            worst_success_ratio=ranked[0][1].success_ratio,
        )
        out["keys"] = asdict(counts)
    return out
