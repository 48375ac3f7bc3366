"""The control API under `/_mock/`: profiles, fault injection, stats, traces.

A sub-application, so its bearer-token check never runs on the data plane. Without the
configured token every call answers 401 and changes nothing.
"""

from __future__ import annotations

import hmac
import json
import os
import secrets
import time
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from .exchange import MOCK_KEY
from .faults import MAX_TTL
from .profile import ProfileError, parse_duration, parse_faults, parse_profile
from .state import MockState, ProviderState

MAX_NONCES = 10_000
INSTANCE_KEY = web.AppKey("instance", dict)
"""This process's identity: `GET /_mock/instance` (its run id, pid and start time)."""


def _error(status: int, message: str) -> web.Response:
    return web.json_response({"error": {"message": message, "status": status}}, status=status)


@web.middleware
async def _guard(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """Bearer-token check, and one-line JSON errors for bad input."""
    token = request.app[MOCK_KEY].token
    if token is not None:
        got = request.headers.get("Authorization", "")
        if not hmac.compare_digest(got.encode(), f"Bearer {token}".encode()):
            return _error(401, "control API needs the bearer token")
    try:
        return await handler(request)
    except ProfileError as exc:
        return _error(400, str(exc))


def _mock(request: web.Request) -> MockState:
    return request.app[MOCK_KEY]


def _provider(request: web.Request) -> ProviderState:
    name = request.match_info["name"]
    prov = _mock(request).providers.get(name)
    if prov is None:
        err = {"error": {"message": f"unknown provider {name[:64]!r}", "status": 404}}
        raise web.HTTPNotFound(text=json.dumps(err), content_type="application/json")
    return prov


async def _body(request: web.Request) -> dict[str, Any]:
    try:
        data = await request.json()
    except ValueError:
        raise ProfileError("body: not valid JSON") from None
    if not isinstance(data, dict):
        raise ProfileError("body: expected a JSON object")
    return data


async def list_providers(request: web.Request) -> web.Response:
    provs = _mock(request).providers
    return web.json_response({"providers": {n: p.profile.to_dict() for n, p in provs.items()}})


async def get_profile(request: web.Request) -> web.Response:
    return web.json_response(_provider(request).profile.to_dict())


async def put_profile(request: web.Request) -> web.Response:
    prov = _provider(request)
    profile = parse_profile(await _body(request), "profile")
    prov.set_profile(profile)
    return web.json_response(profile.to_dict())


async def inject_fault(request: web.Request) -> web.Response:
    prov = _provider(request)
    data = dict(await _body(request))
    if "ttl" not in data:
        raise ProfileError(f"ttl: required, seconds in (0, {MAX_TTL:g}]")
    ttl = parse_duration(data.pop("ttl"), "ttl")
    if not 0 < ttl <= MAX_TTL:
        raise ProfileError(f"ttl: expected seconds in (0, {MAX_TTL:g}], got {ttl:g}")
    if "faults" in data and len(data) > 1:
        raise ProfileError(f"{sorted(set(data) - {'faults'})[0]}: unknown key next to faults")
    faults = parse_faults(data.get("faults", data), "faults")
    inj = prov.faults.add(faults, ttl)
    _mock(request).metrics.fault_injected(prov.name)
    return web.json_response({"id": inj.id, "expires_at": inj.expires_at})


async def clear_provider_faults(request: web.Request) -> web.Response:
    return web.json_response({"cleared": _provider(request).faults.clear()})


async def clear_all_faults(request: web.Request) -> web.Response:
    cleared = sum(p.faults.clear() for p in _mock(request).providers.values())
    return web.json_response({"cleared": cleared})


async def stats(request: web.Request) -> web.Response:
    return web.json_response(_mock(request).stats())


async def trace_query(request: web.Request) -> web.Response:
    nonces = (await _body(request)).get("nonces")
    if not isinstance(nonces, list) or not all(isinstance(n, str) for n in nonces):
        raise ProfileError("nonces: expected a list of strings")
    if len(nonces) > MAX_NONCES:
        raise ProfileError(f"nonces: at most {MAX_NONCES} per query, got {len(nonces)}")
    return web.json_response({"traces": _mock(request).traces.by_nonces(nonces)})


async def trace_list(request: web.Request) -> web.Response:
    q = request.query
    provider = q.get("provider") or None
    try:
        since = float(q["since"]) if q.get("since") else None
    except ValueError:
        raise ProfileError(f"since: expected unix seconds, got {q['since'][:32]!r}") from None
    try:
        limit = int(q["limit"]) if q.get("limit") else None
    except ValueError:
        raise ProfileError(f"limit: expected an integer, got {q['limit'][:32]!r}") from None
    if limit is not None and limit < 1:
        raise ProfileError("limit: must be >= 1")
    attempts = _mock(request).traces.query(provider, since, limit)
    return web.json_response({"attempts": attempts})


async def instance(request: web.Request) -> web.Response:
    return web.json_response(request.app[INSTANCE_KEY])


def make_control_app(state: MockState, instance_id: str | None = None) -> web.Application:
    """The `/_mock/` sub-application sharing `state` with the data plane. `instance_id` (a
    fresh random one by default) lets whoever started this mock tell it from another process
    answering on the same port."""
    app = web.Application(middlewares=[_guard])
    app[MOCK_KEY] = state
    app[INSTANCE_KEY] = {
        "instance_id": instance_id or secrets.token_hex(8),
        "pid": os.getpid(),
        "started_at": time.time(),
    }
    r = app.router
    r.add_get("/providers", list_providers)
    r.add_get("/providers/{name}/profile", get_profile)
    r.add_put("/providers/{name}/profile", put_profile)
    r.add_post("/providers/{name}/faults", inject_fault)
    r.add_delete("/providers/{name}/faults", clear_provider_faults)
    r.add_delete("/faults", clear_all_faults)
    r.add_get("/stats", stats)
    r.add_post("/traces/query", trace_query)
    r.add_get("/traces", trace_list)
    r.add_get("/instance", instance)
    return app
