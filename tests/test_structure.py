"""The package's import structure: layers that import only downwards, Keras only in training/, no import
cycles, no reaching into another module's private names.

Read from the source with `ast`, so nothing is imported. Every import of a package module counts,
at the top of a file or inside a function: an import moved into a function still ties the two
modules together, and hiding a cycle that way is what this test exists to stop. Imports of
third-party libraries are not edges, so the lazy imports of Keras, pandas or matplotlib that keep
`mnist-sweep --help` fast are fine.
"""

import ast
import functools
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = "mnist_sweep"
TESTS = Path(__file__).resolve().parent

# The layers, lowest first: a module imports its own layer (its subpackage, or itself at the top) and the
# layers on lines above it, never a layer on its own line or below. The arrows follow the data: a config is
# planned into trials and tasks, trained on a dataset, recorded as results, analysed and reported, and the
# sweep driver and the CLI sit on top of it all. (analysis sits below plan because a race's schedule asks
# analysis which configurations are still in; records, metrics and backend are vocabulary every layer uses.)
LAYERS = [
    ("errors",),
    ("records", "metrics", "backend"),
    ("config", "results"),
    ("analysis", "data"),
    ("plan",),
    ("search", "training"),
    ("execution", "report", "tracking"),
    ("sweep",),
    ("cli",),
    ("__main__", ""),  # `python -m mnist_sweep`, and the package's own __init__ (its lazy public names)
]
RANK = {layer: rank for rank, layers in enumerate(LAYERS) for layer in layers}
KERAS = ("keras", "tensorflow")  # imported at module level only inside training/
MAX_ROOT_MODULES = 8  # besides __init__.py and __main__.py


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_module_name(p): p for p in sorted((ROOT / PACKAGE).rglob("*.py"))}


def _is_package(module: str) -> bool:
    return MODULES[module].name == "__init__.py"


