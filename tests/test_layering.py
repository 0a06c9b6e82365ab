"""Data flows one way: cells and tasks are leaves (they import neither experiments nor benchmarks), tasks do not
import cells (both use `plugins`), and experiments do not import benchmarks."""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
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
