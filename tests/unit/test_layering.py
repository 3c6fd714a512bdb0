"""The layers of DESIGN.md, held by a test: decisions never reach for I/O, and edges depend on
policies, never the reverse (a policy that needs a store or a metrics sink declares a small
protocol, and the edge implements it)."""

import ast
from pathlib import Path

import seawall

ROOT = Path(seawall.__file__).parent

# package -> the seawall packages it may import (itself always allowed)
ALLOWED = {
    "core": {"core", "env"},
    "algorithms": {"algorithms", "core"},
    "providers": {"providers", "core", "algorithms"},  # wire formats may read into the decisions' types
    "auth": {"auth", "core", "env", "algorithms"},
    "policies": {"policies", "algorithms", "core", "env", "auth", "providers", "safety"},
    "safety": {"safety", "algorithms", "core", "providers"},
}


def _type_only(tree: ast.AST) -> set[int]:
    """Lines of imports under ``if TYPE_CHECKING:``: annotations only, no dependency at run time."""
    lines: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING":
            lines.update(n.lineno for child in node.body for n in ast.walk(child) if hasattr(n, "lineno"))
    return lines


def _imports(path: Path) -> list[tuple[int, str]]:
    found = []
    tree = ast.parse(path.read_text())
    type_only = _type_only(tree)
    for node in ast.walk(tree):
        if getattr(node, "lineno", None) in type_only:
            continue
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.lineno, node.module))
    return found


def _package(module: str) -> str | None:
    parts = module.split(".")
    if parts[0] != "seawall" or len(parts) < 2:
        return None
    return parts[1]


def test_each_layer_imports_only_the_layers_below_it():
    offenders = []
    checked = 0
    for package, allowed in ALLOWED.items():
        for path in sorted((ROOT / package).rglob("*.py")):
            checked += 1
            for line, module in _imports(path):
                target = _package(module)
                if target is not None and target not in allowed:
                    offenders.append(f"{path.relative_to(ROOT)}:{line} imports {module}")
    assert checked > 30
    assert offenders == [], "layering broken:\n" + "\n".join(offenders)


def test_the_check_sees_an_offending_import(tmp_path: Path):
    bad = tmp_path / "bad.py"
    bad.write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from seawall.edges import ledger\n"
                   "def f():\n    from seawall.edges.metrics import GatewayMetrics\n")
    assert [_package(m) for _, m in _imports(bad)] == [None, "edges"]  # the type-only import is not one
