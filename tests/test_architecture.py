"""The package's structure: no import cycle, and each layer imports only the layers below it.

The import graph is read with ``ast`` from the source, imports inside
functions included (they run too), ``if TYPE_CHECKING:`` blocks excluded
(they never run).
"""

from __future__ import annotations

import ast
from pathlib import Path

import dataplane

ROOT = Path(dataplane.__file__).parent

#: Bottom to top; a module may import its own layer's modules and anything below.
LAYERS = [
    {"errors", "files", "clock", "wire", "scenario", "flowhash", "_native"},
    {"l2"},
    {"nodes"},
    {"control"},
    {"emulation"},
    {"replay", "testing"},
    {"tools"},
    {"cli", "__main__"},
]


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _imports(tree: ast.AST, module: str, is_package: bool):
    """Yield the dataplane modules ``module`` imports, walking into functions, skipping TYPE_CHECKING."""
    package = module if is_package else module.rpartition(".")[0]
    stack = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, ast.If) and _is_type_checking(node):
            stack.extend(node.orelse)
            continue
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("dataplane"):
                    yield alias.name
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[:len(base) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.startswith("dataplane"):
                # "from . import x" imports the module x; "from .m import Name" imports m.
                for alias in node.names:
                    yield target + "." + alias.name
        stack.extend(ast.iter_child_nodes(node))


def import_graph() -> dict[str, set[str]]:
    sources = {module_name(p): p for p in ROOT.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in sources.items():
        tree = ast.parse(path.read_text(), str(path))
        targets = set()
        for target in _imports(tree, name, path.name == "__init__.py"):
            while target not in sources and "." in target:
                target = target.rpartition(".")[0]  # "pkg.mod.Name" -> "pkg.mod"
            if target in sources and target != name:
                targets.add(target)
        graph[name] = targets
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    colour: dict[str, int] = {}
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        colour[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if colour.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            if nxt not in colour:
                found = visit(nxt)
                if found:
                    return found
        path.pop()
        colour[node] = 2
        return None

    for node in sorted(graph):
        if node not in colour:
            found = visit(node)
            if found:
                return found
    return None


def layer_of(module: str) -> int:
    top = module.split(".")[1] if "." in module else ""
    for level, names in enumerate(LAYERS):
        if top in names:
            return level
    return -1  # the package itself


def test_the_import_graph_is_read_from_the_source():
    graph = import_graph()
    assert "dataplane.nodes.context" in graph["dataplane.nodes.service_engine"]
    assert "dataplane.control.controller" in graph["dataplane.emulation.builder"]
    assert "dataplane.control.controller" not in graph["dataplane.control.autoscale"]  # TYPE_CHECKING only


def test_no_import_cycle_among_dataplane_modules():
    cycle = find_cycle(import_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_the_cycle_finder_finds_a_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_every_layer_imports_only_from_the_layers_below_it():
    upward = [f"{module} (layer {layer_of(module)}) imports {target} (layer {layer_of(target)})"
              for module, targets in sorted(import_graph().items()) for target in sorted(targets)
              if layer_of(target) > layer_of(module) >= 0]
    assert not upward, "\n".join(upward)


def test_every_package_is_in_a_layer():
    tops = {module.split(".")[1] for module in import_graph() if "." in module}
    assert tops <= set().union(*LAYERS), tops - set().union(*LAYERS)


def test_no_module_is_over_500_lines():
    long = {str(p.relative_to(ROOT)): n for p in ROOT.rglob("*.py") if (n := len(p.read_text().splitlines())) > 500}
    assert not long, long
