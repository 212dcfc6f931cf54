"""The package's import graph keeps the architecture the README draws: data flows one way, no
module reaches back up, preprocessing knows nothing of the model, and there are no import cycles.
Read from the source (every import statement, lazy ones included; `if TYPE_CHECKING:` blocks and a
package's lazy re-exports in `__getattr__` excluded), so nothing is imported to check it."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = "imagebind_vectorizer"


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or \
        (isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _imports(tree: ast.AST, module: str, is_package: bool) -> set[str]:
    found: set[str] = set()
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, ast.If) and _is_type_checking(node):
            continue
        if isinstance(node, ast.FunctionDef) and node.name == "__getattr__":
            continue  # a package's lazy re-exports (PEP 562), e.g. `from imagebind_vectorizer import Embedder`
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = module.split(".") if is_package else module.split(".")[:-1]
                base = base[:len(base) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            found.add(target)
            found.update(f"{target}.{alias.name}" for alias in node.names)
        found |= _imports(node, module, is_package)
    return found


def import_graph() -> dict[str, set[str]]:
    """module -> the package modules it imports."""
    paths = {_module_name(p): p for p in (ROOT / PACKAGE).rglob("*.py")}
    graph = {}
    for name, path in paths.items():
        raw = _imports(ast.parse(path.read_text(), str(path)), name, path.name == "__init__.py")
        graph[name] = {target for target in raw if target in paths and target != name}
    return graph


GRAPH = import_graph()


def _under(module: str, folder: str) -> bool:
    prefix = f"{PACKAGE}.{folder}"
    return module == prefix or module.startswith(prefix + ".")


def test_the_graph_is_read() -> None:
    assert len(GRAPH) > 40
    assert f"{PACKAGE}.kinds" in GRAPH[f"{PACKAGE}.server.weaviate_http"]


# (folder, folders it must never import)
LAYERS = [
    ("preprocess", ("model", "engine", "server", "weaviate", "cli", "runtime", "embedder")),
    ("model", ("preprocess", "engine", "server", "weaviate", "cli", "runtime", "embedder", "settings")),
    ("engine", ("server", "weaviate", "cli")),
    ("server", ("weaviate", "cli")),
    ("weaviate", ("model", "preprocess", "engine", "server", "runtime", "embedder")),
    ("client", ("model", "preprocess", "engine", "runtime", "embedder", "weaviate", "cli")),  # may read proto_gen
    ("kinds", ("",)),  # a leaf: imports nothing of the package
]


@pytest.mark.parametrize(("folder", "forbidden"), LAYERS, ids=[layer[0] for layer in LAYERS])
def test_no_module_reaches_across_its_layer(folder: str, forbidden: tuple[str, ...]) -> None:
    wrong = sorted(f"{module} -> {target}" for module, targets in GRAPH.items() if _under(module, folder)
                   for target in targets
                   if any(target.startswith(PACKAGE) if f == "" else _under(target, f) for f in forbidden))
    assert not wrong, "\n".join(wrong)


def test_no_import_cycles() -> None:
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    cycles: list[list[str]] = []

    def visit(module: str, path: list[str]) -> None:
        state[module] = 1
        for target in sorted(GRAPH[module]):
            if state.get(target) == 1:
                cycles.append([*path[path.index(target):], target])
            elif target not in state:
                visit(target, [*path, target])
        state[module] = 2

    for module in sorted(GRAPH):
        if module not in state:
            visit(module, [module])
    assert not cycles, "\n".join(" -> ".join(cycle) for cycle in cycles)


#: modules kept only so that code written against earlier versions still imports (each re-exports a
#: newer home); our own code imports the new home
COMPATIBILITY_SHIMS = {f"{PACKAGE}.modality", f"{PACKAGE}.embedder"}


def test_our_own_code_imports_no_compatibility_shim() -> None:
    checked = [path for folder in (PACKAGE, "tests", "bench", "scripts") for path in (ROOT / folder).rglob("*.py")]
    wrong = []
    for path in checked:
        if path.name == "test_settings.py" and path.parent.name == "tests":
            continue  # checks that the old homes still work
        module = _module_name(path)
        used = _imports(ast.parse(path.read_text(), str(path)), module, path.name == "__init__.py")
        wrong += [f"{path.relative_to(ROOT)} imports {shim}" for shim in sorted(used & COMPATIBILITY_SHIMS)]
    assert not wrong, "\n".join(wrong)
