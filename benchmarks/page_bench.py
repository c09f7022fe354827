"""Measure the dashboard: first render of each page and search latency, on one or more built KBs.

    python benchmarks/page_bench.py --kb indexes/sample --kb scale/kb

* first render: each page runs in a **fresh Python process** through ``streamlit.testing.v1.AppTest`` (imports,
  KB open, sidebar, page computation; derived caches under ``.cache/`` — Arrow copy, keyword and product
  indexes, map — already written by an earlier open, as on any second start of the app). The page's first
  ``AppTest.run()`` is timed (wall and the process's CPU time, which is less sensitive to a busy machine), then
  a rerun of the same session (Streamlit caches warm). Products uses a deep link
  (``?asin=``) to a product with partners; Search renders with an empty query.
* search latency: median / p95 over the query list (after one warm-up query, so model loading is excluded and
  reported separately), per mode, without and with facets (relation + verdict [+ P(yes) range when the KB has
  scores]), ``k = 200``.
* ``--cold N``: the dashboard's first semantic search in a fresh process, N times in each of three states: cold
  (every file that search reads - the KB folder, its Arrow copies, the ONNX export - dropped from the page cache
  with ``posix_fadvise(DONTNEED)``; what stays resident is counted with ``mincore``), cold with the read-ahead of
  :func:`mind_core.io.will_need` turned off (pages faulted in one by one, as before), and warm. KB open, encoder
  load, query encoding, index open, IVF probe, row fetch and the Search page's results table (both products'
  titles) are timed one by one.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

PAGES = (
    "dashboard/views/home.py",
    "dashboard/views/products.py",
    "dashboard/views/search.py",
    "dashboard/views/categories.py",
)
QUERIES = [
    "keep warm in winter",
    "comfortable shoes for running",
    "usb charging cable",
    "gift for a child",
    "protect the phone screen",
    "matching jewelry set",
    "outdoor camping trip",
    "leather wallet",
    "costume party",
    "wireless headphones music",
]

_CHILD = r"""
import json, os, resource, sys, time
from streamlit.testing.v1 import AppTest
from streamlit.components.v2.component_manager import BidiComponentManager
page, asin = sys.argv[1], sys.argv[2]
at = AppTest.from_file(os.path.join(sys.argv[3], "app.py"), default_timeout=300)
# AppTest scans every installed package for components on its first run (~1.5 s here); a server does that once
# at startup, not per page, so do it before the clock starts
at._bidi_component_manager = BidiComponentManager()
at._bidi_component_manager.discover_and_register_components(start_file_watching=False)
at.switch_page(page)
if page.endswith("products.py"):
    at.query_params["asin"] = asin
cpu = lambda: sum(getattr(resource.getrusage(resource.RUSAGE_SELF), f) for f in ("ru_utime", "ru_stime"))
t, c = time.perf_counter(), cpu(); at.run(); first, first_cpu = time.perf_counter() - t, cpu() - c
errors = [str(e.value)[:200] for e in at.exception] + [str(e.value)[:200] for e in at.error]
t = time.perf_counter(); at.run(); rerun = time.perf_counter() - t
print(json.dumps({"first": first, "first_cpu": first_cpu, "rerun": rerun, "errors": errors}))
"""


def busiest_product(kb) -> str:
    from mind_core.query.products import product_index

    idx = product_index(kb)
    counts = idx.offsets[1:] - idx.offsets[:-1]
    return str(idx.asins[int(counts.argmax())])


def page_times(kb_dir: str, asin: str) -> dict[str, dict]:
    out = {}
    env = {**os.environ, "MIND_KB": str(kb_dir), "PYTHONPATH": str(REPO)}
    for page in PAGES:
        res = subprocess.run(
            [sys.executable, "-c", _CHILD, page, asin, str(REPO)],
            env=env,
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=900,
        )
        line = [ln for ln in res.stdout.splitlines() if ln.startswith("{")]
        out[page] = (
            json.loads(line[-1])
            if line
            else {
                "first": float("nan"),
                "first_cpu": float("nan"),
                "rerun": float("nan"),
                "errors": [res.stderr[-300:]],
            }
        )
    return out


def search_times(kb) -> tuple[float, dict[str, dict]]:
    from mind_core import query
    from mind_core.query.facets import Facets
    from mind_core.query.keyword import keyword_search
    from mind_core.query.semantic import semantic_search

    t = time.perf_counter()
    semantic_search(kb, "warm up the embedder")
    keyword_search(kb, "warm")
    warmup = time.perf_counter() - t
    has_p = bool(kb.intentions["p_yes"].notna().any())
    facet_sets = {
        "no facets": None,
        "relation+verdict" + ("+P(yes)" if has_p else ""): Facets(
            relations=("usedFor", "isA", "capableOf"), verdicts=("yes",), p_yes_range=(0.5, 1.0) if has_p else None
        ),
    }
    out = {}
    for mode in query.MODES:
        for fname, facets in facet_sets.items():
            times, hits = [], []
            for q in QUERIES:
                t = time.perf_counter()
                res = query.search(kb, q, mode=mode, k=200, facets=facets)
                times.append(time.perf_counter() - t)
                hits.append(res.total)
            times.sort()
            out[f"{mode} · {fname}"] = {
                "median_ms": 1000 * statistics.median(times),
                "p95_ms": 1000 * times[min(len(times) - 1, int(0.95 * len(times)))],
                "mean_hits": statistics.mean(hits),
            }
    return warmup, out


_COLD_CHILD = r"""
import json, sys, time
t0 = time.perf_counter()
if sys.argv[3] == "no-read-ahead":  # what every search did before: fault the pages in one by one
    import mind_core.io
    mind_core.io.will_need = lambda *args: 0
