"""Profile parsing: every bad value is a one-line error naming its dotted key."""

from __future__ import annotations

import random
import statistics

import pytest
from soak.mock.faults import ERROR, HANG, decide
from soak.mock.profile import (
    Faults,
    Profile,
    ProfileError,
    load_profiles,
    parse_config,
    parse_duration,
    parse_profile,
)
from soak.mock.timing import sample


@pytest.mark.parametrize(
    ("text", "seconds"),
    [(0, 0.0), (1.5, 1.5), ("250ms", 0.25), ("1s", 1.0), ("1m", 60.0), ("500us", 0.0005),
     ("1m30s", 90.0), ("1h30m", 5400.0)],
)  # fmt: skip
def test_durations(text, seconds):
    assert parse_duration(text, "x") == pytest.approx(seconds)


def test_durations_use_the_testers_grammar():
    """One grammar with soak's config (`soak.durations`): compound units work in a profile, and
    what the config refuses (a bare number as a string, a space before the unit) the mock
    refuses too, with the key in the message."""
    profile = parse_profile({"latency": "1m30s", "faults": {"retry_after": "1m5s"}}, "p")
    assert profile.latency.params == (90.0,) and profile.faults.retry_after == 65.0
    for text in ("5", "1 s", ".5s", "-1s"):
        with pytest.raises(ProfileError, match=rf"^p\.ttl: expected a duration like .*{text!r}$"):
            parse_duration(text, "p.ttl")
    with pytest.raises(ProfileError, match=r"^ttl: duration must be finite and >= 0, got inf$"):
        parse_duration(float("inf"), "ttl")


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"latency": "fast"}, r"^p\.latency: expected a duration"),
        ({"latency": {"model": "gamma"}}, r"^p\.latency\.model: expected one of"),
        ({"latency": {"model": "normal", "mean": "1s"}}, r"^p\.latency\.stddev: required"),
        (
            {"latency": {"model": "uniform", "min": 2, "max": 1}},
            r"^p\.latency\.max: must be >= min",
        ),
        ({"latency": {"model": "fixed", "value": 1, "x": 2}}, r"^p\.latency\.x: unknown key"),
        ({"latency": -1}, r"^p\.latency: duration must be"),
        ({"stream": {"tokens": 0}}, r"^p\.stream\.tokens: expected an integer"),
        ({"stream": {"ttft": {"model": "lognormal", "median": 1}}}, r"^p\.stream\.ttft\.sigma"),
        ({"faults": {"error_rate": 1.5}}, r"^p\.faults\.error_rate: expected a number"),
        ({"faults": {"error_rate": 0.6, "hang_rate": 0.6}}, r"^p\.faults: the rates add up"),
        ({"faults": {"status_mix": {404: 1}}}, r"^p\.faults\.status_mix\.404: expected one of"),
        ({"faults": {"status_mix": {500: 0}}}, r"^p\.faults\.status_mix: needs at least one"),
        ({"faults": {"boom": 1}}, r"^p\.faults\.boom: unknown key"),
        ({"tokens": True}, r"^p\.tokens: expected an integer"),
        ({"seed": "x"}, r"^p\.seed: expected an integer"),
        ({"models": []}, r"^p\.models: expected a non-empty list"),
        ({"colour": "red"}, r"^p\.colour: unknown key"),
        ([1, 2], r"^p: expected a mapping"),
    ],
)
def test_bad_profiles_name_the_key(data, message):
    with pytest.raises(ProfileError, match=message) as info:
        parse_profile(data, "p")
    assert "\n" not in str(info.value)


def test_profile_roundtrips_through_its_dict():
    prof = parse_profile(
        {
            "latency": {"model": "lognormal", "median": "100ms", "sigma": 0.5},
            "stream": {"ttft": "50ms", "inter_token": {"model": "uniform", "min": 0, "max": "2ms"}},
            "tokens": 4,
            "faults": {"error_rate": 0.1, "status_mix": {"429": 3, 500: 1}, "cut_rate": 0.2},
            "seed": 5,
            "models": ["a", "b"],
        },
        "p",
    )
    assert parse_profile(prof.to_dict(), "p") == prof
    assert prof.faults.status_mix == ((429, 3.0), (500, 1.0))


