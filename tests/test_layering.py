"""Data flows one way: cells and tasks are leaves (they import neither experiments nor benchmarks), tasks do not
import cells (both use `plugins`), and experiments do not import benchmarks."""

import ast
from pathlib import Path

import pytest

from tests.helpers import ROOT

FORBIDDEN = {
    "cells": ("experiments", "benchmarks", "tasks"),
    "tasks": ("experiments", "benchmarks", "cells"),
    "plugins": ("experiments", "benchmarks", "cells", "tasks"),
    "experiments": ("benchmarks",),
}


def imported_packages(path: Path) -> set[str]:
    """Top-level packages a module imports, at module level or inside functions."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.add(node.module.split(".")[0])
    return names


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_imports_follow_the_layers(package):
    modules = sorted((ROOT / package).glob("*.py"))
    assert modules
    bad = {m.name: sorted(imported_packages(m) & set(FORBIDDEN[package])) for m in modules}
    assert not {m: b for m, b in bad.items() if b}, f"{package}/ imports what it must not: {bad}"


PACKAGES = ("cells", "tasks", "plugins", "experiments", "benchmarks")


def imported_modules(path: Path) -> set[str]:
    """The project modules a module imports, at module level or inside functions (`from p import m` counts
    as importing p.m when p/m.py exists, else p)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names |= {f"{node.module}.{a.name}" for a in node.names if (ROOT / node.module / f"{a.name}.py").exists()}
            names.add(node.module)
    return {n for n in names if n.split(".")[0] in PACKAGES}


def test_no_import_cycles_between_modules():
    """A module that needs another only inside a function still depends on it: no two modules may
    depend on each other, directly or around a longer loop. (A package's `__init__` re-exporting its
    own modules is not a loop: it is left out.)"""
    paths = {
        f"{p.parent.name}.{p.stem}": p for pkg in PACKAGES for p in (ROOT / pkg).glob("*.py") if p.stem != "__init__"
    }
    graph = {m: {d for d in imported_modules(path) if d in paths and d != m} for m, path in paths.items()}
    state: dict[str, int] = {}  # 1: on the current path, 2: done

    def visit(module: str, path: list[str]) -> list[str] | None:
        state[module] = 1
        for dep in sorted(graph[module]):
            if state.get(dep) == 1:
                return [*path[path.index(dep) :], dep] if dep in path else [*path, dep]
            if dep not in state and (loop := visit(dep, [*path, dep])):
                return loop
        state[module] = 2
        return None

    for module in sorted(graph):
        if module not in state:
            loop = visit(module, [module])
            assert loop is None, f"import cycle: {' -> '.join(loop)}"


TOOL_MAINS = ("speed.py", "tables.py", "memory.py")  # `python -m benchmarks.X`: absl flags, main, app.run


def test_benchmarks_library_modules_import_no_absl():
    """Only a tool's main reads flags: every other module of benchmarks/ takes plain values (no absl flags or app)."""
    modules = [m for m in sorted((ROOT / "benchmarks").glob("*.py")) if m.name not in TOOL_MAINS]
    bad = [m.name for m in modules if _absl_flags_or_app(m)]
    assert not bad, f"benchmarks/ library modules that import absl's flags or app: {bad}"


def _absl_flags_or_app(path: Path) -> bool:
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module == "absl":
            if {a.name for a in node.names} & {"flags", "app"}:
                return True
        elif isinstance(node, ast.Import | ast.ImportFrom):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]
            if any(n.startswith(("absl.flags", "absl.app")) for n in names):
                return True
    return False
