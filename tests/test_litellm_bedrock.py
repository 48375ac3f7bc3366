"""The LiteLLM kind with a Bedrock primary: the config soak writes, served-by from the model id,
and the reported state of a Bedrock deployment whose cooldown series has no api_base."""

from __future__ import annotations

import pytest

from soak.gateway.kinds.litellm import LiteLLMKind
from soak.gateway.selfreport import CLOSED, HALF_OPEN, OPEN

ROUTE = {"primary": "primary", "fallback": "fallback"}
BASE = "http://127.0.0.1:1/p/primary/model/soak-primary/converse"


def test_bedrock_primary_and_openai_fallback_config() -> None:
    cfg = LiteLLMKind(primary_api="bedrock").config(
        mock_url="http://127.0.0.1:9/", model="soak-primary", **ROUTE
    )
    primary, fallback = cfg["model_list"]
    params = primary["litellm_params"]
    assert primary["model_name"] == "soak-primary"
    assert params["model"] == "bedrock/converse/soak-primary"
    assert params["aws_bedrock_runtime_endpoint"] == "http://127.0.0.1:9/p/primary"
    assert params["aws_region_name"] == "us-east-1" and params["aws_access_key_id"]
    assert fallback["litellm_params"]["api_base"] == "http://127.0.0.1:9/p/fallback/v1"
    assert cfg["litellm_settings"]["fallbacks"] == [{"soak-primary": ["soak-fallback"]}]
    plain = LiteLLMKind().config(mock_url="http://127.0.0.1:9", model="soak-primary", **ROUTE)
    assert plain["model_list"][0]["litellm_params"]["model"] == "openai/soak-primary"
    with pytest.raises(ValueError, match="litellm primary_api: unknown API 'grpc'"):
        LiteLLMKind(primary_api="grpc")


def test_served_by_and_retries_from_headers() -> None:
    kind = LiteLLMKind(primary_api="bedrock")
    said = {"x-litellm-model-id": "soak-deployment-fallback", "x-litellm-attempted-fallbacks": "1"}
    assert kind.served_by(said, **ROUTE) == "fallback" and kind.retries(said) == 1
    api_base = {"x-litellm-model-api-base": "http://h/p/primary/v1", "x-litellm-model-id": "x"}
    assert kind.served_by(api_base, **ROUTE) == "primary" and kind.retries(api_base) is None
    assert kind.served_by({"x-litellm-model-id": "someone-elses"}, **ROUTE) is None


def _metrics(upstream: float, cooldown: float | None) -> str:
    lines = [
        f'litellm_deployment_state{{api_base="{BASE}",litellm_model_name="converse/soak-primary"'
        f',model_id="soak-deployment-primary"}} {upstream}',
        'litellm_deployment_state{api_base="http://127.0.0.1:1/p/fallback/v1",'
        'litellm_model_name="soak-fallback",model_id="soak-deployment-fallback"} 0.0',
    ]
    if cooldown is not None:
        lines += [
            'litellm_deployment_state{api_base="",litellm_model_name="soak-primary",'
            f'model_id="soak-deployment-primary"}} {cooldown}',
            'litellm_deployment_cooled_down_total{api_base="",exception_status="503",'
            'litellm_model_name="soak-primary",model_id="soak-deployment-primary"} 1.0',
        ]
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize(
    ("upstream", "cooldown", "state"),
    [
        (1.0, 2.0, OPEN),  # failing and cooled down (as measured through LiteLLM 1.106.2)
        (1.0, None, HALF_OPEN),  # failing, not cooled down
        (0.0, 2.0, CLOSED),  # served again: the cooldown series is stale
    ],
)
def test_bedrock_deployment_state_reads_the_cooldown_series(upstream, cooldown, state) -> None:
    report = LiteLLMKind().parse_self_report(_metrics(upstream, cooldown))
    assert report.breaker == {"primary": state, "fallback": CLOSED}
    assert report.cooldowns == ({"primary": 1.0} if cooldown is not None else {})