from mind_core.kb.store import KnowledgeBase
from mind_core.query.results import hits_frame
from mind_core.query.semantic import encode_query, nearest_rows, one_thread
phases = {"imports": time.perf_counter() - t0}
def step(name, fn):
    t = time.perf_counter(); out = fn(); phases[name] = time.perf_counter() - t; return out
kb = step("KB open", lambda: KnowledgeBase(sys.argv[1]))
step("encoder load", lambda: kb.encoder)
q = step("query encoding", lambda: encode_query(kb, sys.argv[2]))
step("index open", lambda: kb.index)
def probe():
    with one_thread():
        return nearest_rows(kb, q, 200)
rows, scores = step("IVF probe", probe)
hits = step("row fetch", lambda: hits_frame(kb, rows, scores))
assert len(hits) == len(rows) > 0
from dashboard.presenters.tables import results_table
table = step("results table (titles)", lambda: results_table(hits, kb.products["title"]))
assert table["title_a"].notna().any()
phases["first search (after open)"] = sum(v for k, v in phases.items() if k not in ("imports", "KB open"))
print(json.dumps(phases))
"""


def search_files(kb) -> list[Path]:
    """Every file the first semantic search of ``kb`` reads: the KB folder, its Arrow copies, the ONNX export."""
    from mind_core import config

    files = [p for p in Path(kb.path).iterdir() if p.is_file()]
    files += [p for p in config.cache_dir("kb-arrow").glob("*.arrow")]
    files += [p for p in config.cache_dir("onnx").rglob("*") if p.is_file()]
    return files


def evict(files: list[Path]) -> tuple[int, int]:
    """Drop ``files`` from the page cache; (total bytes, bytes still resident afterwards)."""
    from mind_core.io import drop_from_page_cache, resident_bytes

    total = left = 0
    for path in files:
        drop_from_page_cache(path)
        total += path.stat().st_size
        left += max(0, resident_bytes(path))
    return total, left


STATES = ("cold", "no-read-ahead", "warm")


def cold_first_search(kb, runs: int) -> dict[str, list[dict]]:
    """The first semantic search of a fresh process, ``runs`` times in each state: cold (page cache dropped),
    cold with :func:`mind_core.io.will_need` disabled (pages faulted in one by one, as before) and warm."""
    out: dict[str, list[dict]] = {state: [] for state in STATES}
    files = search_files(kb)
    for i in range(runs):
        for state in STATES:
            if state != "warm":
                total, left = evict(files)
            query = QUERIES[(i + len(out[state])) % len(QUERIES)]
            res = subprocess.run(
                [sys.executable, "-c", _COLD_CHILD, str(kb.path), query, state],
                capture_output=True,
                text=True,
                cwd=REPO,
                check=True,
            )
            phases = json.loads(res.stdout.strip().splitlines()[-1])
            if state != "warm":
                phases["evicted GB"], phases["left resident MB"] = total / 1e9, left / 1e6
            out[state].append(phases)
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--kb", action="append", required=True, help="KB folder (repeatable)")
    ap.add_argument("--skip-pages", action="store_true")
    ap.add_argument(
        "--cold", type=int, default=0, metavar="N", help="first semantic search, N runs each: cold, no read-ahead, warm"
    )
    args = ap.parse_args(argv)
    from mind_core.kb.store import KnowledgeBase

    for kb_dir in args.kb:
        t = time.perf_counter()
        kb = KnowledgeBase(kb_dir)
        open_s = time.perf_counter() - t
        c = kb.counts()
        print(
            f"\n## {kb_dir}: {c['intentions']:,} intentions, {c['products']:,} products, "
            f"index {kb.manifest['index_factory']} — KB open {open_s:.2f} s (this process)"
        )
        asin = busiest_product(kb)
        if not args.skip_pages:
            print("\n| page | first render, wall (fresh process) | its CPU time | rerun |\n|---|---|---|---|")
            for page, r in page_times(kb_dir, asin).items():
                err = f" ERRORS: {r['errors']}" if r["errors"] else ""
                print(f"| {page} | {r['first']:.2f} s | {r['first_cpu']:.2f} s | {r['rerun']:.2f} s |{err}")
        if args.cold:
            res = cold_first_search(kb, args.cold)
            keys = list(res["warm"][0])
            print(f"\nfirst semantic search in a fresh process, median of {args.cold} (load {os.getloadavg()[0]:.1f})")
            print(
                f"(cold: {res['cold'][0]['evicted GB']:.2f} GB dropped from the page cache, "
                f"{max(r['left resident MB'] for r in res['cold']):.1f} MB left resident at most)\n"
            )
            print("| phase | cold | cold, no read-ahead | warm |\n|---|---:|---:|---:|")
            for key in keys:
                cells = " | ".join(f"{statistics.median(r[key] for r in res[state]):.3f} s" for state in STATES)
                print(f"| {key} | {cells} |")
        warm, table = search_times(kb)
        print(f"\nload average during the run: {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
        print(f"\nsearch latency, k=200, {len(QUERIES)} queries (first query incl. model load: {warm:.2f} s)\n")
        print("| mode · facets | median | p95 | mean matches |\n|---|---|---|---|")
        for name, r in table.items():
            print(f"| {name} | {r['median_ms']:.1f} ms | {r['p95_ms']:.1f} ms | {r['mean_hits']:,.0f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
