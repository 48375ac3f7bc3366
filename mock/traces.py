"""A bounded ring buffer of attempts, indexed by nonce for batch lookup.

Every request the mock answers (or fails on purpose) is one attempt. The tester asks, after
the fact and in batch, which providers saw a nonce and how long each took: that is how it
observes failover and breakers from outside any gateway. Memory is bounded by `capacity`;
the oldest attempts fall out first.
"""

from __future__ import annotations

from collections import deque
from dataclasses import asdict, dataclass
from typing import Any


@dataclass(slots=True)
class Attempt:
    """One attempt as the mock saw it. `arrival` is unix seconds on the mock's wall clock."""

    provider: str
    endpoint: str
    nonce: str | None
    arrival: float
    service_s: float
    status: int
    outcome: str
    fault: str | None = None
    first_chunk_s: float | None = None
    chunks: int | None = None
    tokens: int | None = None
    digest: str | None = None

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        if self.chunks is None:  # stream-only fields stay out of non-stream attempts
            for key in ("first_chunk_s", "chunks", "tokens", "digest"):
                del out[key]
        return out


class TraceBuffer:
    """Attempts in completion order, at most `capacity`, with a nonce index."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._ring: deque[Attempt] = deque()
        self._by_nonce: dict[str, deque[Attempt]] = {}
        self.recorded = 0

    def __len__(self) -> int:
        return len(self._ring)

    def add(self, attempt: Attempt) -> None:
        ring = self._ring
        if len(ring) >= self.capacity:
            old = ring.popleft()
            if old.nonce is not None:
                same = self._by_nonce.get(old.nonce)
                if same:
                    same.popleft()
                    if not same:
                        del self._by_nonce[old.nonce]
        ring.append(attempt)
        self.recorded += 1
        if attempt.nonce is not None:
            same = self._by_nonce.get(attempt.nonce)
            if same is None:
                self._by_nonce[attempt.nonce] = deque((attempt,))
            else:
                same.append(attempt)

    def by_nonces(self, nonces: list[str]) -> dict[str, list[dict[str, Any]]]:
        """Attempts per nonce in arrival order; unknown nonces map to an empty list."""
        out = {}
        for nonce in nonces:
            found = self._by_nonce.get(nonce, ())
            out[nonce] = [a.to_dict() for a in sorted(found, key=lambda a: a.arrival)]
        return out

    def query(
        self, provider: str | None = None, since: float | None = None, limit: int | None = None
    ) -> list[dict[str, Any]]:
        """Attempts (optionally of one provider, arrived after `since`) in arrival order.

        With `limit`, the earliest `limit` matches, so a caller can page forward with `since`
        set to the last arrival it saw.
        """
        found = [
            a
            for a in self._ring
            if (provider is None or a.provider == provider) and (since is None or a.arrival > since)
        ]
        found.sort(key=lambda a: a.arrival)
        if limit is not None:
            found = found[:limit]
        return [a.to_dict() for a in found]
