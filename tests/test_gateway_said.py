"""Gateway-said vs mock-saw tallies per phase, their report note and markdown section."""

from __future__ import annotations

import asyncio

from soak.client import gateway_headers
from soak.gateway.kinds.litellm import LiteLLMKind
from soak.gateway.kinds.portkey import PortkeyKind
from soak.gateway.said import GatewaySaid
from soak.gateway.selfreport import OPEN, SelfReport
from soak.reports.gateway_md import gateway_section
from soak.results import Outcome, Result
from soak.summary import PhaseReport, RunReport, Status


def _result(seq: int, headers: dict[str, str] | None, provider: str | None) -> Result:
    outcome = Outcome.OK if provider else Outcome.HTTP_5XX
    captured = None if headers is None else gateway_headers(headers)
    return Result(seq, 0.0, 0.0, 0.01, outcome, 200, provider=provider, gateway_headers=captured)


def test_client_keeps_only_the_allowlisted_headers() -> None:
    headers = {"x-portkey-retry-attempt-count": "2", "set-cookie": "secret", "x-other": "1"}
    assert gateway_headers(headers) == (("x-portkey-retry-attempt-count", "2"),)
    assert gateway_headers({"content-type": "application/json"}) is None


def test_portkey_tally_flags_a_disagreement_and_counts_retries() -> None:
    said = GatewaySaid(PortkeyKind(), "primary", "fallback")
    forwarded: list[str] = []
    observe = said.observe(lambda r, phase: forwarded.append(phase))
    idx = "x-portkey-last-used-option-index"
    observe(_result(1, {idx: "config.targets[0]"}, "primary"), "failover")
    observe(_result(2, {idx: "config.targets[1]", "x-portkey-retry-attempt-count": "2"},
                    "fallback"), "failover")  # fmt: skip
    observe(_result(3, {idx: "config.targets[0]"}, "fallback"), "failover")  # a lie
    observe(_result(4, None, "primary"), "failover")  # no gateway headers: not counted
    observe(_result(5, {idx: "config.targets[0]"}, "primary"), "other")
    assert forwarded == ["failover"] * 4 + ["other"]
    report = PhaseReport(name="failover", kind="failover", status=Status.PASSED)

    async def reported() -> SelfReport:
        return SelfReport(source="x", breaker={"primary": OPEN})

    asyncio.run(said.attach(report, reported))
    data = report.gateway_said
    assert data["said"] == {"fallback": 1, "primary": 2}
    assert data["saw"] == {"fallback": 2, "primary": 1}
    assert (data["agree"], data["disagree"]) == (2, 1)
    assert data["disagreements"] == {"primary->fallback": 1}
    assert (data["retries"], data["retried_requests"]) == (2, 1)
    assert data["reported_state"] == {"primary": "OPEN"}
    assert report.notes == [
        "gateway and mock disagree on 1 request(s): the gateway says primary served, the mock's"
        " marker says fallback"
    ]
    assert said.take("failover") is None and "other" in said.phases
    text = "\n".join(gateway_section(RunReport("r", 0, 1, "pk", "portkey", "quick", [report])))
    assert "## What the gateway said" in text and "**Disagreement** in failover" in text
    assert (
        "| failover | fallback 1, primary 2 | fallback 2, primary 1 | 2 | 1 | 2 on 1 req |" in text
    )


def test_litellm_model_id_and_step_names_merge_into_the_phase() -> None:
    said = GatewaySaid(LiteLLMKind(), "primary", "fallback")
    for seq, name in enumerate(("capacity 10/s", "capacity 15/s")):
        headers = {"x-litellm-model-id": "soak-deployment-fallback",
                   "x-litellm-attempted-fallbacks": "1"}  # fmt: skip
        said.add(_result(seq, headers, "fallback"), name)
    said.add(_result(9, {"x-litellm-model-id": "soak-deployment-primary"}, None), "capacity 15/s")
    data = said.take("capacity")
    assert data is not None and data["said"] == {"fallback": 2, "primary": 1}
    assert data["saw"] == {"-": 1, "fallback": 2} and data["disagree"] == 0
    assert data["retries"] == 2
    assert gateway_section(RunReport("r", 0, 1, "x", "openai", "quick", [])) == []