def _resolve(module: str, node: ast.ImportFrom) -> str:
    """The absolute module a `from ... import` names, relative levels resolved."""
    if not node.level:
        return node.module or ""
    base = module.split(".") if _is_package(module) else module.split(".")[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


@functools.lru_cache(maxsize=None)
def _imports(module: str) -> tuple[tuple[str, str | None, int], ...]:
    """Each import of a package module: (target module, name taken from it or None, line)."""
    return tuple(_read_imports(module))


def _read_imports(module: str):
    for node in ast.walk(ast.parse(MODULES[module].read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == PACKAGE:
                    yield alias.name, None, node.lineno
        elif isinstance(node, ast.ImportFrom):
            source = _resolve(module, node)
            if source.split(".")[0] != PACKAGE:
                continue
            for alias in node.names:
                if f"{source}.{alias.name}" in MODULES:  # `from . import backend`: a module, not a name
                    yield f"{source}.{alias.name}", None, node.lineno
                else:
                    yield source, alias.name, node.lineno


def _graph() -> dict[str, dict[str, int]]:
    """module -> {module it imports: first line}; importing `a.b.c` also runs package `a.b`."""
    edges: dict[str, dict[str, int]] = {m: {} for m in MODULES}
    for module in MODULES:
        for target, _, line in _imports(module):
            parts = target.split(".")
            for depth in range(2, len(parts) + 1):  # the package itself (mnist_sweep) imports nothing
                step = ".".join(parts[:depth])
                inside = module == step or module.startswith(step + ".")  # already being imported
                if step in MODULES and step != module and not (inside and step != target):
                    edges[module].setdefault(step, line)
    return edges


def _cycles(edges: dict[str, dict[str, int]]) -> list[list[str]]:
    """Strongly connected groups of more than one module (Tarjan's algorithm)."""
    index, low, stack, on_stack, groups = {}, {}, [], set(), []

    def visit(node):
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in edges[node]:
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            group = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.append(member)
                if member == node:
                    break
            if len(group) > 1:
                groups.append(sorted(group))

    for node in edges:
        if node not in index:
            visit(node)
    return groups


def test_the_reader_sees_the_package_and_its_imports():
    # Guards the test itself: a walker that found nothing would pass everything.
    assert {"mnist_sweep.cli", "mnist_sweep.config", "mnist_sweep.config.schema", "mnist_sweep.plan.grid"} <= set(MODULES)
    edges = _graph()
    assert "mnist_sweep.config" in edges["mnist_sweep.plan.grid"]  # from .config import ...
    assert "mnist_sweep.config.schema" in edges["mnist_sweep.config.describe"]  # from .schema import ...
    assert "mnist_sweep.errors" in edges["mnist_sweep.config.schema"]  # from ..errors import ...
    assert "mnist_sweep.sweep.runner" in edges["mnist_sweep.cli"]  # inside a function: still an edge
    assert "mnist_sweep.backend" in edges["mnist_sweep.execution.executors"]  # from . import backend
    assert _cycles({"a": {"b": 1}, "b": {"c": 1}, "c": {"a": 1}, "d": {"a": 1}}) == [["a", "b", "c"]]


def layer_of(module: str) -> str:
    """`mnist_sweep.plan.grid` -> "plan", `mnist_sweep.cli` -> "cli", the package itself -> ""."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def layer_violations(edges: dict[str, dict[str, int]]) -> list[str]:
    """Every import of a layer that is not below the importing module's own layer."""
    found = []
    for module, targets in edges.items():
        for target, line in targets.items():
            here, there = layer_of(module), layer_of(target)
            if here != there and RANK[there] >= RANK[here]:
                found.append(f"{module} (line {line}) imports {target}: layer {here!r} may not import {there!r}")
    return found


def module_level_imports(tree: ast.AST):
    """(top-level name, line) of each import that runs when the module is imported: not inside a function."""
    stack = list(ast.iter_child_nodes(tree))
    while stack:
        node = stack.pop()
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            continue
        if isinstance(node, ast.Import):
            yield from ((alias.name.split(".")[0], node.lineno) for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and not node.level:
            yield (node.module or "").split(".")[0], node.lineno
        stack.extend(ast.iter_child_nodes(node))


def keras_outside_training(modules: dict[str, Path]) -> list[str]:
    return [f"{module} (line {line}) imports {name} at module level: only training/ may"
            for module, path in modules.items() if layer_of(module) != "training"
            for name, line in module_level_imports(ast.parse(path.read_text(encoding="utf-8"))) if name in KERAS]


def test_layers_import_only_downwards_and_keras_only_inside_training(tmp_path):
    # The checks themselves first: a results module importing analysis, siblings importing each other and
    # TensorFlow at the top of the CLI must each be caught (a checker that found nothing would pass all).
    assert layer_violations({"mnist_sweep.results.store": {"mnist_sweep.analysis.stats": 3}}) == [
        "mnist_sweep.results.store (line 3) imports mnist_sweep.analysis.stats: layer 'results' may not "
        "import 'analysis'"]
    assert layer_violations({"mnist_sweep.search.study": {"mnist_sweep.training.models": 1}})
    assert not layer_violations({"mnist_sweep.sweep.runner": {"mnist_sweep.plan.grid": 1}})
    bad = tmp_path / "cli.py"
    bad.write_text("import click\nimport tensorflow as tf\n\ndef f():\n    import keras\n")
    assert keras_outside_training({"mnist_sweep.cli": bad}) == [
        "mnist_sweep.cli (line 2) imports tensorflow at module level: only training/ may"]
    # Then the package: every module in a layer, every import downwards, Keras at module level only in training/.
    unknown = sorted({layer_of(m) for m in MODULES} - set(RANK))
    assert not unknown, f"modules outside every layer (add them to LAYERS in {Path(__file__).name}): {unknown}"
    missing = [f"{module} (line {line}) imports {target}, which does not exist"
               for module in MODULES for target, _, line in _imports(module) if target not in MODULES]
    found = missing + layer_violations(_graph()) + keras_outside_training(MODULES)
    assert not found, "imports of missing modules, against the layers' direction, or of Keras outside training/:\n" + \
        "\n".join(found)


def test_the_package_root_holds_few_modules_and_tests_mirror_the_subpackages():
    root = sorted(p.name for p in (ROOT / PACKAGE).glob("*.py") if p.name not in ("__init__.py", "__main__.py"))
    assert len(root) <= MAX_ROOT_MODULES, f"{len(root)} modules at the package's top: {root}"
    subpackages = {p.parent.name for p in (ROOT / PACKAGE).glob("*/__init__.py")}
    folders = {p.parent.name for p in TESTS.glob("*/test_*.py")}
    assert folders <= subpackages, f"test folders that mirror no subpackage: {sorted(folders - subpackages)}"


def test_no_import_cycles_between_modules():
    edges = _graph()
    found = []
    for group in _cycles(edges):
        ties = [f"{a} -> {b} (line {edges[a][b]})" for a in group for b in group if b in edges[a]]
        found.append(", ".join(group) + ": " + "; ".join(ties))
    assert not found, "import cycles:\n" + "\n".join(found)


def test_no_module_imports_another_modules_private_names():
    found = [f"{module} (line {line}) takes {name} from {source}"
             for module in MODULES for source, name, line in _imports(module)
             if name is not None and name.startswith("_")]
    assert not found, "private names imported across modules:\n" + "\n".join(found)


def test_private_helpers_do_not_share_names_across_modules():
    # Two `_trials` in two modules read as one helper in a search or a traceback; give each its own name.
    owners: dict[str, list[str]] = {}
    for module, path in MODULES.items():
        for node in ast.parse(path.read_text(encoding="utf-8")).body:
            if isinstance(node, (ast.FunctionDef, ast.ClassDef)) and node.name.startswith("_") \
                    and not node.name.startswith("__"):
                owners.setdefault(node.name, []).append(module)
    shared = {name: modules for name, modules in owners.items() if len(modules) > 1}
    assert not shared, f"private helpers defined in more than one module: {shared}"


def test_tests_share_helpers_through_one_module_never_conftest():
    found = []
    for path in sorted(TESTS.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = [node.module or ""] if isinstance(node, ast.ImportFrom) else \
                [a.name for a in node.names] if isinstance(node, ast.Import) else []
            for name in names:
                bare = (TESTS / f"{name}.py").exists()  # `from fake_results import ...`
                if name.split(".")[-1] == "conftest" or bare:
                    found.append(f"{path.relative_to(TESTS)} line {node.lineno}: import {name}")
    assert not found, "import shared test code as `from tests.helpers import ...`:\n" + "\n".join(found)
