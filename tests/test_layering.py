"""The layering of ../shared/DESIGN.md, checked on the source: `curation` and `training`
are libraries that never import the service; the SDK imports no server package; inside
`service`, the API never imports the worker (nor the worker the API), the store imports
neither, and no module imports itself back through others (type-checking imports aside)."""

from __future__ import annotations

import ast
import graphlib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
ROOTS = {
    "curation": ROOT,
    "training": ROOT,
    "analysis": ROOT,
    "service": ROOT,
    "skillmix_client": ROOT / "clients/python",
}
PACKAGES = tuple(ROOTS)

# module prefix -> prefixes it must never import
FORBIDDEN = {
    "curation": ("training", "service", "skillmix_client"),
    "training": ("service", "skillmix_client"),
    # study statistics over plain numbers: no torch, no corpus, no service
    "analysis": ("curation", "training", "service", "skillmix_client"),
    "skillmix_client": ("service", "curation", "training"),
    "service.store": ("service.api", "service.worker", "service.cli"),
    "service.api": ("service.worker", "service.cli"),
    "service.worker": ("service.api", "service.cli"),
}
FOUNDATION_FORBIDDEN = ("service.api", "service.worker", "service.cli", "service.store")
"""What the service's shared modules (settings, db, models, celery_app, queues, ...) must
never import: they sit under the three roles."""
ENTRY_POINTS = ("service", "service.__main__", "service.script")
"""The `skillmix` script and `python -m service`: they start the command-line role."""


def module_name(path: Path, root: Path) -> str:
    parts = path.relative_to(root).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    return {
        module_name(path, root): path
        for pkg, root in ROOTS.items()
        for path in sorted((root / pkg).rglob("*.py"))
    }


def _type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def imports_of(path: Path, known: set[str]) -> set[str]:
    """Every project module `path` imports, at module level or inside functions, but not
    under `if TYPE_CHECKING:`."""
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _type_checking(node):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            # `from service import logs` imports the module service.logs
            found.update(f"{node.module}.{a.name}" for a in node.names)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(ast.parse(path.read_text(), str(path)))
    return {name for name in found if name in known or name.split(".")[0] in PACKAGES}


def _under(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


GRAPH = {name: imports_of(path, set(modules())) for name, path in modules().items()}


def test_the_tree_is_what_the_rules_talk_about() -> None:
    # A rule on a package that no longer exists would pass forever.
    for prefix in [*FORBIDDEN, "service.queues", "service.problems", "service.celery_app"]:
        assert any(_under(name, prefix) for name in GRAPH), prefix


@pytest.mark.parametrize("layer", sorted(FORBIDDEN))
def test_a_layer_never_imports_what_sits_above_it(layer: str) -> None:
    broken = sorted(
        f"{name} imports {target}"
        for name, targets in GRAPH.items()
        if _under(name, layer)
        for target in targets
        for banned in FORBIDDEN[layer]
        if _under(target, banned)
    )
    assert not broken, "\n".join(broken)


def test_the_shared_service_modules_import_no_role() -> None:
    roles = ("service.api", "service.worker", "service.cli", "service.store")
    foundation = [n for n in GRAPH if _under(n, "service") and not any(_under(n, r) for r in roles)]
    broken = sorted(
        f"{name} imports {target}"
        for name in foundation
        if name not in ENTRY_POINTS
        for target in GRAPH[name]
        if any(_under(target, banned) for banned in FOUNDATION_FORBIDDEN)
    )
    assert not broken, "\n".join(broken)


def test_no_import_circles() -> None:
    # Only edges between modules (a package's __init__ importing its own submodules is
    # how a package is made, not a circle).
    graph = {
        name: {t for t in targets if t in GRAPH and not _under(t, name) and t != name}
        for name, targets in GRAPH.items()
    }
    try:
        tuple(graphlib.TopologicalSorter(graph).static_order())
    except graphlib.CycleError as exc:
        pytest.fail(f"import circle: {' -> '.join(exc.args[1])}")


def test_the_checker_sees_a_violation(tmp_path: Path) -> None:
    # The walker finds imports inside functions and skips TYPE_CHECKING blocks.
    source = tmp_path / "m.py"
    source.write_text(
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n    from service.worker import runner\n"
        "def f():\n    from service.api import app\n"
    )
    found = imports_of(source, set(GRAPH))
    assert "service.api.app" in found
    assert not any(_under(name, "service.worker") for name in found)
