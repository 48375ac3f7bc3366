"""The lean HTTP/1.1 path under the chat client (soak.http1, soak.connpool) against raw loopback
servers: the connection limit and its queue, deadlines while queued, keep-alive reuse and
when a connection is not reused, a stream done at its end event while its connection reads on,
cancellation, and the session around it."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable

import aiohttp
import pytest

from soak.client import ChatClient, make_session
from soak.http1 import Origin
from soak.results import Outcome

BODY = json.dumps({"choices": [{"message": {"content": "hi [mock:primary:20000]"}}]}).encode()
ANSWER = b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(BODY), BODY)
Handle = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


async def read_request(reader: asyncio.StreamReader) -> bytes:
    head = await reader.readuntil(b"\r\n\r\n")
    for line in head.lower().split(b"\r\n"):
        if line.startswith(b"content-length:"):
            await reader.readexactly(int(line.split(b":")[1]))
    return head


@contextlib.asynccontextmanager
async def server(handle: Handle) -> AsyncIterator[tuple[str, dict[str, int]]]:
    """A loopback server; yields its chat URL and counters (connections open now, at most)."""
    stats = {"open": 0, "peak": 0, "accepted": 0}
    tasks: set[asyncio.Task[None]] = set()

    async def tracked(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        tasks.add(task)
        stats["open"] += 1
        stats["accepted"] += 1
        stats["peak"] = max(stats["peak"], stats["open"])
        try:
            with contextlib.suppress(ConnectionError, asyncio.IncompleteReadError,
                                     asyncio.CancelledError):  # fmt: skip
                await handle(reader, writer)
        finally:
            stats["open"] -= 1
            writer.close()
            with contextlib.suppress(ConnectionError, asyncio.CancelledError):
                await writer.wait_closed()

    srv = await asyncio.start_server(tracked, "127.0.0.1", 0)
    try:
        port = srv.sockets[0].getsockname()[1]
        yield f"http://127.0.0.1:{port}/v1/chat/completions", stats
    finally:
        srv.close()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await srv.wait_closed()


def answering(delay: float = 0.0, *, close_after: bool = False) -> Handle:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            await read_request(reader)
            await asyncio.sleep(delay)
            writer.write(ANSWER)
            await writer.drain()
            if close_after:
                return

    return handle


async def hang(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Never answer; return when the client closes (30 s at most)."""
    await read_request(reader)
    await asyncio.wait_for(reader.read(), 30)


async def test_at_most_limit_connections_open_and_requests_beyond_queue_for_them() -> None:
    async with server(answering(0.05)) as (url, stats), make_session(2, 5.0) as session:
        client = ChatClient(session, url, model="m", run_id="h")
        results = await asyncio.gather(*(client.send(i, time.perf_counter()) for i in range(8)))
        assert [r.outcome for r in results] == [Outcome.OK] * 8
        assert session.pool.opened == 2 and stats["peak"] == 2
        # 8 answers of 50 ms over 2 connections: 4 rounds, not 1 (a queue, not 8 connections)
        assert max(r.end - r.intended for r in results) >= 0.15


async def test_a_request_queued_for_a_connection_times_out_at_its_own_deadline() -> None:
    async with server(hang) as (url, _), make_session(1, 10.0) as session:
        client = ChatClient(session, url, model="m", run_id="h", timeout=0.3)
        t0 = time.perf_counter()
        first, queued = await asyncio.gather(client.send(1, t0), client.send(2, t0))
        took = time.perf_counter() - t0
    assert (first.outcome, queued.outcome) == (Outcome.TIMEOUT, Outcome.TIMEOUT)
    assert queued.first_byte is None
    assert took < 1.5  # 0.3 s each, side by side; the session's 10 s would be 33x


async def test_a_connection_the_server_closed_is_not_reused() -> None:
    async with server(answering(close_after=True)) as (url, stats), make_session(4, 5.0) as s:
        client = ChatClient(s, url, model="m", run_id="h")
        first = await client.send(1, 0.0)
        await asyncio.sleep(0.05)  # the server's close arrives while the connection is idle
        second = await client.send(2, 0.0)
    assert (first.outcome, second.outcome) == (Outcome.OK, Outcome.OK)
    assert s.pool.opened == 2 and stats["accepted"] == 2


