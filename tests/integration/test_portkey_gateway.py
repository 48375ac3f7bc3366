"""The real Portkey gateway (npm, Node 20), installed and started by soak, routing to the mock.

Portkey routes per request from the `x-portkey-config` header soak sends. It fails over to the
fallback target but has no breaker of its own: every request keeps trying the faulted primary,
which is exactly what the mock's traces must show. Needs `node`/`npm` and either the npm
registry or a pre-filled $SOAK_CACHE (the install is cached there, ~25 MB).
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from soak.mock.app import MockServer
from soak.mock.profile import MockConfig, Profile

from soak.client import ChatClient, make_session
from soak.gateway.kinds.portkey import PortkeyKind
from soak.gateway.managed import build_managed, default_cache_dir
from soak.results import Outcome

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]

ROUTE = {"primary": "primary", "fallback": "fallback"}


async def test_portkey_routes_by_header_and_fails_over_without_a_breaker(tmp_path: Path) -> None:
    profiles = {name: Profile() for name in ("default", "primary", "fallback")}
    kind = PortkeyKind()
    async with MockServer(MockConfig(providers=profiles)) as mock:
        gw = await build_managed(
            kind, None, workdir=tmp_path, mock_url=mock.url, model="soak-primary",
            cache_dir=default_cache_dir(), **ROUTE,
        )  # fmt: skip
        async with gw.process, make_session(8, 300.0) as session:
            print(f"portkey ready in {gw.process.ready_s:.2f}s")
            headers = kind.request_headers(None, mock_url=mock.url, **ROUTE)
            url = f"{gw.url}/v1/chat/completions"
            client = ChatClient(
                session, url, model="soak-primary", headers=headers, run_id="pk", timeout=20
            )
            first = await client.send(1, time.perf_counter())
            assert first.outcome is Outcome.OK, first
            assert first.provider == "primary"

            fault = {"faults": {"error_rate": 1.0, "status_mix": {"503": 1}}, "ttl": 60}
            async with session.post(f"{mock.url}/_mock/providers/primary/faults", json=fault) as r:
                assert r.status == 200
            body = {"model": "soak-primary", "messages": [{"role": "user", "content": "hi"}]}
            async with session.post(url, headers=headers, json=body) as resp:
                assert resp.status == 200
                assert kind.served_by(resp.headers, **ROUTE) == "fallback"

            results = [await client.send(seq, time.perf_counter()) for seq in range(2, 8)]
            assert all(r.outcome is Outcome.OK and r.provider == "fallback" for r in results)
            nonces = [r.nonce for r in results]
            async with session.post(
                f"{mock.url}/_mock/traces/query", json={"nonces": nonces}
            ) as resp:
                traces = (await resp.json())["traces"]
            for nonce in nonces:  # no breaker: each request tries the primary first
                assert [a["provider"] for a in traces[nonce]] == ["primary", "fallback"]
            assert await kind.self_report(session, gw.url, None) is None
        assert not gw.process.alive
