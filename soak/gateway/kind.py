"""The gateway kind base class: the only place that knows how one gateway differs from another.

A kind owns: how soak writes the gateway's routes when it manages it (`prepare`), how a client
authenticates (`auth_headers`), which request headers steer routing (`routing_headers`), which
response headers it reports on itself in (`self_headers`, read by `served_by` and `retries`),
where its self-report is (`self_report`), and which upstream APIs soak can route it to
(`primary_apis`). Black-box measurement never asks the kind anything. `GatewayKind` itself is
the generic OpenAI-compatible kind; each concrete kind is one module of `soak.gateway.kinds`
that imports this module only (`soak.gateway.registry` finds them).
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Self

from soak.gateway.process import GatewayStartError
from soak.gateway.selfreport import MetricsParseError, SelfReport, parse_samples, total

if TYPE_CHECKING:
    from soak.config.schema import GatewayConfig

SCRAPE_TIMEOUT = 5.0
MAX_SCRAPE_BYTES = 8 * 2**20
"""A metrics page longer than this is not read (a gateway's page is tens to hundreds of KB): a
gateway answering every path with a huge body must not cost the tester its memory."""


@dataclass(frozen=True, slots=True)
class LaunchSpec:
    """How to start a managed gateway that routes to the mock's primary and fallback."""

    argv: tuple[str, ...]
    env: Mapping[str, str]
    url: str
    """Base URL clients use, e.g. http://127.0.0.1:PORT."""
    ready_url: str | None
    ready_log: str | None = None
    files: Mapping[str, Path] = field(default_factory=dict)
    """Files soak wrote for it, by role (`config`)."""
    api_key: str | None = None
    """The key clients must send (generated when the gateway needs one and none was given)."""
    secrets: tuple[str, ...] = ()
    """Values to redact from anything that quotes the gateway's output."""


class GatewayKind:
    """A generic OpenAI-compatible gateway: bearer auth, no managed defaults, no self-report
    beyond the standard process metrics when it serves `/metrics`."""

    name: ClassVar[str] = "openai"
    """The `gateway.kind` value that selects this kind."""
    title: ClassVar[str] = "a generic OpenAI-compatible gateway"
    """What error messages call the gateway."""
    metrics_path: ClassVar[str | None] = "/metrics"
    self_headers: ClassVar[tuple[str, ...]] = ()
    """Response headers (lower case) in which the gateway says which target served and how
    often it retried: the client keeps these per request for `served_by` and `retries`."""
    primary_apis: ClassVar[tuple[str, ...]] = ("openai",)
    """Upstream APIs soak can route the primary through (`gateway.primary_api`); more than
    `openai` only for a kind whose routes soak writes."""

    @classmethod
    def from_config(cls, gateway: GatewayConfig) -> Self:
        """The kind as the config's `gateway` block sets it up (the generic kind takes nothing
        from it; a kind with options overrides this)."""
        return cls()

    async def install(self, cache_dir: Path) -> None:
        """Fetch what a managed start needs (no-op unless the kind ships a package)."""

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
        """Write the gateway's routes under `workdir` and say how to start it."""
        raise GatewayStartError(
            f"gateway.kind {self.name!r} has no built-in managed setup; "
            "set gateway.managed.command to start it yourself"
        )

    def auth_headers(self, api_key: str | None) -> dict[str, str]:
        return {"Authorization": f"Bearer {api_key}"} if api_key else {}

    def routing_headers(self, *, mock_url: str, primary: str, fallback: str) -> dict[str, str]:
        """Headers that tell the gateway where to route (none for config-routed gateways)."""
        return {}

    def request_headers(
        self, api_key: str | None, *, mock_url: str, primary: str, fallback: str
    ) -> dict[str, str]:
        """Everything a soak request needs beyond the user's own configured headers."""
        return {
            **self.routing_headers(mock_url=mock_url, primary=primary, fallback=fallback),
            **self.auth_headers(api_key),
        }

    def served_by(self, headers: Mapping[str, str], *, primary: str, fallback: str) -> str | None:
        """The provider the gateway says served a response, from its response headers."""
        return None

    def retries(self, headers: Mapping[str, str]) -> int | None:
        """Extra attempts the gateway says it made for a response (None: it does not say)."""
        return None

    async def scrape(self, session: Any, base_url: str, api_key: str | None) -> str | None:
        """The gateway's metrics page, or None when it has none (non-2xx, refused, timeout).

        `session` is the caller's aiohttp ClientSession; only `.get` is used."""
        if self.metrics_path is None:
            return None
        url = base_url.rstrip("/") + self.metrics_path
        try:
            async with asyncio.timeout(SCRAPE_TIMEOUT):
                # never followed: the auth headers must not go to another origin
                async with session.get(
                    url, headers=self.auth_headers(api_key), allow_redirects=False
                ) as resp:
                    if resp.status // 100 != 2:
                        return None
                    return await _read_bounded(resp.content)
        except (TimeoutError, OSError):
            return None
        except Exception as exc:  # aiohttp.ClientError without importing aiohttp here
            if type(exc).__module__.startswith("aiohttp"):
                return None
            raise

    async def self_report(
        self, session: Any, base_url: str, api_key: str | None
    ) -> SelfReport | None:
        """One scrape of what the gateway reports on itself; None when it reports nothing."""
        text = await self.scrape(session, base_url, api_key)
        if text is None:
            return None
        try:  # off the event loop: a big page must not delay the load's sends
            return await asyncio.to_thread(self.parse_self_report, text)
        except MetricsParseError:
            return None

    def parse_self_report(self, text: str) -> SelfReport:
        samples = parse_samples(text, ("process_resident_memory_bytes", "process_cpu_seconds"))
        return SelfReport(
            source=f"{self.name} {self.metrics_path}",
            rss_bytes=total(samples, "process_resident_memory_bytes"),
            cpu_seconds=total(samples, "process_cpu_seconds_total"),
        )


async def _read_bounded(content: Any) -> str | None:
    """The page as text, or None past `MAX_SCRAPE_BYTES` (read no further)."""
    page = bytearray()
    async for chunk in content.iter_any():
        page += chunk
        if len(page) > MAX_SCRAPE_BYTES:
            return None
    return page.decode("utf-8", "replace")

