"""Hostile input to the tester's own HTTP servers: the daemon's API and the mock's control API
and data plane. Odd query strings, ids, tokens and bodies get a 4xx with a one-line reason,
never a 500 (an unhandled exception) and never a changed state.

Unfixed, `GET /runs?limit=²` was a 500: `str.isdigit()` is true for '²' and '١', which `int()`
then refused (or read as an Arabic-Indic number)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from soak.mock.app import make_app as make_mock_app

from soak.daemon import ConfigSource, Daemon
from soak.server import make_app

BASE = """version: 1
gateway: {name: gw, url: 'http://127.0.0.1:9'}
server: {reload_token_env: SOAK_TEST_FUZZ_TOKEN}
schedule:
  - {name: hourly, cron: '0 * * * *', phases: [overhead]}
"""

NUMBERS = ["", "0", "-1", "1001", "1e3", "²", "١٢", "0x10", " 5", "5 ", "+5", "5.0", "9" * 5000,
           "%00", "nan", "inf", "-inf", "1e999", "%F0%9F%92%A5", "%ff", "1_000"]  # fmt: skip
"""Query values, URL-encoded where they must be: each a number to some parser, not to ours."""


@pytest.fixture
async def daemon(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("SOAK_TEST_FUZZ_TOKEN", "s3cret-token")
    path = tmp_path / "soak.yaml"
    path.write_text(BASE)
    source = ConfigSource(path)
    d = Daemon(source, source.load(), listen="127.0.0.1:0", data_dir=tmp_path / "data")
    yield d
    d.scheduler.shutdown()
    d.history.close()


async def _refused(resp: Any, statuses: tuple[int, ...]) -> str:
    """The answer's body, after checking its status is one of `statuses` (never a 500)."""
    body = await resp.text()
    assert resp.status in statuses, (resp.status, body[:300])
    return body


@pytest.mark.parametrize("value", NUMBERS)
async def test_runs_limit_is_200_or_a_400_naming_the_bound(
    daemon: Daemon, aiohttp_client, value: str
) -> None:
    client = await aiohttp_client(make_app(daemon.controls))
    resp = await client.get(f"/runs?limit={value}")
    body = await _refused(resp, (200, 400))
    if resp.status == 400:
        assert json.loads(body) == {"error": "limit must be an integer from 1 to 1000"}
    else:
        assert value.strip().isascii() and 1 <= int(value) <= 1000, value
        assert json.loads(body) == {"runs": []}


@pytest.mark.parametrize("run_id", ["x" * 5_000, "%00", "..%2F..%2Fetc%2Fpasswd", "%C3%A9",
                                    "'%20OR%201=1%20--", "%2e%2e", "a%0Ab"])  # fmt: skip
async def test_an_odd_run_id_is_a_404(daemon: Daemon, aiohttp_client, run_id: str) -> None:
    client = await aiohttp_client(make_app(daemon.controls))
    body = await _refused(await client.get(f"/runs/{run_id}"), (404,))
    # ours, or aiohttp's own where it normalised the path away from /runs/ ('..')
    assert body in ('{"error": "no such run"}', "404: Not Found"), body


@pytest.mark.parametrize("auth", ["", "Bearer", "Bearer ", "bearer s3cret-token",
                                  "Bearer s3cret-tokeN", "Basic abc", "Bearer " + "s" * 7_000,
                                  "Bearer s3cret-token%00", "Bearer  s3cret-token"])  # fmt: skip
async def test_reload_with_a_wrong_token_is_401_and_keeps_the_config(
    daemon: Daemon, aiohttp_client, auth: str
) -> None:
    client = await aiohttp_client(make_app(daemon.controls))
    before = daemon.config
    headers = {"Authorization": auth} if auth else {}
    body = await _refused(await client.post("/-/reload", headers=headers), (401, 400))
    assert "s3cret-token" not in body
    assert daemon.config is before
    ok = await client.post("/-/reload", headers={"Authorization": "Bearer s3cret-token"})
    assert ok.status == 200, await ok.text()


@pytest.mark.parametrize("names", ["name[]=", "name[]=%00", "name[]=" + "a" * 5000,
                                   "name[]=soak_requests_total&name[]=%E2%98%83",
                                   "name%5B%5D=x", "format=protobuf"])  # fmt: skip
