"""Every gateway kind soak knows, found rather than listed: nothing else names kinds.

The kinds are the `KIND` classes of the modules in `soak.gateway.kinds` (scanned once, on
first use) plus any added with `register` (a kind defined in another package). Config
validation (`kind_names`, `primary_apis`, `primary_api_refusal`), the client's header allowlist
(`self_headers`) and the stack (`kind_class(...).from_config`) all ask this module. It imports
the base class and the kind modules only, never soak.config's loader, so the config may import
it.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Iterable, Mapping
from types import MappingProxyType
from typing import Any

import soak.gateway.kinds as _package
from soak.gateway.kind import GatewayKind

DEFAULT_KIND = GatewayKind.name
"""`gateway.kind` when the config names none: the generic OpenAI-compatible kind."""

_registered: dict[str, type[GatewayKind]] = {}
_known: Mapping[str, type[GatewayKind]] | None = None
_headers: tuple[str, ...] | None = None


def kinds() -> Mapping[str, type[GatewayKind]]:
    """Name → kind class: the default kind first, then the others by name."""
    global _known
    if _known is None:
        every = {**_scan(), **_registered}
        order = sorted(every, key=lambda name: (name != DEFAULT_KIND, name))
        _known = MappingProxyType({name: every[name] for name in order})
    return _known


def kind_names() -> tuple[str, ...]:
    """The values `gateway.kind` accepts."""
    return tuple(kinds())


def kind_class(name: str) -> type[GatewayKind]:
    """The kind called `name`; ValueError naming the known ones otherwise."""
    known = kinds()
    if name not in known:
        raise ValueError(f"gateway.kind: unknown kind {name!r} (use one of {', '.join(known)})")
    return known[name]


def get_kind(name: str, **options: Any) -> GatewayKind:
    """The kind called `name`, built with its options."""
    return kind_class(name)(**options)


def self_headers() -> tuple[str, ...]:
    """The union of every kind's `self_headers`, in kind order (the client's default allowlist)."""
    global _headers
    if _headers is None:
        _headers = _union(kind.self_headers for kind in kinds().values())
    return _headers


def primary_apis() -> tuple[str, ...]:
    """The values `gateway.primary_api` accepts for some kind."""
    return _union(kind.primary_apis for kind in kinds().values())


def primary_api_refusal(kind: str, api: str) -> tuple[str, str] | None:
    """Why kind `kind` cannot route its primary through `api` (problem, hint), or None when it
    can. Only a kind whose routes soak writes can point them at another API."""
    if api in kind_class(kind).primary_apis:
        return None
    able = [k for k in kinds().values() if api in k.primary_apis]
    return (
        f"only for kind {' or '.join(k.name for k in able)}",
        f"soak writes the routes of {' and '.join(k.title for k in able)} only",
    )


def register(kind: type[GatewayKind]) -> type[GatewayKind]:
    """Add a kind defined outside `soak.gateway.kinds` (usable as a class decorator)."""
    if not (isinstance(kind, type) and issubclass(kind, GatewayKind)):
        raise TypeError(f"{kind!r} is not a GatewayKind subclass")
    other = kinds().get(kind.name)
    if other is not None and other is not kind:
        raise ValueError(f"gateway kind {kind.name!r} is already {other.__module__}.KIND")
    _registered[kind.name] = kind
    _forget()
    return kind


def unregister(name: str) -> None:
    """Drop a kind added with `register` (a kind module stays until it is removed)."""
    _registered.pop(name, None)
    _forget()


def rescan() -> None:
    """Forget the kinds found and registered: the next use scans `soak.gateway.kinds` again
    (after a kind module was added at run time, or to undo `register` in a test)."""
    _registered.clear()
    _forget()


def _forget() -> None:
    global _known, _headers
    _known, _headers = None, None


def _scan() -> dict[str, type[GatewayKind]]:
    """The `KIND` of every module in `soak.gateway.kinds` (a module without one is a helper)."""
    found: dict[str, type[GatewayKind]] = {}
    for info in pkgutil.iter_modules(_package.__path__, f"{_package.__name__}."):
        module = importlib.import_module(info.name)
        kind = getattr(module, "KIND", None)
        if kind is None:
            continue
        if not (isinstance(kind, type) and issubclass(kind, GatewayKind)):
            raise TypeError(f"{info.name}.KIND is not a GatewayKind subclass")
        if kind.name in found:
            raise ValueError(f"gateway kind {kind.name!r} is defined twice ({info.name})")
        found[kind.name] = kind
    return found


def _union(groups: Iterable[Iterable[str]]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(item for group in groups for item in group))
