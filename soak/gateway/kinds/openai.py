"""The generic OpenAI-compatible kind (the default): bearer auth, nothing written, no routing
headers, no response headers of its own, `process_*` from `/metrics` when served."""

from __future__ import annotations

from soak.gateway.kind import GatewayKind

KIND = GatewayKind
