"""`phases.overhead.warmup`: unrecorded load through the gateway before the overhead phase."""

from __future__ import annotations

from pathlib import Path

import pytest

from soak.config import ConfigError
from soak.phases import load_config


def _write(tmp_path: Path, overhead: str) -> Path:
    path = tmp_path / "soak.yaml"
    path.write_text(
        f"version: 1\ngateway: {{url: 'http://127.0.0.1:4000'}}\nphases:\n  overhead: {overhead}\n"
    )
    return path


def test_warmup_where_the_gateway_starts_cold_and_a_file_can_change_it(tmp_path: Path) -> None:
    assert load_config(None, env={}).phases.overhead.warmup == 3.0  # embedded: LiteLLM cold
    path = _write(tmp_path, "{rate: 5}")
    assert load_config(path, profile="full", env={}).phases.overhead.warmup == 5.0
    assert load_config(path, env={}).phases.overhead.warmup == 0.0  # quick: none
    path = _write(tmp_path, "{warmup: 2s}")
    assert load_config(path, env={}).phases.overhead.warmup == 2.0


def test_bad_warmup_names_the_key(tmp_path: Path) -> None:
    path = _write(tmp_path, "{warmup: soon}")
    with pytest.raises(ConfigError) as err:
        load_config(path, env={})
    assert str(err.value).startswith(f"{path}: phases.overhead.warmup: invalid duration 'soon'")