def test_stream_timing_defaults_to_the_latency_as_ttft():
    prof = parse_profile({"latency": "1s", "tokens": 3}, "p")
    timing = prof.stream_timing()
    assert timing.ttft == prof.latency and timing.tokens == 3
    assert timing.inter_token.params == (0.0,)


def test_config_layers_defaults_under_providers(tmp_path):
    path = tmp_path / "mock.yaml"
    path.write_text(
        "defaults: {latency: 10ms, tokens: 4}\n"
        "providers:\n  primary: {tokens: 8}\n  fallback:\n"
        "trace_capacity: 50\n"
    )
    cfg = load_profiles(path)
    assert list(cfg.providers) == ["default", "primary", "fallback"]
    assert cfg.providers["primary"].tokens == 8
    assert cfg.providers["primary"].latency.params == (0.01,)
    assert cfg.providers["fallback"].tokens == 4
    assert cfg.trace_capacity == 50


def test_config_errors(tmp_path):
    with pytest.raises(ProfileError, match=r"^providers\.bad name: provider name"):
        parse_config({"providers": {"bad name": {}}})
    with pytest.raises(ProfileError, match=r"^providers\.x\.latency: expected a duration"):
        parse_config({"providers": {"x": {"latency": "soon"}}})
    with pytest.raises(ProfileError, match=r"^lanes: unknown key"):
        parse_config({"lanes": 1})
    bad = tmp_path / "bad.yaml"
    bad.write_text("providers: [unclosed\n")
    with pytest.raises(ProfileError, match="not valid YAML"):
        load_profiles(bad)
    with pytest.raises(ProfileError, match="cannot read"):
        load_profiles(tmp_path / "missing.yaml")


@pytest.mark.parametrize(
    ("latency", "mean", "spread"),
    [
        ({"model": "uniform", "min": 0.1, "max": 0.3}, 0.2, (0.1, 0.3)),
        ({"model": "normal", "mean": 0.5, "stddev": 0.1}, 0.5, (0.0, 1.2)),
        ({"model": "lognormal", "median": 0.2, "sigma": 0.3}, 0.209, (0.0, 2.0)),
    ],
)
def test_latency_models_draw_from_their_distribution(latency, mean, spread):
    model = parse_profile({"latency": latency}, "p").latency
    draws = [sample(model, random.Random(4)) for _ in range(3)]
    assert draws[0] == draws[1] == draws[2]  # seeded
    rng = random.Random(1)
    values = [sample(model, rng) for _ in range(4000)]
    assert statistics.fmean(values) == pytest.approx(mean, rel=0.05)
    assert spread[0] <= min(values) and max(values) <= spread[1]


def test_fault_decisions_follow_the_rates():
    faults = Faults(error_rate=0.2, hang_rate=0.1, status_mix=((503, 1.0),))
    rng = random.Random(2)
    kinds = [decide(faults, rng, stream=False) for _ in range(5000)]
    errors = [d for d in kinds if d is not None and d.kind == ERROR]
    hangs = [d for d in kinds if d is not None and d.kind == HANG]
    assert len(errors) / 5000 == pytest.approx(0.2, abs=0.02)
    assert len(hangs) / 5000 == pytest.approx(0.1, abs=0.02)
    assert {d.status for d in errors} == {503}
    assert decide(Faults(cut_rate=1.0), rng, stream=False) is None
    assert decide(Faults(cut_rate=1.0), rng, stream=True).kind == "cut"
    assert Profile().faults.any is False


def test_a_duration_past_a_week_is_refused_with_its_key():
    """A 1e308 s latency passed and overflowed the event loop's timer at the first request;
    a profile asks for at most soak's own phase bound, 7 days."""
    assert parse_duration("168h", "x") == 7 * 86400
    for value in (1e308, "169h", 10**30):
        with pytest.raises(ProfileError, match=r"^p\.latency: must be at most 168h \(7 days\)"):
            parse_profile({"latency": value}, "p")