async def test_keep_alive_reuses_a_connection_until_it_idled_too_long() -> None:
    async with server(answering()) as (url, stats), make_session(4, 5.0) as session:
        client = ChatClient(session, url, model="m", run_id="h")
        for seq in range(3):
            assert (await client.send(seq, 0.0)).ok
        assert session.pool.opened == 1
        session.pool.keepalive = 0.05
        await asyncio.sleep(0.1)
        assert (await client.send(3, 0.0)).ok
    assert session.pool.opened == 2 and stats["accepted"] == 2


def sse(*events: str) -> bytes:
    return b"".join(f"data: {e}\n\n".encode() for e in events)


def stream_answer(terminator_after: float | None) -> Handle:
    """A chunked SSE answer ending in [DONE]; the chunk terminator after `terminator_after`
    seconds (None: never)."""
    chunk = json.dumps({"choices": [{"delta": {"content": "hi [mock:primary:7]"}}]})
    events = sse(chunk, "[DONE]")

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            await read_request(reader)
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
                         b"Transfer-Encoding: chunked\r\n\r\n"
                         + b"%x\r\n%s\r\n" % (len(events), events))  # fmt: skip
            await writer.drain()
            if terminator_after is None:  # until the client closes (30 s at most)
                await asyncio.wait_for(reader.read(), 30)
                return
            await asyncio.sleep(terminator_after)
            writer.write(b"0\r\n\r\n")
            await writer.drain()

    return handle


async def test_a_stream_ends_at_done_and_its_connection_is_reused_once_the_body_ends() -> None:
    async with server(stream_answer(0.2)) as (url, _), make_session(4, 5.0) as session:
        client = ChatClient(session, url, model="m", run_id="h", stream=True)
        first = await client.send(1, 0.0)
        assert first.ok and first.provider == "primary"
        assert first.end - first.sent < 0.15  # [DONE], not the terminator 200 ms later
        second = await client.send(2, 0.0)  # waits for no one: the old connection is busy
        await asyncio.sleep(0.3)
        third = await client.send(3, 0.0)
    assert second.ok and third.ok
    assert session.pool.opened == 2  # the first connection came back after its terminator


async def test_a_stream_whose_body_never_ends_after_done_loses_its_connection() -> None:
    async with server(stream_answer(None)) as (url, stats), make_session(4, 5.0) as session:
        client = ChatClient(session, url, model="m", run_id="h", stream=True)
        assert (await client.send(1, 0.0)).ok
        await asyncio.sleep(1.3)  # the 1 s drain bound, then the connection is closed
        assert stats["open"] == 0
        assert (await client.send(2, 0.0)).ok
    assert session.pool.opened == 2


async def test_a_cancelled_request_closes_its_connection() -> None:
    async with server(hang) as (url, stats), make_session(4, 10.0) as session:
        client = ChatClient(session, url, model="m", run_id="h")
        task = asyncio.ensure_future(client.send(1, 0.0))
        await asyncio.sleep(0.1)
        assert stats["open"] == 1
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await asyncio.sleep(0.05)
        assert stats["open"] == 0


async def test_the_session_speaks_aiohttp_for_everything_but_chat_and_closes_both() -> None:
    async def ok(request: aiohttp.web.Request) -> aiohttp.web.Response:
        return aiohttp.web.json_response({"path": request.path})

    app = aiohttp.web.Application()
    app.router.add_get("/metrics", ok)
    runner = aiohttp.web.AppRunner(app)
    await runner.setup()
    site = aiohttp.web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        session = make_session(2, 5.0)
        async with session.get(f"http://127.0.0.1:{port}/metrics") as resp:
            assert (resp.status, await resp.json()) == (200, {"path": "/metrics"})
        await session.close()
        assert session.closed
        with pytest.raises(RuntimeError, match="closed"):
            session.get(f"http://127.0.0.1:{port}/metrics")
    finally:
        await runner.cleanup()


