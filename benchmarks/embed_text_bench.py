"""Embed the full intention text or only its informative part? Side by side, one run.

Builds the vendored sample twice (``build-kb --embed-text full`` and ``--embed-text body``; the body vectors are
encoded once per machine, then cached) and measures, on each KB:

* IntentionQA ``embed+kb`` accuracy (task 1 and task 2, the full files in ``data/intentionqa/full``, k = 5) with
  the paired difference body - full and its bootstrap interval (``embed`` alone, which ignores the KB, is printed
  as the floor);
* paraphrase retrieval: ``benchmarks/data/paraphrase_queries.jsonl`` holds 40 queries written by hand, each a
  rewording of one sample intention (its informative part, in a shopper's words, with product cues); reported:
  recall@1/@10 and MRR of the target intention in a semantic search over the whole KB.

    python benchmarks/embed_text_bench.py [--work DIR] [--tasks task1 task2]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from mind_core.eval.intentionqa import TextVectors, evaluate, load_questions, paired_difference
from mind_core.kb.build import EMBED_TEXTS, build_kb
from mind_core.kb.store import KnowledgeBase
from mind_core.query import search

REPO = Path(__file__).resolve().parent.parent
PARAPHRASES = REPO / "benchmarks" / "data" / "paraphrase_queries.jsonl"


def paraphrase_scores(kb: KnowledgeBase, items: list[dict], k: int = 50) -> dict[str, float]:
    ranks = []
    for item in items:
        hits = search(kb, item["query"], mode="semantic", k=k).hits
        ids = list(hits["intention_id"])
        ranks.append(ids.index(item["target"]) + 1 if item["target"] in ids else None)
    rr = [1.0 / r if r else 0.0 for r in ranks]
    return {
        "recall@1": float(np.mean([r == 1 for r in ranks])),
        "recall@10": float(np.mean([bool(r and r <= 10) for r in ranks])),
        "mrr@50": float(np.mean(rr)),
        "found@50": sum(r is not None for r in ranks),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--work", default=str(REPO / ".cache" / "embed_text_bench"), help="where the two KBs go")
    ap.add_argument("--tasks", nargs="+", default=["task1", "task2"])
    ap.add_argument("--k", type=int, default=5)
    args = ap.parse_args(argv)
    work = Path(args.work)
    kbs = {}
    for mode in EMBED_TEXTS:
        t0 = time.perf_counter()
        res = build_kb([REPO / "data" / "mind_sample"], work / mode, embed_text=mode, progress=True)
        kbs[mode] = KnowledgeBase(work / mode)
        print(f"KB embed_text={mode}: {res.status} in {time.perf_counter() - t0:.1f} s")
    items = [json.loads(line) for line in PARAPHRASES.read_text(encoding="utf-8").splitlines() if line.strip()]

    print(f"\nparaphrase retrieval ({len(items)} hand-written queries, whole sample KB)")
    print(f"{'embed_text':<11} {'recall@1':>9} {'recall@10':>10} {'MRR@50':>8} {'found@50':>9}")
    for mode, kb in kbs.items():
        s = paraphrase_scores(kb, items)
        print(f"{mode:<11} {s['recall@1']:>9.3f} {s['recall@10']:>10.3f} {s['mrr@50']:>8.3f} {s['found@50']:>9}")

    print(f"\nIntentionQA embed+kb (k={args.k}); accuracy [95% bootstrap CI]")
    for task in args.tasks:
        path = REPO / "data" / "intentionqa" / "full" / f"{task}.jsonl.gz"
        questions = load_questions(path)
        vectors = TextVectors(questions, encoder=kbs["full"].encoder)  # the same query encoder for both KBs
        floor = evaluate(questions, "embed", vectors=vectors).summary
        print(f"{task}: embed (no KB) {100 * floor['accuracy']:.1f}%  n={floor['n']}")
        results = {mode: evaluate(questions, "embed+kb", kb=kb, k=args.k, vectors=vectors) for mode, kb in kbs.items()}
        for mode, r in results.items():
            s = r.summary
            print(
                f"  embed+kb {mode:<5} {100 * s['accuracy']:.1f}% [{100 * s['ci95'][0]:.1f}, {100 * s['ci95'][1]:.1f}]"
            )
        d = paired_difference(results["full"].predictions, results["body"].predictions)
        print(
            f"  body - full: {100 * d['diff']:+.1f} points [{100 * d['ci95'][0]:+.1f}, {100 * d['ci95'][1]:+.1f}] "
            f"(n={d['n']}; only body right {d['only_other_right']}, only full right {d['only_base_right']})"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
