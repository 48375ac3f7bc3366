"""The workload section and its seeded plan, without any load."""

from __future__ import annotations

import json
import math
import statistics
from pathlib import Path

import pytest

from soak.config import Config, ConfigError, describe
from soak.config.workload import Distribution
from soak.phases import load_config
from soak.workload import RequestPlan, samples, variants

N = 20_000
KEYS = "sk-tenant-one\nsk-tenant-two\nsk-tenant-three\n"


def _config(tmp_path: Path, body: str, env: dict[str, str] | None = None) -> Config:
    path = tmp_path / "soak.yaml"
    path.write_text("version: 1\ngateway: {url: 'http://127.0.0.1:4000'}\n" + body)
    return load_config(path, env=env or {})


@pytest.mark.parametrize(
    ("dist", "mean", "stddev"),
    [
        (Distribution("fixed", value=1024), 1024, 0),
        (Distribution("uniform", min=1000, max=3000), 2000, 2000 / math.sqrt(12)),
        (Distribution("normal", mean=5000, stddev=500, min=1, max=1e6), 5000, 500),
        (Distribution("lognormal", mean=4096, stddev=2048, min=1, max=1e7), 4096, 2048),
        (Distribution("histogram", values=(100, 1000, 10000), weights=(6, 3, 1)),
         0.6 * 100 + 0.3 * 1000 + 0.1 * 10000,
         math.sqrt(0.6 * 100**2 + 0.3 * 1000**2 + 0.1 * 10000**2 - 1360**2)),
    ],
)  # fmt: skip
def test_distributions_reproduce_mean_and_spread(
    dist: Distribution, mean: float, stddev: float
) -> None:
    """With a fixed seed, N draws have the configured mean within 4 standard errors and the
    configured spread within 5% (rounding to integers adds < 0.3 to either)."""
    got = samples(dist, N, seed=7)
    assert abs(statistics.fmean(got) - mean) <= 4 * stddev / math.sqrt(N) + 0.5
    assert abs(statistics.pstdev(got) - stddev) <= 0.05 * stddev + 0.5
    assert samples(dist, 50, seed=7) == got[:50]  # seeded: the same draws again


def test_default_workload_is_todays_request(tmp_path: Path) -> None:
    config = _config(tmp_path, "")
    assert config.workload.default
    [v] = variants(config.workload, prompt="Hello, how are you?", max_tokens=16)
    assert (v.structure, v.max_tokens, v.messages) == (
        "single", 16, ({"role": "user", "content": "Hello, how are you?"},))
    assert describe(config)["workload"]["prompt_bytes"] is None


def test_plan_is_seeded_and_mixes_models_and_keys(tmp_path: Path) -> None:
    body = """workload:
  seed: 3
  prompt_bytes: {dist: uniform, min: 1000, max: 40000}
  answer_tokens: {dist: histogram, values: [16, 256], weights: [1, 1]}
  structure: {single: 1, history: 1, system: 1, tools: 1}
  models: {small: 3, large: 1}
  keys: {env: SOAK_TEST_KEYS, header: x-tenant-key, scheme: ''}
  variants: 32
"""
    config = _config(tmp_path, body, {"SOAK_TEST_KEYS": KEYS})
    w = config.workload
    plans = [RequestPlan(w, api=api, stream=False, model="gw", prompt="hi", max_tokens=16)
             for api in ("openai", "openai", "anthropic")]  # fmt: skip
    a, b, anthropic = plans
    assert [a.pick(s) for s in range(100)] == [b.pick(s) for s in range(100)]
    models = [a.model_of(s) for s in range(4096)]
    assert abs(models.count("small") / 4096 - 0.75) < 0.03
    assert {a.key_of(s) for s in range(9)} == {"key-0", "key-1", "key-2"}
    assert a.header_sets[1] == {"x-tenant-key": "sk-tenant-two"}
    assert {v.structure for v in a.variants} == {"single", "history", "system", "tools"}
    for s in range(64):  # every body is valid JSON with the nonce last in the last user message
        head, tail, _ = anthropic.pick(s)
        sent = json.loads(head + b"[soak:x:1]" + tail)
        assert sent["messages"][-1]["content"].endswith(" [soak:x:1]")
        assert sent["model"] == anthropic.model_of(s)
        assert sent["max_tokens"] == anthropic.variant_of(s).max_tokens
        assert ("system" in sent) == (anthropic.variant_of(s).structure == "system")
        size = anthropic.variant_of(s).prompt_bytes
        assert 1000 <= size <= 40000 and abs(len(head) + len(tail) - size) < size * 0.2 + 1500
    shown = json.dumps(describe(config))
    assert "sk-tenant" not in shown and "SOAK_TEST_KEYS" in shown


def test_replay_file(tmp_path: Path) -> None:
    lines = [{"prompt": "first question"},
             {"messages": [{"role": "system", "content": "s"}, {"role": "user", "content": "q"}]}]
    (tmp_path / "p.jsonl").write_text("\n".join(json.dumps(x) for x in lines) + "\n")
    w = _config(tmp_path, "workload: {replay: p.jsonl}\n").workload
    plan = RequestPlan(w, api="openai", stream=True, model="m", prompt="hi", max_tokens=16)
    sent = [json.loads(plan.pick(s)[0] + b"N" + plan.pick(s)[1]) for s in range(50)]
    assert {m["messages"][-1]["content"] for m in sent} == {"first question N", "q N"}


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("workload: {prompt_bytes: {dist: zipf}}", "workload.prompt_bytes.dist: unknown value"),
        ("workload: {prompt_bytes: {dist: fixed, value: 99999999}}",
         "workload.prompt_bytes.value: must be between 0 and 8.38861e+06, got 1e+08"),
        ("workload: {answer_tokens: {dist: uniform, min: 10}}",
         "workload.answer_tokens.max: missing required key"),
        ("workload: {answer_tokens: {dist: histogram, values: [1, 2], weights: [1]}}",
         "workload.answer_tokens.weights: needs one weight per value"),
        ("workload: {structure: {chat: 1}}", "workload.structure.chat: unknown key"),
        ("workload: {keys: {env: SOAK_NO_SUCH_VAR}}",
         "workload.keys.env: environment variable 'SOAK_NO_SUCH_VAR' is not set"),
        ("workload: {replay: missing.jsonl}", "workload.replay: cannot read"),
        ("workload: {models: {'a b': 1}}", "workload.models.a b: invalid name"),
    ],
)  # fmt: skip
def test_bad_workload_is_one_line(tmp_path: Path, body: str, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        _config(tmp_path, body + "\n")
    assert message in str(info.value) and "\n" not in str(info.value)
