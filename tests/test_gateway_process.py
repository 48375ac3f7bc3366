"""ManagedProcess against tiny real `python -c` servers: readiness, failures, group stop."""

from __future__ import annotations

import asyncio
import os
import sys
import urllib.request
from pathlib import Path

import pytest

from soak.gateway.process import GatewayStartError, ManagedProcess, free_port, redact

HTTP_SERVER = """
import http.server, sys
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200 if self.path == "/ready" else 404)
        self.end_headers()
        self.wfile.write(b"ok")
    def log_message(self, *a):
        pass
print("booting", flush=True)
http.server.HTTPServer(("127.0.0.1", int(sys.argv[1])), H).serve_forever()
"""

LOG_THEN_SLEEP = """
import time
print("warming up", flush=True)
time.sleep(0.3)
print("Uvicorn running on http://127.0.0.1:1", flush=True)
time.sleep(60)
"""

FORKS_A_CHILD = """
import subprocess, sys, time
child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
open(sys.argv[1], "w").write(str(child.pid))
print("ready", flush=True)
time.sleep(60)
"""


def _dead(pid: int) -> bool:
    """Gone, or a zombie waiting for a parent that is no longer us."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return True
    return state in ("Z", "X")


def _py(code: str, *args: str) -> list[str]:
    return [sys.executable, "-c", code, *args]


async def test_ready_by_url_and_stop(tmp_path: Path) -> None:
    port = free_port()
    proc = ManagedProcess(
        _py(HTTP_SERVER, str(port)),
        log_path=tmp_path / "gw.log",
        ready_url=f"http://127.0.0.1:{port}/ready",
        ready_timeout=20,
    )
    async with proc:
        assert proc.alive and proc.pid is not None
        # ready seen by polling (0.1 s here) vs a reading past the 20 s ready_timeout: 100x+
        assert proc.ready_s is not None and 0 < proc.ready_s < 20
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        body = await asyncio.to_thread(lambda: opener.open(f"http://127.0.0.1:{port}/ready").read())
        assert body == b"ok"
        pid = proc.pid
    assert not proc.alive
    assert proc.returncode is not None
    assert _dead(pid)
    assert "booting" in (tmp_path / "gw.log").read_text()


async def test_ready_by_log_line(tmp_path: Path) -> None:
    proc = ManagedProcess(
        _py(LOG_THEN_SLEEP),
        log_path=tmp_path / "gw.log",
        ready_log=r"Uvicorn running on",
        ready_timeout=20,
    )
    await proc.start()
    try:
        assert proc.alive
        assert proc.ready_s is not None and proc.ready_s >= 0.25
    finally:
        code = await proc.stop(grace=5)
    assert code == -15  # ended by our SIGTERM


async def test_exit_before_ready_is_one_clear_line_with_secrets_redacted(tmp_path: Path) -> None:
    secret = "sk-soak-verysecret123"
    code = f"import sys; print('starting'); print('bad key {secret} rejected'); sys.exit(3)"
    proc = ManagedProcess(
        _py(code),
        log_path=tmp_path / "gw.log",
        ready_url=f"http://127.0.0.1:{free_port()}/",
        ready_timeout=20,
        secrets=[secret],
    )
    with pytest.raises(GatewayStartError) as err:
        await proc.start()
    msg = str(err.value)
    assert msg == (
        "gateway exited with code 3 before it was ready; last log line: bad key *** rejected"
    )
    assert "\n" not in msg
    assert secret in (tmp_path / "gw.log").read_text()  # the log itself is the gateway's own


async def test_not_ready_in_time_is_clear_and_stops_it(tmp_path: Path) -> None:
    ticks = iter(range(1000))
    proc = ManagedProcess(
        _py("import time; print('stuck', flush=True); time.sleep(60)"),
        log_path=tmp_path / "gw.log",
        ready_log=r"never printed",
        ready_timeout=90,
        clock=lambda: float(next(ticks)) * 10,  # each look at the clock is 10 s later
        poll_interval=0.01,
    )
    with pytest.raises(GatewayStartError, match=r"^gateway not ready after 90s; last log line: "):
        await proc.start()
    assert not proc.alive


async def test_missing_command_is_clear(tmp_path: Path) -> None:
    proc = ManagedProcess(["/nonexistent/gateway-binary"], log_path=tmp_path / "gw.log")
    with pytest.raises(
        GatewayStartError, match=r"^cannot start gateway '/nonexistent/gateway-binary'"
    ):
        await proc.start()


async def test_stop_kills_the_whole_group_and_restart_gets_a_new_pid(tmp_path: Path) -> None:
    pid_file = tmp_path / "child.pid"
    proc = ManagedProcess(
        _py(FORKS_A_CHILD, str(pid_file)),
        log_path=tmp_path / "gw.log",
        ready_log=r"^ready$",
        ready_timeout=20,
    )
    await proc.start()
    first_pid = proc.pid
    child = int(pid_file.read_text())
    assert not _dead(child)
    assert os.getpgid(child) == first_pid
    await proc.restart(grace=5)
    try:
        assert proc.alive and proc.pid != first_pid
        assert _dead(child)
        child2 = int(pid_file.read_text())
        assert child2 != child
    finally:
        await proc.stop(grace=5)
    assert _dead(child2)


async def test_stop_escalates_to_sigkill_after_grace(tmp_path: Path) -> None:
    code = (
        "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
        "print('ready', flush=True); time.sleep(60)"
    )
    proc = ManagedProcess(_py(code), log_path=tmp_path / "gw.log", ready_log="ready")
    await proc.start()
    assert await proc.stop(grace=0.5) == -9


def test_redact_longest_first_and_ignores_empty() -> None:
    assert redact("key=abc abcdef", ["abc", "abcdef", ""]) == "key=*** ***"


def test_free_port_is_bindable() -> None:
    port = free_port()
    assert 1024 <= port <= 65535


IGNORES_SIGTERM = (
    "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
    "print('ready', flush=True); time.sleep(60)"
)


async def test_a_cancelled_stop_still_kills_a_gateway_that_ignores_sigterm(tmp_path: Path) -> None:
    """A daemon stopped at its grace cancels the cleanup: the gateway must not outlive it."""
    proc = ManagedProcess(_py(IGNORES_SIGTERM), log_path=tmp_path / "gw.log", ready_log="ready")
    await proc.start()
    pid = proc.pid
    assert pid is not None
    stopping = asyncio.create_task(proc.stop(grace=30))
    await asyncio.sleep(0.3)  # SIGTERM sent and ignored; the stop waits out its grace
    stopping.cancel()
    with pytest.raises(asyncio.CancelledError):
        await stopping
    for _ in range(50):
        if _dead(pid):
            break
        await asyncio.sleep(0.1)
    assert _dead(pid)


STARTS_A_GATEWAY = """
import asyncio, sys
from pathlib import Path
from soak.gateway.process import ManagedProcess
async def main():
    code = "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); " \\
           "print('ready', flush=True); time.sleep(60)"
    proc = ManagedProcess([sys.executable, "-c", code], log_path=Path(sys.argv[1]),
                          ready_log="ready")
    await proc.start()
    print(proc.pid, flush=True)
    await asyncio.sleep(60)
asyncio.run(main())
"""


async def test_a_sigkilled_soak_takes_its_gateway_with_it(tmp_path: Path) -> None:
    """PR_SET_PDEATHSIG: soak killed with SIGKILL (no cleanup runs) leaves no gateway, even one
    that ignores SIGTERM."""
    soak = await asyncio.create_subprocess_exec(
        *_py(STARTS_A_GATEWAY, str(tmp_path / "gw.log")), stdout=asyncio.subprocess.PIPE
    )
    assert soak.stdout is not None
    line = await asyncio.wait_for(soak.stdout.readline(), 30)
    gateway = int(line)
    assert not _dead(gateway)
    soak.kill()
    await soak.wait()
    for _ in range(50):
        if _dead(gateway):
            break
        await asyncio.sleep(0.1)
    assert _dead(gateway)
