"""Keep-alive HTTP/1.1 connections for the load's hot path, at most `limit` open at once.

A request takes an idle connection to its origin (the most recently used: few connections stay
hot), else opens one; at the limit it closes an idle connection to another origin or waits for
one to come back, within its own deadline. Connections idle longer than `keepalive` are closed
instead of reused (servers drop idle connections too: a dropped one is never taken). The
answer is parsed and framed by `soak.http1.Connection`.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import time
from collections import deque
from collections.abc import Callable

from soak.http1 import Connection, Failure, Handler, Origin

_READ_SIZE = 256 * 1024
"""Bytes one read may bring (what the default loop reads at most, too)."""


class Pool:
    """Keep-alive connections to any number of origins, at most `limit` open at once; a request
    beyond the limit waits for a free one (within its own deadline). `clock` is the clock of
    every time handed to a handler and of the deadlines."""

    def __init__(
        self,
        limit: int,
        *,
        keepalive: float = 30.0,
        max_body: int = 4 * 2**20,
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        self.limit, self.keepalive, self.max_body, self.clock = limit, keepalive, max_body, clock
        self.read_buffer = memoryview(bytearray(_READ_SIZE))
        self._idle: dict[tuple[str, int, bool], list[Connection]] = {}
        self._open: set[Connection] = set()
        """Connections counted against `limit` (idle or busy)."""
        self._live: set[Connection] = set()
        """Connections whose transport has not reported its end yet (what `close` waits for)."""
        self._connecting = 0
        self._waiters: deque[asyncio.Future[None]] = deque()
        self._ssl: ssl.SSLContext | None = None
        self.closed = False
        self.opened = 0
        """Connections opened so far (keep-alive reuses them)."""

    async def exchange(
        self, origin: Origin, data: bytes, handler: Handler, deadline: float
    ) -> None:
        """Send `data` (a whole request) to `origin` and feed the answer to `handler` until it
        ended, failed or timed out (at `deadline`, on the pool's clock). Never raises for
        anything the network or the server does: those reach `handler.fail`."""
        if self.closed:
            raise RuntimeError("the connection pool is closed")
        conn = self._take(origin)
        if conn is None:
            conn = await self._connect(origin, handler, deadline)
            if conn is None:
                return
        loop = asyncio.get_running_loop()
        waiter = loop.create_future()
        timer = loop.call_later(deadline - self.clock(), conn.timed_out)
        try:
            conn.start(data, handler, waiter)
            await waiter
        except BaseException:  # cancelled from outside: the answer is abandoned
            conn.abandon()
            raise
        finally:
            timer.cancel()

    def _take(self, origin: Origin) -> Connection | None:
        idle = self._idle.get(origin.key)
        if not idle:
            return None
        now = self.clock()
        while idle:
            conn = idle.pop()
            fresh = now - conn.idle_since < self.keepalive
            if fresh and conn.transport is not None and not conn.transport.is_closing():
                return conn
            conn.close()
        return None

    async def _connect(
        self, origin: Origin, handler: Handler, deadline: float
    ) -> Connection | None:
        loop = asyncio.get_running_loop()
        while len(self._open) + self._connecting >= self.limit:
            if self._close_an_idle():
                continue
            waiter = loop.create_future()
            self._waiters.append(waiter)
            try:
                async with asyncio.timeout(deadline - self.clock()):
                    await waiter
            except TimeoutError:
                handler.fail(Failure.TIMEOUT, self.clock())
                return None
            finally:
                with contextlib.suppress(ValueError):
                    self._waiters.remove(waiter)
            conn = self._take(origin)
            if conn is not None:
                return conn
        self._connecting += 1
        try:
            async with asyncio.timeout(deadline - self.clock()):
                _, conn = await loop.create_connection(
                    lambda: Connection(self, origin), origin.host, origin.port,
                    ssl=self._context() if origin.ssl else None,
                    server_hostname=origin.host if origin.ssl else None,
                )  # fmt: skip
        except TimeoutError:
            handler.fail(Failure.TIMEOUT, self.clock())
            return None
        except OSError:  # refused, unreachable, DNS, TLS
            handler.fail(Failure.CONNECT, self.clock())
            return None
        finally:
            self._connecting -= 1
            self._wake()
        if self.closed:
            conn.close()
            raise RuntimeError("the connection pool is closed")
        self._open.add(conn)
        self._live.add(conn)
        self.opened += 1
        return conn

    def _context(self) -> ssl.SSLContext:
        if self._ssl is None:
            self._ssl = ssl.create_default_context()
        return self._ssl

    def _close_an_idle(self) -> bool:
        """At the limit, an idle connection to another origin makes room for a new one."""
        for idle in self._idle.values():
            if idle:
                idle.pop(0).close()
                return True
        return False

    def release(self, conn: Connection) -> None:
        transport = conn.transport
        if not conn.keep or self.closed or transport is None or transport.is_closing():
            conn.close()
            return
        conn.idle_since = self.clock()
        self._idle.setdefault(conn.origin.key, []).append(conn)
        self._wake()

    def closing(self, conn: Connection) -> None:
        """`conn` is being closed: its slot is free now, it is never taken again."""
        if conn in self._open:
            self._open.discard(conn)
            idle = self._idle.get(conn.origin.key)
            if idle and conn in idle:
                idle.remove(conn)
            self._wake()

    def gone(self, conn: Connection) -> None:
        self.closing(conn)
        self._live.discard(conn)

    def _wake(self) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return

    async def close(self) -> None:
        """Close every connection (busy or idle) and wait until their transports are gone."""
        self.closed = True
        for conn in list(self._open):
            conn.close()
        self._idle.clear()
        for _ in range(200):  # an aborted transport reports its end within a loop iteration
            if not self._live:
                break
            await asyncio.sleep(0.005 if _ > 10 else 0)
