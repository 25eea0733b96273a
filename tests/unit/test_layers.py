"""The architecture, checked: each package imports only from the layers below it (docs/architecture.md).

Every import counts, including those inside functions (kept there to make start-up cheap, not to hide a
dependency). Packages in one layer do not import each other, so no two packages can import each other in a cycle.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import git_theta

#: From the top down. A module directly under git_theta/ is a package of its own name.
LAYERS: list[set[str]] = [
    {"__main__", "__init__"},
    {"cli", "api"},
    {"maintenance", "merges", "diffs"},
    {"filters"},
    {"legacy"},
    {"representations"},
    {"session"},
    {"updates"},
    {"storage", "checkpoints"},
    {"git"},
    {"metadata"},
    {"dtypes", "plugins", "pipeline"},
    {"errors"},
]
ROOT = Path(git_theta.__file__).parent


def _package(module: str) -> str:
    """The package (layer member) of a dotted module name under git_theta."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def _module_name(path: Path) -> str:
    return ".".join(path.relative_to(ROOT.parent).with_suffix("").parts)


def _imports(text: str, module: str, is_package: bool = False) -> set[str]:
    """Every git_theta module that the source ``text`` of ``module`` imports, as absolute dotted names."""
    package = module if is_package else module.rsplit(".", 1)[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(text)):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = package.rsplit(".", node.level - 1)[0] if node.level else ""
            name = ".".join(part for part in (base, node.module) if part)
            # ``from git_theta.legacy import metadata`` imports the module git_theta.legacy.metadata
            modules = [f"{name}.{alias.name}" for alias in node.names if _is_module(f"{name}.{alias.name}")]
            found.update(modules or [name])
    return {name for name in found if name.startswith("git_theta.")}


def _is_module(dotted: str) -> bool:
    path = ROOT.parent.joinpath(*dotted.split("."))
    return path.with_suffix(".py").exists() or (path / "__init__.py").exists()


def _edges() -> set[tuple[str, str, str]]:
    """``(importing package, imported package, importing file)`` for every import between two packages."""
    edges = set()
    for path in sorted(ROOT.rglob("*.py")):
        module = _module_name(path)
        source = "__init__" if path == ROOT / "__init__.py" else _package(module)
        for target in _imports(path.read_text(), module, path.name == "__init__.py"):
            if _package(target) != source:
                edges.add((source, _package(target), str(path.relative_to(ROOT.parent))))
    return edges


def _layer(package: str) -> int:
    for depth, members in enumerate(LAYERS):
        if package in members:
            return depth
    raise AssertionError(f"package {package!r} is in no layer: add it to LAYERS (and docs/architecture.md)")


def test_every_package_has_a_layer() -> None:
    packages = {
        path.stem if path.is_file() else path.name
        for path in ROOT.iterdir()
        if path.suffix == ".py" or (path / "__init__.py").exists()
    }
    for package in packages:
        _layer(package)


def test_imports_only_go_down() -> None:
    upward = sorted(
        f"{where}: {source} imports {target}" for source, target, where in _edges() if _layer(target) <= _layer(source)
    )
    assert not upward, "imports that go up a layer or sideways:\n" + "\n".join(upward)


def test_no_import_cycles_between_packages() -> None:
    graph: dict[str, set[str]] = {}
    for source, target, _ in _edges():
        graph.setdefault(source, set()).add(target)
    assert not _cycles(graph), f"packages in an import cycle: {_cycles(graph)}"


def test_no_import_cycles_between_modules() -> None:
    graph = {}
    for path in ROOT.rglob("*.py"):
        module = _module_name(path)
        graph[module.removesuffix(".__init__")] = _imports(path.read_text(), module, path.name == "__init__.py")
    assert not _cycles(graph), f"modules in an import cycle: {_cycles(graph)}"


def _cycles(graph: dict[str, set[str]]) -> list[str]:
    """The nodes of ``graph`` from which a path leads back to themselves."""

    def reachable(start: str) -> set[str]:
        seen, todo = set(), list(graph.get(start, ()))
        while todo:
            node = todo.pop()
            if node not in seen:
                seen.add(node)
                todo.extend(graph.get(node, ()))
        return seen

    return sorted(node for node in graph if node in reachable(node))


@pytest.mark.parametrize(
    "line", ["from git_theta.cli import main", "import git_theta.filters.clean", "from ..merges import base"]
)
def test_an_upward_import_is_seen(line: str) -> None:
    """The check itself: an import of a higher layer, written in the storage layer, is found and placed above it."""
    imported = _imports(f"def later():\n    {line}\n", "git_theta.storage.objects")
    assert imported and all(_layer(_package(name)) < _layer("storage") for name in imported)
