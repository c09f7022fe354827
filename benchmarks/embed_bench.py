"""Embedding backends side by side, one run: sentence-transformers torch fp32 (the reference), torch bfloat16 (where
the CPU has native bfloat16), ONNX fp32, ONNX int8.

    python benchmarks/embed_bench.py --kb indexes/sample [--n 2000] [--threads 2]

Per backend: load time, texts/s on the first ``--n`` intentions of the KB (no embedding cache; sorted-by-length
batches of 64, as build-kb does), the ratio to torch, and recall@10 of each backend's nearest neighbours against
torch fp32's over the whole KB (queries = the ``--n`` intentions, corpus = every KB intention, self excluded).
Then the wall time of a fresh one-query search process: ``python -m mind_core search`` on the KB (the real CLI,
which encodes the query with the KB's query encoder) and, for comparison, the same open + encode + probe in a
process that encodes the query with torch (what every search process did before the ONNX encoder).
"""

from __future__ import annotations

import argparse
import itertools
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
BACKENDS = ("torch", "torch-bf16", "onnx", "onnx-int8")


def neighbours(vecs: np.ndarray, queries: np.ndarray, k: int = 10) -> np.ndarray:
    sims = queries @ vecs.T
    sims[np.arange(len(queries)), np.arange(len(queries))] = -np.inf  # query i is corpus row i
    return np.argsort(-sims, axis=1)[:, :k]


def recall(found: np.ndarray, truth: np.ndarray) -> float:
    return float(np.mean([len(set(a) & set(b)) / truth.shape[1] for a, b in zip(found, truth)]))


def cpu_features() -> str:
    """The CPU's matrix features that decide these ratios (AMX makes bfloat16 ~10x fp32 per GEMM; AVX512-BF16
    alone ~2x; VNNI is what int8 uses), from /proc/cpuinfo (Linux; "unknown" elsewhere)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return "unknown"
    model = next((ln.split(":", 1)[1].strip() for ln in text.splitlines() if ln.startswith("model name")), "?")
    flags = next((set(ln.split(":", 1)[1].split()) for ln in text.splitlines() if ln.startswith("flags")), set())
    wanted = ("amx_bf16", "amx_int8", "avx512_bf16", "avx512_vnni", "avx_vnni")
    return f"{model}; {', '.join(f for f in wanted if f in flags) or 'none of AMX / AVX512-BF16 / VNNI'}"


def search_process(code: str, runs: int = 3) -> float:
    """Median wall seconds of a fresh interpreter running ``code``."""
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, cwd=REPO)
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--kb", default=str(REPO / "indexes" / "sample"))
    ap.add_argument("--rounds", type=int, default=8, help="interleaved timing rounds (default 8)")
    ap.add_argument("--n", type=int, default=2000, help="intentions timed per backend (default 2000)")
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--runs", type=int, default=3, help="search processes per variant (median)")
    args = ap.parse_args()

    from mind_core.kb.embed import get_embedder, native_bf16
    from mind_core.kb.store import KnowledgeBase

    kb = KnowledgeBase(args.kb)
    texts = kb.intentions["intention"].tolist()
    n = min(args.n, len(texts))
    print(
        f"KB {args.kb}: {len(texts):,} intentions; timing the first {n:,}; {args.threads} threads; "
        f"load {os.getloadavg()[0]:.1f}\nCPU: {cpu_features()}"
    )

    # Timing is interleaved: the n texts are cut into rounds and every backend encodes round r before any encodes
    # round r + 1, so a change in the machine's load during the run falls on all backends alike.
    encoders, results = {}, {}
    for backend in BACKENDS:
        if backend == "torch-bf16" and not native_bf16():
            print("  torch-bf16: skipped, this CPU has no native bfloat16")
            continue
        t0 = time.perf_counter()
        enc = get_embedder(kb.embed_model, backend, threads=args.threads)
        enc.encode(texts[:8])  # warm-up
        encoders[backend] = enc
        results[backend] = {"load_s": time.perf_counter() - t0, "enc_s": 0.0, "parts": []}
    rounds = max(1, min(args.rounds, n))
    bounds = np.linspace(0, n, rounds + 1).astype(int)
    for a, b in itertools.pairwise(bounds):
        for backend, enc in encoders.items():
            t0 = time.perf_counter()
            results[backend]["parts"].append(enc.encode(texts[a:b]))
            results[backend]["enc_s"] += time.perf_counter() - t0
    for backend, enc in encoders.items():
        r = results[backend]
        rest = enc.encode(texts[n:]) if n < len(texts) else np.zeros((0, enc.dim), np.float32)
        r["vecs"] = np.concatenate([*r.pop("parts"), rest])
        r["tps"] = n / r["enc_s"]
        print(f"  {backend}: loaded in {r['load_s']:.1f} s, {r['tps']:.1f} texts/s")
    print(f"  ({rounds} interleaved rounds; load at the end {os.getloadavg()[0]:.1f})")

    truth = neighbours(results["torch"]["vecs"], results["torch"]["vecs"][:n])
    base = results["torch"]["tps"]
    print("\n| backend | load s | texts/s | ratio vs torch | recall@10 vs torch | max abs cos diff |")
    print("|---|---:|---:|---:|---:|---:|")
    ref = results["torch"]["vecs"][:n]
    for backend, r in results.items():
        got = neighbours(r["vecs"], r["vecs"][:n])
        diff = float(np.abs(ref[:500] @ ref[:500].T - r["vecs"][:500] @ r["vecs"][:500].T).max())
        print(
            f"| {backend} | {r['load_s']:.1f} | {r['tps']:.1f} | {r['tps'] / base:.2f}x | {recall(got, truth):.3f} "
            f"| {diff:.1e} |"
        )

    query = "a warm wool hat for winter walks"
    cli = (
        "from mind_core.cli.main import main\n"
        f"main(['search', '--kb', {args.kb!r}, '--query', {query!r}, '-k', '10'])\n"
    )
    torch_way = (
        "from mind_core.kb.store import KnowledgeBase\n"
        "from mind_core.kb.embed import get_embedder\n"
        f"kb = KnowledgeBase({args.kb!r})\n"
        f"q = get_embedder(kb.embed_model, 'torch').encode_one({query!r})\n"
        "kb.index.search(q[None, :], 10)\n"
    )
    t_cli, t_torch = search_process(cli, args.runs), search_process(torch_way, args.runs)
    print(f"\n| one-query search process (fresh interpreter, median of {args.runs}) | wall s |")
    print("|---|---:|")
    print(f"| query encoded with torch (sentence-transformers) | {t_torch:.2f} |")
    print(f"| `python -m mind_core search` (KB's query encoder: {kb.encoder.backend}) | {t_cli:.2f} |")
    print(f"| ratio | {t_cli / t_torch:.2f}x |")


if __name__ == "__main__":
    main()
