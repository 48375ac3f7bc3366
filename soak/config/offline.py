"""`soak check --offline`: validate a config where its secrets are not available (a CI lint job).

`OfflineEnv` is the real environment with one difference the config reader asks about: a
secret it names (`api_key_env`, `control_token_env`, `reload_token_env`, a `${VAR}` in a header
or in `managed.env`) that is not set stands in as a placeholder instead of failing; an absent
`api_key_file` is not read. Everything else (every key, type, bound, URL, name, and plain
environment such as the shard's) is validated as for a run. Never used to run anything.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping


class OfflineEnv(Mapping[str, str]):
    """The environment, with secrets optional (see `secrets_optional`)."""

    secrets_optional = True

    def __init__(self, env: Mapping[str, str] | None = None) -> None:
        self._env = dict(os.environ if env is None else env)

    def __getitem__(self, name: str) -> str:
        return self._env[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._env)

    def __len__(self) -> int:
        return len(self._env)


def secrets_optional(env: Mapping[str, str]) -> bool:
    """True for an `OfflineEnv`: a missing secret is not an error."""
    return bool(getattr(env, "secrets_optional", False))

