"""LiteLLM proxy: the config soak writes for it, its bearer auth and its `/metrics/` self-report.

Routes (checked against litellm 1.106.2, see docs/gateways.md): model group `<model>` is one
deployment `openai/<model>` at the mock's primary, group `soak-fallback` one deployment at the
fallback, and `fallbacks` sends a failed primary call to the fallback group. Cooldown (LiteLLM's
breaker) engages on a single-deployment group only because `router_settings.allowed_fails` is
set explicitly to a value other than LiteLLM's default of 3; each deployment's upstream model is
its group name so the `litellm_deployment_state` series written on cooldown and the one
written on success are the same series (otherwise a stale "complete outage" lingers).
"""

from __future__ import annotations

import json
import os
import re
import secrets
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Self
from urllib.parse import urlsplit

from soak.gateway.kind import GatewayKind, LaunchSpec
from soak.gateway.selfreport import (
    CLOSED,
    HALF_OPEN,
    OPEN,
    MetricSample,
    SelfReport,
    histogram,
    parse_samples,
    total,
)

if TYPE_CHECKING:
    from soak.config.schema import GatewayConfig

LITELLM_DEFAULT_ALLOWED_FAILS = 3
"""LiteLLM treats this router value as "not set" and falls back to its rate-based cooldown,
which never cools down a single-deployment group."""

PRIMARY_APIS = ("openai", "bedrock")
BEDROCK_MODEL_ID = "anthropic.claude-3-haiku-20240307-v1:0"
"""The Bedrock model id the primary deployment names (the mock serves any id)."""
BEDROCK_REGION = "us-east-1"
_DEPLOYMENT_PREFIX = "soak-deployment-"
_PROVIDER_IN_URL = re.compile(r"/p/([A-Za-z0-9_.-]{1,64})(?:/|$)")
_STATE = {0: CLOSED, 1: HALF_OPEN, 2: OPEN}


def provider_of(api_base: str | None) -> str | None:
    """The mock provider a deployment's api_base points at (`.../p/<provider>/v1`)."""
    if not api_base:
        return None
    match = _PROVIDER_IN_URL.search(api_base)
    return match.group(1) if match else None


