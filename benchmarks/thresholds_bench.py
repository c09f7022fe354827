"""Time one slider move of the Filter thresholds page: the counts + figures it recomputes, on a KB and at 1.26M rows.

    python benchmarks/thresholds_bench.py                          # indexes/sample: compute + figures + AppTest
    python benchmarks/thresholds_bench.py --tile 371               # + the sample's rows repeated 371x (1.26M)
    python benchmarks/thresholds_bench.py --kb scale/kb --score p_yes --no-apptest   # the synthetic scale KB

Per move the page computes: metrics at A and B, kept counts per relation and per category at A and B, the
histogram, the curves, the flipped rows (all from the ScoreView histogram: O(groups x bins)), and builds 4 figures.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import numpy as np
import pandas as pd

from dashboard.presenters import charts
from dashboard.presenters import threshold_charts as tc
from mind_core.scores import metrics as scores

REPO = Path(__file__).resolve().parent.parent


def one_move(view: scores.ScoreView, ta: float, tb: float, figures: bool = True) -> float:
    t0 = time.perf_counter()
    h = view.hist
    ta, tb = h.snap(ta), h.snap(tb)
    h.metrics(ta), h.metrics(tb)
    ra, rb = h.kept_by("relation", ta), h.kept_by("relation", tb)
    ca, cb = h.kept_by("category", ta), h.kept_by("category", tb)
    bins, curve = h.bins(), h.curve()
    rows, _ = view.flip_rows(ta, tb)
    rows[:300].copy()
    if figures:
        for fig in (
            tc.fig_kept_grouped(ra, rb, "relation"),
            tc.fig_kept_grouped(ca, cb, "category"),
            tc.fig_score_histogram(bins, ta, tb, view.key),
            tc.fig_curves(curve, ta, tb, view.key),
        ):
            fig.to_dict()  # what st.plotly_chart serialises
    return time.perf_counter() - t0


def moves(view: scores.ScoreView, n: int = 20, figures: bool = True) -> list[float]:
    rng = np.random.default_rng(0)
    lo, hi = float(view.hist.edges[0]), float(view.hist.edges[-1])
    one_move(view, lo, hi, figures)  # warm-up
    return [one_move(view, *rng.uniform(lo, hi, 2), figures) for _ in range(n)]


def report(name: str, times: list[float]) -> None:
    ms = sorted(t * 1000 for t in times)
    print(f"  {name}: median {statistics.median(ms):.1f} ms, max {ms[-1]:.1f} ms over {len(ms)} moves")


def apptest_moves(kb_dir: str, key: str, n: int = 8) -> list[float]:
    import os

    from streamlit.testing.v1 import AppTest

    os.environ["MIND_KB"] = kb_dir
    at = AppTest.from_file(str(REPO / "app.py"), default_timeout=300)
    at.switch_page("dashboard/views/thresholds.py")
    at.run()
    at.selectbox(key="score").set_value(key).run()
    slider = at.slider(key=f"ta_{key}")
    lo, hi = slider.min, slider.max
    out = []
    for i, v in enumerate(np.linspace(lo, hi, n + 1)[1:]):
        t0 = time.perf_counter()
        at.slider(key=f"ta_{key}" if i % 2 else f"tb_{key}").set_value(round(float(v), 2)).run()
        out.append(time.perf_counter() - t0)
        if at.exception:
            raise RuntimeError(at.exception)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--kb", default=str(REPO / "indexes" / "sample"))
    ap.add_argument("--score", default=None, help="score key (default: every score the KB has)")
    ap.add_argument("--tile", type=int, default=0, help="also time the KB's rows repeated N times (371 -> 1.26M)")
    ap.add_argument("--no-apptest", action="store_true", help="skip the full-page AppTest timing")
    args = ap.parse_args(argv)

    from mind_core.kb.store import KnowledgeBase

    t0 = time.perf_counter()
    kb = KnowledgeBase(args.kb)
    df, sc = kb.intentions, kb.scores
    print(f"KB {args.kb}: {len(df):,} rows (opened in {time.perf_counter() - t0:.1f} s)")
    keys = [args.score] if args.score else scores.available_scores(sc)
    cat_a = charts.product_category_of_a(df, kb.products)
    for key in keys:
        t0 = time.perf_counter()
        view = scores.ScoreView.build(
            key,
            sc[key],
            df["verdict"],
            {"relation": df["relation"], "category": df["category"], "product category (A)": cat_a},
        )
        print(f"{key}: prepared in {(time.perf_counter() - t0) * 1000:.0f} ms ({len(view.hist.edges) - 1} bins)")
        report("compute only", moves(view, figures=False))
        report("compute + 4 figures", moves(view))
        if args.tile:
            n = len(df) * args.tile
            rng = np.random.default_rng(1)
            big = np.tile(sc[key].to_numpy(), args.tile) + rng.normal(0, 0.005, n)
            verdict = pd.Categorical(np.tile(df["verdict"].astype(object).to_numpy(), args.tile))
            rel = pd.Categorical(np.tile(df["relation"].astype(object).to_numpy(), args.tile))
            cat = pd.Categorical(np.tile(df["category"].astype(object).to_numpy(), args.tile))
            t0 = time.perf_counter()
            bigview = scores.ScoreView.build(
                key, big, pd.Series(verdict), {"relation": pd.Series(rel), "category": pd.Series(cat)}
            )
            print(f"  x{args.tile} = {n:,} rows: prepared once in {time.perf_counter() - t0:.1f} s")
            report(f"{n:,} rows, compute + 4 figures", moves(bigview))
        if not args.no_apptest:
            report("whole page rerun (AppTest)", apptest_moves(args.kb, key))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
