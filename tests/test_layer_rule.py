"""The layer rule over the whole package: a module imports only its own layer and the layers below it.

Every ``import`` and ``from ... import`` in every module counts, also those inside functions (a lazy
import is still a dependency), and ``importlib.import_module("stateport....")`` with a literal name.
The layers and why they are ordered so: docs/ARCHITECTURE.md.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "stateport"

# Lowest first. A module belongs to the layer of its longest matching prefix.
LAYERS = (
    ("base", ("stateport", "stateport.errors", "stateport.spec", "stateport.vocabulary", "stateport.metrics",
              "stateport.atomic", "stateport.assets")),
    ("runtime", ("stateport.runtime",)),
    ("verify", ("stateport.verify", "stateport.check")),
    ("nn", ("stateport.nn",)),
    ("zoo", ("stateport.zoo",)),
    ("export", ("stateport.export",)),
    ("quantize", ("stateport.quantize",)),
    ("train", ("stateport.train",)),
    ("top", ("stateport.demo", "stateport.cli")),
)
RANK = {name: i for i, (name, _) in enumerate(LAYERS)}


def layer_of(module: str) -> str | None:
    best = None
    for name, prefixes in LAYERS:
        for p in prefixes:
            if (module == p or module.startswith(p + ".")) and (best is None or len(p) > len(best[1])):
                best = (name, p)
    return best[0] if best else None


def modules() -> dict:
    """Module name -> (path, is_package) for every .py file of the package."""
    out = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = list(path.relative_to(ROOT).with_suffix("").parts)
        is_package = parts[-1] == "__init__"
        if is_package:
            parts = parts[:-1]
        out[".".join(parts)] = (path, is_package)
    return out


def imports_of(module: str, path: Path, is_package: bool) -> list[tuple[str, int]]:
    """(imported stateport module, line) for every import in the file, at any depth."""
    tree = ast.parse(path.read_text(), filename=str(path))
    package = module if is_package else module.rpartition(".")[0]
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(a.name, node.lineno) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if node.module is None:  # from . import a, b: each name is a module
                found += [(f"{target}.{a.name}", node.lineno) for a in node.names]
            else:
                found.append((target, node.lineno))
        elif (isinstance(node, ast.Call) and getattr(node.func, "attr", getattr(node.func, "id", None)) == "import_module"
              and node.args and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str)):
            found.append((node.args[0].value, node.lineno))
    return [(name, line) for name, line in found if name == "stateport" or name.startswith("stateport.")]


def test_every_module_has_a_layer():
    unplaced = [m for m in modules() if layer_of(m) is None]
    assert not unplaced, f"modules outside every layer (place them in LAYERS and docs/ARCHITECTURE.md): {unplaced}"


def test_no_module_imports_a_higher_layer():
    violations = []
    for module, (path, is_package) in modules().items():
        mine = layer_of(module)
        for target, line in imports_of(module, path, is_package):
            theirs = layer_of(target)
            if theirs is not None and RANK[theirs] > RANK[mine]:
                violations.append(f"{path.relative_to(ROOT)}:{line}: {module} ({mine}) imports {target} ({theirs})")
    assert not violations, "lower layers importing higher ones:\n" + "\n".join(violations)


def test_the_rule_sees_imports_inside_functions(tmp_path):
    """The checker itself: a lazy import in a function body is found (a rule that missed them would pass
    on the very pattern the rule exists for)."""
    f = tmp_path / "m.py"
    f.write_text("def f():\n    from ..train import trainer\n    import stateport.cli.main\n")
    found = imports_of("stateport.quantize.m", f, False)
    assert found == [("stateport.train", 2), ("stateport.cli.main", 3)]
    assert RANK[layer_of("stateport.train.trainer")] > RANK[layer_of("stateport.quantize.api")]


@pytest.mark.parametrize("package", ["stateport.export", "stateport.verify", "stateport.quantize"])
def test_no_import_cycle_inside(package):
    """No circle of imports among a package's modules (the export job, the backends and the transducer
    export once imported each other through function-level imports)."""
    mods = {m: v for m, v in modules().items() if m == package or m.startswith(package + ".")}
    graph = {m: {t for t, _ in imports_of(m, *v) if t in mods and t != m} for m, v in mods.items()}
    # A module importing its own package's __init__ (or the reverse) is how packages work, not a cycle.
    for m in graph:
        graph[m] = {t for t in graph[m] if not m.startswith(t + ".") and not t.startswith(m + ".")}
    state, stack = {}, []

    def visit(m):
        state[m] = "open"
        stack.append(m)
        for t in sorted(graph[m]):
            if state.get(t) == "open":
                raise AssertionError("import cycle: " + " -> ".join(stack[stack.index(t):] + [t]))
            if t not in state:
                visit(t)
        stack.pop()
        state[m] = "done"

    for m in sorted(graph):
        if m not in state:
            visit(m)


def test_architecture_doc_lists_the_layers_in_order():
    doc = (ROOT / "docs" / "ARCHITECTURE.md").read_text()
    positions = [doc.index(f"`{name}`") for name, _ in LAYERS]
    assert positions == sorted(positions), "docs/ARCHITECTURE.md lists the layers in another order than this test"
