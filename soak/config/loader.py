"""Load a soak config: a built-in profile, the user's YAML file layered on top, strictly validated.

`load_config` is the single entry point (`soak once --config`, `soak check`); every problem
becomes one `ConfigError` line naming the file and dotted key. `describe` gives a JSON-safe,
secret-free view for reports.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import asdict, is_dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any

from soak.config.daemon import parse_daemon
from soak.config.fields import Secret, Section, _shown
from soak.config.offline import secrets_optional
from soak.config.regression import parse_regression
from soak.config.schema import (
    ARRIVALS,
    LOOPS,
    Config,
    EngineConfig,
    GatewayConfig,
    ManagedConfig,
    MockSettings,
    PhaseSections,
    ProcessTarget,
    ReportConfig,
    RequestConfig,
    Sections,
    SloConfig,
)
from soak.config.shard import parse_shard
from soak.config.source import (
    EMBEDDED_LABEL,
    PROFILES,
    ConfigError,
    layer,
    profile_label,
    read_builtin,
    read_file,
)
from soak.config.tiers import describe_tiers, parse_tiers
from soak.config.workload import describe_workload, parse_workload
from soak.gateway.registry import DEFAULT_KIND, kind_names, primary_api_refusal, primary_apis

__all__ = ["PROFILES", "Config", "ConfigError", "Secret", "describe", "load_config"]

VERSION = 1
_LABEL = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
_LABEL_HINT = "letters, digits, '_', '.', '-'; at most 64 characters"
_HEADER = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
_PATH = re.compile(r"/\S*")
_NO_GATEWAY = "add a gateway section; without --config soak runs its embedded LiteLLM setup"


def load_config(
    path: str | Path | None,
    *,
    phases: Sequence[PhaseSections],
    profile: str | None = None,
    env: Mapping[str, str] = os.environ,
) -> Config:
    """The validated config from `path` (None: the embedded default) over a built-in profile.

    `phases` are the registered phases (`soak.phases.registry()`): each parses its own
    `phases.<name>` and `slo.<name>`; any other key there is unknown.
    `profile` (e.g. from `--profile`) overrides the file's `profile:` key; the default is quick.
    Secrets are resolved from `env` and files now, so a missing one fails before any load runs.
    """
    if path is None:
        label, user, base_dir = EMBEDDED_LABEL, read_builtin("embedded"), Path.cwd()
    else:
        label, base_dir = str(path), Path(path).parent
        user = read_file(Path(path), label)
    top = Section(user, (), lambda _: label)
    if "version" not in user:
        top.fail("version", "missing required key", f"start the file with 'version: {VERSION}'")
    version = top.integer("version")
    if version != VERSION:
        top.fail("version", f"unsupported version {version}", f"this soak reads version {VERSION}")
    if profile is not None and profile not in PROFILES:
        raise ConfigError(f"profile: unknown profile {profile!r} (use quick or full)")
    name = top.choice("profile", PROFILES, "quick")  # validated even when `profile` overrides it
    name = profile or name
    merged, locate = layer([(profile_label(name), read_builtin(name)), (label, user)])
    merged["profile"] = name
    root = Section(merged, (), locate)
    root.only(
        "version", "profile", "gateway", "mock", "request", "phases", "engine", "slo", "report",
        "schedule", "server", "shard", "workload",
    )  # fmt: skip
    return Config(
        version=version,
        profile=name,
        source=label,
        gateway=_gateway(root.section("gateway", hint=_NO_GATEWAY), env, base_dir),
        mock=_mock(root.section("mock"), env),
        request=_request(root.section("request")),
        phases=_phases(root.section("phases"), phases),
        engine=_engine(root.section("engine")),
        slo=_slo(root.section("slo"), phases),
        report=ReportConfig(out=Path(root.section("report").string("out"))),
        # `soak run`: the schedule (plans name registered phases only) and server sections
        daemon=parse_daemon(root, env, base_dir, [p.name for p in phases]),
        shard=parse_shard(root, env),  # this replica's slice of the load (soak.config.shard)
        workload=parse_workload(_sub(root, "workload"), env, base_dir),  # soak.config.workload
    )


def _gateway(s: Section, env: Mapping[str, str], base_dir: Path) -> GatewayConfig:
    s.only("name", "kind", "url", "chat_path", "model", "api_key_env", "api_key_file",
           "generate_key", "headers", "timeout", "managed", "primary_api",
           "process")  # fmt: skip
    kind = s.choice("kind", kind_names(), DEFAULT_KIND)
    primary_api = s.choice("primary_api", primary_apis(), "openai")
    if (refusal := primary_api_refusal(kind, primary_api)) is not None:
        s.fail("primary_api", *refusal)
    managed_section = s.section("managed", optional=True)
    managed = _managed(managed_section, env) if managed_section is not None else None
    url = s.url("url", None)
    if url is None and managed is None:
        s.fail("url", "missing required key", "required unless gateway.managed is set")
    key_env = s.env_name("api_key_env", None)
    key_file = s.string("api_key_file", None)
    generate = s.boolean("generate_key", False)
    if key_env and key_file:
        s.fail("api_key_file", "set either api_key_env or api_key_file, not both")
    if generate and managed is None:
        s.fail(
            "generate_key",
            "only for a managed gateway",
            "soak can only hand a key to a gateway it starts",
        )
    api_key: Secret | None = None
    if key_env and not (generate and not env.get(key_env)):
        api_key = s.from_env("api_key_env", key_env, env, "export it, or use gateway.api_key_file")
    key_path = None if key_file is None else base_dir / Path(key_file).expanduser()
    if key_path is not None and not (secrets_optional(env) and not key_path.exists()):
        api_key = _read_key(s, key_path)  # offline (soak check --offline): an absent file is ok
    headers = s.section("headers", optional=True)
    return GatewayConfig(
        name=s.string("name", kind, pattern=_LABEL, hint=_LABEL_HINT),
        kind=kind,
        url=url,
        chat_path=s.string(
            "chat_path",
            "/v1/chat/completions",
            pattern=_PATH,
            hint="a path such as /v1/chat/completions",
        ),
        model=s.string("model", "soak-primary"),
        api_key=api_key,
        api_key_env=key_env,
        api_key_file=key_path,
        generate_key=generate,
        headers=_secret_map(headers, env, _HEADER, "an HTTP header name"),
        timeout=s.duration("timeout", "30s", positive=True),
        managed=managed,
        primary_api=primary_api,
        process=_process(s.section("process", optional=True), base_dir, managed is not None),
    )


def _process(s: Section | None, base_dir: Path, managed: bool) -> ProcessTarget | None:
    """`gateway.process`: one of pid, pid_file, match (for psutil on an unmanaged gateway)."""
    if s is None:
        return None
    s.only("pid", "pid_file", "match")
    if managed:
        s.fail(None, "not with gateway.managed", "soak already knows the PID of what it starts")
    given = [k for k in ("pid", "pid_file", "match") if s.has(k)]
    if len(given) != 1:
        s.fail(None, "set exactly one of pid, pid_file, match")
    if s.has("pid"):
        return ProcessTarget(pid=s.integer("pid", minimum=1))
    if s.has("pid_file"):
        return ProcessTarget(pid_file=base_dir / Path(s.string("pid_file")).expanduser())
    pattern = s.string("match")
    try:
        re.compile(pattern)
    except re.error as exc:
        s.fail("match", f"invalid regular expression ({exc})")
    return ProcessTarget(match=pattern)


def _read_key(s: Section, path: Path) -> Secret:
    try:
        lines = path.read_text(encoding="utf-8").strip().splitlines()
    except (OSError, UnicodeDecodeError) as err:
        reason = getattr(err, "strerror", None) or "not UTF-8 text"
        s.fail(
            "api_key_file", f"cannot read '{path}': {reason}", "check the path and its permissions"
        )
    if not lines:
        s.fail("api_key_file", f"'{path}' is empty", "put the key on the first line")
    return Secret(lines[0].strip())


def _managed(s: Section, env: Mapping[str, str]) -> ManagedConfig:
    s.only("command", "ready_url", "ready_log", "ready_timeout", "restart_between_phases", "env")
    command = s.data.get("command") or []
    if not isinstance(command, list) or not all(isinstance(a, str) and a for a in command):
        s.wrong_type("command", "a list of non-empty strings", command)
    if s.has("ready_url") and s.has("ready_log"):
        s.fail("ready_log", "set either ready_url or ready_log, not both")
    ready_url = s.string("ready_url", None)
    if ready_url is not None and not _PATH.fullmatch(ready_url):
        ready_url = s.url("ready_url")
    return ManagedConfig(
        command=tuple(command),
        ready_url=ready_url,
        ready_log=s.string("ready_log", None),
        ready_timeout=s.duration("ready_timeout", "90s", positive=True),
        restart_between_phases=s.boolean("restart_between_phases", False),
        env=_secret_map(
            s.section("env", optional=True),
            env,
            re.compile(r"[A-Za-z_][A-Za-z0-9_]*"),
            "an environment variable name",
        ),
    )


def _secret_map(
    s: Section | None, env: Mapping[str, str], names: re.Pattern[str], what: str
) -> Mapping[str, Secret]:
    """A name → value mapping whose values are `${ENV}`-expanded secrets."""
    if s is None:
        return MappingProxyType({})
    out: dict[str, Secret] = {}
    for name, value in s.entries():
        if not names.fullmatch(name):
            s.fail(name, f"not {what}")
        if isinstance(value, bool) or not isinstance(value, str | int | float):
            s.wrong_type(name, "a string", value, secret=True)
        if isinstance(value, str) and ("\n" in value or "\r" in value):
            s.fail(name, "must be a single line")
        secret = s.expand(name, str(value), env)
        if _CONTROL.search(secret.reveal()):  # the value is a secret: never in the message
            s.fail(
                name,
                "has a control character (a NUL, CR, LF, ...), here or in the environment "
                "variable it names: no HTTP header or environment takes one",
            )
        out[name] = secret
    return MappingProxyType(out)


_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")
"""Bytes no HTTP header value (RFC 9110: field-vchar, space, tab) or environment takes."""


def _mock(s: Section, env: Mapping[str, str]) -> MockSettings:
    s.only("url", "port", "control_token_env", "primary", "fallback")
    url = s.url("url", None)
    port = s.data.get("port")
    if port is not None:
        port = s.integer("port", minimum=1)
        if port > 65535:
            s.fail("port", f"must be at most 65535, got {port}")
        if url is not None:
            s.fail("port", "only for a mock soak starts", "remove mock.port or set mock.url: null")
    token_env = s.env_name("control_token_env", None)
    token = (
        None if token_env is None else s.from_env("control_token_env", token_env, env, "export it")
    )
    provider = re.compile(r"[a-z0-9][a-z0-9_-]{0,31}")
    hint = "lowercase letters, digits, '_', '-'; at most 32 characters"
    primary = s.string("primary", pattern=provider, hint=hint)
    fallback = s.string("fallback", pattern=provider, hint=hint)
    if primary == fallback:
        s.fail("fallback", f"must differ from mock.primary ('{primary}')")
    return MockSettings(url=url, port=port, control_token=token, control_token_env=token_env,
                        primary=primary, fallback=fallback)  # fmt: skip


def _request(s: Section) -> RequestConfig:
    s.only("stream", "max_tokens", "prompt")
    return RequestConfig(
        stream=s.boolean("stream"),
        max_tokens=s.integer("max_tokens", minimum=1),
        prompt=s.string("prompt"),
    )


def _phases(s: Section, phases: Sequence[PhaseSections]) -> Sections:
    """Each registered phase parses its own `phases.<name>` (an empty section when absent)."""
    s.only(*(p.name for p in phases))
    return Sections({p.name: p.settings(_sub(s, p.name)) for p in phases})


def _sub(s: Section, name: str) -> Section:
    found = s.section(name, optional=True)
    return found if found is not None else Section({}, (*s.path, name), s.locate)


MAX_WORKERS = 256
"""Most engine worker processes one replica may run (`engine.workers`)."""


def _engine(s: Section) -> EngineConfig:
    s.only("arrival", "loop", "max_inflight", "seed", "workers")
    raw: Any = s.data.get("workers", 1)
    if isinstance(raw, str):
        if raw != "auto":
            s.fail("workers", f"unknown value {_shown(raw)}", "use an integer from 1 or auto")
        workers: int | str = s.choice("workers", ("auto",))
    else:
        workers = s.integer("workers", 1, minimum=1, maximum=MAX_WORKERS)
    return EngineConfig(
        arrival=s.choice("arrival", ARRIVALS),  # type: ignore[arg-type]
        max_inflight=s.integer("max_inflight", minimum=1),
        seed=s.integer("seed", minimum=0),
        workers=workers,  # type: ignore[arg-type]
        loop=s.choice("loop", LOOPS, "asyncio"),  # type: ignore[arg-type]
    )


def _slo(s: Section, phases: Sequence[PhaseSections]) -> SloConfig:
    """`slo.tiers`, each judged phase's own `slo.<name>`, and the run-level `slo.regression`."""
    judged = [p for p in phases if p.slo is not None]
    s.only("tiers", "regression", *(p.name for p in judged))
    return SloConfig(
        tiers=parse_tiers(_sub(s, "tiers")),
        phases=Sections({p.name: p.slo(_sub(s, p.name)) for p in judged if p.slo}),
        regression=parse_regression(_sub(s, "regression"), [p.name for p in phases]),
    )


