"""The package reads as its layers: each module imports only from its own layer and the ones below,
no circle of imports, and each layer keeps to what it is for (no JAX in config, no pandas in core,
Altair only in charts). Imports inside functions count: they load the same module, only later."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "grokjax"
LAYERS = ["version", "config", "core", "store", "summary", "charts", "engine"]  # bottom to top
TOP = {"grokjax", "grokjax.cli", "grokjax.__main__"}  # the public API and the command line, above every layer
FORBIDDEN = {"config": {"jax", "jaxlib", "flax", "optax", "altair"}, "core": {"pandas", "pyarrow", "altair"},
             "store": {"altair"}, "summary": {"altair"}, "engine": {"altair", "vl_convert"}}


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def imports(name: str) -> set[str]:
    """Every module `name` imports, inside functions too; `from pkg import mod` counts as mod."""
    found = set()
    for node in ast.walk(ast.parse(MODULES[name].read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
            found |= {f"{node.module}.{a.name}" for a in node.names if f"{node.module}.{a.name}" in MODULES}
    return found


def layer(name: str) -> int:
    if name in TOP:
        return len(LAYERS)
    first = name.split(".")[1]
    assert first in LAYERS, f"{name}: not in a layer ({', '.join(LAYERS)}) nor the top (cli, __init__)"
    return LAYERS.index(first)


def internal(name: str) -> set[str]:
    return {m for m in imports(name) if m in MODULES and m != "grokjax" and not name.startswith(m + ".")
            and not (name.rsplit(".", 1)[0] == m)}


@pytest.mark.parametrize("name", sorted(MODULES))
def test_imports_only_from_below(name: str) -> None:
    upward = sorted(m for m in internal(name) if layer(m) > layer(name))
    assert not upward, f"{name} (layer {LAYERS[layer(name)] if layer(name) < len(LAYERS) else 'top'}) imports {upward} from above"


@pytest.mark.parametrize("name", sorted(n for n in MODULES if n not in TOP))
def test_layer_keeps_to_its_kind(name: str) -> None:
    kind = LAYERS[layer(name)]
    used = {m.split(".")[0] for m in imports(name)} & FORBIDDEN.get(kind, set())
    assert not used, f"{name}: the {kind} layer does not import {sorted(used)}"


def test_no_circle() -> None:
    graph = {name: internal(name) for name in MODULES}
    state: dict[str, int] = {}  # 1 on the path, 2 done

    def visit(name: str, path: list[str]) -> None:
        state[name] = 1
        for nxt in sorted(graph[name]):
            assert state.get(nxt) != 1, f"import circle: {' -> '.join([*path, name, nxt])}"
            if nxt not in state:
                visit(nxt, [*path, name])
        state[name] = 2

    for name in sorted(graph):
        if name not in state:
            visit(name, [])


def test_benchmarks_stay_outside() -> None:
    assert not any(m.split(".")[0] == "benchmarks" for name in MODULES for m in imports(name))
