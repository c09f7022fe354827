#!/usr/bin/env python
"""Distillation throughput: the batch path against a fake OpenAI server, and the offline fallback on this machine.

1. OpenAI-compatible backend: ``run_distill`` (the code behind ``python -m mind_core distill``: chunking,
   one generate() per stage, Parquet parts) against ``tests/doubles/fake_openai_server.py`` answering every call
   after ``--latency`` seconds (default 0.2 s, a stand-in for a GPU server's per-request time; the fake server
   itself is not a bottleneck: it runs in its own process and sleeps in a thread per request). Concurrency 1, 8
   and 32, in one run, same workload shape: ``--relations`` (default 3) per pair, stage 1 off (every product has
   a description), stages 2 and 3 on, so each pair costs 2 x relations calls. Reported: pairs/minute,
   calls/second, the ratio to concurrency 1, and the ideal ratio (latency-bound).
2. Offline fallback (``make_backend("offline")``): load time, then wall seconds for one pair x 3 relations
   (``run_pair``: 3 intentions + 3 filters, no images, no stage 1), and the texts it wrote.
3. ``--engine ray``: ``run_distill_ray`` (``distill --engine ray``) on a local Ray instance against the same fake
   server, with 1 and 2 workers (``--workers``), each worker an actor with its own openai backend of
   ``--ray-concurrency`` (default 4) parallel requests; next to it the local engine at the same total number of
   requests in flight (concurrency 4 and 8). Ray's start-up (``ray.init``) is outside the timing; the actors'
   start-up is inside (each run starts its pool). Replaces parts 1 and 2 (run them without ``--engine ray``).

    .venv/bin/python benchmarks/distill_bench.py [--latency 0.2] [--skip-offline] [--offline-pairs 1]
    .venv/bin/python benchmarks/distill_bench.py --engine ray [--workers 1,2] [--ray-concurrency 4] [--seconds 30]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from mind_core.config import SAMPLE_DATA_DIR
from mind_core.distill.batch import run_distill
from mind_core.distill.pipeline import DistillOptions, run_pair
from mind_core.lvlm.base import GenParams
from mind_core.schema import CoBuyPair, Product

REPO = Path(__file__).resolve().parents[1]

RELATIONS = ["usedFor", "isA", "cause"]


def sample_pairs(limit: int) -> tuple[dict[str, Product], list[CoBuyPair]]:
    """Distinct co-buy pairs (with stage-1 descriptions) from the vendored MIND sample."""
    src = SAMPLE_DATA_DIR
    products: dict[str, Product] = {}
    pairs: dict[str, CoBuyPair] = {}
    with open(src / "intentions.jsonl", encoding="utf-8") as fh:
        for line in fh:
            r = json.loads(line)
            for k in ("product_a", "product_b"):
                p = r[k]
                products.setdefault(p["asin"], Product(p["asin"], p["title"], p["description"], [], p["category"]))
            pair = CoBuyPair(r["product_a"]["asin"], r["product_b"]["asin"])
            if pair.asin_a != pair.asin_b:
                pairs.setdefault(pair.pair_id, pair)
            if len(pairs) >= limit:
                break
    return products, list(pairs.values())


@contextlib.contextmanager
def fake_server(latency: float) -> Iterator[str]:
    """The fake OpenAI-compatible server (tests/doubles) in its own process; yields its base URL."""
    script = REPO / "tests" / "doubles" / "fake_openai_server.py"
    proc = subprocess.Popen(
        [sys.executable, str(script), "--port", "0", "--latency", str(latency)], stdout=subprocess.PIPE, text=True
    )
    try:
        line = proc.stdout.readline()
        match = re.search(r" on (http\S+)", line)
        if not match:
            raise RuntimeError(f"fake server did not start: {line!r}")
        yield match.group(1)
    finally:
        proc.terminate()
        proc.wait(10)


def _control(url: str, **settings) -> dict:
    import httpx

    return httpx.post(url.removesuffix("/v1") + "/_control", json=settings, timeout=5).json()


def bench_openai(latency: float, levels: list[int], seconds: float, relations: list[str]) -> list[dict]:
    from mind_core.lvlm import make_backend

    calls_per_pair = 2 * len(relations)
    results = []
    with fake_server(latency) as url:
        for c in levels:
            # enough pairs for ~`seconds` of latency-bound work at this concurrency
            n_pairs = max(4, round(seconds * c / (latency * calls_per_pair)))
            products, pairs = sample_pairs(n_pairs)
            backend = make_backend("openai", endpoint=url, concurrency=c)
            opts = DistillOptions(
                relations=relations, use_images=False, describe="never", params=GenParams(max_new_tokens=128)
            )
            _control(url, reset_stats=True)
            with tempfile.TemporaryDirectory() as out:
                t0 = time.perf_counter()
                summary = run_distill(products, pairs, out, backend, opts, progress=False)
                wall = time.perf_counter() - t0
            backend.close()
            stats = _control(url)
            assert summary.written == len(pairs) * len(relations), summary.text()
            results.append(
                {
                    "concurrency": c,
                    "pairs": len(pairs),
                    "calls": stats["requests"],
                    "wall_s": wall,
                    "pairs_per_min": len(pairs) / wall * 60,
                    "calls_per_s": stats["requests"] / wall,
                    "max_active": stats["max_active"],
                }
            )
    base = results[0]["pairs_per_min"]
    for r in results:
        r["ratio"] = r["pairs_per_min"] / base
    return results


def bench_ray(latency: float, worker_levels: list[int], per_worker: int, seconds: float, relations: list[str]):
    """pairs/min of the Ray engine with each number of workers, and of the local engine with the same number of
    requests in flight; each run on a workload sized for ~``seconds`` of latency-bound work."""
    import logging

    import ray

    from mind_core.distill.ray_engine import RayOptions, run_distill_ray
    from mind_core.lvlm import make_backend
    from mind_core.lvlm.registry import BackendConfig

    calls_per_pair = 2 * len(relations)
    opts = DistillOptions(relations=relations, use_images=False, describe="never", params=GenParams(max_new_tokens=128))
    t0 = time.perf_counter()
    ray.init(address="local", num_cpus=max(worker_levels), include_dashboard=False, logging_level=logging.WARNING)
    init_s = time.perf_counter() - t0
    results = []
    try:
        with fake_server(latency) as url:
            # warm-up: Ray's first dataset starts its worker processes; not part of any measurement
            products, pairs = sample_pairs(4)
            with tempfile.TemporaryDirectory() as out:
                config = BackendConfig("openai", endpoint=url, concurrency=per_worker)
                run_distill_ray(products, pairs, out, config, opts, ray_options=RayOptions(workers=1), progress=False)
            for w in worker_levels:
                in_flight = w * per_worker
                n_pairs = max(8, round(seconds * in_flight / (latency * calls_per_pair)))
                products, pairs = sample_pairs(n_pairs)
                for engine in ("ray", "local"):
                    _control(url, reset_stats=True)
                    with tempfile.TemporaryDirectory() as out:
                        t1 = time.perf_counter()
                        if engine == "ray":
                            config = BackendConfig("openai", endpoint=url, concurrency=per_worker)
                            summary = run_distill_ray(
                                products, pairs, out, config, opts, ray_options=RayOptions(workers=w), progress=False
                            )
                        else:
                            backend = make_backend("openai", endpoint=url, concurrency=in_flight)
                            summary = run_distill(products, pairs, out, backend, opts, progress=False)
                            backend.close()
                        wall = time.perf_counter() - t1
                    stats = _control(url)
                    assert summary.written == len(pairs) * len(relations), summary.text()
                    results.append(
                        {
                            "engine": engine,
                            "workers": w if engine == "ray" else None,
                            "in_flight": in_flight,
                            "pairs": len(pairs),
                            "calls": stats["requests"],
                            "wall_s": wall,
                            "pairs_per_min": len(pairs) / wall * 60,
                            "max_active": stats["max_active"],
                        }
                    )
    finally:
        ray.shutdown()
    for engine in ("ray", "local"):
        rows = [r for r in results if r["engine"] == engine]
        for r in rows:
            r["ratio"] = r["pairs_per_min"] / rows[0]["pairs_per_min"]
    return {"ray_init_s": init_s, "rows": results}


def bench_offline(n_pairs: int) -> dict:
    from mind_core.lvlm import make_backend

    products, pairs = sample_pairs(max(1, n_pairs))
    t0 = time.perf_counter()
    backend = make_backend("offline")
    if hasattr(backend, "load"):  # loads lazily otherwise; keep the load out of the per-pair time
        backend.load()
    load_s = time.perf_counter() - t0
    out = {"model": backend.model, "load_s": load_s, "pairs": [], "engine": getattr(backend, "engine", "?")}
    try:
        for pair in pairs[:n_pairs]:
            a, b = products[pair.asin_a], products[pair.asin_b]
            t1 = time.perf_counter()
            res = run_pair(a, b, backend, DistillOptions(relations=RELATIONS, use_images=False, describe="never"))
            out["pairs"].append(
                {
                    "a": a.title,
                    "b": b.title,
                    "seconds": time.perf_counter() - t1,
                    "rows": res.rows,
                    "errors": res.errors,
                }
            )
    finally:
        backend.close()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--latency", type=float, default=0.2, help="fake server seconds per call (default 0.2)")
    ap.add_argument("--levels", default="1,8,32", help="concurrency levels (default 1,8,32)")
    ap.add_argument("--seconds", type=float, default=6.0, help="target latency-bound seconds per level")
    ap.add_argument("--skip-offline", action="store_true")
    ap.add_argument("--skip-openai", action="store_true")
    ap.add_argument("--offline-pairs", type=int, default=1)
    ap.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    ap.add_argument("--engine", choices=("local", "ray"), default="local", help="ray: part 3 only (see above)")
    ap.add_argument("--workers", default="1,2", help="--engine ray: worker counts (default 1,2)")
    ap.add_argument("--ray-concurrency", type=int, default=4, help="--engine ray: parallel requests per worker")
    args = ap.parse_args()
    levels = [int(x) for x in args.levels.split(",")]
    if args.engine == "ray":
        _main_ray(args)
        return

    import os

    print(
        f"machine: {os.cpu_count()} CPUs, Python {sys.version.split()[0]}; fake server latency "
        f"{args.latency * 1000:.0f} ms/call; {len(RELATIONS)} relations/pair -> {2 * len(RELATIONS)} calls/pair "
        "(intention + filter)\n"
    )
    result: dict = {}
    if not args.skip_openai:
        rows = bench_openai(args.latency, levels, args.seconds, RELATIONS)
        print("| concurrency | pairs | calls | wall s | pairs/min | calls/s | ratio vs 1 | ideal | max in flight |")
        print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
        for r in rows:
            print(
                f"| {r['concurrency']} | {r['pairs']} | {r['calls']} | {r['wall_s']:.1f} | "
                f"{r['pairs_per_min']:.1f} | {r['calls_per_s']:.1f} | {r['ratio']:.1f}x | {r['concurrency']}x | "
                f"{r['max_active']} |"
            )
        result["openai"] = rows
    if not args.skip_offline:
        print(
            f"\noffline fallback (text-only), 1 pair x 3 relations, no images, no stage 1 "
            f"(load average before: {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs):"
        )
        off = bench_offline(args.offline_pairs)
        result["offline"] = off
        print(
            f"model {off['model']} (engine {off['engine']}), load {off['load_s']:.1f} s; "
            f"load average after: {os.getloadavg()[0]:.1f}"
        )
        for p in off["pairs"]:
            print(
                f"pair: A = {p['a'][:70]!r}\n      B = {p['b'][:70]!r}\n"
                f"seconds for 3 relations (3 intentions + 3 filters): {p['seconds']:.1f} s"
            )
            for row in p["rows"]:
                print(
                    f"  [{row['relation']}] {row['intention']}\n      filter: {row['verdict']} "
                    f"(p_yes={row['p_yes'] if row['p_yes'] is None else round(row['p_yes'], 3)}) "
                    f"{(row['reason'] or '')[:200]!r}  flags={row['flags']}"
                )
            for e in p["errors"]:
                print(f"  error: {e}")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1, default=str))


def _main_ray(args) -> None:
    import os

    seconds = args.seconds if args.seconds != 6.0 else 30.0
    workers = [int(x) for x in args.workers.split(",")]
    print(
        f"machine: {os.cpu_count()} CPUs (load average {os.getloadavg()[0]:.1f}), Python {sys.version.split()[0]}; "
        f"fake server latency {args.latency * 1000:.0f} ms/call; {len(RELATIONS)} relations/pair -> "
        f"{2 * len(RELATIONS)} calls/pair; Ray workers with {args.ray_concurrency} parallel requests each; "
        f"~{seconds:.0f} s of latency-bound work per run\n"
    )
    res = bench_ray(args.latency, workers, args.ray_concurrency, seconds, RELATIONS)
    print(f"ray.init (local instance): {res['ray_init_s']:.1f} s, not in the times below\n")
    print(
        "| engine | workers | requests in flight | pairs | calls | wall s | pairs/min | ratio vs first | "
        "max in flight |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in res["rows"]:
        print(
            f"| {r['engine']} | {r['workers'] or '-'} | {r['in_flight']} | {r['pairs']} | {r['calls']} | "
            f"{r['wall_s']:.1f} | {r['pairs_per_min']:.1f} | {r['ratio']:.2f}x | {r['max_active']} |"
        )
    ray_rows = [r for r in res["rows"] if r["engine"] == "ray"]
    if len(ray_rows) > 1:
        first, last = ray_rows[0], ray_rows[-1]
        ratio, ideal = last["pairs_per_min"] / first["pairs_per_min"], last["workers"] / first["workers"]
        print(f"\nray: {last['workers']} workers / {first['workers']} = {ratio:.2f}x pairs/min (ideal {ideal:.0f}x)")
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=1, default=str))


if __name__ == "__main__":
    main()
