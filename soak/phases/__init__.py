"""Load phases: each runs bounded load against a target and returns `PhaseReport`s.

The order and names are fixed here; the numbers come from the config.
"""

from soak.phases.base import PhaseContext, Target
from soak.phases.overhead import run_calibration, run_overhead
from soak.phases.stress import run_stress

PHASES = ("calibration", "overhead", "stress")
"""Phases `soak once` runs, in order."""

__all__ = ["PHASES", "PhaseContext", "Target", "run_calibration", "run_overhead", "run_stress"]
