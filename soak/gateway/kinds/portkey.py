"""Portkey AI gateway (open-source build, Node): routed per request by a header, not a file.

Soak sends `x-portkey-config` with a fallback strategy whose targets are the mock's primary and
fallback as OpenAI-compatible custom hosts; the gateway answers which target served in
`x-portkey-last-used-option-index` (`config.targets[N]`). Managed, it is installed with npm into
a cache dir and started `node .../build/start-server.js --port=P --headless` (the script reads
only the `--port=` form; `--port P` silently keeps 8787). It has no metrics page of its own.
"""

from __future__ import annotations

import asyncio
import json
import re
import shutil
from collections.abc import Mapping
from pathlib import Path

from soak.gateway.kind import GatewayKind, LaunchSpec
from soak.gateway.process import GatewayStartError

PACKAGE = "@portkey-ai/gateway"
DEFAULT_VERSION = "1.15.2"
_TARGET_INDEX = re.compile(r"targets\[(\d+)\]")


class PortkeyKind(GatewayKind):
    """The Portkey gateway; `package_dir` holds (or will hold) its `node_modules`."""

    name = "portkey"
    title = "Portkey"
    metrics_path = None
    self_headers = ("x-portkey-last-used-option-index", "x-portkey-retry-attempt-count")

    def __init__(
        self,
        *,
        version: str = DEFAULT_VERSION,
        package_dir: Path | None = None,
        node: str = "node",
        npm: str = "npm",
    ) -> None:
        self.version = version
        self.package_dir = package_dir
        self.node = node
        self.npm = npm

    def server_script(self, package_dir: Path) -> Path:
        return package_dir / "node_modules" / PACKAGE / "build" / "start-server.js"

    async def install(self, cache_dir: Path) -> None:
        """`npm install` the pinned gateway under `cache_dir` unless it is already there."""
        target = self.package_dir or cache_dir / f"portkey-gateway-{self.version}"
        if self.server_script(target).exists():
            self.package_dir = target
            return
        if shutil.which(self.npm) is None:
            raise GatewayStartError(f"cannot install the Portkey gateway: {self.npm!r} not found")
        target.mkdir(parents=True, exist_ok=True)
        proc = await asyncio.create_subprocess_exec(
            self.npm, "install", "--no-audit", "--no-fund", "--loglevel=error",
            "--prefix", str(target), f"{PACKAGE}@{self.version}",
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )  # fmt: skip
        out, _ = await proc.communicate()
        if proc.returncode != 0 or not self.server_script(target).exists():
            lines = [ln for ln in out.decode("utf-8", "replace").splitlines() if ln.strip()]
            last = lines[-1].strip()[:200] if lines else "no output"
            raise GatewayStartError(
                f"npm install {PACKAGE}@{self.version} failed (exit {proc.returncode}): {last}"
            )
        self.package_dir = target

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
        if self.package_dir is None or not self.server_script(self.package_dir).exists():
            raise GatewayStartError(
                f"the Portkey gateway is not installed; install {PACKAGE}@{self.version} first"
            )
        workdir.mkdir(parents=True, exist_ok=True)
        url = f"http://127.0.0.1:{port}"
        script = str(self.server_script(self.package_dir))
        return LaunchSpec(
            argv=(self.node, script, f"--port={port}", "--headless"),
            env={"NODE_ENV": "production"},
            url=url,
            ready_url=f"{url}/",
            api_key=api_key,
            secrets=(api_key,) if api_key else (),
        )

    def auth_headers(self, api_key: str | None) -> dict[str, str]:
        """The open-source gateway has no auth; a key given is Portkey's own (hosted) key."""
        return {"x-portkey-api-key": api_key} if api_key else {}

    def routing_config(self, *, mock_url: str, primary: str, fallback: str) -> dict[str, object]:
        base = mock_url.rstrip("/")
        return {
            "strategy": {"mode": "fallback"},
            "targets": [
                {"provider": "openai", "api_key": "mock", "custom_host": f"{base}/p/{name}/v1"}
                for name in (primary, fallback)
            ],
        }

    def routing_headers(self, *, mock_url: str, primary: str, fallback: str) -> dict[str, str]:
        cfg = self.routing_config(mock_url=mock_url, primary=primary, fallback=fallback)
        return {"x-portkey-config": json.dumps(cfg, separators=(",", ":"))}

    def served_by(self, headers: Mapping[str, str], *, primary: str, fallback: str) -> str | None:
        lowered = {k.lower(): v for k, v in headers.items()}
        match = _TARGET_INDEX.search(lowered.get("x-portkey-last-used-option-index", ""))
        if match is None:
            return None
        targets = (primary, fallback)
        index = int(match.group(1))
        return targets[index] if index < len(targets) else None

    def retries(self, headers: Mapping[str, str]) -> int | None:
        """`x-portkey-retry-attempt-count`: retries Portkey made on the target that answered."""
        lowered = {k.lower(): v for k, v in headers.items()}
        value = lowered.get("x-portkey-retry-attempt-count", "")
        return int(value) if value.lstrip("-").isdigit() else None


KIND = PortkeyKind