class LiteLLMKind(GatewayKind):
    """The LiteLLM proxy (`pip install 'litellm[proxy]'`), one worker by default."""

    name = "litellm"
    title = "LiteLLM"
    metrics_path = "/metrics/"  # without the slash LiteLLM answers a redirect
    self_headers = (
        "x-litellm-model-api-base",
        "x-litellm-model-id",
        "x-litellm-attempted-retries",
        "x-litellm-attempted-fallbacks",
    )
    primary_apis = PRIMARY_APIS
    fallback_group = "soak-fallback"

    def __init__(
        self,
        *,
        allowed_fails: int = 1,
        cooldown_time: float = 5.0,
        request_timeout: float = 30.0,
        workers: int = 1,
        executable: str | None = None,
        primary_api: str = "openai",
    ) -> None:
        if allowed_fails < 0 or allowed_fails == LITELLM_DEFAULT_ALLOWED_FAILS:
            raise ValueError(
                f"litellm allowed_fails: {allowed_fails} would disable cooldown of a "
                f"single-deployment group (LiteLLM reads {LITELLM_DEFAULT_ALLOWED_FAILS} as unset);"
                " use another value >= 0"
            )
        if primary_api not in PRIMARY_APIS:
            raise ValueError(
                f"litellm primary_api: unknown API {primary_api!r} (use openai or bedrock)"
            )
        self.primary_api = primary_api
        self.allowed_fails = allowed_fails
        self.cooldown_time = cooldown_time
        self.request_timeout = request_timeout
        self.workers = workers
        self.executable = executable or _litellm_script()

    @classmethod
    def from_config(cls, gateway: GatewayConfig) -> Self:
        """Routes the primary through `gateway.primary_api` (openai or bedrock)."""
        return cls(primary_api=gateway.primary_api)

    def config(self, *, mock_url: str, primary: str, fallback: str, model: str) -> dict[str, Any]:
        """The proxy config as a dict (written by `prepare`)."""
        base = mock_url.rstrip("/")
        fallback_group = self.fallback_group if model != self.fallback_group else f"{model}-2"

        def deployment(group: str, provider: str) -> dict[str, Any]:
            return {
                "model_name": group,
                "litellm_params": {
                    "model": f"openai/{group}",
                    "api_base": f"{base}/p/{provider}/v1",
                    "api_key": "mock",
                },
                "model_info": {"id": f"{_DEPLOYMENT_PREFIX}{provider}"},
            }

        first = deployment(model, primary)
        if self.primary_api == "bedrock":  # the seed's topology: a Bedrock primary, SigV4-signed
            first["litellm_params"] = bedrock_params(f"{base}/p/{primary}", model)
        return {
            "model_list": [first, deployment(fallback_group, fallback)],
            "litellm_settings": {
                "callbacks": ["prometheus"],
                "num_retries": 0,
                "request_timeout": self.request_timeout,
                "fallbacks": [{model: [fallback_group]}],
            },
            "router_settings": {
                "num_retries": 0,
                "allowed_fails": self.allowed_fails,
                "cooldown_time": self.cooldown_time,
            },
            "general_settings": {"master_key": "os.environ/LITELLM_MASTER_KEY"},
        }

    def prepare(
        self,
        workdir: Path,
        *,
        mock_url: str,
        primary: str,
        fallback: str,
        port: int,
        model: str,
        api_key: str | None = None,
    ) -> LaunchSpec:
        workdir.mkdir(parents=True, exist_ok=True)
        key = api_key or f"sk-soak-{secrets.token_hex(16)}"
        path = workdir / "litellm-config.yaml"
        cfg = self.config(mock_url=mock_url, primary=primary, fallback=fallback, model=model)
        # JSON is YAML: LiteLLM reads it with its YAML loader, and soak needs no YAML writer.
        path.write_text(json.dumps(cfg, indent=2) + "\n", encoding="utf-8")
        env = {
            "LITELLM_MASTER_KEY": key,
            "LITELLM_LOCAL_MODEL_COST_MAP": "True",  # offline: no fetch of the price map
            "LITELLM_DONT_SHOW_FEEDBACK_BOX": "true",
        }
        env.update(_no_proxy_for(mock_url))
        if self.workers > 1:  # otherwise LiteLLM shares one dir in /tmp across every proxy
            env["PROMETHEUS_MULTIPROC_DIR"] = str(workdir / "prometheus-multiproc")
        argv = (
            *self.executable_argv(),
            "--config", str(path),
            "--host", "127.0.0.1",
            "--port", str(port),
            "--num_workers", str(self.workers),
        )  # fmt: skip
        url = f"http://127.0.0.1:{port}"
        return LaunchSpec(
            argv=argv,
            env=env,
            url=url,
            ready_url=f"{url}/health/liveliness",
            files={"config": path},
            api_key=key,
            secrets=(key,),
        )

    def executable_argv(self) -> tuple[str, ...]:
        return (self.executable,)

    def served_by(self, headers: Mapping[str, str], *, primary: str, fallback: str) -> str | None:
        """The deployment that answered: `x-litellm-model-api-base` (OpenAI deployments), else
        `x-litellm-model-id` of a deployment soak wrote (Bedrock ones send no api base)."""
        lowered = {k.lower(): v for k, v in headers.items()}
        provider = provider_of(lowered.get("x-litellm-model-api-base"))
        if provider is None:
            model_id = lowered.get("x-litellm-model-id", "")
            if model_id.startswith(_DEPLOYMENT_PREFIX):
                provider = model_id[len(_DEPLOYMENT_PREFIX) :] or None
        return provider

    def retries(self, headers: Mapping[str, str]) -> int | None:
        """Retries plus fallbacks LiteLLM says it made for this response."""
        lowered = {k.lower(): v for k, v in headers.items()}
        found = [lowered.get(f"x-litellm-attempted-{n}") for n in ("retries", "fallbacks")]
        if all(v is None for v in found):
            return None
        return sum(int(v) for v in found if v is not None and v.isdigit())

    def parse_self_report(self, text: str) -> SelfReport:
        samples = parse_samples(text, SELF_REPORT_FAMILIES)
        return SelfReport(
            source="litellm /metrics/",
            overhead=histogram(samples, "litellm_overhead_latency_metric"),
            upstream_latency=histogram(samples, "litellm_llm_api_latency_metric"),
            total_latency=histogram(samples, "litellm_request_total_latency_metric"),
            breaker=deployment_states(samples),
            cooldowns=_by_provider(samples, "litellm_deployment_cooled_down_total"),
            fallbacks=total(samples, "litellm_deployment_successful_fallbacks_total"),
            rss_bytes=total(samples, "process_resident_memory_bytes"),
            cpu_seconds=total(samples, "process_cpu_seconds_total"),
        )


