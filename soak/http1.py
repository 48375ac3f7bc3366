"""A lean HTTP/1.1 client for the load's hot path: keep-alive connections, one write per request,
the answer parsed as its bytes arrive and handed to a synchronous `Handler`.

Why not aiohttp here: its per-request machinery (request and response objects, header
multidicts, payload registry, stream readers, a task switch per read) cost more CPU than the
rest of a request together, and that CPU is the ceiling on the rate one core can drive. This
module does only what a chat request needs: POST a pre-built request, frame the answer
(Content-Length, chunked, or until close; gzip/deflate decoded with a bound), and report
protocol violations, lost connections and timeouts as `Failure` kinds; the caller (the chat
client) turns them into outcomes. No redirect is ever followed; no cookie is kept.

A connection is reused only after an answer ended exactly where its framing said: any byte
beyond it (a smuggled answer), an answer ending at close or `Connection: close` ends it."""

from __future__ import annotations

import asyncio
import re
import zlib
from collections.abc import Callable
from typing import Any, Protocol
from urllib.parse import quote, urlsplit

MAX_HEAD = 65536
"""Longest status line plus headers accepted (aiohttp's limit was 8,190 bytes per line)."""
_DRAIN = 1.0
"""Seconds a connection may take to finish an answer its handler no longer needs (the chunk
terminator after `[DONE]`) before it is closed instead of reused."""
_HEAD_RE = re.compile(
    rb"HTTP/1\.([01]) ([1-9]\d\d)(?: [^\r\n]*)?\r\n"  # the status line; then header fields:
    rb"(?:[!#$%&'*+.^_`|~0-9A-Za-z-]+:[ \t]*[^\x00-\x08\x0a-\x1f\x7f]*\r\n)*"  # no CTL but tab
)
_SIZE = re.compile(rb"([0-9A-Fa-f]{1,15})[ \t]*(?:;[^\r\n]*)?")
CONTINUE, FINISHED, ABANDON = 0, 1, 2
"""What a handler returns: keep reading; the answer is complete for the caller (the connection
still reads to the end of the HTTP body, to be reused); stop here and drop the connection."""


class Failure:
    """Why an exchange ended without a complete answer (strings, so tests read them)."""

    CONNECT = "connect"
    """No connection could be opened, or it closed before any answer byte."""
    BROKEN = "broken"
    """The connection closed inside the answer."""
    BAD = "bad"
    """The bytes are not HTTP/1.x as the framing promised."""
    TIMEOUT = "timeout"


class Handler(Protocol):
    """Receives one answer; every method runs inside the event loop's read callback."""

    def head(self, status: int, headers: dict[str, str], at: float) -> int:
        """The status and headers (names in lower case, the first of repeated ones); returns
        CONTINUE or ABANDON."""
        ...

    def body(self, data: bytes, at: float) -> int:
        """Decoded body bytes; returns CONTINUE, FINISHED or ABANDON."""
        ...

    def done(self, at: float) -> None:
        """The answer ended where its framing said."""
        ...

    def fail(self, kind: str, at: float) -> None: ...


class Owner(Protocol):
    """What a connection needs from the pool that opened it (`soak.connpool.Pool`)."""

    clock: Callable[[], float]
    max_body: int
    read_buffer: memoryview
    """Where every connection's reads land (parsed before the next read)."""

    def release(self, conn: Connection) -> None:
        """`conn` finished an answer cleanly: reuse it, or close it."""
        ...

    def closing(self, conn: Connection) -> None:
        """`conn` is being closed: its slot is free, it is never taken again."""
        ...

    def gone(self, conn: Connection) -> None:
        """`conn`'s transport reported its end."""
        ...


