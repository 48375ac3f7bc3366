"""Config loading: exact one-line errors per defect, profile layering, secrets kept out of sight."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from soak.config import PROFILES, Config, ConfigError, Secret, describe
from soak.config.source import layer, parse_yaml
from soak.durations import parse_duration
from soak.phases import load_config

DATA = Path(__file__).parent / "data" / "configs"
PLANTED = "sk-planted-6f1d2c9a"
"""A secret value that must never show up in a repr, a description or an error message."""

ENV = {"SOAK_TEST_GATEWAY_KEY": PLANTED, "SOAK_TEST_MOCK_TOKEN": "tok-" + PLANTED}

INVALID = {
    "invalid-unknown-top.yaml": (
        "invalid-unknown-top.yaml: phase: unknown key (did you mean 'phases'?)"
    ),
    "invalid-unknown-nested.yaml": (
        "invalid-unknown-nested.yaml: phases.stress.rouns: unknown key (did you mean 'rounds'?)"
    ),
    "invalid-unknown-no-match.yaml": (
        "invalid-unknown-no-match.yaml: colour: unknown key (allowed: version, profile, gateway, "
        "mock, request, phases, engine, slo, report, schedule, server, shard, workload)"
    ),
    "invalid-duration.yaml": (
        "invalid-duration.yaml: phases.stress.gap: invalid duration '5x' "
        "(use 500ms, 30s, 5m, 1h30m)"
    ),
    "invalid-negative-duration.yaml": (
        "invalid-negative-duration.yaml: gateway.timeout: negative duration '-5s' "
        "(use 500ms, 30s, 5m, 1h30m)"
    ),
    "invalid-negative-rate.yaml": (
        "invalid-negative-rate.yaml: phases.overhead.rate: must be greater than 0, got -5"
    ),
    "invalid-wrong-type.yaml": (
        "invalid-wrong-type.yaml: engine.max_inflight: expected an integer, got string 'lots'"
    ),
    "invalid-wrong-type-section.yaml": (
        "invalid-wrong-type-section.yaml: phases: expected a mapping, got list"
    ),
    "invalid-ratio.yaml": (
        "invalid-ratio.yaml: slo.stress.success_ratio: must be between 0 and 1, got 1.5 "
        "(a ratio: 1.0 is 100%)"
    ),
    "invalid-rounds.yaml": "invalid-rounds.yaml: phases.stress.rounds: must be at least 1, got 0",
    "invalid-breaker-fault.yaml": (
        "invalid-breaker-fault.yaml: phases.breaker.fault: lead + fault (20s) must end before "
        "duration (20s) (the load must go on after the fault so the breaker can be seen to close)"
    ),
    "invalid-tier-order.yaml": (
        "invalid-tier-order.yaml: slo.tiers.p95.acceptable: must not be below target (5) "
        "(target is the better)"
    ),
    "invalid-memory-concurrency.yaml": (
        "invalid-memory-concurrency.yaml: phases.memory.concurrency: must be at least 1, got 0"
    ),
    "invalid-unknown-resilience.yaml": (
        "invalid-unknown-resilience.yaml: slo.failover.maximum: unknown key (did you mean 'max'?)"
    ),
    "invalid-kind.yaml": (
        "invalid-kind.yaml: gateway.kind: unknown value 'kong' (use openai, litellm or portkey)"
    ),
    "invalid-arrival.yaml": (
        "invalid-arrival.yaml: engine.arrival: unknown value 'bursty' (use constant or poisson)"
    ),
    "invalid-url.yaml": (
        "invalid-url.yaml: gateway.url: invalid URL 'ftp://127.0.0.1:4000' "
        "(use http://host:port or https://host/prefix)"
    ),
    "invalid-url-no-host.yaml": (
        "invalid-url-no-host.yaml: gateway.url: invalid URL 'http://:4000' "
        "(use http://host:port or https://host/prefix)"
    ),
    "invalid-url-credentials.yaml": (
        "invalid-url-credentials.yaml: gateway.url: URL must not carry credentials "
        "(use gateway.headers or api_key_env)"
    ),
    "invalid-mock-url.yaml": (
        "invalid-mock-url.yaml: mock.url: invalid URL '127.0.0.1:8080' "
        "(use http://host:port or https://host/prefix)"
    ),
    "invalid-no-url.yaml": (
        "invalid-no-url.yaml: gateway.url: missing required key "
        "(required unless gateway.managed is set)"
    ),
    "invalid-no-gateway.yaml": (
        "invalid-no-gateway.yaml: gateway: missing required key (add a gateway section; "
        "without --config soak runs its embedded LiteLLM setup)"
    ),
    "invalid-missing-env.yaml": (
        "invalid-missing-env.yaml: gateway.api_key_env: environment variable "
        "'SOAK_TEST_UNSET_KEY' is not set (export it, or use gateway.api_key_file)"
    ),
    "invalid-env-name-is-secret.yaml": (
        "invalid-env-name-is-secret.yaml: gateway.api_key_env: not a valid environment variable "
        "name (give the variable's name, not the secret itself)"
    ),
    "invalid-header-env.yaml": (
        "invalid-header-env.yaml: gateway.headers.Authorization: environment variable "
        "'SOAK_TEST_UNSET_TOKEN' is not set (export it or remove the reference)"
    ),
    "invalid-key-file.yaml": (
        "invalid-key-file.yaml: gateway.api_key_file: cannot read 'missing.key': "
        "No such file or directory (check the path and its permissions)"
    ),
    "invalid-both-keys.yaml": (
        "invalid-both-keys.yaml: gateway.api_key_file: set either api_key_env or api_key_file, "
        "not both"
    ),
    "invalid-generate-key-unmanaged.yaml": (
        "invalid-generate-key-unmanaged.yaml: gateway.generate_key: only for a managed gateway "
        "(soak can only hand a key to a gateway it starts)"
    ),
    "invalid-managed-command.yaml": (
        "invalid-managed-command.yaml: gateway.managed.command: expected a list of non-empty "
        "strings, got string 'litellm --port {port}'"
    ),
    "invalid-same-providers.yaml": (
        "invalid-same-providers.yaml: mock.fallback: must differ from mock.primary ('openai')"
    ),
    "invalid-version.yaml": (
        "invalid-version.yaml: version: unsupported version 2 (this soak reads version 1)"
    ),
    "invalid-version-missing.yaml": (
        "invalid-version-missing.yaml: version: missing required key "
        "(start the file with 'version: 1')"
    ),
    "invalid-profile.yaml": (
        "invalid-profile.yaml: profile: unknown value 'medium' (use quick or full)"
    ),
    "invalid-syntax.yaml": (
        "invalid-syntax.yaml: invalid YAML: mapping values are not allowed here (line 4, column 8)"
    ),
    "invalid-duplicate.yaml": (
        "invalid-duplicate.yaml: phases.stress: duplicate key (line 6, first at line 5)"
    ),
    "invalid-empty.yaml": "invalid-empty.yaml: empty file (start with 'version: 1')",
    "invalid-list.yaml": (
        "invalid-list.yaml: top level must be a mapping, got a list (start with 'version: 1')"
    ),
}


@pytest.fixture
def in_data(monkeypatch: pytest.MonkeyPatch) -> Path:
    """Run from the data folder so file labels in messages are the bare file names."""
    monkeypatch.chdir(DATA)
    return DATA


@pytest.mark.parametrize("name", sorted(INVALID))
def test_invalid_file_gives_exact_one_line_message(in_data: Path, name: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(name, env=ENV)
    message = str(info.value)
    assert message == INVALID[name]
    assert "\n" not in message
    assert PLANTED not in message and "planted" not in message


def test_every_invalid_file_has_an_expected_message() -> None:
    assert sorted(p.name for p in DATA.glob("invalid-*.yaml")) == sorted(INVALID)


@pytest.mark.parametrize("name", sorted(p.name for p in DATA.glob("valid-*.yaml")))
def test_valid_files_load(in_data: Path, name: str) -> None:
    config = load_config(name, env=ENV)
    assert isinstance(config, Config)
    assert config.source == name


def test_complete_file_sets_every_field(in_data: Path) -> None:
    c = load_config("valid-complete.yaml", env=ENV)
    gw = c.gateway
    assert (c.profile, gw.name, gw.kind, gw.url) == (
        "full",
        "my-gateway",
        "litellm",
        "http://127.0.0.1:4000",
    )
    assert gw.api_key == Secret(PLANTED) and gw.api_key_env == "SOAK_TEST_GATEWAY_KEY"
    assert gw.headers["Authorization"].reveal() == f"Bearer {PLANTED}"
    assert gw.headers["X-Team"].reveal() == "soak"
    assert gw.timeout == 60.0
    assert gw.managed is not None
    assert gw.managed.command == ("litellm", "--config", "{config}", "--port", "{port}")
    assert gw.managed.ready_url == "/health/liveliness" and gw.managed.restart_between_phases
    assert gw.managed.env["LITELLM_MASTER_KEY"].reveal() == PLANTED
    assert c.mock.url == "https://mock.internal:8443" and not c.mock.managed
    assert c.mock.control_token is not None and c.mock.control_token.reveal() == "tok-" + PLANTED
    assert (c.mock.primary, c.mock.fallback) == ("bedrock", "openai")
    assert (c.request.stream, c.request.max_tokens, c.request.prompt) == (True, 32, "Say hi")
    assert c.phases.overhead.duration == 90.0 and c.phases.overhead.latency == 0.25
    assert (c.phases.stress.rounds, c.phases.stress.gap) == (3, 0.0)
    assert (c.engine.arrival, c.engine.max_inflight, c.engine.seed) == ("poisson", 2000, 7)
    assert c.slo.stress.success_ratio == 0.99
    assert str(c.report.out) == "out/soak"
    p, slo = c.phases, c.slo
    assert (p.sustained.rate, p.sustained.duration, p.sustained.latency) == (16.667, 60.0, 1.0)
    b = p.breaker
    assert (b.rate, b.duration, b.latency, b.lead, b.fault) == (8.0, 40.0, 0.2, 4.0, 12.0)
    assert (b.window, b.closed_share, b.scrape_interval) == (2.0, 0.8, 0.5)
    assert (p.failover.requests, p.failover.rate, p.failover.latency) == (12, 1.5, 0.3)
    m = p.memory
    assert (m.requests, m.concurrency, m.latency, m.warmup) == (400, 40, 2.0, 8.0)
    assert (m.rate, m.duration) == (20.0, 20.0)
    assert (p.readiness.rate, p.readiness.duration, p.readiness.latency) == (12.0, 120.0, 0.15)
    s = slo.sustained
    assert (s.completed_ratio, s.throughput_ratio, s.p95, s.success_ratio) == (0.85, 0.75, 8, 0.6)
    assert (slo.breaker.success_ratio, slo.breaker.open_within, slo.breaker.recover_within) == (
        0.98,
        7.0,
        20.0,
    )
    assert (slo.failover.failed_over_ratio, slo.failover.mean, slo.failover.max) == (0.7, 4, 9)
    assert (slo.memory.growth, slo.memory.peak_ratio, slo.memory.slope_mb_per_min) == (
        0.8,
        1.5,
        12.5,
    )
    r = slo.readiness
    assert (r.success_ratio, r.throughput_ratio, r.p95, r.p99) == (0.97, 0.85, 4.0, 8.0)
    tiers = {k: (t.target, t.acceptable) for k, t in slo.tiers.items()}
    assert tiers == {
        "success_ratio": (0.999, 0.99), "throughput": (25.0, 18.0), "p50": (0.5, 1.0),
        "p95": (2.0, 4.0), "p99": (4.0, 8.0), "memory_growth": (0.1, 0.3),
        "failover_time": (0.5, 3.0),
    }  # fmt: skip


def test_embedded_default_is_managed_litellm_on_quick_without_env() -> None:
    c = load_config(None, env={})
    gw = c.gateway
    assert (c.source, c.profile) == ("(embedded default)", "quick")
    assert (gw.kind, gw.model, gw.url, gw.api_key, gw.api_key_env) == (
        "litellm",
        "soak-primary",
        None,
        None,
        None,
    )
    assert gw.generate_key is True
    assert gw.managed is not None and gw.managed.command == ()
    assert c.mock.managed and c.mock.port is None


def test_quick_and_full_profiles_carry_their_numbers(in_data: Path) -> None:
    quick = load_config("valid-minimal.yaml", env={})
    full = load_config("valid-minimal.yaml", profile="full", env={})
    q, f = quick.phases, full.phases
    assert (q.overhead.rate, q.overhead.duration, q.overhead.latency) == (20.0, 10.0, 0.1)
    assert (q.stress.rate, q.stress.latency, q.stress.in_flight) == (20.0, 2.0, 40.0)
    assert (q.stress.rounds, q.stress.gap, q.stress.timeout) == (2, 5.0, 30.0)
    assert (f.calibration.rate, f.calibration.duration, f.calibration.latency) == (
        1000.0,
        30.0,
        1.0,
    )
    assert (f.overhead.rate, f.overhead.duration, f.overhead.latency) == (1000.0, 30.0, 1.0)
    assert (f.stress.rate, f.stress.latency, f.stress.rounds, f.stress.gap) == (
        1000.0,
        1.0,
        2,
        30.0,
    )
    assert (f.stress.timeout, full.engine.max_inflight) == (30.0, 12000)
    assert (q.sustained.rate, q.sustained.duration, f.sustained.duration) == (20.0, 20.0, 60.0)
    assert f.sustained.rate * 60 == pytest.approx(1000.0, abs=0.1)  # 1000 requests per minute
    assert (q.breaker.duration, q.breaker.lead, q.breaker.fault) == (30.0, 3.0, 10.0)
    assert (q.failover.requests, f.failover.requests) == (20, 10)
    assert (q.memory.requests, q.memory.concurrency, q.memory.rate) == (200, 10, 10.0)
    assert (f.memory.requests, f.memory.concurrency) == (500, 50)  # the seed's 500 at 50
    assert (q.readiness.rate, q.readiness.duration, f.readiness.duration) == (10.0, 20.0, 120.0)
    quick_seconds = (
        sum(getattr(q, n).duration for n in ("calibration", "overhead", "sustained", "breaker"))
        + q.stress.rounds * q.stress.duration + q.stress.gap
        + q.failover.requests / q.failover.rate + q.memory.duration + q.readiness.duration
    )  # fmt: skip
    assert quick_seconds <= 180  # load time of the whole quick suite, gateway start excluded
    for c in (quick, full):  # the seed's thresholds in both profiles
        su, fo, me, re = c.slo.sustained, c.slo.failover, c.slo.memory, c.slo.readiness
        assert (su.completed_ratio, su.throughput_ratio, su.p95, su.success_ratio) == (
            0.9,
            0.8,
            10.0,
            0.7,
        )
        assert (fo.failed_over_ratio, fo.mean, fo.max) == (0.8, 5.0, 10.0)
        assert (me.growth, me.peak_ratio) == (1.0, 2.0)
        assert (re.success_ratio, re.throughput_ratio, re.p95, re.p99) == (0.95, 0.9, 5.0, 10.0)
        assert (c.slo.tiers["p99"].target, c.slo.tiers["p99"].acceptable) == (5.0, 10.0)
        o = c.slo.overhead
        assert (o.mean, o.p50, o.p90, o.p95, o.p99) == (0.005, 0.005, 0.01, 0.02, 0.1)
        assert c.slo.stress.success_ratio == 1.0


def test_user_file_wins_over_profile_key_by_key(in_data: Path) -> None:
    c = load_config("valid-override.yaml", env={})
    assert c.profile == "full"
    assert c.phases.stress.rate == 7.0  # from the file
    assert (c.phases.stress.latency, c.phases.stress.gap, c.phases.stress.rounds) == (1.0, 30.0, 2)
    assert c.slo.overhead.p99 == 0.25 and c.slo.overhead.p50 == 0.005
    assert c.gateway.api_key is not None and c.gateway.api_key.reveal() == "sk-file-secret-planted"
    assert c.gateway.api_key_file == Path("gateway.key")


def test_profile_argument_overrides_the_files_profile_key(in_data: Path) -> None:
    assert load_config("valid-override.yaml", profile="quick", env={}).phases.overhead.rate == 20.0
    with pytest.raises(ConfigError) as info:
        load_config("valid-minimal.yaml", profile="medium", env={})
    assert str(info.value) == "profile: unknown profile 'medium' (use quick or full)"
    assert PROFILES == ("quick", "full")
    with pytest.raises(ConfigError) as info:
        load_config("invalid-profile.yaml", profile="full", env={})
    assert str(info.value) == INVALID["invalid-profile.yaml"]


def test_errors_name_the_layer_a_key_came_from() -> None:
    merged, locate = layer(
        [("<profile quick>", {"a": {"b": 1, "c": 2}}), ("my.yaml", {"a": {"c": 3, "d": {"e": 4}}})]
    )
    assert merged == {"a": {"b": 1, "c": 3, "d": {"e": 4}}}
    assert locate(("a", "b")) == "<profile quick>"
    assert locate(("a", "c")) == "my.yaml"
    assert locate(("a", "d", "e", "deeper")) == "my.yaml"


def test_absolute_path_is_named_as_given(tmp_path: Path) -> None:
    path = tmp_path / "soak.yaml"
    path.write_text("version: 1\ngateway: {url: http://127.0.0.1:1}\nengine: {seed: -1}\n")
    with pytest.raises(ConfigError) as info:
        load_config(path, env={})
    assert str(info.value) == f"{path}: engine.seed: must be at least 0, got -1"


def test_unreadable_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(tmp_path / "nope.yaml", env={})
    assert (
        str(info.value) == f"{tmp_path / 'nope.yaml'}: cannot read file (No such file or directory)"
    )
    (tmp_path / "key.d").mkdir()
    cfg = tmp_path / "c.yaml"
    cfg.write_text("version: 1\ngateway: {url: 'http://127.0.0.1:1', api_key_file: key.d}\n")
    with pytest.raises(ConfigError) as info:
        load_config(cfg, env={})
    assert str(info.value) == (
        f"{cfg}: gateway.api_key_file: cannot read '{tmp_path / 'key.d'}': Is a directory "
        "(check the path and its permissions)"
    )


def _secret_config(tmp_path: Path) -> Config:
    (tmp_path / "k").write_text(PLANTED + "\n")
    path = tmp_path / "s.yaml"
    path.write_text(
        "version: 1\n"
        "gateway:\n"
        "  kind: litellm\n"
        "  api_key_file: k\n"
        "  headers: {Authorization: 'Bearer ${PLANTED_ENV}', X-Lit: 'a$$b'}\n"
        "  managed: {env: {LITELLM_MASTER_KEY: '${PLANTED_ENV}'}}\n"
        "mock: {url: 'http://127.0.0.1:9', control_token_env: PLANTED_ENV}\n"
    )
    return load_config(path, env={"PLANTED_ENV": PLANTED})


def test_secrets_never_in_repr_str_or_describe(tmp_path: Path) -> None:
    c = _secret_config(tmp_path)
    assert c.gateway.api_key is not None and c.gateway.api_key.reveal() == PLANTED
    assert c.gateway.headers["Authorization"].reveal() == f"Bearer {PLANTED}"
    assert c.gateway.headers["X-Lit"].reveal() == "a$b"
    for text in (repr(c), str(c), f"{c.gateway}", json.dumps(describe(c))):
        assert PLANTED not in text
    assert repr(c.gateway.api_key) == "Secret('***')" and f"{c.gateway.api_key}" == "***"
    d = describe(c)
    assert d["gateway"]["api_key"] == "***" and d["gateway"]["headers"] == {
        "Authorization": "***",
        "X-Lit": "***",
    }
    assert d["gateway"]["managed"]["env"] == {"LITELLM_MASTER_KEY": "***"}
    assert d["mock"]["control_token"] == "***" and d["mock"]["control_token_env"] == "PLANTED_ENV"
    assert d["phases"]["stress"]["latency"] == 2.0 and d["slo"]["overhead"]["p99"] == 0.1


def test_secrets_never_in_error_messages(tmp_path: Path) -> None:
    path = tmp_path / "e.yaml"
    url, header = "url: 'http://127.0.0.1:1'", "gateway.headers.X-K"
    cases = {
        f"gateway: {{{url}, api_key_env: '{PLANTED}'}}": "gateway.api_key_env",
        f"gateway: {{url: 'http://u:{PLANTED}@127.0.0.1:1'}}": "gateway.url",
        f'gateway: {{{url}, headers: {{X-K: "${{PLANTED_ENV}}\\n"}}}}': header,
        f"gateway: {{{url}, headers: {{X-K: [1]}}, api_key_env: PLANTED_ENV}}": header,
        f"gateway: {{{url}, api_key_env: PLANTED_ENV}}\nengine: {{seed: x}}": "engine.seed",
    }
    for body, key in cases.items():
        path.write_text(f"version: 1\n{body}\n")
        with pytest.raises(ConfigError) as info:
            load_config(path, env={"PLANTED_ENV": PLANTED})
        assert f": {key}: " in str(info.value)
        assert PLANTED not in str(info.value)


def test_secret_cannot_be_pickled_and_compares_by_value() -> None:
    import pickle

    with pytest.raises(TypeError):
        pickle.dumps(Secret(PLANTED))
    assert Secret("a") == Secret("a") and Secret("a") != Secret("b")


def test_yaml_quirks_are_one_line_errors() -> None:
    with pytest.raises(ConfigError) as info:
        parse_yaml("a: 1\n---\nb: 2\n", "x.yaml")
    assert str(info.value).startswith("x.yaml: invalid YAML: ") and "\n" not in str(info.value)
    with pytest.raises(ConfigError) as info:
        parse_yaml("!!python/object:os.system {}\n", "x.yaml")
    assert str(info.value).startswith("x.yaml: invalid YAML: could not determine a constructor")
    assert parse_yaml("# only a comment\nversion: 1\n", "x.yaml") == {"version": 1}


@pytest.mark.parametrize(
    ("text", "seconds"),
    [(0, 0.0), (1.5, 1.5), ("250ms", 0.25), ("1s", 1.0), ("1m30s", 90.0), ("1h", 3600.0),
     ("1h30m", 5400.0), ("2.5s", 2.5), ("100us", 1e-4), (" 5m ", 300.0)],
)  # fmt: skip
def test_durations_parse(text: object, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["5x", "", "5", "1.s", "ms", "-1s", "1 s", "nan", "1e3s"])
def test_duration_garbage_and_negatives_rejected(text: str) -> None:
    with pytest.raises(ValueError, match="duration"):
        parse_duration(text)


@pytest.mark.parametrize("value", [-1, float("inf"), float("nan")])
def test_negative_or_infinite_numbers_rejected(value: float) -> None:
    with pytest.raises(ValueError):
        parse_duration(value)


@pytest.mark.parametrize("value", [True, None, [1], {"s": 1}])
def test_duration_wrong_types_rejected(value: object) -> None:
    with pytest.raises(TypeError):
        parse_duration(value)


def test_docs_name_every_key(in_data: Path) -> None:
    """docs/config.md documents every key the loader accepts (derived fields excepted)."""
    docs = (Path(__file__).parents[1] / "docs" / "config.md").read_text()
    derived = {"source", "managed", "api_key", "control_token"}
    free_form = {"headers", "env"}

    def keys(tree: dict[str, object]) -> set[str]:
        found = set()
        for key, value in tree.items():
            found.add(key)
            if isinstance(value, dict) and key not in free_form:
                found |= keys(value)
        return found

    missing = {
        key
        for key in keys(describe(load_config("valid-complete.yaml", env=ENV))) - derived
        if f"`{key}`" not in docs and f"`.{key}`" not in docs and f".{key}`" not in docs
    }
    assert missing == set()


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("request: {prompt: null}", "request.prompt: expected a string, got null"),
        ("report: {out: null}", "report.out: expected a string, got null"),
        ("report: {out: '  '}", "report.out: must not be empty"),
        ("gateway: null", "gateway: expected a mapping, got null"),
        ("engine: {max_inflight: 2.5}", "engine.max_inflight: expected an integer, got number 2.5"),
        (
            "phases: {stress: {rate: true}}",
            "phases.stress.rate: expected a number, got boolean True",
        ),
        ("mock: {port: 70000, url: null}", "mock.port: must be at most 65535, got 70000"),
        (
            "mock: {port: 8080, url: 'http://127.0.0.1:1'}",
            "mock.port: only for a mock soak starts (remove mock.port or set mock.url: null)",
        ),
        (
            "slo: {overhead: {p99: 0}}",
            "slo.overhead.p99: must be longer than 0 (use 500ms, 30s, 5m, 1h30m)",
        ),
    ],
)
def test_null_and_range_edge_cases(tmp_path: Path, body: str, message: str) -> None:
    path = tmp_path / "edge.yaml"
    gateway = "" if body.startswith("gateway") else "gateway: {url: 'http://127.0.0.1:1'}\n"
    path.write_text(f"version: 1\n{gateway}{body}\n")
    with pytest.raises(ConfigError) as info:
        load_config(path, env={})
    assert str(info.value) == f"{path}: {message}"


def test_generate_key_falls_back_only_when_the_env_var_is_unset(tmp_path: Path) -> None:
    path = tmp_path / "gen.yaml"
    path.write_text(
        "version: 1\n"
        "gateway: {kind: litellm, managed: {}, api_key_env: GW_KEY, generate_key: true}\n"
    )
    assert load_config(path, env={}).gateway.api_key is None  # soak generates one
    key = load_config(path, env={"GW_KEY": PLANTED}).gateway.api_key
    assert key is not None and key.reveal() == PLANTED


def test_key_file_first_line_and_empty_file(tmp_path: Path) -> None:
    (tmp_path / "k").write_text("\n  sk-first  \nsecond line\n")
    path = tmp_path / "c.yaml"
    path.write_text("version: 1\ngateway: {url: 'http://127.0.0.1:1', api_key_file: k}\n")
    key = load_config(path, env={}).gateway.api_key
    assert key is not None and key.reveal() == "sk-first"
    (tmp_path / "k").write_text(" \n")
    with pytest.raises(ConfigError) as info:
        load_config(path, env={})
    assert str(info.value) == (
        f"{path}: gateway.api_key_file: '{tmp_path / 'k'}' is empty (put the key on the first line)"
    )
