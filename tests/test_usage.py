"""A gateway's `usage` against the mock's count: agreement passes, a rewritten block is caught."""

from __future__ import annotations

import dataclasses

import pytest
from soak.mock.app import MockServer
from soak.mock.profile import parse_config
from usage_proxy import usage_proxy

from soak.client import ChatClient, make_session
from soak.config.workload import DEFAULT_WORKLOAD, Distribution
from soak.mockctl import MockControl
from soak.usage import check_usage
from soak.workload import RequestPlan

WORKLOAD = dataclasses.replace(
    DEFAULT_WORKLOAD,
    prompt_bytes=Distribution("uniform", min=500, max=5000),
    answer_tokens=Distribution("uniform", min=16, max=64),
    variants=8,
)


@pytest.mark.parametrize("api", ["openai", "anthropic"])
@pytest.mark.parametrize("rewrite", [False, True])
async def test_rewritten_usage_is_detected(api: str, rewrite: bool) -> None:
    config = parse_config({"providers": {"primary": {"tokens": 64}}})
    plan = RequestPlan(WORKLOAD, api=api, stream=False, model="m", prompt="hi", max_tokens=16)
    path = "/p/primary/v1/messages" if api == "anthropic" else "/p/primary/v1/chat/completions"
    async with MockServer(config) as mock, MockControl(mock.url) as ctl:
        async with usage_proxy(mock.url, rewrite=rewrite) as gateway:
            session = make_session(8, 30)
            try:
                client = ChatClient(session, gateway + path, api=api, model="m", run_id="u",
                                    templates=plan)  # fmt: skip
                results = [await client.send(seq, 0.0) for seq in range(20)]
            finally:
                await session.close()
        checked = await check_usage(results, ctl.traces)
    assert all(r.ok for r in results)
    assert checked.compared == 20
    if rewrite:
        assert (checked.prompt_wrong, checked.completion_wrong) == (20, 20)
        assert checked.prompt_ratio is not None and checked.prompt_ratio > 2.0
        check = checked.check()
        assert check is not None and not check.passed and check.value == 40
        assert "usage disagrees" in (checked.note() or "")
    else:
        assert checked.wrong == 0 and checked.prompt_ratio == checked.completion_ratio == 1.0
        assert checked.note() is None
