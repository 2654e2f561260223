"""The layers of the code base, checked on the source: every import points down.

    veille_cli/      the ``veille`` command: the composition root, may import everything
    services/        one package per service: may import ``veille``, never the command line
    shared/veille/   the shared library: imports neither ``services`` nor the command line

Every ``import`` and ``from ... import`` in every module counts, wherever it is: at module level,
inside a function, under ``if TYPE_CHECKING:`` (a lazy import is still a dependency). Inside
``veille.sentiment``, the modules import one another without a cycle.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
LIBRARY = REPO / "shared" / "veille"
SERVICES = REPO / "services"
CLI = REPO / "veille_cli"
CLI_PACKAGES = ("veille_cli", "veille.cli")  # the command line, and its old place inside the library


def module_name(path: Path) -> str:
    """``shared/veille/sentiment/lexicon.py`` -> ``veille.sentiment.lexicon``."""
    root = REPO / "shared" if path.is_relative_to(LIBRARY) else REPO
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports(path: Path) -> Iterator[tuple[int, str]]:
    """Yield (line, absolute module name) of every import in ``path``, at any depth of the tree."""
    return imports_in(path.read_text(encoding="utf-8"), module_name(path), is_package=path.name == "__init__.py")


def imports_in(source: str, module: str, *, is_package: bool = False) -> Iterator[tuple[int, str]]:
    """Yield (line, absolute module name) of every import in ``source``, the text of ``module``."""
    package = module if is_package else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: resolve against the importing module's package
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                target = ".".join([*base, node.module] if node.module else base)
            else:
                target = node.module or ""
            yield node.lineno, target
            for alias in node.names:  # `from veille import cli` may name a submodule
                yield node.lineno, f"{target}.{alias.name}"


def violations(root: Path, forbidden: tuple[str, ...]) -> list[str]:
    found = []
    for path in sorted(root.rglob("*.py")):
        for line, module in imports(path):
            if any(module == name or module.startswith(name + ".") for name in forbidden):
                found.append(f"{path.relative_to(REPO)}:{line} imports {module}")
    return found


def test_the_imports_parser_sees_every_kind_of_import() -> None:
    """The checker itself: function-level, TYPE_CHECKING, relative and `from x import y` imports count."""
    source = (
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n    from services.notifier import silences\n"
        "def f():\n    import veille_cli.run_cmd\n"
        "from . import lexicon\n"
        "from .. import bus\n"
    )
    found = {module for _, module in imports_in(source, "veille.sentiment.probe")}
    assert {"services.notifier", "veille_cli.run_cmd", "veille.sentiment.lexicon", "veille.bus"} <= found


def test_the_shared_library_imports_neither_the_services_nor_the_command_line() -> None:
    assert violations(LIBRARY, ("services", *CLI_PACKAGES)) == []


def test_the_services_do_not_import_the_command_line() -> None:
    assert violations(SERVICES, CLI_PACKAGES) == []


def test_the_command_line_is_a_top_level_package_and_the_library_has_none() -> None:
    """``veille.cli`` is gone: an old import fails loudly instead of finding a stale copy."""
    assert (CLI / "__init__.py").is_file()
    assert not (LIBRARY / "cli").exists()
    assert not (LIBRARY / "__main__.py").exists(), "python -m veille would import the command line"


def sentiment_graph() -> dict[str, set[str]]:
    """veille.sentiment's modules -> the veille.sentiment modules each imports (package itself excluded)."""
    package = LIBRARY / "sentiment"
    modules = {module_name(path): path for path in package.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        targets = {module for _, module in imports(path) if module in modules and module != name}
        graph[name] = targets - {"veille.sentiment"}  # the package's __init__ only re-exports
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """A cycle in ``graph`` as a list of nodes (first == last), or None."""
    state: dict[str, int] = {}  # 1: on the stack, 2: done
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for target in sorted(graph.get(node, ())):
            if state.get(target) == 1:
                return [*stack[stack.index(target) :], target]
            if target not in state and (cycle := visit(target)):
                return cycle
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_the_cycle_finder_finds_a_cycle() -> None:
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": set()}) is None


def test_veille_sentiment_has_no_import_cycle() -> None:
    graph = sentiment_graph()
    assert {"veille.sentiment.lexicon", "veille.sentiment.calibration"} <= set(graph)
    cycle = find_cycle(graph)
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])
