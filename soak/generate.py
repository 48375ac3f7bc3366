"""Artefacts generated from a config: the rules file, the PrometheusRule, the dashboard JSON.

One source, the user's config: its SLO block gives the thresholds, its schedule the phases that
get alerts and each phase's staleness window (the longest gap between two runs of the plans it
is in). `soak rules` and `soak dashboard` call this module; so does `dashboards/build.py`, which
writes the repository's committed copies for the deploy example.

Generating needs no secret and no replica identity: a config is loaded with `GENERATION_ENV`,
in which every environment variable a secret names reads as a placeholder and the shard is the
first pod of a StatefulSet, so rules are produced in CI or on a laptop from the very file the
daemon runs with. The dashboard needs the optional `dashboards` extra; without it
`dashboard()` raises `MissingExtra`, which names the extra.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import yaml

from soak import __version__
from soak.config import Config, describe
from soak.config.daemon import longest_gap
from soak.config.shard import ENV_COUNT, ENV_INDEX
from soak.phases import load_config
from soak.rules import DEFAULT_RUNBOOK_BASE, build_prometheus_rule, build_rules

__all__ = [
    "DEFAULT_RUNBOOK_BASE",
    "GENERATION_ENV",
    "GenerateError",
    "MissingExtra",
    "dashboard",
    "header",
    "load",
    "parse_labels",
    "phase_intervals",
    "prometheus_rule",
    "rules",
    "rules_file",
    "schedule_intervals",
    "to_json",
    "to_yaml",
]

EXTRA_HINT = "pip install 'llm-soak[dashboards]'"
PLACEHOLDER = "unused-for-generated-artefacts"

# Kubernetes object names and labels (apimachinery validation), checked here so that a bad
# option fails at generation, not at `kubectl apply`.
_DNS_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
_DNS_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")
_LABEL_NAME = re.compile(r"[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?")
_URL = re.compile(r"https?://[^\s#]+#?")


class GenerateError(ValueError):
    """An option or config the artefacts cannot be generated from, as one line naming it."""


class MissingExtra(GenerateError):
    """An optional dependency is not installed; the message names the extra that brings it."""


class _GenerationEnv(Mapping[str, str]):
    """The environment configs are loaded with for generation.

    Every variable a secret names reads as `PLACEHOLDER` (no artefact holds a secret, so
    generating one needs none); the shard is pod 0 of its StatefulSet (`HOSTNAME=soak-0`, the
    shard variables unset), since rules and dashboards are the fleet's, not one replica's.
    """

    _VALUES: Mapping[str, str | None] = {ENV_INDEX: None, ENV_COUNT: None, "HOSTNAME": "soak-0"}

    def __getitem__(self, name: str) -> str:
        value = self._VALUES.get(name, PLACEHOLDER)
        if value is None:
            raise KeyError(name)
        return value

    def __iter__(self) -> Iterator[str]:
        return iter(["HOSTNAME"])

    def __len__(self) -> int:
        return 1


GENERATION_ENV: Mapping[str, str] = _GenerationEnv()


def load(path: str | Path) -> Config:
    """The config at `path`, validated as `soak check` does (ConfigError names the key), but
    loaded with `GENERATION_ENV`: no secret or shard identity needed."""
    return load_config(path, env=GENERATION_ENV)


def schedule_intervals(plans: Iterable[tuple[Iterable[str], float]]) -> dict[str, float]:
    """{phase: seconds} from (phases of a plan, longest gap between its runs) pairs.

    A phase in several plans gets the shortest gap: it must run at least that often.
    """
    intervals: dict[str, float] = {}
    for phases, gap in plans:
        for phase in phases:
            intervals[phase] = min(gap, intervals.get(phase, gap))
    return intervals


def phase_intervals(config: Config) -> dict[str, float]:
    """Each scheduled phase of `config` → how long it may go unseen (seconds)."""
    return schedule_intervals((p.phases, longest_gap(p)) for p in config.daemon.schedule)


def rules(config: Config, *, runbook_base: str = DEFAULT_RUNBOOK_BASE) -> dict[str, Any]:
    """The Prometheus rules file (`{"groups": [...]}`) for `config`'s SLOs and schedule."""
    return _built(build_rules, config, runbook_base=runbook_base)