async def test_a_client_needs_a_soak_session_and_headers_that_cannot_break_the_request() -> None:
    async with aiohttp.ClientSession() as plain:
        with pytest.raises(TypeError, match="make_session"):
            ChatClient(plain, "http://127.0.0.1:1/v1", model="m")  # type: ignore[arg-type]
    async with make_session(1, 5.0) as session:
        with pytest.raises(ValueError, match="header 'authorization' must not contain") as err:
            ChatClient(session, "http://127.0.0.1:1/v1", model="m",
                       headers={"Authorization": "Bearer s3cret\r\nX-Evil: 1"})  # fmt: skip
        assert "s3cret" not in str(err.value)


@pytest.mark.parametrize(
    ("url", "host", "target"),
    [
        ("http://gw:8080/v1/chat/completions", "gw:8080", "/v1/chat/completions"),
        ("https://gw/v1/x?a=1", "gw", "/v1/x?a=1"),
        ("http://[::1]:4000/v1/my path", "[::1]:4000", "/v1/my%20path"),
        ("http://127.0.0.1:80", "127.0.0.1", "/"),
    ],
)
def test_an_origin_is_its_host_header_and_request_target(url: str, host: str, target: str) -> None:
    origin = Origin(url)
    assert (origin.host_header, origin.target) == (host, target)


def test_an_origin_needs_http_and_a_host() -> None:
    with pytest.raises(ValueError, match="must be http:// or https://"):
        Origin("ftp://gw/v1")


class _Transport:
    """Enough of a transport for a connection fed by hand."""

    def __init__(self) -> None:
        self.closed = False

    def write(self, data: bytes) -> None:
        pass

    def is_closing(self) -> bool:
        return self.closed

    def abort(self) -> None:
        self.closed = True


def feed(answer: bytes, step: int, *, stream: bool) -> tuple[object, bool]:
    """`answer` into a connection `step` bytes per read: (the answer read, connection kept)."""
    from soak.answer import JsonAnswer, StreamAnswer
    from soak.connpool import Pool
    from soak.http1 import Connection

    pool = Pool(4)
    released: list[object] = []
    pool.release = released.append  # type: ignore[method-assign]
    conn = Connection(pool, Origin("http://127.0.0.1:1/v1"))
    conn.connection_made(_Transport())  # type: ignore[arg-type]
    read = StreamAnswer() if stream else JsonAnswer()
    loop = asyncio.new_event_loop()
    try:
        conn.start(b"", read, loop.create_future())
        for at in range(0, len(answer), step):
            piece = answer[at : at + step]
            pool.read_buffer[: len(piece)] = piece
            loop.run_until_complete(asyncio.sleep(0))  # a call_later for the drain may be set
            loop.call_soon(conn.buffer_updated, len(piece))
            loop.run_until_complete(asyncio.sleep(0))
    finally:
        loop.close()
    return read, bool(released)


@pytest.mark.parametrize("step", [1, 2, 3, 7, 64, 10_000])
def test_an_answer_split_anywhere_reads_the_same(step: int) -> None:
    """Framing is byte-exact wherever the reads split it: a chunked SSE stream and a JSON
    answer, one byte per read up to all at once."""
    events = sse(json.dumps({"choices": [{"delta": {"content": "a"}}]}),
                 json.dumps({"choices": [{"delta": {"content": "b [mock:primary:9]"}}]}),
                 "[DONE]")  # fmt: skip
    chunks = b"".join(b"%x;ext=1\r\n%s\r\n" % (len(e), e) for e in (events[:40], events[40:]))
    stream = (b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n"
              b"\r\n" + chunks + b"0\r\nx-trailer: 1\r\n\r\n")  # fmt: skip
    read, kept = feed(stream, step, stream=True)
    assert (read.outcome, read.pieces, read.provider) == (Outcome.OK, ["a", "b [mock:primary:9]"],
                                                          "primary")  # fmt: skip
    assert kept  # the connection came back once the terminator and trailers were read
    read, kept = feed(ANSWER, step, stream=False)
    assert (read.outcome, read.provider, read.nbytes) == (Outcome.OK, "primary", len(BODY))
    assert kept
