"""Load phases: each runs bounded load against a target and returns `PhaseReport`s.

The order and names are fixed here; the numbers come from the config.
"""

from soak.phases.base import PhaseContext, Target
from soak.phases.breaker import run_breaker
from soak.phases.capacity import run_capacity
from soak.phases.failover import run_failover
from soak.phases.memory import run_memory
from soak.phases.overhead import run_calibration, run_overhead
from soak.phases.readiness import run_readiness
from soak.phases.streaming import run_streaming
from soak.phases.stress import run_stress
from soak.phases.sustained import run_sustained

PHASES = (
    "calibration",
    "overhead",
    "stress",
    "sustained",
    "breaker",
    "failover",
    "memory",
    "readiness",
    "capacity",
    "streaming",
)
"""Phases `soak once` runs, in order."""
ON_DEMAND = ("capacity", "streaming")
"""Phases only run when named (`--phases capacity`, a schedule plan): the search takes minutes."""

__all__ = [
    "ON_DEMAND",
    "PHASES",
    "PhaseContext",
    "Target",
    "run_breaker",
    "run_calibration",
    "run_capacity",
    "run_failover",
    "run_memory",
    "run_overhead",
    "run_readiness",
    "run_streaming",
    "run_stress",
    "run_sustained",
]