def prometheus_rule(
    config: Config,
    *,
    runbook_base: str = DEFAULT_RUNBOOK_BASE,
    name: str = "llm-soak",
    namespace: str | None = None,
    labels: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """The same groups as a PrometheusRule; `labels` None keeps the kube-prometheus-stack
    default (`release: kube-prometheus-stack`), given labels replace it."""
    if len(name) > 253 or not _DNS_SUBDOMAIN.fullmatch(name):
        raise GenerateError(
            f"--name: {name!r} is not a Kubernetes object name "
            "(lowercase letters, digits, '-', '.'; at most 253 characters)"
        )
    if namespace is not None and (len(namespace) > 63 or not _DNS_LABEL.fullmatch(namespace)):
        raise GenerateError(
            f"--namespace: {namespace!r} is not a Kubernetes namespace "
            "(lowercase letters, digits, '-'; at most 63 characters)"
        )
    return _built(
        build_prometheus_rule, config, runbook_base=runbook_base,
        name=name, namespace=namespace, labels=labels,
    )  # fmt: skip


def _built(build: Any, config: Config, *, runbook_base: str, **kwargs: Any) -> dict[str, Any]:
    if not _URL.fullmatch(runbook_base):
        raise GenerateError(
            f"--runbook-base: {runbook_base!r} is not an http(s) URL "
            "(each alert links to <URL>#<alertname in lower case>)"
        )
    kwargs["runbook_base"] = runbook_base
    try:
        return build(config.slo, phases=phase_intervals(config), **kwargs)
    except ValueError as exc:  # the rules' own checks name the key (e.g. phases.<name>)
        raise GenerateError(f"{config.source}: {exc}") from None


def parse_labels(pairs: Iterable[str]) -> dict[str, str]:
    """`key=value` options as Kubernetes labels; a malformed one is a GenerateError."""
    labels: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep:
            raise GenerateError(f"--label: {pair!r} is not key=value (e.g. release=monitoring)")
        prefix, slash, label = key.rpartition("/")
        if not _label_name(label) or (
            slash and (len(prefix) > 253 or not _DNS_SUBDOMAIN.fullmatch(prefix))
        ):
            raise GenerateError(
                f"--label: {key!r} is not a Kubernetes label key ([prefix/]name; name: letters, "
                "digits, '-', '_', '.', at most 63 characters)"
            )
        if value and not _label_name(value):
            raise GenerateError(
                f"--label: {key}: {value!r} is not a Kubernetes label value "
                "(letters, digits, '-', '_', '.'; at most 63 characters)"
            )
        labels[key] = value
    return labels


def _label_name(text: str) -> bool:
    return len(text) <= 63 and _LABEL_NAME.fullmatch(text) is not None


def dashboard(config: Config) -> dict[str, Any]:
    """The overview dashboard as Grafana JSON (a dict) with `config`'s SLO threshold lines."""
    try:
        from soak.dashboards import soak_dashboard
    except ModuleNotFoundError as exc:
        if exc.name is None or exc.name.split(".")[0] == "soak":
            raise
        raise MissingExtra(
            f"the dashboard needs the 'dashboards' extra ({exc.name} is not installed): "
            f"{EXTRA_HINT}"
        ) from None
    return soak_dashboard.build(describe(config)["slo"])


def header(command: str, config: str | Path) -> str:
    """The comment line a generated YAML file starts with."""
    return f"# Generated by {command} from {config} (llm-soak {__version__}); do not edit.\n"


def rules_file(
    config: Config,
    *,
    source: str | Path,
    fmt: str = "rules",
    name: str | None = None,
    namespace: str | None = None,
    labels: Iterable[str] | None = None,
    runbook_base: str | None = None,
) -> str:
    """`soak rules`: the rules file (`fmt` "rules") or the PrometheusRule ("prometheusrule") as
    YAML; `labels` are `key=value` options; name, namespace and labels need the PrometheusRule."""
    base = DEFAULT_RUNBOOK_BASE if runbook_base is None else runbook_base
    head = header(f"soak rules --format {fmt}", source)
    if fmt == "rules":
        kube = {"--name": name, "--namespace": namespace, "--label": labels}
        given = [option for option, value in kube.items() if value is not None]
        if given:
            raise GenerateError(f"{given[0]}: only with --format prometheusrule")
        return to_yaml(rules(config, runbook_base=base), head)
    if fmt != "prometheusrule":
        raise GenerateError(f"--format: unknown format {fmt!r} (use rules or prometheusrule)")
    rule = prometheus_rule(
        config, runbook_base=base, name=name or "llm-soak", namespace=namespace,
        labels=None if labels is None else parse_labels(labels),
    )  # fmt: skip
    return to_yaml(rule, head)


class _Dumper(yaml.SafeDumper):
    """Block style for multi-line strings, so PromQL reads as PromQL."""


def _str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _str)


def to_yaml(data: Any, head: str) -> str:
    """`data` as YAML under the comment `head` (the rules file, the PrometheusRule)."""
    return head + yaml.dump(data, Dumper=_Dumper, sort_keys=False, width=100)


def to_json(data: Any) -> str:
    """`data` as stable JSON (sorted keys, so rebuilds compare equal) ending in a newline."""
    return json.dumps(data, indent=2, sort_keys=True) + "\n"