SELF_REPORT_FAMILIES = (
    "litellm_overhead_latency_metric",
    "litellm_llm_api_latency_metric",
    "litellm_request_total_latency_metric",
    "litellm_deployment_state",
    "litellm_deployment_cooled_down",
    "litellm_deployment_successful_fallbacks",
    "process_resident_memory_bytes",
    "process_cpu_seconds",
)
"""The metric families `parse_self_report` reads (prefixes: `_total`, `_bucket` follow)."""


def bedrock_params(endpoint: str, model_id: str = BEDROCK_MODEL_ID) -> dict[str, Any]:
    """A Bedrock Converse deployment at `endpoint` (the mock's `/p/<provider>`) with fake AWS
    credentials: LiteLLM signs with SigV4 (the mock checks the header's shape, not the key)."""
    return {
        "model": f"bedrock/converse/{model_id}",
        "aws_bedrock_runtime_endpoint": endpoint,
        "aws_access_key_id": "AKIASOAKMOCK00000000",
        "aws_secret_access_key": "soak-mock-not-a-secret",
        "aws_region_name": BEDROCK_REGION,
    }


def deployment_states(samples: list[MetricSample]) -> dict[str, int]:
    """Provider → reported breaker state from `litellm_deployment_state` (0 healthy, 1 partial
    outage, 2 complete outage = cooled down).

    LiteLLM writes a deployment's state into more than one series when the group name differs
    from the upstream model name (always for a Bedrock deployment: `converse/<id>`): failures
    and successes under the upstream name, the cooldown (2) under the group name, and it never
    resets the latter. So per deployment (model_id): a 0 anywhere means it served since (the
    2 is stale) → healthy; otherwise the worst series (a 1 next to a 2 is a deployment failing
    *and* cooled down). Per provider the lowest of its deployments wins: a provider is out only
    when every deployment on it is out."""
    per_model: dict[tuple[str, str], set[int]] = {}
    for s in samples:
        if s.name != "litellm_deployment_state":
            continue
        provider = _provider(s.labels)
        if provider is None:
            continue
        key = (provider, s.labels.get("model_id", ""))
        per_model.setdefault(key, set()).add(_STATE.get(int(s.value), OPEN))
    out: dict[str, int] = {}
    for (provider, _), states in per_model.items():
        state = CLOSED if CLOSED in states else max(states)
        out[provider] = min(state, out.get(provider, OPEN))
    return out


def _provider(labels: Mapping[str, str]) -> str | None:
    """A series' provider from its `api_base`, else from a model id soak wrote (LiteLLM labels
    the cooldown of a Bedrock deployment with an empty api_base)."""
    provider = provider_of(labels.get("api_base"))
    if provider is None:
        model_id = labels.get("model_id", "")
        if model_id.startswith(_DEPLOYMENT_PREFIX):
            provider = model_id[len(_DEPLOYMENT_PREFIX) :] or None
    return provider


def _by_provider(samples: list[MetricSample], name: str) -> dict[str, float]:
    out: dict[str, float] = {}
    for s in samples:
        if s.name == name and (provider := _provider(s.labels)):
            out[provider] = out.get(provider, 0.0) + s.value
    return out


def _no_proxy_for(mock_url: str) -> dict[str, str]:
    """NO_PROXY extended with the mock's host: an HTTP(S)_PROXY in the environment must not
    carry the gateway's calls to the mock (httpx honours both spellings)."""
    host = urlsplit(mock_url).hostname or "127.0.0.1"
    current = os.environ.get("NO_PROXY") or os.environ.get("no_proxy") or ""
    hosts = [h for h in current.split(",") if h.strip()]
    for extra in (host, "127.0.0.1", "localhost"):
        if extra not in hosts:
            hosts.append(extra)
    value = ",".join(hosts)
    return {"NO_PROXY": value, "no_proxy": value}


def _litellm_script() -> str:
    """The `litellm` console script of this interpreter's environment, else the one on PATH."""
    here = Path(sys.executable).with_name("litellm")
    return str(here) if here.exists() else "litellm"


KIND = LiteLLMKind
