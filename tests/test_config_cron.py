"""The cron grammar of plans (`soak.config.cron`): standard five-field crontab in UTC, one-line
reasons for bad expressions, fire times stepped with the stdlib; plan gaps for the dashboards."""

from __future__ import annotations

import itertools
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest

from soak.config.cron import cron_problem, fire_times, parse_cron
from soak.config.daemon import PlanConfig, longest_gap

MONDAY = datetime(2026, 1, 5, tzinfo=UTC)


def fires(expression: str, n: int, start: datetime = MONDAY) -> list[str]:
    times = itertools.islice(fire_times(parse_cron(expression), start), n)
    return [t.strftime("%a %d %b %H:%M") for t in times]


@pytest.mark.parametrize(
    ("expression", "problem"),
    [
        ("61 * * * *", "minute: 61 is out of range 0-59"),
        ("every hour", "expected 5 fields, got 2"),
        ("* * * * * *", "expected 5 fields, got 6"),
        ("* 24 * * *", "hour: 24 is out of range 0-23"),
        ("* * 0 * *", "day of month: 0 is out of range 1-31"),
        ("* * * foo *", "month: 'foo' is not a number or a name"),
        ("* * * * 8", "day of week: 8 is out of range 0-7"),
        ("5-1 * * * *", "minute: range '5-1' runs backwards"),
        ("*/0 * * * *", "minute: step must be at least 1 in '*/0'"),
        ("1,,2 * * * *", "minute: invalid item '' (use *, N, N-M, each with /step)"),
        ("0 0 30 2 *", "no month in it has that day: it never fires"),
    ],
)
def test_bad_expressions_say_why(expression: str, problem: str) -> None:
    assert cron_problem(expression) == problem


@pytest.mark.parametrize(
    "expression", ["0 * * * *", "*/15 * * * *", "0 9 * * mon-fri", "0 0 1 JAN *", "5/20 * * * 7"]
)
def test_good_expressions_have_no_problem(expression: str) -> None:
    assert cron_problem(expression) is None


def test_fire_times_follow_standard_cron() -> None:
    assert fires("*/20 * * * *", 4) == ["Mon 05 Jan 00:20", "Mon 05 Jan 00:40",
                                        "Mon 05 Jan 01:00", "Mon 05 Jan 01:20"]  # fmt: skip
    # weekdays count from Sunday (0 and 7): 1-5 is Monday to Friday
    assert fires("0 9 * * 1-5", 6)[4:] == ["Fri 09 Jan 09:00", "Mon 12 Jan 09:00"]
    assert fires("0 9 * * 0", 1) == fires("0 9 * * 7", 1) == ["Sun 11 Jan 09:00"]
    # both day fields restricted: either matches (Friday, or the 13th)
    assert fires("0 0 13 * 5", 3) == ["Fri 09 Jan 00:00", "Tue 13 Jan 00:00", "Fri 16 Jan 00:00"]
    # one starts with '*': both must match (odd days that are Mondays)
    assert fires("0 0 */2 * 1", 2) == ["Mon 19 Jan 00:00", "Mon 09 Feb 00:00"]
    assert fires("0 0 29 2 *", 1) == ["Tue 29 Feb 00:00"]  # 2028, the next leap year
    assert fires("30 12 * * *", 1, MONDAY.replace(hour=12, minute=30)) == ["Tue 06 Jan 12:30"]


def test_longest_gap_of_cron_and_interval_plans() -> None:
    assert longest_gap(PlanConfig(name="q", phases=("a",), cron="*/15 * * * *")) == 900
    weekdays = PlanConfig(name="w", phases=("a",), cron="0 9 * * 1-5", jitter=30)
    assert longest_gap(weekdays) == 3 * 86400 + 30  # Friday 09:00 to Monday 09:00
    assert longest_gap(PlanConfig(name="i", phases=("a",), interval=120, jitter=10)) == 130


def test_config_and_dashboards_do_not_import_the_scheduler() -> None:
    """Validating a config or building the dashboards never needs APScheduler."""
    build = Path(__file__).resolve().parent.parent / "dashboards" / "build.py"
    code = (
        "import importlib.util, sys\n"
        "import soak.config.daemon\n"
        f"spec = importlib.util.spec_from_file_location('b', {str(build)!r})\n"
        "spec.loader.exec_module(importlib.util.module_from_spec(spec))\n"
        "print(sorted(m for m in sys.modules if m.startswith(('apscheduler', 'soak.scheduler'))))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"
