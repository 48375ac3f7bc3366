"""`engine.loop`: which event loop soak's process runs on, and the config key that picks it."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import pytest

from soak.engine import LoadSpec, run_load
from soak.eventloop import LoopUnavailable, loop_factory, loop_name
from soak.phases import load_config
from soak.results import Outcome, Result


async def instant(seq: int, intended: float) -> Result:
    return Result(seq, intended, intended, intended, Outcome.OK, 200)


def health_loop(factory: object) -> tuple[str, str | None]:
    """Run a tiny load on a loop from `factory`: the loop's name and what the engine recorded."""

    async def main() -> tuple[str, str | None]:
        run = await run_load(LoadSpec(rate=200, count=5), instant)
        assert run.generator is not None
        return loop_name(), run.generator.loop

    with asyncio.Runner(loop_factory=factory) as runner:  # type: ignore[arg-type]
        return runner.run(main())


def test_asyncio_is_the_default_loop_and_the_engine_says_so() -> None:
    assert loop_factory("asyncio") is None
    assert health_loop(None) == ("asyncio", "asyncio")


@pytest.mark.parametrize("choice", ["uvloop", "auto"])
def test_uvloop_runs_the_engine_when_installed(choice: str) -> None:
    # the `fast` extra, which the test setup installs (Makefile): never skipped
    assert health_loop(loop_factory(choice)) == ("uvloop", "uvloop")


def test_without_uvloop_auto_falls_back_and_uvloop_is_a_clear_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "uvloop", None)  # `import uvloop` raises ImportError
    assert loop_factory("auto") is None
    with pytest.raises(LoopUnavailable, match=r"^uvloop is not installed \(pip install"):
        loop_factory("uvloop")


@pytest.mark.parametrize(
    ("value", "error"),
    [("asyncio", None), ("uvloop", None), ("auto", None),
     ("tokio", "engine.loop: unknown value 'tokio' (use asyncio, uvloop or auto)"),
     ("1", "engine.loop: expected")],
)  # fmt: skip
def test_engine_loop_in_the_config(tmp_path: Path, value: str, error: str | None) -> None:
    path = tmp_path / "soak.yaml"
    path.write_text(f"version: 1\ngateway: {{url: 'http://127.0.0.1:1'}}\n"
                    f"engine: {{loop: {value}}}\n")  # fmt: skip
    if error is None:
        assert load_config(path, env={}).engine.loop == value
    else:
        with pytest.raises(Exception, match=error.replace("(", r"\(").replace(")", r"\)")):
            load_config(path, env={})


def test_the_loop_defaults_to_asyncio(tmp_path: Path) -> None:
    path = tmp_path / "soak.yaml"
    path.write_text("version: 1\ngateway: {url: 'http://127.0.0.1:1'}\n")
    assert load_config(path, env={}).engine.loop == "asyncio"
