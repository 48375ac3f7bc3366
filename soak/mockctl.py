"""Tester-side client of the mock provider's `/_mock/` control API.

Phases use it to set latency profiles, inject faults with a TTL (they expire by themselves if
the tester dies), and read back traces in batch to see which provider served each request.
Every failure is a `MockControlError` with a one-line message.
"""

from __future__ import annotations

import json
from types import TracebackType
from typing import Any
from urllib.parse import quote

import aiohttp

TRACE_CHUNK = 2000
"""Nonces per trace query: keeps each request body and answer small."""


class MockControlError(Exception):
    """A control call failed: unreachable mock, refused token, or a rejected value."""


class MockControl:
    """Async client for one mock process at `base_url` (e.g. http://127.0.0.1:PORT)."""

    def __init__(
        self,
        base_url: str,
        token: str | None = None,
        session: aiohttp.ClientSession | None = None,
        timeout: float = 10.0,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self._headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._session = session
        self._own_session = session is None
        self._timeout = aiohttp.ClientTimeout(total=timeout)

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=self._timeout)
        return self._session

    async def _call(self, method: str, path: str, body: Any = None, **params: Any) -> Any:
        url = f"{self.base_url}/_mock/{path}"
        query = {k: str(v) for k, v in params.items() if v is not None}
        try:
            async with self._client().request(
                method,
                url,
                json=body,
                params=query,
                headers=self._headers,
                timeout=self._timeout,
                allow_redirects=False,  # the token goes to the mock's origin and nowhere else
            ) as resp:
                text = await resp.text()
                if resp.status >= 300:
                    raise MockControlError(f"{method} /_mock/{path}: {_reason(resp.status, text)}")
                try:
                    return json.loads(text)
                except ValueError:
                    raise MockControlError(f"{method} /_mock/{path}: answer is not JSON") from None
        except aiohttp.ClientError as exc:
            name = type(exc).__name__
            raise MockControlError(f"{method} {url}: {name}: {exc}".splitlines()[0]) from None
        except TimeoutError:
            raise MockControlError(f"{method} {url}: no answer within the timeout") from None

    async def providers(self) -> dict[str, dict[str, Any]]:
        """Every provider's profile by name."""
        return (await self._call("GET", "providers"))["providers"]

    async def get_profile(self, provider: str) -> dict[str, Any]:
        return await self._call("GET", f"providers/{quote(provider, safe='')}/profile")

    async def set_profile(self, provider: str, profile: dict[str, Any]) -> dict[str, Any]:
        """Replace `provider`'s profile; returns the profile as the mock parsed it."""
        return await self._call("PUT", f"providers/{quote(provider, safe='')}/profile", profile)

    async def inject_fault(self, provider: str, faults: dict[str, Any], ttl: float) -> str:
        """Override `provider`'s faults for `ttl` seconds; returns the injection id."""
        body = {"faults": faults, "ttl": ttl}
        answer = await self._call("POST", f"providers/{quote(provider, safe='')}/faults", body)
        return str(answer["id"])

    async def clear_faults(self, provider: str | None = None) -> int:
        """Clear the injected faults of `provider` (or of every provider); returns how many."""
        if provider is None:
            answer = await self._call("DELETE", "faults")
        else:
            answer = await self._call("DELETE", f"providers/{quote(provider, safe='')}/faults")
        return int(answer.get("cleared", 0))

    async def stats(self) -> dict[str, Any]:
        return await self._call("GET", "stats")

    async def instance(self) -> str:
        """The run id of the mock answering at `base_url` (`GET /_mock/instance`): a tester
        compares it with the one it started the mock with before sending any load."""
        answer = await self._call("GET", "instance")
        if not isinstance(answer, dict) or not isinstance(answer.get("instance_id"), str):
            raise MockControlError("GET /_mock/instance: no instance_id in the answer")
        return answer["instance_id"]

    async def traces(self, nonces: list[str]) -> dict[str, list[dict[str, Any]]]:
        """Attempts per nonce (arrival order), queried in chunks of `TRACE_CHUNK`."""
        out: dict[str, list[dict[str, Any]]] = {}
        for i in range(0, len(nonces), TRACE_CHUNK):
            chunk = nonces[i : i + TRACE_CHUNK]
            out.update((await self._call("POST", "traces/query", {"nonces": chunk}))["traces"])
        return out

    async def attempts(
        self, provider: str | None = None, since: float | None = None, limit: int | None = None
    ) -> list[dict[str, Any]]:
        """Attempts in arrival order, optionally of one provider, after `since` (unix s)."""
        answer = await self._call("GET", "traces", provider=provider, since=since, limit=limit)
        return answer["attempts"]

    async def close(self) -> None:
        if self._own_session and self._session is not None:
            await self._session.close()
        self._session = None

    async def __aenter__(self) -> MockControl:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()


def _reason(status: int, text: str) -> str:
    """A one-line reason from an error answer of the control API."""
    try:
        message = json.loads(text)["error"]["message"]
    except (ValueError, KeyError, TypeError):
        message = text.strip().splitlines()[0][:200] if text.strip() else ""
    return f"HTTP {status}: {message}" if message else f"HTTP {status}"
