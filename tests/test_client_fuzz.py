"""The chat client against hostile answers written byte by byte (a raw socket server): redirects,
lying lengths, endless bodies, bad header bytes, odd status codes, compression bombs, absurd
markers. Each request ends as one outcome, within its timeout, with bounded memory, and never
raises out of `send` (which the engine would count as a soak bug)."""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import json
import time
import tracemalloc
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from soak.client import ChatClient, make_session
from soak.results import Outcome

Writer = Callable[[asyncio.StreamWriter], Awaitable[None]]
BODY = json.dumps({"choices": [{"message": {"content": "hi [mock:primary:20000]"}}]}).encode()


def head(status: bytes, *headers: tuple[bytes, bytes]) -> bytes:
    return status + b"\r\n" + b"".join(k + b": " + v + b"\r\n" for k, v in headers) + b"\r\n"


def json_answer(body: bytes = BODY, *headers: tuple[bytes, bytes]) -> bytes:
    length = (b"Content-Length", str(len(body)).encode())
    return head(b"HTTP/1.1 200 OK", (b"Content-Type", b"application/json"), *headers, length) + body


@contextlib.asynccontextmanager
async def listening(
    handle: Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]],
) -> AsyncIterator[str]:
    """A loopback server running `handle` per connection; on the way out every connection
    still open is cancelled and closed (nothing left for the garbage collector)."""
    tasks: set[asyncio.Task[None]] = set()

    async def tracked(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        tasks.add(task)
        try:
            await handle(reader, writer)
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError, asyncio.CancelledError):
                await writer.wait_closed()

    server = await asyncio.start_server(tracked, "127.0.0.1", 0)
    try:
        yield f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"
    finally:
        server.close()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await server.wait_closed()


@contextlib.asynccontextmanager
async def serve(write: Writer) -> AsyncIterator[tuple[str, list[bytes]]]:
    """A server that reads one request per connection, lets `write` answer, and keeps the
    request heads it saw."""
    seen: list[bytes] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            request = await reader.readuntil(b"\r\n\r\n")
            seen.append(request)
            for line in request.lower().split(b"\r\n"):
                if line.startswith(b"content-length:"):
                    await reader.readexactly(int(line.split(b":")[1]))
            await write(writer)
            await writer.drain()
            await asyncio.sleep(0.3)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass

    async with listening(handle) as base:
        yield base, seen


def answering(data: bytes) -> Writer:
    async def write(writer: asyncio.StreamWriter) -> None:
        writer.write(data)

    return write


async def send(write: Writer, *, stream: bool = False, timeout: float = 2.0, **kw) -> tuple:
    """One request to a server answering with `write`: (Result, seconds, requests seen)."""
    async with serve(write) as (base, seen), make_session(4, 10.0) as session:
        client = ChatClient(session, f"{base}/v1/chat/completions", model="m", run_id="fz",
                            stream=stream, timeout=timeout, **kw)  # fmt: skip
        started = time.perf_counter()
        result = await client.send(1, started)
        return result, time.perf_counter() - started, seen


async def test_a_redirect_is_not_followed_and_the_secret_stays_home() -> None:
    """302 and 307 to another loopback port: aiohttp followed them and sent every configured
    header there except Authorization; now the 3xx is the outcome and the target sees nothing."""
    async with serve(answering(json_answer())) as (target, target_seen):
        for status in (b"302 Found", b"307 Temporary Redirect", b"308 Permanent Redirect"):
            location = (b"Location", f"{target}/v1/chat/completions".encode())
            answer = head(b"HTTP/1.1 " + status, location, (b"Content-Length", b"0"))
            result, _, seen = await send(answering(answer), headers={"x-api-key": "s3cret"})
            assert result.outcome is Outcome.HTTP_3XX, status
            assert result.status == int(status[:3])
            assert b"s3cret" in seen[0]  # the gateway itself is trusted with it
        assert target_seen == []


