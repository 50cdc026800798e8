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


def _top_level_names(path: Path) -> set[str]:
    """Names a module binds at its top level (definitions, assignments, imports, also under if/try)."""
    names: set[str] = set()
    body = list(ast.parse(path.read_text(encoding="utf-8")).body)
    while body:
        node = body.pop()
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            names.add(node.name)
        elif isinstance(node, ast.Assign | ast.AnnAssign):
            for target in node.targets if isinstance(node, ast.Assign) else [node.target]:
                names |= {n.id for n in ast.walk(target) if isinstance(n, ast.Name)}
        elif isinstance(node, ast.Import | ast.ImportFrom):
            names |= {(a.asname or a.name).split(".")[0] for a in node.names}
        elif isinstance(node, ast.If | ast.Try):
            body += [*node.body, *node.orelse, *getattr(node, "handlers", []), *getattr(node, "finalbody", [])]
        elif isinstance(node, ast.ExceptHandler):
            body += node.body
    return names


def _literal(path: Path, name: str) -> object:
    """The value of ``NAME = <literal>`` at a module's top level (None when absent or not a literal)."""
    for node in ast.parse(path.read_text(encoding="utf-8")).body:
        if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == name for t in node.targets):
            try:
                return ast.literal_eval(node.value)
            except ValueError:
                return None
    return None


def test_every_exported_name_is_defined() -> None:
    # Read, not imported (the lazy names need torch): a package's __all__ name is bound in its
    # __init__ or, lazily, in the submodule its _LAZY map names (issue 19: `eval_sigma` was neither).
    missing = []
    for init in PACKAGE.rglob("__init__.py"):
        own, lazy = _top_level_names(init), _literal(init, "_LAZY") or {}
        assert isinstance(lazy, dict)
        for name, module in lazy.items():
            if name not in _top_level_names(init.parent / f"{module}.py"):
                missing.append(f"{init.parent.name}.{module}.{name}")
        exported = _literal(init, "__all__")
        for name in exported if isinstance(exported, list) else []:
            if name not in own and name not in lazy:
                missing.append(f"{init.parent.name}.{name}")
    assert not missing, missing


def test_only_packages_load_names_lazily() -> None:
    # A module-level __getattr__ outside a package's __init__ is a re-export shim (io.py served
    # folders'/commit's names, which import io): importers name the real module instead.
    shims = [str(p.relative_to(PACKAGE)) for p in PACKAGE.rglob("*.py") if p.name != "__init__.py"
             and "__getattr__" in {n.name for n in ast.parse(p.read_text(encoding="utf-8")).body
                                   if isinstance(n, ast.FunctionDef)}]
    assert not shims, shims
