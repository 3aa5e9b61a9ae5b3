"""The package's layers import one way: models, data → generate → train → audits, reader_study →
experiments → analysis → cli. Every import (module-level or inside a function) is checked."""

from __future__ import annotations

import ast
from pathlib import Path

import dermsynth

PACKAGE = Path(dermsynth.__file__).parent
# Rank of each top-level package; a module may import only from its own rank or below.
# Base modules (errors, io, registry, the package itself) sit under everything.
RANKS = {"models": 1, "data": 2, "generate": 3, "train": 4, "audits": 5, "reader_study": 5, "experiments": 6,
         "deploy": 7, "analysis": 7, "tracking": 7, "cli": 8}
BASE = {"errors", "files", "field_roles", "progress", "registry", "lockfile", "stats", "cpu", ""}


def layer_of(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def rank(layer: str) -> int:
    return 0 if layer in BASE else RANKS[layer]


def imports_of(path: Path) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text())
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("dermsynth"):
            found.append((node.lineno, node.module))
            found += [(node.lineno, f"{node.module}.{a.name}") for a in node.names if node.module == "dermsynth"]
        elif isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names if a.name.startswith("dermsynth")]
    return found


def module_name(path: Path) -> str:
    rel = path.relative_to(PACKAGE.parent).with_suffix("")
    return ".".join(rel.parts).removesuffix(".__init__")


def upward_imports() -> list[str]:
    bad = []
    for path in sorted(PACKAGE.rglob("*.py")):
        me = module_name(path)
        for line, target in imports_of(path):
            src, dst = layer_of(me), layer_of(target)
            if dst == "__version__":
                continue
            if rank(dst) > rank(src):
                bad.append(f"{me}:{line} imports {target} ({src or 'base'} → {dst})")
    return bad


def test_every_layer_is_known():
    layers = {p.name for p in PACKAGE.iterdir() if p.is_dir() and (p / "__init__.py").exists()}
    modules = {p.stem for p in PACKAGE.glob("*.py") if p.stem != "__init__"}
    assert layers == set(RANKS), "a new package needs a place in RANKS"
    assert modules <= BASE, f"top-level modules must be base modules: {modules - BASE}"


def test_imports_run_one_way():
    assert upward_imports() == []


def test_checker_catches_an_upward_import(tmp_path, monkeypatch):
    """The walker must see function-level imports too; plant one and expect it flagged."""
    planted = PACKAGE / "data" / "_planted_for_test.py"
    planted.write_text("def f():\n    from dermsynth.analysis import report\n")
    try:
        assert any("_planted_for_test" in b and "data → analysis" in b for b in upward_imports())
    finally:
        planted.unlink()


def test_no_private_helpers_imported_across_modules():
    offenders = []
    for path in sorted(PACKAGE.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("dermsynth"):
                offenders += [f"{module_name(path)} imports {node.module}.{a.name}" for a in node.names
                              if a.name.startswith("_") and a.name != "__version__"]
    assert offenders == []


def test_modules_stay_small():
    big = {module_name(p): n for p in PACKAGE.rglob("*.py") if (n := len(p.read_text().splitlines())) > 320}
    assert big == {}


def module_graph() -> dict[str, set[str]]:
    """Which dermsynth modules each module imports (module-level or inside functions)."""
    modules = {module_name(p): p for p in PACKAGE.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for me, path in modules.items():
        targets = set()
        for _, target in imports_of(path):
            while target and target not in modules:  # `from dermsynth.x import name`: name is not a module
                target = target.rpartition(".")[0]
            if target and target != me and not target.endswith("dermsynth"):
                targets.add(target)
        graph[me] = targets
    return graph


def import_cycles() -> list[list[str]]:
    """Strongly connected groups of modules (each imports the others, directly or not)."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    graph = module_graph()
    names = sorted(graph)
    pos = {n: i for i, n in enumerate(names)}
    edges = [(pos[a], pos[b]) for a, targets in graph.items() for b in targets]
    adj = coo_matrix(([1] * len(edges), ([a for a, _ in edges], [b for _, b in edges])), shape=(len(names),) * 2)
    labels = connected_components(adj, directed=True, connection="strong")[1]
    groups: dict[int, list[str]] = {}
    for name, label in zip(names, labels, strict=True):
        groups.setdefault(int(label), []).append(name)
    return sorted(g for g in groups.values() if len(g) > 1)


def test_no_import_cycles():
    """Modules that import each other can only load in one order (and hide that they are one
    concept): no module reaches itself through its imports."""
    assert import_cycles() == []


def test_deployment_and_external_validation_have_homes_named_for_their_job():
    """Export and the model card are deployment, not statistics; the two external-validation
    modules (evaluating runs, reporting them) do different jobs and say which."""
    assert {"export", "model_card"} <= {p.stem for p in (PACKAGE / "deploy").glob("*.py")}
    assert not [m for m in ("export", "model_card") if (PACKAGE / "analysis" / f"{m}.py").exists()]
    external = [p.stem for p in PACKAGE.rglob("external*.py")]
    assert len(external) == len(set(external)) and "external" not in external
