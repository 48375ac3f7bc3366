"""The wire contract between the tester and the mock provider: nonces in, markers out.

The tester puts a nonce `[soak:<run>:<seq>]` into the last user message; gateways forward
message content unchanged, so the mock sees it whichever provider a gateway picks. The mock
answers with a marker `[mock:<provider>:<service_us>]` at the end of the assistant content
(also as `x-soak-provider` / `x-soak-service-us` headers and a `soak` body field, for gateways
that keep them). The content marker survives a gateway that rebuilds the body.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

NONCE_RE = re.compile(r"\[soak:([a-z0-9][a-z0-9-]{0,31}):(\d{1,12})\]")
MARKER_RE = re.compile(r"\[mock:([A-Za-z0-9_.-]{1,64}):(\d{1,12})\]")
RUN_ID_RE = re.compile(r"^[a-z0-9][a-z0-9-]{0,31}$")

PROVIDER_HEADER = "x-soak-provider"
SERVICE_HEADER = "x-soak-service-us"
BODY_FIELD = "soak"


def make_nonce(run_id: str, seq: int) -> str:
    """The nonce for request `seq` of run `run_id`."""
    if not RUN_ID_RE.match(run_id):
        raise ValueError(f"run id {run_id!r} must match {RUN_ID_RE.pattern}")
    return f"[soak:{run_id}:{seq}]"


def find_nonce(text: str) -> str | None:
    """The last nonce in `text`, or None."""
    found = NONCE_RE.findall(text)
    if not found:
        return None
    run_id, seq = found[-1]
    return f"[soak:{run_id}:{seq}]"


def make_marker(provider: str, service_s: float) -> str:
    """The marker the mock appends to its answer content."""
    return f"[mock:{provider}:{max(0, round(service_s * 1e6))}]"


@dataclass(frozen=True, slots=True)
class Marker:
    provider: str
    service_s: float


def find_marker(text: str) -> Marker | None:
    """The last marker in `text` (a streamed answer is searched after joining its chunks)."""
    found = MARKER_RE.findall(text)
    if not found:
        return None
    provider, us = found[-1]
    return Marker(provider, int(us) / 1e6)
