"""The layout rules of issue 24, read from the code itself: a newcomer finds small modules in small folders.

No folder under `consumer/`, `connectors/` or `simulation/` holds more than 15 modules directly
(`consumer/commands/`, one module per command, is exempt); no module there is over 350 lines; no import
circle among their modules, counting imports made only for type checking and imports inside functions.
And ruff's C90 keeps every function under complexity 10.
"""

from __future__ import annotations

import ast
import tomllib
from collections.abc import Collection, Iterator, Mapping
from pathlib import Path
from typing import Final

ROOT: Final = Path(__file__).resolve().parents[2]
PACKAGES: Final = ("consumer", "connectors", "simulation")
MAX_MODULES_PER_FOLDER: Final = 15
MAX_LINES: Final = 350
MAX_COMPLEXITY: Final = 10
#: One module per command: the folder is the CLI's table of contents.
FOLDERS_EXEMPT: Final = frozenset({"consumer/commands"})


def _modules() -> Iterator[Path]:
    for package in PACKAGES:
        yield from sorted((ROOT / package).rglob("*.py"))


def _relative(path: Path) -> str:
    return path.relative_to(ROOT).as_posix()


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


# --- the rules, as plain functions of the tree -------------------------------------------------------


def crowded_folders() -> dict[str, int]:
    """Folders holding more than `MAX_MODULES_PER_FOLDER` modules directly, with their count."""
    counts: dict[str, int] = {}
    for path in _modules():
        folder = _relative(path.parent)
        counts[folder] = counts.get(folder, 0) + 1
    return {
        folder: n
        for folder, n in counts.items()
        if n > MAX_MODULES_PER_FOLDER and folder not in FOLDERS_EXEMPT
    }


def long_modules() -> dict[str, int]:
    """Modules over `MAX_LINES` lines, with their length."""
    lengths = {_relative(path): len(path.read_text(encoding="utf-8").splitlines()) for path in _modules()}
    return {path: n for path, n in lengths.items() if n > MAX_LINES}


def import_graph() -> dict[str, set[str]]:
    """Each module of the packages and the modules of the packages it imports, wherever the import
    stands (module level, under `if TYPE_CHECKING:`, inside a function). `from pkg import name` is an
    import of `pkg.name` when that is a module, else of `pkg`."""
    paths = {_module_name(path): path for path in _modules()}
    graph: dict[str, set[str]] = {}
    for name, path in paths.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        is_package = path.name == "__init__.py"
        imported = _imported(tree, name, is_package, paths.keys())
        graph[name] = {target for target in imported if target in paths and target != name}
    return graph


def _imported(tree: ast.AST, module: str, is_package: bool, modules: Collection[str]) -> Iterator[str]:
    """The modules `module` imports: `import a.b` names `a.b`; `from a import b` names `a.b` when that
    is one of `modules`, else `a` (b is a name defined there)."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = _absolute(node, module, is_package)
            for alias in node.names:
                name = f"{base}.{alias.name}"
                yield name if name in modules else base


def _absolute(node: ast.ImportFrom, module: str, is_package: bool) -> str:
    """The module a `from ... import` names, relative imports resolved against `module`."""
    if not node.level:
        return node.module or ""
    package = module.split(".") if is_package else module.split(".")[:-1]
    anchor = package[: len(package) - (node.level - 1)]
    return ".".join([*anchor, *([node.module] if node.module else [])])


def import_circles(graph: Mapping[str, set[str]]) -> set[frozenset[str]]:
    """The modules that import each other, directly or through others: each set of more than one module
    that all reach one another. Imports of modules outside `graph` are left out."""
    reach = {module: _reachable(graph, module) for module in graph}
    circles: set[frozenset[str]] = set()
    for module, reached in reach.items():
        together = frozenset({module, *(other for other in reached if module in reach.get(other, ()))})
        if len(together) > 1:
            circles.add(together)
    return circles


def _reachable(graph: Mapping[str, set[str]], start: str) -> set[str]:
    seen: set[str] = set()
    todo = [start]
    while todo:
        for target in graph.get(todo.pop(), ()):
            if target not in seen:
                seen.add(target)
                todo.append(target)
    return seen


# --- the guarantees --------------------------------------------------------------------------------


def test_no_folder_holds_more_than_15_modules_directly() -> None:
    assert crowded_folders() == {}


def test_no_module_is_over_350_lines() -> None:
    assert long_modules() == {}, f"split these by concern (at most {MAX_LINES} lines each)"


def test_no_import_circle() -> None:
    circles = import_circles(import_graph())
    assert not circles, f"modules that import each other (type-only, function-level count too): {circles}"


def test_ruff_keeps_every_function_under_complexity_10() -> None:
    lint = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["ruff"]["lint"]
    assert "C90" in lint["select"]
    assert lint["mccabe"]["max-complexity"] == MAX_COMPLEXITY


# --- the checks can fail -----------------------------------------------------------------------------


def test_a_circle_through_a_type_only_or_function_level_import_is_found() -> None:
    modules = {"consumer", "consumer.a", "consumer.b", "consumer.c"}
    a = ast.parse("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from consumer.b import B\n")
    b = ast.parse("def f():\n    from consumer import a\n")
    graph = {
        "consumer.a": set(_imported(a, "consumer.a", False, modules)),
        "consumer.b": set(_imported(b, "consumer.b", False, modules)),
        "consumer.c": {"consumer.a"},
        "consumer": set(),
    }
    assert graph["consumer.b"] == {"consumer.a"}  # a module, not the package's __init__
    assert import_circles(graph) == {frozenset({"consumer.a", "consumer.b"})}


def test_relative_imports_resolve_against_the_module_and_its_package() -> None:
    modules = {"consumer.pipeline.codec.sibling", "consumer.model.events"}
    tree = ast.parse("from . import sibling\nfrom ..model import events\n")
    found = set(_imported(tree, "consumer.pipeline.codec.decode", False, modules))
    assert found == {"consumer.pipeline.codec.sibling", "consumer.pipeline.model"}
    found = set(
        _imported(
            ast.parse("from ...model import events\n"), "consumer.pipeline.codec.decode", False, modules
        )
    )
    assert found == {"consumer.model.events"}
    inside = set(_imported(ast.parse("from .rows import x\n"), "consumer.pipeline.codec", True, modules))
    assert inside == {"consumer.pipeline.codec.rows"}


def test_a_longer_circle_is_one_set() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a", "d"}, "d": set()}
    assert import_circles(graph) == {frozenset({"a", "b", "c"})}
