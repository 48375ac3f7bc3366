"""The workload's requests through the client to the mock: the mock answers the requested
number of tokens (JSON and streams, both wires) and its trace records what it received."""

from __future__ import annotations

import dataclasses

import pytest
from soak.mock.app import MockServer
from soak.mock.profile import parse_config

from soak.client import ChatClient, make_session
from soak.config.workload import DEFAULT_WORKLOAD, Distribution
from soak.mockctl import MockControl
from soak.workload import RequestPlan

WORKLOAD = dataclasses.replace(
    DEFAULT_WORKLOAD,
    prompt_bytes=Distribution("histogram", values=(1024, 32768, 131072)),
    answer_tokens=Distribution("histogram", values=(16, 256, 2048)),
    structure={"single": 1, "history": 1, "system": 1, "tools": 1},
    variants=12,
)


@pytest.mark.parametrize(
    ("api", "stream"),
    [("openai", False), ("openai", True), ("anthropic", False), ("anthropic", True)],
)
async def test_mock_answers_requested_tokens_and_records_sizes(api: str, stream: bool) -> None:
    cap = {"tokens": 4096, "stream": {"tokens": 4096}}
    config = parse_config({"providers": {"primary": cap}})
    plan = RequestPlan(WORKLOAD, api=api, stream=stream, model="m", prompt="hi", max_tokens=16)
    path = "/p/primary/v1/messages" if api == "anthropic" else "/p/primary/v1/chat/completions"
    async with MockServer(config) as mock, MockControl(mock.url) as ctl:
        session = make_session(8, 30)
        try:
            client = ChatClient(session, mock.url + path, api=api, model="m", stream=stream,
                                run_id="wl", templates=plan)  # fmt: skip
            results = [await client.send(seq, 0.0) for seq in range(24)]
        finally:
            await session.close()
        traces = await ctl.traces([r.nonce for r in results])
    for r in results:
        variant = plan.variant_of(r.seq)
        assert r.ok, r.outcome
        assert r.tokens_out == variant.max_tokens  # usage (or chunks) as the mock counted them
        [attempt] = traces[r.nonce]
        assert attempt["completion_tokens"] == variant.max_tokens
        assert attempt["request_bytes"] == plan.sent_bytes(r.seq) + len(r.nonce)
        words = sum(len(str(m["content"]).split()) for m in variant.messages) + 1  # the nonce
        words += len((variant.system or "").split())
        assert attempt["prompt_tokens"] == words
        if stream:
            assert attempt["chunks"] == variant.max_tokens
    assert {plan.variant_of(r.seq).max_tokens for r in results} == {16, 256, 2048}
