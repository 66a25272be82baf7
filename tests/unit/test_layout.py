"""The layout keeps its promises: what ships imports nothing from development tooling, and the benchmark
and the shared test helpers never reach into `tests/`."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

# Which top-level packages each tree may not import.
FORBIDDEN = {"preloader": {"tests", "testkit", "bench"}, "testkit": {"tests", "bench"}, "bench": {"tests"}}


def _imported_roots(source: Path) -> set[str]:
    roots: set[str] = set()
    for node in ast.walk(ast.parse(source.read_text(), filename=str(source))):
        if isinstance(node, ast.Import):
            roots.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            roots.add(node.module.split(".")[0])
    return roots


@pytest.mark.parametrize("tree", sorted(FORBIDDEN))
def test_a_tree_never_imports_the_packages_it_must_not_depend_on(tree: str) -> None:
    sources = sorted((REPO / tree).rglob("*.py"))
    assert sources, f"no Python files under {tree}/"
    offenders = {
        str(source.relative_to(REPO)): sorted(roots)
        for source in sources
        if (roots := _imported_roots(source) & FORBIDDEN[tree])
    }
    assert offenders == {}


def test_the_import_check_sees_a_forbidden_import(tmp_path: Path) -> None:
    source = tmp_path / "x.py"
    source.write_text("import os\nfrom tests.support.tiers import unavailable\n\ndef f():\n    import bench.cli\n")
    assert _imported_roots(source) & {"tests", "bench"} == {"tests", "bench"}
