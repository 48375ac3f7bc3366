"""The chat client against a gateway that misbehaves in ways the mock does not: hangs with the
connection open, a 50 MB body, an HTML page, a JSON answer to a stream request, SSE events that
are not JSON. Each is one outcome; none raises, none holds the whole body in memory."""

from __future__ import annotations

import re
import subprocess
import sys
import time
import tracemalloc
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from soak.client import MAX_BODY_BYTES, ChatClient, make_session
from soak.gateway.kind import MAX_SCRAPE_BYTES
from soak.gateway.registry import get_kind
from soak.results import Outcome

BAD_GATEWAY = Path(__file__).parent / "bad_gateway.py"


@pytest.fixture
def bad_gateway() -> Iterator[Callable[..., str]]:
    """Start tests/bad_gateway.py in a mode; yields `start(mode, *args) -> chat URL`."""
    procs: list[subprocess.Popen[str]] = []

    def start(mode: str, *args: str) -> str:
        proc = subprocess.Popen(
            [sys.executable, str(BAD_GATEWAY), "--port", "0", "--mode", mode, *args],
            stdout=subprocess.PIPE, text=True,
        )  # fmt: skip
        procs.append(proc)
        assert proc.stdout is not None
        line = proc.stdout.readline()
        m = re.search(r"127\.0\.0\.1:(\d+)", line)
        assert m, line
        return f"http://127.0.0.1:{m[1]}/v1/chat/completions"

    yield start
    for proc in procs:
        proc.terminate()
        proc.wait(timeout=10)
        assert proc.stdout is not None
        proc.stdout.close()


async def send(url: str, *, stream: bool = False, timeout: float = 5.0) -> tuple[Outcome, float]:
    async with make_session(4, 60.0) as session:  # 60 s: the slow side of the bounds below
        client = ChatClient(session, url, model="m", stream=stream, timeout=timeout)
        t0 = time.monotonic()
        result = await client.send(0, 0.0)
        return result.outcome, time.monotonic() - t0


async def test_a_50mb_body_is_a_bad_response_read_only_up_to_the_bound(bad_gateway) -> None:
    url = bad_gateway("huge", "--mb", "50")
    tracemalloc.start()
    try:
        outcome, _ = await send(url, timeout=20.0)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert outcome is Outcome.BAD_RESPONSE
    assert MAX_BODY_BYTES <= 8 * 2**20
    assert peak < MAX_BODY_BYTES * 3 + 2 * 2**20, peak  # not the 50 MB the gateway sends


async def test_a_50mb_stream_is_cut_at_the_bound(bad_gateway) -> None:
    url = bad_gateway("huge", "--mb", "50")
    tracemalloc.start()
    try:
        outcome, _ = await send(url, stream=True, timeout=20.0)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert outcome is Outcome.BAD_RESPONSE
    assert peak < MAX_BODY_BYTES * 3 + 2 * 2**20, peak


async def test_a_gateway_that_never_answers_is_a_timeout_at_the_client_timeout(
    bad_gateway,
) -> None:
    outcome, took = await send(bad_gateway("hang"), timeout=0.5)
    assert outcome is Outcome.TIMEOUT
    assert 0.4 < took < 3.0  # the client's 0.5 s timeout vs the session's 60 s: 6x and 20x


@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
async def test_a_gateway_trickling_forever_is_a_timeout(bad_gateway, stream: bool) -> None:
    """Headers and one event a second, never the end: the total timeout ends it."""
    outcome, took = await send(bad_gateway("trickle"), stream=stream, timeout=1.5)
    assert outcome is Outcome.TIMEOUT
    assert 1.4 < took < 7.5  # the client's 1.5 s timeout vs the session's 60 s: 5x and 8x


@pytest.mark.parametrize(
    ("mode", "stream"),
    [("html", False), ("html", True), ("json", True), ("sse-garbage", True)],
    ids=["html", "html-to-stream", "json-to-stream", "sse-not-json"],
)
async def test_wrong_content_is_a_bad_response(bad_gateway, mode: str, stream: bool) -> None:
    outcome, _ = await send(bad_gateway(mode), stream=stream)
    assert outcome is Outcome.BAD_RESPONSE


async def test_a_json_answer_in_the_right_shape_is_ok(bad_gateway) -> None:
    """The control case of `json-to-stream`: the same gateway is fine for a JSON request."""
    outcome, _ = await send(bad_gateway("json"), stream=False)
    assert outcome is Outcome.OK


async def test_a_huge_metrics_page_is_not_read(bad_gateway) -> None:
    """The self-report scrape of a gateway answering every path with 50 MB: none, bounded."""
    base = bad_gateway("huge", "--mb", "50").removesuffix("/v1/chat/completions")
    kind = get_kind("openai")
    tracemalloc.start()
    try:
        async with make_session(2, 30.0) as session:
            page = await kind.scrape(session, base, None)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert kind.metrics_path is not None and page is None
    assert peak < MAX_SCRAPE_BYTES * 3 + 2 * 2**20, peak