@pytest.mark.parametrize(
    ("answer", "outcome"),
    [
        (head(b"HTTP/1.1 600 Odd", (b"Content-Length", b"0")), Outcome.BAD_RESPONSE),
        (head(b"HTTP/1.1 999 Odd", (b"Content-Length", b"0")), Outcome.BAD_RESPONSE),
        (head(b"HTTP/1.1 1000 Odd", (b"Content-Length", b"0")), Outcome.BAD_RESPONSE),
        (b"\x16\x03\x01\x02\x00 not http\r\n\r\n", Outcome.BAD_RESPONSE),
        (BODY, Outcome.BAD_RESPONSE),  # HTTP/0.9: a body without any status line
        (head(b"HTTP/1.1 204 No Content", (b"Content-Length", b"5")) + b"hello",
         Outcome.BAD_RESPONSE),
        (head(b"HTTP/1.1 200 OK", (b"Content-Length", b"-5")) + BODY, Outcome.BAD_RESPONSE),
        (head(b"HTTP/1.1 200 OK", (b"Content-Length", b"9" * 30)) + BODY, Outcome.BAD_RESPONSE),
        (head(b"HTTP/1.1 200 OK", (b"Content-Length", b"5"), (b"Content-Length", b"6")) + BODY,
         Outcome.BAD_RESPONSE),
        (head(b"HTTP/1.1 200 OK", (b"Content-Length", b"5"), (b"Transfer-Encoding", b"chunked"))
         + b"5\r\nhello\r\n0\r\n\r\n", Outcome.BAD_RESPONSE),
        (head(b"HTTP/1.1 200 OK", (b"Transfer-Encoding", b"chunked")) + b"zz\r\nab\r\n0\r\n\r\n",
         Outcome.BAD_RESPONSE),
        (json_answer(BODY, (b"x-soak-provider", b"\xff\xfe\x00evil")), Outcome.BAD_RESPONSE),
        (json_answer(BODY, (b"x-big", b"a" * 200_000)), Outcome.BAD_RESPONSE),
        (head(b"HTTP/1.1 200 OK", (b"Content-Type", b"application/json"),
              (b"Content-Length", b"10")) + b"0123456789"[:4], Outcome.STREAM_BROKEN),
        (head(b"HTTP/1.1 200 OK", (b"Content-Length", b"0")), Outcome.BAD_RESPONSE),
        (json_answer(b"[" * 200_000 + b"]" * 200_000), Outcome.BAD_RESPONSE),
        (json_answer() + b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}", Outcome.OK),
        (b"HTTP/1.1 100 Continue\r\n\r\n" + json_answer(), Outcome.OK),
    ],
    ids=["status-600", "status-999", "status-1000", "tls-bytes", "http09", "204-with-body",
         "length-negative", "length-30-digits", "two-lengths", "length-and-chunked",
         "chunk-size-zz", "header-nul-bytes", "header-200kb", "length-longer-than-body",
         "empty-200", "json-nested-200k-deep", "bytes-after-the-body", "100-then-200"],
)  # fmt: skip
async def test_odd_status_length_and_header_bytes(answer: bytes, outcome: Outcome) -> None:
    """Protocol violations by the gateway are `bad_response` (they were `connect`, as if the
    gateway were unreachable); a nesting 200,000 deep raised RecursionError out of send."""
    result, seconds, _ = await send(answering(answer))
    assert result.outcome is outcome
    assert seconds < 1.5


@pytest.mark.parametrize(
    "answer",
    [
        json_answer(b'{"choices":[{"message":{"content":"hi"}}],"soak":{"provider":"p",'
                    b'"service_us":' + b"9" * 400 + b"}}"),
        json_answer(b'{"choices":[{"message":{"content":"hi"}}],"soak":{"provider":"p",'
                    b'"service_us":1e999}}'),
        json_answer(b'{"choices":[{"message":{"content":"hi"}}]}', (b"x-soak-provider", b"p"),
                    (b"x-soak-service-us", b"9" * 4000)),
        json_answer(b'{"choices":[{"message":{"content":"hi"}}]}', (b"x-soak-provider", b"p"),
                    (b"x-soak-service-us", b"-20000")),
    ],
    ids=["body-400-digits", "body-1e999", "header-4000-digits", "header-negative"],
)  # fmt: skip
async def test_an_absurd_service_time_is_no_service_time(answer: bytes) -> None:
    """These raised OverflowError out of send (counted as a soak bug); a marker holds at most
    12 digits of microseconds."""
    result, _, _ = await send(answering(answer))
    assert result.outcome is Outcome.OK
    assert (result.provider, result.service_s) == ("p", None)


def gzip_bomb(mb: int) -> bytes:
    squeeze = zlib.compressobj(9, zlib.DEFLATED, 31)
    zeros = b"\0" * 2**20
    return b"".join(squeeze.compress(zeros) for _ in range(mb)) + squeeze.flush()


@pytest.mark.parametrize(("encoding", "stream"), [(b"gzip", False), (b"gzip", True),
                                                  (b"deflate", False)])  # fmt: skip