async def test_metrics_with_odd_filters_still_render(
    daemon: Daemon, aiohttp_client, names: str
) -> None:
    client = await aiohttp_client(make_app(daemon.controls))
    body = await _refused(await client.get(f"/metrics?{names}"), (200,))
    assert "Traceback" not in body


@pytest.mark.parametrize("field", ["since", "limit"])
@pytest.mark.parametrize("value", NUMBERS)
async def test_mock_trace_list_query_is_200_or_a_400_naming_the_field(
    aiohttp_client, field: str, value: str
) -> None:
    client = await aiohttp_client(make_mock_app())
    resp = await client.get(f"/_mock/traces?{field}={value}")
    body = await _refused(resp, (200, 400))
    if resp.status == 400:
        message = json.loads(body)["error"]["message"]
        assert message.startswith(f"{field}: ") and "\n" not in message, message
    else:
        assert json.loads(body) == {"attempts": []}


BODIES: list[tuple[str, str]] = [
    ("/_mock/providers/default/profile", "not json"),
    ("/_mock/providers/default/profile", "[1, 2]"),
    ("/_mock/providers/default/profile", '{"latency": 1e308}'),
    ("/_mock/providers/default/profile", '{"latency": {"model": "lognormal", "p50": -1}}'),
    ("/_mock/providers/default/profile", '{"latency": "NaN"}'),
    ("/_mock/providers/default/profile", '{"latency": 1' + "0" * 5000 + "}"),
    ("/_mock/providers/default/profile", '{"faults": {"error_rate": 2}}'),
    ("/_mock/providers/default/profile", '{"nope": 1}'),
    ("/_mock/providers/default/faults", "{}"),
    ("/_mock/providers/default/faults", '{"ttl": -1, "error_rate": 1}'),
    ("/_mock/providers/default/faults", '{"ttl": "1h", "faults": {}, "x": 1}'),
    ("/_mock/providers/default/faults", '{"ttl": 1e308, "error_rate": 1}'),
    ("/_mock/traces/query", '{"nonces": [1, 2]}'),
    ("/_mock/traces/query", '{"nonces": "abc"}'),
    ("/_mock/traces/query", '{"nonces": ["a"] }' * 2),
]


@pytest.mark.parametrize(("path", "body"), BODIES)
async def test_mock_control_bodies_are_a_400_and_change_nothing(
    aiohttp_client, path: str, body: str
) -> None:
    client = await aiohttp_client(make_mock_app())
    before = await (await client.get("/_mock/providers")).json()
    method = client.put if path.endswith("/profile") else client.post
    resp = await method(path, data=body, headers={"Content-Type": "application/json"})
    text = await _refused(resp, (400,))
    message = json.loads(text)["error"]["message"]
    assert "\n" not in message and len(message) < 300, message
    assert await (await client.get("/_mock/providers")).json() == before
    assert (await (await client.post("/v1/chat/completions", json={
        "model": "m", "messages": [{"role": "user", "content": "hi"}]})).json())["choices"]


CHAT: list[str] = [
    "not json",
    "[]",
    '{"messages": "hi"}',
    '{"model": "m", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 1e308}',
    '{"model": "m", "messages": [{"role": "user", "content": "hi"}], "max_tokens": -1}',
    '{"model": "m", "messages": [{"role": "user", "content": "hi"}], "max_tokens": "x"}',
    '{"model": "m", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 1'
    + "0" * 5000 + "}",
    '{"model": "m", "messages": [{"role": "user", "content": "hi"}], "stream": "yes"}',
    '{"model": "m", "messages": [{"role": "user", "content": {"a": 1}}]}',
    '{"model": "m", "messages": [null]}',
]


@pytest.mark.parametrize("body", CHAT)
async def test_mock_chat_with_a_broken_request_is_a_4xx(aiohttp_client, body: str) -> None:
    client = await aiohttp_client(make_mock_app())
    resp = await client.post("/v1/chat/completions", data=body,
                             headers={"Content-Type": "application/json"})  # fmt: skip
    text = await resp.text()
    assert resp.status < 500, (resp.status, text[:300])
