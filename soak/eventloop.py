"""Which event loop soak's process and its engine workers run on (`engine.loop`).

`asyncio` is the standard library's loop; `uvloop` (the optional `fast` extra: libuv under the
asyncio API) reads a stream chunk for what a reader in C pays here and spends a quarter to a
third less CPU per request at 1,000-2,000 req/s (docs/BENCHMARKS.md, "Engine: CPU per
request"); `auto` takes uvloop when it is installed. This module owns the uvloop import.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

LoopFactory = Callable[[], asyncio.AbstractEventLoop]


class LoopUnavailable(ValueError):
    """`engine.loop: uvloop` where uvloop is not installed."""


def loop_factory(choice: str) -> LoopFactory | None:
    """The factory for `asyncio.Runner(loop_factory=...)`; None: the default loop."""
    if choice == "asyncio":
        return None
    try:
        import uvloop
    except ImportError:
        if choice == "auto":
            return None
        raise LoopUnavailable(
            "uvloop is not installed (pip install 'llm-soak[fast]', or use asyncio)"
        ) from None
    return uvloop.new_event_loop


def loop_name(loop: asyncio.AbstractEventLoop | None = None) -> str:
    """`uvloop` or `asyncio`: what `loop` (default: the running loop) is."""
    loop = loop if loop is not None else asyncio.get_running_loop()
    return "uvloop" if type(loop).__module__.startswith("uvloop") else "asyncio"