def describe(config: Config) -> dict[str, Any]:
    """A JSON-safe view of `config` for reports: durations in seconds, every secret as "***"."""

    def hidden(secret: Secret | None) -> str | None:
        return None if secret is None else "***"

    gw, mock, m = config.gateway, config.mock, config.gateway.managed
    managed = None if m is None else {
        "command": list(m.command), "ready_url": m.ready_url, "ready_log": m.ready_log,
        "ready_timeout": m.ready_timeout, "restart_between_phases": m.restart_between_phases,
        "env": {k: "***" for k in m.env},
    }  # fmt: skip
    slo = {name: _plain(section) for name, section in config.slo.phases.items()}
    slo["tiers"] = describe_tiers(config.slo.tiers)
    return {
        "version": config.version,
        "profile": config.profile,
        "source": config.source,
        "gateway": {
            "name": gw.name, "kind": gw.kind, "url": gw.url, "chat_path": gw.chat_path,
            "model": gw.model, "api_key": hidden(gw.api_key), "api_key_env": gw.api_key_env,
            "api_key_file": None if gw.api_key_file is None else str(gw.api_key_file),
            "generate_key": gw.generate_key, "headers": {k: "***" for k in gw.headers},
            "timeout": gw.timeout, "managed": managed, "primary_api": gw.primary_api,
        },
        "mock": {
            "url": mock.url, "port": mock.port, "managed": mock.managed,
            "control_token": hidden(mock.control_token),
            "control_token_env": mock.control_token_env,
            "primary": mock.primary, "fallback": mock.fallback,
        },
        "request": {"stream": config.request.stream, "max_tokens": config.request.max_tokens,
                    "prompt": config.request.prompt},
        "phases": {name: _plain(section) for name, section in config.phases.items()},
        "engine": asdict(config.engine),
        "workload": describe_workload(config.workload),
        "slo": slo,
        "report": {"out": str(config.report.out)},
    }  # fmt: skip


def _plain(section: object) -> Any:
    """A phase's parsed section as JSON-safe data (its dataclass fields)."""
    return asdict(section) if is_dataclass(section) and not isinstance(section, type) else section
