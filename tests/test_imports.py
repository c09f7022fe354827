"""The shape of the code: no import cycles among the project's modules, streamlit only in ``dashboard/``, the
layers in flow order, and every environment variable documented in the README.

The import graph is read from the source (``ast``), lazy imports inside functions included, so a cycle that only
bites when some function runs is found too. An edge goes to the module an import names (``from pkg import mod``
names ``pkg.mod`` when that is a module); the implicit import of a parent package is not an edge, so a package's
``__init__`` may re-export its submodules, but a submodule that imports from its own package's ``__init__`` closes
a cycle and is reported."""

from __future__ import annotations

import ast
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("mind_core", "dashboard")


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def project_modules() -> dict[str, Path]:
    mods = {}
    for pkg in PACKAGES:
        for path in sorted((ROOT / pkg).rglob("*.py")):
            mods[_module_name(path)] = path
    mods["app"] = ROOT / "app.py"
    return mods


def _imports(path: Path, name: str, is_pkg: bool) -> set[str]:
    """Every module named by an import statement anywhere in the file (absolute, as written)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = name.split(".") if is_pkg else name.split(".")[:-1]
                base = base[: len(base) - (node.level - 1)]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            found.add(mod)
            found.update(f"{mod}.{a.name}" for a in node.names)
    return found


def import_graph() -> dict[str, set[str]]:
    mods = project_modules()
    graph: dict[str, set[str]] = {}
    for name, path in mods.items():
        targets = set()
        for imp in _imports(path, name, path.name == "__init__.py"):
            if imp in mods and imp != name:
                targets.add(imp)
        # "from pkg import mod" adds both pkg and pkg.mod: keep only the submodule when it is one
        graph[name] = {t for t in targets if not any(o.startswith(t + ".") and o in targets for o in targets)}
    return graph


def find_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []
    counter = [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    sys.setrecursionlimit(10_000)
    for v in graph:
        if v not in index:
            visit(v)
    return out


def test_the_walker_finds_a_planted_cycle():
    assert find_cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert find_cycles({"a": {"b"}, "b": set()}) == []


def test_the_walker_reads_lazy_and_relative_imports(tmp_path):
    src = tmp_path / "m.py"
    src.write_text("def f():\n    from mind_core.kb import store\n    from . import sib\n", encoding="utf-8")
    assert {"mind_core.kb", "mind_core.kb.store", "mind_core.query.sib"} <= _imports(src, "mind_core.query.m", False)


def test_no_import_cycles():
    cycles = find_cycles(import_graph())
    assert not cycles, "import cycles:\n" + "\n".join(" <-> ".join(c) for c in cycles)


def test_only_the_dashboard_imports_streamlit():
    offenders = [
        name
        for name, path in project_modules().items()
        if name.startswith("mind_core")
        and any(i == "streamlit" or i.startswith("streamlit.") for i in _imports(path, name, False))
    ]
    assert not offenders, f"mind_core modules importing streamlit: {offenders}"


def test_mind_core_never_imports_the_dashboard():
    graph = import_graph()
    bad = {m: sorted(t for t in ts if t.startswith("dashboard") or t == "app") for m, ts in graph.items()}
    assert not {m: ts for m, ts in bad.items() if ts and m.startswith("mind_core")}


#: The flow, lowest layer first. A module may import its own layer and the layers before it, never a later one
#: (the CLI and the dashboard sit on top of everything).
LAYERS = (
    ("mind_core", "mind_core.config", "mind_core.schema", "mind_core.io", "mind_core.images", "mind_core.relations"),
    ("mind_core.data",),
    ("mind_core.lvlm",),
    ("mind_core.distill",),
    ("mind_core.scores",),
    ("mind_core.kb",),
    ("mind_core.query",),
    ("mind_core.review",),
    ("mind_core.eval",),
    ("mind_core.cli", "mind_core.__main__"),
    ("dashboard", "app"),
)


def _layer(module: str) -> int:
    best, depth = None, -1
    for i, prefixes in enumerate(LAYERS):
        for p in prefixes:
            if (module == p or module.startswith(p + ".")) and len(p) > depth and (p != "mind_core" or module == p):
                best, depth = i, len(p)
    assert best is not None, f"{module} is in no layer: add it to LAYERS"
    return best


def test_layers_follow_the_flow():
    graph = import_graph()
    upward = sorted(
        f"{m} (layer {_layer(m)}) imports {t} (layer {_layer(t)})"
        for m, ts in graph.items()
        for t in ts
        if _layer(t) > _layer(m)
    )
    assert not upward, "imports against the flow data -> distill -> kb -> query -> dashboard:\n" + "\n".join(upward)


@pytest.mark.timeout(600)
def test_importing_every_mind_core_module_leaves_streamlit_out():
    mods = sorted(m for m in project_modules() if m.startswith("mind_core") and m != "mind_core.__main__")
    code = (
        "import importlib, json, sys\n"
        f"for m in {mods!r}:\n"
        "    importlib.import_module(m)\n"
        "print(json.dumps({'n': len(sys.modules), 'streamlit': sorted(k for k in sys.modules "
        "if k == 'streamlit' or k.startswith('streamlit.'))}))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=540, cwd=ROOT)
    assert out.returncode == 0, out.stderr[-3000:]
    got = json.loads(out.stdout.strip().splitlines()[-1])
    assert got["streamlit"] == [] and got["n"] > 100


def test_the_environment_is_read_only_in_config():
    offenders = []
    for name, path in project_modules().items():
        if name == "mind_core.config":
            continue
        text = path.read_text(encoding="utf-8")
        if re.search(r"os\.environ|os\.getenv|getenv\(", text):
            offenders.append(name)
    assert not offenders, f"read settings through mind_core.config, not the environment: {offenders}"
