"""The layout's fences, read from the code's own imports (every import statement, at the top of
a module or inside a function): no import cycle in soak/ and mock/, third-party packages only
in the module that owns them, and the one-way data flow the design draws."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = (("soak", "soak"), ("mock", "soak.mock"), ("dashboards", "soak.dashboards"))
"""Source folder → import name (mock/ ships as soak.mock, dashboards/ as soak.dashboards)."""


def modules() -> dict[str, Path]:
    found = {}
    for folder, package in PACKAGES:
        for path in sorted((ROOT / folder).rglob("*.py")):
            rel = path.relative_to(ROOT / folder).with_suffix("")
            parts = [p for p in rel.parts if p != "__init__"]
            found[".".join((package, *parts))] = path
    return found


MODULES = modules()


def _nodes(tree: ast.AST, runtime: bool) -> Iterator[ast.AST]:
    """Every node of `tree`; with `runtime`, none under `if TYPE_CHECKING:` (never run)."""
    for node in ast.iter_child_nodes(tree):
        if runtime and isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            yield from (n for child in node.orelse for n in (child, *_nodes(child, runtime)))
            continue
        yield node
        yield from _nodes(node, runtime)


def imported(name: str, path: Path, runtime: bool = False) -> Iterator[str]:
    """Every module name `name` imports, absolute, as written (no resolution to our modules);
    with `runtime`, only the imports that run (not the type checker's)."""
    is_package = path.name == "__init__.py"
    for node in _nodes(ast.parse(path.read_text()), runtime):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = name.split(".")[: len(name.split(".")) - node.level + is_package]
                module = ".".join([*base, node.module] if node.module else base)
            else:
                module = node.module or ""
            yield module
            yield from (f"{module}.{alias.name}" for alias in node.names)


def ours(target: str, importer: str) -> str | None:
    """The module of ours that `target` names (a module, or a name inside one)."""
    while target and target not in MODULES:
        target = target.rpartition(".")[0]
    if not target or target == importer or importer.startswith(target + "."):
        return None  # not ours, or the importer's own package (its __init__)
    return target


def parents(target: str, importer: str) -> Iterator[str]:
    """The packages whose `__init__` importing `target` runs first (Python imports `a.b` before
    `a.b.c`), but the importer's own: a cycle through a package's `__init__` is as real as one
    through a module, and only shows when the modules run in that order."""
    parts = target.split(".")
    for n in range(2, len(parts)):
        package = ".".join(parts[:n])
        if package in MODULES and not importer.startswith(package + ".") and package != importer:
            yield package


def edges(module: str, path: Path) -> set[str]:
    """What `module` imports (type checking included), and the packages its running imports
    initialise on the way."""
    found = {t for i in imported(module, path) if (t := ours(i, module))}
    run = {t for i in imported(module, path, runtime=True) if (t := ours(i, module))}
    return found | {p for t in run for p in parents(t, module)}


GRAPH = {m: edges(m, p) for m, p in MODULES.items()}


def test_there_is_no_import_cycle() -> None:
    state: dict[str, int] = {}  # 1: on the current path, 2: done

    def visit(module: str, path: tuple[str, ...]) -> None:
        state[module] = 1
        for target in sorted(GRAPH[module]):
            if state.get(target) == 1:
                loop = [*path[path.index(target) :], target]
                pytest.fail(f"import cycle: {' -> '.join(loop)}")
            if target not in state:
                visit(target, (*path, target))
        state[module] = 2

    for module in sorted(GRAPH):
        if module not in state:
            visit(module, (module,))


def reaches(start: str) -> set[str]:
    """Every module of ours `start` imports, directly or through others."""
    seen: set[str] = set()
    todo = [start]
    while todo:
        for target in GRAPH[todo.pop()]:
            if target not in seen:
                seen.add(target)
                todo.append(target)
    return seen


def test_the_mock_imports_only_the_shared_wire_and_duration_grammars() -> None:
    """mock/ is the product's upstream: of the tester it shares only the tracing contract
    (nonce in, marker out) and the duration grammar both configs are written in."""
    for module in (m for m in MODULES if m.startswith("soak.mock")):
        foreign = {t for t in GRAPH[module] if not t.startswith("soak.mock")}
        assert foreign <= {"soak.tracing", "soak.durations", "soak"}, (module, foreign)


@pytest.mark.parametrize("module", ["soak.engine", "soak.client", "soak.pacing"])
def test_the_load_engine_knows_no_phase_daemon_metric_or_report(module: str) -> None:
    banned = ("soak.phases", "soak.daemon", "soak.metrics", "soak.reports", "soak.runner",
              "soak.scheduler", "soak.rules")  # fmt: skip
    assert not {m for m in reaches(module) if m.startswith(banned)}, module


def test_the_config_imports_no_phase_and_no_scheduler() -> None:
    for module in (m for m in MODULES if m.startswith("soak.config")):
        bad = {m for m in reaches(module) if m.startswith(("soak.phases", "soak.scheduler"))}
        assert not bad, (module, bad)


@pytest.mark.parametrize(
    ("package", "owners"),
    [
        ("apscheduler", {"soak.scheduler"}),
        ("psutil", {"soak.procwatch"}),
        ("yaml", {"soak.config.source", "soak.generate", "soak.mock.profile", "soak.mock.cli"}),
        ("hdrh", {"soak.stats"}),
        ("grafanalib", {"soak.dashboards.soak_dashboard"}),
    ],
)
def test_third_party_imports_stay_with_their_owner(package: str, owners: set[str]) -> None:
    users = {m for m, p in MODULES.items() for i in imported(m, p) if i.split(".")[0] == package}
    assert users <= owners, f"{package} imported outside {owners}: {users - owners}"


def test_grafanalib_stays_under_dashboards() -> None:
    for path in ROOT.rglob("*.py"):
        rel = path.relative_to(ROOT)
        if rel.parts[0] in {"dashboards", "tests", ".venv", "build"}:
            continue
        names = list(imported(".".join(rel.with_suffix("").parts), path))
        assert not any(n.split(".")[0] == "grafanalib" for n in names), rel


def test_dashboards_read_no_scheduler_or_daemon() -> None:
    for path in (ROOT / "dashboards").glob("*.py"):
        names = set(imported(f"soak.dashboards.{path.stem}", path))
        assert not {n for n in names if n.startswith(("soak.scheduler", "soak.daemon"))}, path


def test_every_phase_module_declares_itself_and_no_phase_imports_another() -> None:
    """A phase is one module: shared helpers live in base, spec and trails, never in a sibling
    phase (so a phase can be removed or added alone)."""
    shared = {"soak.phases", "soak.phases.base", "soak.phases.spec", "soak.phases.trails"}
    phase_modules = {m for m in MODULES if m.startswith("soak.phases.") and m not in shared}
    for module in phase_modules:
        text = MODULES[module].read_text()
        assert "\nPHASE = PhaseSpec(" in text or "\nPHASES = (" in text, module
        assert not (GRAPH[module] & phase_modules), (module, GRAPH[module] & phase_modules)
