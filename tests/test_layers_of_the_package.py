"""The package's folders are its layers: every import of the package's own modules (at the top or inside a
function) goes in an allowed direction, and imports inside functions are only the deliberate ones."""

from __future__ import annotations

import ast
from pathlib import Path

import wcembed

PACKAGE = Path(wcembed.__file__).parent

# what each layer may import of the package (besides itself); the entry points may import anything
ALLOWED = {
    "wcembed.core": set(),
    "wcembed.tools": {"wcembed.core"},
    "wcembed.pipeline": {"wcembed.core"},
    "wcembed.explore.data": {"wcembed.core"},
    "wcembed.explore.compute": {"wcembed.core", "wcembed.explore.data", "wcembed.pipeline"},
    "wcembed.explore.state": {"wcembed.core", "wcembed.explore.data", "wcembed.explore.compute"},
    "wcembed.explore.views": {
        "wcembed.core",
        "wcembed.tools",
        "wcembed.explore.data",
        "wcembed.explore.compute",
        "wcembed.explore.state",
    },
    "wcembed.apps": {"wcembed"},
}
ROOT_NAMES = {"wcembed.ROOT", "wcembed.NOTEBOOKS", "wcembed.__version__"}  # of the package's __init__


def _module(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _layer(module: str) -> str | None:
    return max((layer for layer in ALLOWED if module == layer or module.startswith(layer + ".")), key=len, default=None)


def _imports(tree: ast.AST) -> list[tuple[str, int, bool]]:
    """(module imported, line, inside a function) of every import of the package's own modules."""
    found, inside = [], set()
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            inside |= {id(n) for n in ast.walk(node) if n is not node}
    for node in ast.walk(tree):
        names = []
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "wcembed":
            names = [f"{node.module}.{a.name}" for a in node.names]
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names if a.name.split(".")[0] == "wcembed"]
        found += [(name, node.lineno, id(node) in inside) for name in names]
    return found


def test_every_module_is_in_a_layer():
    modules = [_module(p) for p in PACKAGE.rglob("*.py")]
    homeless = [m for m in modules if _layer(m) is None and m not in ("wcembed", "wcembed.__main__", "wcembed.explore")]
    assert not homeless, f"modules outside every layer: {homeless}"


def test_no_import_runs_against_the_layers():
    wrong = []
    for path in PACKAGE.rglob("*.py"):
        module = _module(path)
        layer = _layer(module)
        if layer is None:
            continue
        for name, line, _ in _imports(ast.parse(path.read_text())):
            if name in ROOT_NAMES or name.startswith(layer + ".") or name == layer:
                continue
            target = _layer(name)
            if "wcembed" in ALLOWED[layer] or target in ALLOWED[layer]:
                continue
            wrong.append(f"{module}:{line} imports {name} ({layer} may import {sorted(ALLOWED[layer]) or 'nothing'})")
    assert not wrong, "\n".join(wrong)


def test_the_checks_above_see_a_wrong_import():
    """The check itself fails on a module of the computation layer that imports a view."""
    tree = ast.parse("def f():\n    from wcembed.explore.views.view import Explorer\n")
    ((name, _, inside),) = _imports(tree)
    assert inside and _layer(name) == "wcembed.explore.views"
    assert _layer(name) not in ALLOWED["wcembed.explore.compute"]
