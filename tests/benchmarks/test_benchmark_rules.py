"""Benchmarks measure the library's own rules: they import them instead of restating them (issue 11, bug c)."""

from __future__ import annotations

import ast
import importlib.util
import sys
from pathlib import Path

import pytest

from mind_core.kb import index

BENCH_DIR = Path(__file__).resolve().parents[2] / "benchmarks"


def _load(name: str):
    spec = importlib.util.spec_from_file_location(f"bench_{name}", BENCH_DIR / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod  # dataclasses look their module up there
    try:
        spec.loader.exec_module(mod)
    finally:
        sys.modules.pop(spec.name, None)
    return mod


def test_index_bench_uses_the_library_ivf_rule():
    bench = _load("index_bench")
    assert bench.ivf_nlist is index.ivf_nlist
    # the rule itself: 2*sqrt(N) to a power of two, >= 16, <= N/39
    assert index.ivf_nlist(1_260_287) == 2048
    assert index.ivf_nlist(200) == 16
    assert index.ivf_nlist(100_000) == 512


@pytest.mark.parametrize("path", sorted(BENCH_DIR.glob("*.py")), ids=lambda p: p.name)
def test_no_benchmark_redefines_a_library_function(path):
    """A benchmark that defines a function with the name of a public mind_core.kb.index function is a copy
    that can drift (it did: 4*sqrt(N) against the library's 2*sqrt(N))."""
    public = {
        n
        for n, obj in vars(index).items()
        if not n.startswith("_") and callable(obj) and getattr(obj, "__module__", "") == index.__name__
    }
    tree = ast.parse(path.read_text(encoding="utf-8"))
    defined = {n.name for n in ast.walk(tree) if isinstance(n, ast.FunctionDef)}
    assert not (defined & public), f"{path.name} redefines {sorted(defined & public)}: import them"


@pytest.mark.parametrize("path", sorted(BENCH_DIR.glob("*.py")), ids=lambda p: p.name)
def test_every_project_import_of_a_benchmark_resolves(path):
    """Benchmarks run rarely, so a moved function breaks them silently: every ``from mind_core... import name``
    (lazy ones inside functions included) must name a module or an attribute that exists."""
    import importlib

    missing = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] in ("mind_core", "dashboard"):
            mod = importlib.import_module(node.module)
            for alias in node.names:
                if not hasattr(mod, alias.name):
                    try:
                        importlib.import_module(f"{node.module}.{alias.name}")
                    except ImportError:
                        missing.append(f"{node.module}.{alias.name} (line {node.lineno})")
    assert not missing, missing
