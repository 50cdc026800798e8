"""The package's layout keeps its promises: no concept folder imports one that imports it back, and
no module grows past ~400 lines (the synthetic corpus's word lists aside)."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "confdistill"
CONCEPTS = ("data", "models", "distillation", "prediction", "properties", "reports", "experiments", "tuning", "cli")
LONG_ALLOWED = {"data/synthetic.py": "the generated corpus's word lists"}


def _imported_concepts(path: Path) -> set[str]:
    """Concept folders a module imports, at the top or inside functions (lazy imports count too)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        names = []
        if isinstance(node, ast.ImportFrom) and node.module:
            names = [node.module]
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        for name in names:
            parts = name.split(".")
            if parts[0] == "confdistill" and len(parts) > 1 and parts[1] in CONCEPTS:
                found.add(parts[1])
    return found


def concept_graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {c: set() for c in CONCEPTS}
    for concept in CONCEPTS:
        for module in (PACKAGE / concept).rglob("*.py"):
            graph[concept] |= _imported_concepts(module) - {concept}
    return graph


def test_no_concept_folder_imports_one_that_imports_it_back() -> None:
    graph = concept_graph()
    cycles = []

    def visit(node: str, path: list[str]) -> None:
        for nxt in sorted(graph[node]):
            if nxt in path:
                cycles.append(" → ".join([*path[path.index(nxt):], nxt]))
            elif len(path) < len(CONCEPTS):
                visit(nxt, [*path, nxt])

    for concept in CONCEPTS:
        visit(concept, [concept])
    assert not cycles, sorted(set(cycles))[:5]


def test_modules_stay_short() -> None:
    long = {str(p.relative_to(PACKAGE)): n for p in PACKAGE.rglob("*.py")
            if (n := len(p.read_text(encoding="utf-8").splitlines())) > 420}
    assert set(long) <= set(LONG_ALLOWED), long