async def test_a_compression_bomb_is_read_no_further_than_the_bound(
    encoding: bytes, stream: bool
) -> None:
    """200 MiB of zeros in ~200 KB: inflated only up to the 4 MiB bound, then dropped."""
    if encoding == b"gzip":
        body = gzip_bomb(200)
    else:
        squeeze = zlib.compressobj(9)
        body = b"".join(squeeze.compress(b"\0" * 2**20) for _ in range(200)) + squeeze.flush()
    kind = b"text/event-stream" if stream else b"application/json"
    answer = head(b"HTTP/1.1 200 OK", (b"Content-Type", kind), (b"Content-Encoding", encoding),
                  (b"Content-Length", str(len(body)).encode())) + body  # fmt: skip
    tracemalloc.start()
    try:
        result, _, _ = await send(answering(answer), stream=stream)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert result.outcome is Outcome.BAD_RESPONSE
    assert peak - len(answer) < 16 * 2**20, f"{peak / 2**20:.0f} MiB"


async def test_a_chunked_body_that_never_ends_is_a_timeout() -> None:
    async def endless(writer: asyncio.StreamWriter) -> None:
        writer.write(head(b"HTTP/1.1 200 OK", (b"Content-Type", b"application/json"),
                          (b"Transfer-Encoding", b"chunked")) + b"1\r\n{\r\n")  # fmt: skip
        for _ in range(100):  # 10 s at most, bounded by the test
            await asyncio.sleep(0.1)
            writer.write(b"1\r\n \r\n")
            await writer.drain()

    result, seconds, _ = await send(endless, timeout=0.5)
    assert result.outcome is Outcome.TIMEOUT
    assert 0.45 <= seconds < 2.0  # the 0.5 s timeout vs the 10 s trickle


async def test_a_huge_content_length_then_silence_is_a_timeout_then_close_is_bad() -> None:
    """Content-Length 10^12: never waited for past the timeout, never read as far."""

    async def silent(writer: asyncio.StreamWriter) -> None:
        writer.write(head(b"HTTP/1.1 200 OK", (b"Content-Type", b"application/json"),
                          (b"Content-Length", b"3000000")) + b'{"x":1')  # fmt: skip
        await asyncio.sleep(5)

    result, seconds, _ = await send(silent, timeout=0.5)
    assert result.outcome is Outcome.TIMEOUT and seconds < 2.0
    closing = head(b"HTTP/1.1 200 OK", (b"Content-Length", b"1000000000000")) + b'{"x":1'
    result, seconds, _ = await send(answering(closing))
    assert result.outcome is Outcome.BAD_RESPONSE and seconds < 1.5


async def test_gzip_answers_within_the_bound_are_read() -> None:
    """Compression itself is fine: a real gateway may gzip (aiohttp inflates it)."""
    body = gzip.compress(BODY)
    answer = head(
        b"HTTP/1.1 200 OK",
        (b"Content-Type", b"application/json"),
        (b"Content-Encoding", b"gzip"),
        (b"Content-Length", str(len(body)).encode()),
    )
    result, _, _ = await send(answering(answer + body))
    assert result.outcome is Outcome.OK and result.provider == "primary"


async def test_an_answer_smuggled_after_the_body_never_answers_the_next_request() -> None:
    """Bytes past Content-Length holding a whole second answer: the connection is dropped, so
    the next request on a keep-alive pool gets its own answer, not the smuggled one."""
    smuggled = json.dumps({"choices": [{"message": {"content": "[mock:primary:5]"}}]}).encode()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        answered = 0
        with contextlib.suppress(ConnectionError, asyncio.IncompleteReadError):
            while True:
                request = await reader.readuntil(b"\r\n\r\n")
                for line in request.lower().split(b"\r\n"):
                    if line.startswith(b"content-length:"):
                        await reader.readexactly(int(line.split(b":")[1]))
                answered += 1
                writer.write(json_answer() + (json_answer(smuggled) if answered == 1 else b""))
                await writer.drain()

    async with listening(handle) as base, make_session(1, 10.0) as session:
        client = ChatClient(session, f"{base}/v1/chat/completions", model="m", run_id="fz",
                            timeout=2.0)  # fmt: skip
        results = [await client.send(seq, time.perf_counter()) for seq in range(3)]
    assert [r.outcome for r in results] == [Outcome.OK] * 3
    assert [r.service_s for r in results] == [0.02] * 3  # never the smuggled 5 µs
