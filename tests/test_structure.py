"""The engine's structure: data flows one way (specs -> engine -> store), with no import cycle.

Every ``import`` statement in ``labbench/`` counts, also those inside functions: a lazy import
that closes a cycle is still a cycle a reader has to untangle.
"""

from __future__ import annotations

import ast
import functools
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1] / "labbench"

#: the layers, lowest first; a module may import its own layer and those below it
LAYERS = {
    "base": ["labbench.version", "labbench.reservoir", "labbench.metrics"],
    "store": ["labbench.store"],
    # the battery and the families are descriptions (names, metrics, papers): a suite file is
    # checked against them; running a cell (labbench.compare.cells) is the engine's
    "spec": ["labbench.spec", "labbench.tasks", "labbench.compare.battery", "labbench.compare.families"],
    "engine": ["labbench.engine", "labbench.compare"],
    "faces": ["labbench.monitor", "labbench.cli", "labbench"],   # the CLI, the monitor and the API facade
}
ORDER = list(LAYERS)


def _module_name(path: Path) -> str:
    parts = ["labbench", *path.relative_to(ROOT).with_suffix("").parts]
    return ".".join(parts[:-1]) if parts[-1] == "__init__" else ".".join(parts)


def _resolve(importer: str, is_package: bool, node: ast.ImportFrom) -> list[str]:
    if node.level == 0:
        base = node.module or ""
    else:
        package = importer.split(".") if is_package else importer.split(".")[:-1]
        package = package[: len(package) - (node.level - 1)]
        base = ".".join(package + ([node.module] if node.module else []))
    # `from . import x` may name a submodule: count both the package and the submodule
    return [base] + [f"{base}.{a.name}" for a in node.names]


@functools.cache
def import_graph() -> dict[str, set[str]]:
    """{module: labbench modules it imports}, over every file of ``labbench/``."""
    files = {_module_name(p): p for p in ROOT.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in files.items():
        targets: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                cands = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                cands = _resolve(name, path.name == "__init__.py", node)
            else:
                continue
            targets |= {c for c in cands if c in files and c != name}
        graph[name] = targets
    return graph


def _layer(module: str) -> str | None:
    best, best_len = None, -1
    for layer, prefixes in LAYERS.items():
        for p in prefixes:
            if (module == p or module.startswith(p + ".")) and len(p) > best_len:
                best, best_len = layer, len(p)
    return best


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_the_graph_sees_lazy_imports():
    graph = import_graph()
    # imported inside a function (labbench.engine.bench.run hands sweeps to the sweeper)
    assert "labbench.engine.sweeper" in graph["labbench.engine.bench"]
    assert "labbench.store" in graph["labbench.engine.bench"]


def test_no_import_cycle_in_labbench():
    graph = import_graph()
    # the package facade imports the engine lazily and nothing imports the facade, so a
    # cycle through it would show up here too
    assert _cycles(graph) == []


def test_the_finder_finds_a_cycle():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


@pytest.mark.parametrize("module", sorted(import_graph()))
def test_imports_only_flow_down_the_layers(module):
    layer = _layer(module)
    assert layer is not None, f"{module} belongs to no layer of tests/test_structure.py"
    upward = [t for t in import_graph()[module] if ORDER.index(_layer(t)) > ORDER.index(layer)]
    assert upward == [], f"{module} ({layer}) imports a higher layer: {upward}"


def test_no_private_name_is_imported_from_another_module():
    bad = []
    for path in ROOT.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.ImportFrom) and (node.module or "") != "__future__":
                bad += [f"{path.relative_to(ROOT.parent)}:{node.lineno} {a.name}" for a in node.names
                        if a.name.startswith("_") and not a.name.startswith("__")]
    assert bad == []


def test_checking_a_protocol_and_the_run_process_import_no_scikit_learn():
    """The run's own process (the CLI, validation, the bench, the evaluation) never needs the
    training stack: readout parameters are read from the readouts' sources and a trained
    pipeline crosses it packed (labbench.engine.trained). scikit-learn costs ~1 s to import."""
    import subprocess
    import sys

    code = ("import sys\n"
            "import labbench.cli, labbench.engine.bench, labbench.engine.evaluation, labbench.engine.trained\n"
            "from labbench.spec.protocol import load\n"
            "for p in ('mackey_glass', 'mackey_glass_online', 'digits_stdp', 'digits_som', 'narma10_compare'):\n"
            "    load(f'protocols/{p}.toml')\n"
            "print(sorted(m for m in sys.modules if m.split('.')[0] == 'sklearn'))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT.parent, timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]", f"scikit-learn imported: {out.stdout.strip()[:300]}"


def test_the_readout_parameters_read_from_source_are_the_classes_own():
    import inspect

    import labbench.readouts as r

    for kind in (*r.READOUT_KINDS, *r.MODULES):
        cls = r.readout_class(kind) if kind in r.READOUT_KINDS else r.module_class(kind)
        assert r.parameters(kind) == tuple(inspect.signature(cls).parameters), kind
