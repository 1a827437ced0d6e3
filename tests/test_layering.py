"""Layering you can see: no import cycle among ``src/zeroground`` modules, and imports point
from later pipeline stages to earlier ones only (built from the source with ``ast``, so an
import inside a function or under ``TYPE_CHECKING`` counts too)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "zeroground"

# Pipeline order; a module may import from its own rank or an earlier one. Rank 0 are the
# base modules every stage may use (errors, atomic files, configs, span utilities).
RANKS: dict[str, int] = {
    "errors": 0, "io": 0, "config": 0, "spans": 0,
    "video": 1, "features": 2, "data": 3, "pseudo": 4, "model": 5,
    "train": 6, "eval": 6,
    "ground": 7, "library": 7, "serve": 7,
    "demo": 8, "testing": 8,
    "cli": 9, "__main__": 9,
}


def _module_name(path: Path) -> str:
    parts = ("zeroground",) + path.relative_to(SRC).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph() -> dict[str, set[str]]:
    """module -> the zeroground modules it imports (``from a.b import c`` counts a.b, and a.b.c
    when that is a module)."""
    modules = {_module_name(p): p for p in SRC.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        deps: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                deps.add(node.module)
                deps.update(f"{node.module}.{a.name}" for a in node.names)
            elif isinstance(node, ast.Import):
                deps.update(a.name for a in node.names)
        graph[name] = {d for d in deps if d in modules and d != name}
    return graph


def _stage(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else None  # None: the package itself (a facade)


def find_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    cycles, state = [], {}

    def visit(node: str, stack: list[str]) -> None:
        state[node] = 1
        stack.append(node)
        for dep in sorted(graph[node]):
            if state.get(dep) == 1:
                cycles.append(stack[stack.index(dep):] + [dep])
            elif dep not in state:
                visit(dep, stack)
        stack.pop()
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node, [])
    return cycles


def test_every_package_has_a_rank():
    unranked = sorted({s for m in import_graph() if (s := _stage(m)) is not None and s not in RANKS})
    assert not unranked, f"add {unranked} to RANKS in tests/test_layering.py (its place in the pipeline)"


def test_no_import_cycles():
    cycles = find_cycles(import_graph())
    assert not cycles, "import cycles:\n" + "\n".join(" -> ".join(c) for c in cycles)


def test_imports_point_to_earlier_stages_only():
    upward = []
    for module, deps in import_graph().items():
        stage = _stage(module)
        if stage is None or stage not in RANKS:
            continue
        for dep in deps:
            dep_stage = _stage(dep)
            if dep_stage in RANKS and RANKS[dep_stage] > RANKS[stage]:
                upward.append(f"{module} -> {dep}")
    assert not upward, "imports from an earlier stage to a later one:\n" + "\n".join(sorted(upward))


@pytest.mark.parametrize("graph, cycle", [
    ({"a": {"b"}, "b": {"a"}}, True),
    ({"a": {"b"}, "b": {"c"}, "c": {"a"}}, True),
    ({"a": {"b", "c"}, "b": {"c"}, "c": set()}, False),
])
def test_the_cycle_finder_finds_cycles(graph, cycle):
    assert bool(find_cycles(graph)) == cycle
