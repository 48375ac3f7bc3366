"""A bounded ring buffer of attempts, indexed by nonce for batch lookup.

Every request the mock answers (or fails on purpose) is one attempt. The tester asks, after
the fact and in batch, which providers saw a nonce and how long each took: that is how it
observes failover and breakers from outside any gateway. Memory is bounded by `capacity`;
the oldest attempts fall out first.

Attempts are plain tuples of numbers and strings, which the garbage collector untracks, and
the index maps a nonce seen once (the common case) straight to its attempt: a full ring
(100,000 attempts by default) adds next to nothing to the collector's pauses, which would
otherwise show up as mock latency. A nonce seen again (failover, retries, a reused nonce)
gets a deque, so appending stays O(1) however often a nonce recurs.
"""

from __future__ import annotations

from collections import deque
from typing import Any

FIELDS = ("provider", "endpoint", "nonce", "arrival", "service_s", "status", "outcome", "fault",
          "request_bytes", "prompt_tokens", "completion_tokens")  # fmt: skip
STREAM_FIELDS = ("first_chunk_s", "chunks", "tokens", "digest")
_PROVIDER, _NONCE, _ARRIVAL = 0, 2, 3

Attempt = tuple[Any, ...]
"""`FIELDS` (then `STREAM_FIELDS` for streams) in order; `arrival` is unix seconds;
`request_bytes` the body as received, `prompt_tokens` its message text counted as the mock
counts its answers (`mock.content.count_tokens`), `completion_tokens` the answer's tokens
(0 when it failed before answering)."""


def attempt_dict(attempt: Attempt) -> dict[str, Any]:
    """The control API's view of one attempt (stream fields only for streams)."""
    names = FIELDS + STREAM_FIELDS if len(attempt) > len(FIELDS) else FIELDS[: len(attempt)]
    return dict(zip(names, attempt, strict=True))


class TraceBuffer:
    """Attempts in completion order, at most `capacity`, with a nonce index."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._ring: deque[Attempt] = deque()
        self._by_nonce: dict[str, Attempt | deque[Attempt]] = {}
        self.recorded = 0

    def __len__(self) -> int:
        return len(self._ring)

    def add(self, attempt: Attempt) -> None:
        ring = self._ring
        index = self._by_nonce
        if len(ring) >= self.capacity:
            old = ring.popleft()
            nonce = old[_NONCE]
            if nonce is not None:
                same = index.get(nonce)
                if isinstance(same, deque) and len(same) > 1:
                    same.popleft()
                else:
                    index.pop(nonce, None)
        ring.append(attempt)
        self.recorded += 1
        nonce = attempt[_NONCE]
        if nonce is not None:
            same = index.get(nonce)
            if same is None:
                index[nonce] = attempt
            elif isinstance(same, deque):
                same.append(attempt)
            else:
                index[nonce] = deque((same, attempt))

    def _of(self, nonce: str) -> list[Attempt]:
        same = self._by_nonce.get(nonce)
        if same is None:
            return []
        return list(same) if isinstance(same, deque) else [same]

    def by_nonces(self, nonces: list[str]) -> dict[str, list[dict[str, Any]]]:
        """Attempts per nonce in arrival order; unknown nonces map to an empty list."""
        return {
            nonce: [attempt_dict(a) for a in sorted(self._of(nonce), key=lambda a: a[_ARRIVAL])]
            for nonce in nonces
        }

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
            if (provider is None or a[_PROVIDER] == provider)
            and (since is None or a[_ARRIVAL] > since)
        ]
        found.sort(key=lambda a: a[_ARRIVAL])
        if limit is not None:
            found = found[:limit]
        return [attempt_dict(a) for a in found]
