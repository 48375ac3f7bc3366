"""Which strings soak redacts from a child's quoted log line: every secret of the config, and
each `${ENV}` value a secret was built from (a child inherits the environment and may print
`$TOKEN` alone rather than the `Bearer $TOKEN` header soak sends)."""

from __future__ import annotations

from pathlib import Path

from soak.gateway.process import redact
from soak.phases import load_config
from soak.stack import config_secrets

ENV = {
    "F_KEY": "sk-planted-key-0a1b",
    "F_HDR": "hdr-planted-2c3d",
    "F_MENV": "menv-planted-4e5f",
    "F_MOCK": "mock-planted-6a7b",
    "F_RELOAD": "reload-planted-8c9d",
}
CONFIG = """version: 1
gateway:
  kind: openai
  api_key_env: F_KEY
  headers: {Authorization: "Bearer ${F_HDR}", X-Plain: "$$literal"}
  managed: {command: [gw, --port, "{port}"], env: {GW_SECRET: "x-${F_MENV}-y"}}
mock: {control_token_env: F_MOCK}
server: {reload_token_env: F_RELOAD}
"""


def test_every_secret_and_each_env_value_in_it_is_redacted(tmp_path: Path) -> None:
    path = tmp_path / "soak.yaml"
    path.write_text(CONFIG)
    config = load_config(path, env=ENV)
    hidden = config_secrets(config)
    for value in ENV.values():
        assert value in hidden
    assert "Bearer hdr-planted-2c3d" in hidden and "x-menv-planted-4e5f-y" in hidden
    line = "boot " + " ".join(ENV.values()) + " Bearer hdr-planted-2c3d, plain $literal"
    shown = redact(line, hidden)
    assert shown == "boot *** *** *** *** *** ***, plain ***"  # every header value is a secret


def test_a_secret_repr_and_equality_ignore_its_parts(tmp_path: Path) -> None:
    path = tmp_path / "soak.yaml"
    path.write_text(CONFIG)
    auth = load_config(path, env=ENV).gateway.headers["Authorization"]
    assert repr(auth) == "Secret('***')" and str(auth) == "***"
    assert auth.redactions() == ("Bearer hdr-planted-2c3d", "hdr-planted-2c3d")