class Origin:
    """Where requests go: scheme, host and port of a URL, and its request target."""

    __slots__ = ("host", "key", "port", "ssl", "target")

    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"url {url!r} must be http:// or https:// with a host")
        self.host = parts.hostname
        self.ssl = parts.scheme == "https"
        self.port = parts.port or (443 if self.ssl else 80)
        path = quote(parts.path or "/", safe="/%:@!$&'()*+,;=-._~")
        self.target = path + (
            f"?{quote(parts.query, safe='/?%:@!$&()*+,;=-._~')}" if parts.query else ""
        )
        self.key = (self.host, self.port, self.ssl)

    @property
    def host_header(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        default = 443 if self.ssl else 80
        return host if self.port == default else f"{host}:{self.port}"


_IDLE, _HEAD, _LENGTH, _CHUNK_SIZE, _CHUNK, _CHUNK_END, _TRAILERS, _UNTIL_CLOSE = range(8)
"""Where a connection is in an answer (`Connection._state`)."""


def _decoder(encoding: str) -> Any:
    if encoding in ("gzip", "x-gzip", "deflate"):
        return zlib.decompressobj(47)  # 32 + 15: a gzip or a zlib header, found by zlib
    return None  # identity, or a coding we do not speak: the bytes as sent


class Connection(asyncio.BufferedProtocol):
    """One keep-alive connection; parses the answer to the request in flight on it."""

    __slots__ = ("_buf", "_decoder", "_drain_timer", "_handler", "_left", "_state", "_waiter",
                 "idle_since", "keep", "origin", "pool", "transport")  # fmt: skip

    def __init__(self, pool: Owner, origin: Origin) -> None:
        self.pool, self.origin = pool, origin
        self.transport: asyncio.Transport | None = None
        self._buf = bytearray()
        self._handler: Handler | None = None
        self._waiter: asyncio.Future[None] | None = None
        self._state = _IDLE
        self._left = 0
        self._decoder: Any = None
        self._drain_timer: asyncio.TimerHandle | None = None
        self.keep = True
        self.idle_since = 0.0

    # asyncio.Protocol
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def get_buffer(self, sizehint: int) -> memoryview:
        # One buffer for every connection of the pool: each read is parsed (its bytes copied
        # out) before the next is made. A fresh 256 KiB bytes object per read, as plain
        # protocols get on the default loop, cost more system time than the read itself.
        return self.pool.read_buffer

    def buffer_updated(self, nbytes: int) -> None:
        if self._state == _IDLE:  # nothing asked: a stray or smuggled answer
            self.close()
            return
        self._buf += self.pool.read_buffer[:nbytes]
        self._parse(self.pool.clock())

    def eof_received(self) -> bool:
        return False  # close our side too: connection_lost follows

    def connection_lost(self, exc: Exception | None) -> None:
        self.pool.gone(self)
        state = self._state
        if self._handler is None:
            return
        now = self.pool.clock()
        if state == _UNTIL_CLOSE:  # the answer ends at close
            if self._decoder is None or self._emit(self._decoder.flush(), now):
                self._finish(now)
        elif state == _HEAD and self._buf and not self._buf.startswith(b"HTTP/"[: len(self._buf)]):
            self._fail(Failure.BAD, now)
        else:  # closed before the status line: no answer; inside the answer: cut short
            self._fail(Failure.CONNECT if state == _HEAD else Failure.BROKEN, now)

    # one exchange
    def start(self, data: bytes, handler: Handler, waiter: asyncio.Future[None]) -> None:
        self._handler, self._waiter, self._state = handler, waiter, _HEAD
        self._buf.clear()
        assert self.transport is not None
        self.transport.write(data)

    def timed_out(self) -> None:
        """The exchange's deadline passed: the answer is abandoned with its connection."""
        if self._handler is not None:
            self._fail(Failure.TIMEOUT, self.pool.clock())
        self.close()

    def close(self) -> None:
        self.keep = False
        self.pool.closing(self)
        if self.transport is not None:
            self.transport.abort()

    def _parse(self, now: float) -> None:
        buf = self._buf
        while buf and self._handler is not None:
            state = self._state
            if state == _HEAD:
                if not self._head(buf, now):
                    return
            elif state in (_LENGTH, _CHUNK):
                piece = bytes(buf[: self._left])
                del buf[: len(piece)]
                self._left -= len(piece)
                if not self._emit(piece, now):
                    return
                if not self._left:
                    if state == _LENGTH:
                        self._finish(now)
                    else:
                        self._state = _CHUNK_END
            elif state == _UNTIL_CLOSE:
                piece = bytes(buf)
                buf.clear()
                if not self._emit(piece, now):
                    return
            else:  # a line: chunk size, the CRLF after a chunk, or a trailer
                end = buf.find(b"\r\n")
                if end < 0:
                    if len(buf) > 4096:
                        self._fail(Failure.BAD, now)
                    return
                if state == _CHUNK_SIZE:
                    size = _SIZE.fullmatch(buf, 0, end)
                    if size is None:
                        self._fail(Failure.BAD, now)
                        return
                    left = int(size.group(1), 16)
                    stop = end + 2 + left
                    if left and buf[stop : stop + 2] == b"\r\n":  # the whole chunk is here
                        piece = bytes(buf[end + 2 : stop])
                        del buf[: stop + 2]
                        if not self._emit(piece, now):
                            return
                        continue
                    del buf[: end + 2]
                    self._left = left
                    self._state = _CHUNK if left else _TRAILERS
                    continue
                line = bytes(buf[:end])
                del buf[: end + 2]
                if state == _CHUNK_END:
                    if line:
                        self._fail(Failure.BAD, now)
                        return
                    self._state = _CHUNK_SIZE
                elif not line:  # the empty line after the trailers
                    self._finish(now)
        if self._state == _LENGTH and not self._left and self._handler is not None:
            self._finish(now)  # Content-Length: 0, or no body (204, 304)

    def _head(self, buf: bytearray, now: float) -> bool:
        """Parse a complete status line and headers; False when more bytes are needed or the
        exchange ended."""
        if not buf.startswith(b"HTTP/"[: len(buf)]):
            self._fail(Failure.BAD, now)
            return False
        end = buf.find(b"\r\n\r\n")
        if end < 0 or end > MAX_HEAD:
            if end > MAX_HEAD or len(buf) > MAX_HEAD:
                self._fail(Failure.BAD, now)
            return False
        head = bytes(buf[: end + 2])
        del buf[: end + 4]
        valid = _HEAD_RE.fullmatch(head)
        if valid is None:
            self._fail(Failure.BAD, now)
            return False
        status = int(valid.group(2))
        if status < 200:
            if status == 101:  # a protocol switch nobody asked for
                self._fail(Failure.BAD, now)
                return False
            return True  # 100 Continue, 103 Early Hints: the answer follows
        headers: dict[str, str] = {}
        lengths = 0
        for line in head.decode("latin-1").split("\r\n")[1:-1]:
            name, _, value = line.partition(":")
            name, value = name.lower(), value.strip()
            seen = headers.get(name)
            if seen is None:
                headers[name] = value
            elif name == "content-length" and seen != value:
                lengths += 1
        connection = headers.get("connection", "").lower()
        self.keep = connection != "close" if valid.group(1) == b"1" else (
            connection == "keep-alive"
        )  # fmt: skip
        coding = headers.get("transfer-encoding")
        length = headers.get("content-length")
        if lengths or (length is not None and coding is not None):
            self._fail(Failure.BAD, now)  # two lengths, or a length and a chunked body
            return False
        if status in (204, 304):
            self._state, self._left = _LENGTH, 0
        elif coding is not None:
            chunked = coding.lower().rsplit(",", 1)[-1].strip() == "chunked"
            self._state = _CHUNK_SIZE if chunked else _UNTIL_CLOSE
        elif length is not None:
            if not (length.isdigit() and length.isascii() and len(length) <= 15):
                self._fail(Failure.BAD, now)
                return False
            self._state, self._left = _LENGTH, int(length)
        else:
            self._state = _UNTIL_CLOSE
        if self._state == _UNTIL_CLOSE:
            self.keep = False
        self._decoder = _decoder(headers.get("content-encoding", "").strip().lower())
        handler = self._handler
        assert handler is not None
        if handler.head(status, headers, now) != CONTINUE:
            self.abandon()
            return False
        return True

    def _emit(self, piece: bytes, now: float) -> bool:
        """Hand decoded body bytes on; False when the exchange ended."""
        decoder = self._decoder
        if decoder is not None and piece:
            try:  # inflate no more than the bound (+1 byte: the handler sees it went past)
                piece = decoder.decompress(piece, self.pool.max_body + 1)
            except zlib.error:
                self._fail(Failure.BAD, now)
                return False
        if not piece:
            return True
        handler = self._handler
        assert handler is not None
        verdict = handler.body(piece, now)
        if verdict == CONTINUE:
            return True
        if verdict == FINISHED:  # read on to the end of the answer, to reuse the connection
            self._resolve()
            self._handler = _DRAINING
            self._drain_timer = asyncio.get_running_loop().call_later(_DRAIN, self._drain_late)
            return True
        self.abandon()
        return False

    def abandon(self) -> None:
        """End the exchange here and drop the connection (the answer is not read on)."""
        self._handler, self._state = None, _IDLE
        self._resolve()
        self.close()

    def _drain_late(self) -> None:
        self._drain_timer = None
        if self._handler is _DRAINING:
            self._handler, self._state = None, _IDLE
            self.close()

    def _finish(self, now: float) -> None:
        handler = self._handler
        self._handler, self._state = None, _IDLE
        if self._drain_timer is not None:
            self._drain_timer.cancel()
            self._drain_timer = None
        if self._buf:  # bytes beyond the answer's end: never the next request's answer
            self.keep = False
        if handler is not None and handler is not _DRAINING:
            handler.done(now)
            self._resolve()
        self.pool.release(self)

    def _fail(self, kind: str, now: float) -> None:
        handler = self._handler
        self._handler, self._state = None, _IDLE
        if handler is not None and handler is not _DRAINING:
            handler.fail(kind, now)
            self._resolve()
        self.close()

    def _resolve(self) -> None:
        waiter, self._waiter = self._waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_result(None)


class _Drain:
    """The handler of an answer its caller no longer needs: read to its end and ignored."""

    def head(self, status: int, headers: dict[str, str], at: float) -> int:
        return CONTINUE

    def body(self, data: bytes, at: float) -> int:
        return CONTINUE

    def done(self, at: float) -> None:
        return None

    def fail(self, kind: str, at: float) -> None:
        return None


_DRAINING = _Drain()
