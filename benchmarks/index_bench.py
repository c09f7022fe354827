#!/usr/bin/env python
"""Benchmark the FAISS index kinds MIND Explorer offers (``--index flat|ivf|hnsw``) on synthetic embeddings.

Data (fixed seed, default ``--seed 0``): 384-d float32 vectors that look like L2-normalised sentence
embeddings at the level of "clustered directions on the sphere":

* ``--clusters`` (2,000) cluster centres drawn as standard Gaussian vectors and L2-normalised (uniform on the
  unit sphere);
* cluster sizes are unequal: weights ~ LogNormal(0, 1), normalised (the biggest clusters hold ~10x the
  average), because real intention texts are not evenly spread and unequal lists are what hurts IVF;
* each point = its centre + noise, then L2-normalised. ``--structure isotropic`` (default): noise ~
  N(0, (sigma^2 / d) I) with ``--sigma`` 1.0, i.e. noise norm ~ 1 = centre norm, so a point has cosine ~0.71
  to its centre and ~0.5 to another point of its cluster. ``--structure subspace``: noise lives mostly in a
  per-cluster random 16-d subspace (+ 0.3 sigma isotropic), which is closer to the low intrinsic
  dimension of real text embeddings and easier for approximate search;
* 1,000 held-out queries drawn in the same way (same centres and weights, other draws).

Caveats on the data. Isotropic full-dimensional noise is hard for graph search (within a cluster all points
are nearly equidistant: query-to-top-1 cosine ~0.55 vs ~0.41 for the 10th), but 2,000 compact clusters with
nlist ~ 1,000-4,000 is kind to IVF (k-means recovers the clusters). ``--structure subspace --clusters 200``
gives neighbour similarities closer to real MiniLM output (top-1 ~0.82, 10th ~0.74) and puts many IVF cells
inside one cluster, so list boundaries cut through dense regions. Run both before trusting an nprobe choice;
real embeddings should be checked with the same recall@10 measurement.

Index kinds and what is measured (``faiss.omp_set_num_threads(--threads)``, default 2):

* ``Flat``: ``IndexFlatIP`` (exact; provides the ground truth for recall);
* ``IVF``: ``index_factory(d, f"IVF{nlist},Flat", METRIC_INNER_PRODUCT)``, nlist = ``mind_core.kb.index.ivf_nlist(N)``
  (2*sqrt(N) rounded to a power of two, capped at N/39), trained on a random sample of min(N, 64*nlist)
  vectors (the rule in ``mind_core/kb/index.py``; faiss k-means default 10 iterations), searched at several
  ``nprobe``;
* ``HNSW``: ``IndexHNSWFlat(d, 32, METRIC_INNER_PRODUCT)``, efConstruction 40, searched at several
  ``efSearch``. Added in chunks so that a build that would blow ``--hnsw-budget-s`` is stopped and its
  full-size time extrapolated (and marked so) instead of measured.

Per (size, index, search parameter): train and add time, index size (bytes of ``faiss.write_index``, equal to
``len(faiss.serialize_index(index))``), RSS growth of this process during the build (current and peak, read
from /proc/self/status; peak is reset through /proc/self/clear_refs), p50/p95 latency of single-query
searches (one query per ``search`` call, k=10), throughput of one batch search of all queries, recall@10
against the exact Flat result.

Then, per index kind: save with ``faiss.write_index`` and load back with ``faiss.read_index(path, flags)`` for
flags 0, IO_FLAG_MMAP, IO_FLAG_MMAP_IFC, IO_FLAG_READ_ONLY, IO_FLAG_MMAP_IFC|IO_FLAG_READ_ONLY: load time, RSS
growth, whether the file is really mapped (listed in /proc/self/maps), whether search results equal the
in-memory index's, and single-query p50 on the loaded index. Files are read right after being written, so the
page cache is warm: a cold start from disk will be slower for the mmapped variants' first queries. Whether
``add()`` survives on a memory-mapped index is checked in a child process (it may abort the interpreter).

What the 2026-11 runs found for faiss 1.15.1 (details in the printed tables):

* ``IO_FLAG_MMAP_IFC`` is the flag that memory-maps all three kinds (Flat codes, IVF ``ArrayInvertedLists``, HNSW
  vectors; the HNSW graph links are still read into RAM): load in milliseconds instead of seconds, no RSS growth,
  identical results and warm-cache latency. The loaded index is a read-only view: ``add()`` on it, or on a
  ``clone_index`` of it, kills the process with SIGABRT (``MaybeOwnedVector ... is_owned``). Load with flags 0
  to append.
* ``IO_FLAG_MMAP`` only changes IVF, whose lists become a read-only ``OnDiskInvertedLists`` over the file
  (single queries ~3-4 ms instead of ~0.2-1.3 ms; ``add()`` raises or segfaults, ``clone_index`` refuses). For
  Flat and HNSW it is silently ignored (full read). ``IO_FLAG_READ_ONLY`` alone changes nothing for these kinds.
* ``nprobe`` / ``efSearch`` set before ``write_index`` are stored in the file.

Usage::

    python benchmarks/index_bench.py                       # N = 50k, 300k, 1,264,441 (< ~30 min on 2 cores)
    python benchmarks/index_bench.py --quick               # N = 20k, 50k (about a minute)
    python benchmarks/index_bench.py --sizes 100000 --nprobes 16 32 --ef-search 64
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field

import numpy as np

from mind_core.kb.index import ivf_nlist

DIM = 384
K = 10
DEFAULT_SIZES = (50_000, 300_000, 1_264_441)
QUICK_SIZES = (20_000, 50_000)


# ----------------------------------------------------------------------------------------------- process info
def _status_kb(key: str) -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return float(line.split()[1])
    return float("nan")


def rss_mb() -> float:
    return _status_kb("VmRSS") / 1024


def peak_rss_mb() -> float:
    return _status_kb("VmHWM") / 1024


def reset_peak_rss() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def is_mapped(path: str) -> bool:
    real = os.path.realpath(path)
    with open("/proc/self/maps") as f:
        return any(line.rstrip().endswith(real) for line in f)


def loadavg() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


# ----------------------------------------------------------------------------------------------------- data
@dataclass
class DataSpec:
    clusters: int = 2000
    sigma: float = 1.0
    structure: str = "isotropic"  # isotropic | subspace
    subspace_dim: int = 16
    seed: int = 0

    def describe(self) -> str:
        s = (
            f"{self.clusters:,} Gaussian cluster centres on the unit sphere (seed {self.seed}), LogNormal(0,1) cluster "
            f"weights; point = centre + noise, L2-normalised; "
        )
        if self.structure == "isotropic":
            s += f"noise ~ N(0, ({self.sigma}^2/{DIM}) I) (isotropic, full-dimensional: pessimistic for ANN)"
        else:
            s += (
                f"noise = {self.sigma} x N(0, I/{self.subspace_dim}) in a per-cluster random {self.subspace_dim}-d "
                f"subspace + {0.3 * self.sigma:.2f} x isotropic N(0, I/{DIM})"
            )
        return s


class Generator:
    def __init__(self, spec: DataSpec):
        self.spec = spec
        rng = np.random.default_rng(spec.seed)
        c = rng.standard_normal((spec.clusters, DIM), dtype=np.float32)
        c /= np.linalg.norm(c, axis=1, keepdims=True)
        self.centres = c
        w = rng.lognormal(0.0, 1.0, spec.clusters)
        self.weights = w / w.sum()
        if spec.structure == "subspace":
            b = rng.standard_normal((spec.clusters, spec.subspace_dim, DIM), dtype=np.float32)
            b /= np.linalg.norm(b, axis=2, keepdims=True)  # unit basis rows, random directions
            self.bases = b
        elif spec.structure != "isotropic":
            raise ValueError(spec.structure)

    def draw(self, n: int, stream: int, chunk: int = 20_000) -> np.ndarray:
        """``n`` points from random stream ``stream`` (different streams = independent draws)."""
        rng = np.random.default_rng([self.spec.seed, stream])
        out = np.empty((n, DIM), dtype=np.float32)
        for s in range(0, n, chunk):
            m = min(chunk, n - s)
            lab = rng.choice(self.spec.clusters, size=m, p=self.weights)
            x = self.centres[lab]
            if self.spec.structure == "isotropic":
                x += rng.standard_normal((m, DIM), dtype=np.float32) * np.float32(self.spec.sigma / math.sqrt(DIM))
            else:
                z = rng.standard_normal((m, 1, self.spec.subspace_dim), dtype=np.float32)
                z *= np.float32(self.spec.sigma / math.sqrt(self.spec.subspace_dim))
                x += np.matmul(z, self.bases[lab])[:, 0, :]
                x += rng.standard_normal((m, DIM), dtype=np.float32) * np.float32(
                    0.3 * self.spec.sigma / math.sqrt(DIM)
                )
            x /= np.linalg.norm(x, axis=1, keepdims=True)
            out[s : s + m] = x
        return out


# -------------------------------------------------------------------------------------------------- results
@dataclass
class Row:
    n: int
    kind: str
    params: str
    train_s: float | None = None
    add_s: float | None = None
    file_mb: float | None = None
    rss_mb: float | None = None
    peak_mb: float | None = None
    p50_ms: float | None = None
    p95_ms: float | None = None
    n_lat: int = 0
    cpu_build_s: float | None = None
    cpu_p50_ms: float | None = None
    qps: float | None = None
    recall: float | None = None
    note: str = ""


@dataclass
class MmapRow:
    n: int
    kind: str
    flags: str
    ok: bool
    load_s: float | None = None
    rss_mb: float | None = None
    mapped: bool | None = None
    same: str = ""
    p50_ms: float | None = None
    detail: str = ""


@dataclass
class Results:
    rows: list[Row] = field(default_factory=list)
    mmap: list[MmapRow] = field(default_factory=list)
    add_checks: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def fmt(v, spec: str = ".1f", none: str = "–") -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return none
    return format(v, spec)


def print_table(res: Results) -> None:
    print("\n## Build, size, latency, recall\n")
    print(
        "| N | index | search params | train s | add s | build s | file MB | RSS Δ MB | peak RSS Δ MB "
        "| build CPU s | p50 ms | p95 ms | CPU ms p50 | 1-query n | batch QPS | recall@10 | note |"
    )
    print("|---:|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|")
    for r in res.rows:
        build = None if r.add_s is None else (r.train_s or 0.0) + r.add_s
        print(
            f"| {r.n:,} | {r.kind} | {r.params} | {fmt(r.train_s)} | {fmt(r.add_s)} | {fmt(build)} "
            f"| {fmt(r.file_mb, '.0f')} | {fmt(r.rss_mb, '.0f')} | {fmt(r.peak_mb, '.0f')} "
            f"| {fmt(r.cpu_build_s)} | {fmt(r.p50_ms, '.2f')} | {fmt(r.p95_ms, '.2f')} | {fmt(r.cpu_p50_ms, '.2f')} "
            f"| {r.n_lat or '–'} | {fmt(r.qps, '.0f')} "
            f"| {fmt(r.recall, '.3f')} | {r.note} |"
        )
    if res.mmap:
        print("\n## Save + load (faiss.write_index / faiss.read_index(path, flags))\n")
        print(
            "| N | index | flags | loads | load ms | RSS Δ MB | file mapped | results = in-memory | p50 ms | detail |"
        )
        print("|---:|---|---|---|---:|---:|---|---|---:|---|")
        for m in res.mmap:
            print(
                f"| {m.n:,} | {m.kind} | {m.flags} | {'yes' if m.ok else 'NO'} "
                f"| {fmt(m.load_s and m.load_s * 1000, '.0f')} "
                f"| {fmt(m.rss_mb, '.0f')} | {'' if m.mapped is None else ('yes' if m.mapped else 'no')} "
                f"| {m.same} | {fmt(m.p50_ms, '.2f')} | {m.detail} |"
            )
    if res.add_checks:
        print("\n## add() on a loaded index (child process)\n")
        for line in res.add_checks:
            print(f"* {line}")
    if res.notes:
        print("\n## Notes\n")
        for line in res.notes:
            print(f"* {line}")


# ----------------------------------------------------------------------------------------------- measuring
LAST_CPU_P50_MS: float | None = None  # process CPU time (all threads) per single query, median of the last timing
LATENCY_THREADS: int | None = None  # --latency-threads: OpenMP threads during single-query timing


def single_query_latency(index, q: np.ndarray, max_queries: int, max_s: float) -> tuple[float, float, int]:
    import faiss

    before = faiss.omp_get_max_threads()
    if LATENCY_THREADS:
        faiss.omp_set_num_threads(LATENCY_THREADS)
    try:
        return _single_query_latency(index, q, max_queries, max_s)
    finally:
        faiss.omp_set_num_threads(before)


def _single_query_latency(index, q: np.ndarray, max_queries: int, max_s: float) -> tuple[float, float, int]:
    times, cpu = [], []
    t_start = time.perf_counter()
    for i in range(min(max_queries, len(q))):
        c0, t0 = time.process_time(), time.perf_counter()
        index.search(q[i : i + 1], K)
        times.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
        if time.perf_counter() - t_start > max_s and len(times) >= 50:
            break
    a = np.array(times) * 1000
    global LAST_CPU_P50_MS
    LAST_CPU_P50_MS = float(np.percentile(np.array(cpu) * 1000, 50))
    return float(np.percentile(a, 50)), float(np.percentile(a, 95)), len(a)


def batch_search(index, q: np.ndarray):
    t0 = time.perf_counter()
    d, i = index.search(q, K)
    return d, i, len(q) / (time.perf_counter() - t0)


def recall_at_k(found: np.ndarray, truth: np.ndarray) -> float:
    hits = sum(len(set(f[f >= 0]) & set(t)) for f, t in zip(found, truth))
    return hits / truth.size


def file_mb(path: str) -> float:
    return os.path.getsize(path) / 2**20


FLAG_SETS = ("0", "IO_FLAG_MMAP", "IO_FLAG_MMAP_IFC", "IO_FLAG_READ_ONLY", "IO_FLAG_MMAP_IFC|IO_FLAG_READ_ONLY")


def flag_value(faiss, name: str) -> int:
    v = 0
    for part in name.split("|"):
        v |= 0 if part == "0" else getattr(faiss, part)
    return v


def set_params(faiss, index, kind: str, value: int) -> None:
    if kind == "IVF":
        faiss.extract_index_ivf(index).nprobe = value
    elif kind == "HNSW":
        index.hnsw.efSearch = value


def stored_params(faiss, index, kind: str) -> str:
    if kind == "IVF":
        ivf = faiss.extract_index_ivf(index)
        il = ivf.invlists
        with contextlib.suppress(Exception):
            il = faiss.downcast_InvertedLists(il)
        return f"stored nprobe={ivf.nprobe}, invlists={type(il).__name__}"
    if kind == "HNSW":
        return f"stored efSearch={index.hnsw.efSearch}"
    return ""


def mmap_checks(
    faiss, res: Results, n: int, kind: str, index, path: str, q: np.ndarray, param: int | None, lat_queries: int
) -> None:
    nq = min(len(q), 200)
    if param is not None:
        set_params(faiss, index, kind, param)
    ref_d, ref_i = index.search(q[:nq], K)  # same queries, same batch shape as on the loaded copies
    for name in FLAG_SETS:
        gc.collect()
        r0 = rss_mb()
        try:
            t0 = time.perf_counter()
            loaded = faiss.read_index(path, flag_value(faiss, name))
            load_s = time.perf_counter() - t0
        except Exception as e:
            res.mmap.append(MmapRow(n, kind, name, False, detail=str(e).splitlines()[0][:120]))
            continue
        drss = rss_mb() - r0
        mapped = is_mapped(path)
        detail = stored_params(faiss, loaded, kind)
        if param is not None:
            set_params(faiss, loaded, kind, param)
        ld, li = loaded.search(q[:nq], K)
        same = (
            f"identical ({nq} q)"
            if np.array_equal(li, ref_i) and np.array_equal(ld, ref_d)
            else f"DIFFER ({np.mean(li != ref_i):.1%} ids, max |dD| {np.abs(ld - ref_d).max():.2g})"
        )
        p50, _, _ = single_query_latency(loaded, q, lat_queries, 10.0)
        res.mmap.append(MmapRow(n, kind, name, True, load_s, drss, mapped, same, p50, detail))
        log(
            f"  load {kind} flags={name}: {load_s * 1000:.0f} ms, RSS +{drss:.0f} MB, mapped={mapped}, {same}, {detail}"
        )
        del loaded


ADD_CHILD = r"""
import sys, numpy as np, faiss
ix = faiss.read_index(sys.argv[1], int(sys.argv[2]))
x = np.random.default_rng(1).standard_normal((int(sys.argv[3]), ix.d)).astype('float32')
try:
    ix.add(x)
    print('add ok, ntotal', ix.ntotal)
except Exception as e:
    print('python exception:', str(e).splitlines()[0][:100])
"""


def add_check(faiss, res: Results, kind: str, path: str) -> None:
    for name, n_add in (("0", 1000), ("IO_FLAG_MMAP", 3), ("IO_FLAG_MMAP", 1000), ("IO_FLAG_MMAP_IFC", 3)):
        p = subprocess.run(
            [sys.executable, "-c", ADD_CHILD, path, str(flag_value(faiss, name)), str(n_add)],
            capture_output=True,
            text=True,
            timeout=300,
        )
        out = (p.stdout.strip() or "").splitlines()
        err = [ln for ln in p.stderr.strip().splitlines() if ln.strip()]
        if p.returncode == 0:
            msg = out[-1] if out else "exit 0"
        else:
            sig = f"killed by signal {-p.returncode}" if p.returncode < 0 else f"exit {p.returncode}"
            msg = f"{sig} (uncatchable from Python); stderr: {(err[-1] if err else '')[:160]}"
        res.add_checks.append(f"{kind} loaded with flags={name}, add({n_add} vectors): {msg}")
        log(f"  add({n_add}) after load {kind} flags={name}: {msg}")


# ----------------------------------------------------------------------------------------------------- main
def run_size(
    faiss,
    args,
    gen: Generator,
    q: np.ndarray,
    n: int,
    res: Results,
    workdir: str,
    hnsw_hist: list[tuple[int, float]],
    first: bool,
) -> None:
    log(f"=== N = {n:,}: generating data (load avg {loadavg()})")
    t0 = time.perf_counter()
    x = gen.draw(n, stream=1)
    log(f"generated {n:,} x {DIM} in {time.perf_counter() - t0:.1f}s ({x.nbytes / 2**20:.0f} MB)")
    lat_q = args.latency_queries

    # ---- Flat (exact; ground truth)
    gc.collect()
    reset_peak_rss()
    r0, p0 = rss_mb(), peak_rss_mb()
    c0, t0 = time.process_time(), time.perf_counter()
    flat = faiss.IndexFlatIP(DIM)
    flat.add(x)
    add_s = time.perf_counter() - t0
    cpu_s = time.process_time() - c0
    drss, dpeak = rss_mb() - r0, peak_rss_mb() - p0
    _, gt, qps = batch_search(flat, q)
    p50 = p95 = None
    nl = 0
    if not args.skip_flat_latency:
        p50, p95, nl = single_query_latency(flat, q, lat_q, args.latency_budget_s)
    path = os.path.join(workdir, f"flat_{n}.faiss")
    t0 = time.perf_counter()
    faiss.write_index(flat, path)
    log(
        f"Flat: add {add_s:.1f}s, p50 {fmt(p50, '.2f')} ms over {nl} queries, batch {qps:.0f} QPS, "
        f"write_index {time.perf_counter() - t0:.1f}s (load avg {loadavg()})"
    )
    res.rows.append(
        Row(
            n,
            "Flat",
            "exact",
            None,
            add_s,
            file_mb(path),
            drss,
            dpeak,
            p50,
            p95,
            nl,
            cpu_s,
            LAST_CPU_P50_MS if nl else None,
            qps,
            1.0,
        )
    )
    if not args.no_mmap:
        mmap_checks(faiss, res, n, "Flat", flat, path, q, None, min(lat_q, 200))
        if first:
            add_check(faiss, res, "Flat", path)
    del flat
    os.remove(path)

    # ---- IVF (one index per --ivf-nlist value; default: the mind_core rule)
    for nlist in args.ivf_nlist or [ivf_nlist(n)]:
        if nlist * 39 > n:
            log(f"IVF{nlist}: skipped, needs >= {nlist * 39:,} training vectors")
            continue
        gc.collect()
        n_train = min(n, args.ivf_train_mult * nlist)
        reset_peak_rss()
        r0, p0 = rss_mb(), peak_rss_mb()
        ivf = faiss.index_factory(DIM, f"IVF{nlist},Flat", faiss.METRIC_INNER_PRODUCT)
        rng = np.random.default_rng([args.seed, 99])
        c0, t0 = time.process_time(), time.perf_counter()
        train = x[np.sort(rng.choice(n, size=n_train, replace=False))] if n_train < n else x
        ivf.train(train)
        train_s = time.perf_counter() - t0
        del train
        t0 = time.perf_counter()
        ivf.add(x)
        add_s = time.perf_counter() - t0
        cpu_s = time.process_time() - c0
        drss, dpeak = rss_mb() - r0, peak_rss_mb() - p0
        sizes = np.array([ivf.invlists.list_size(i) for i in range(nlist)])
        path = os.path.join(workdir, f"ivf_{n}.faiss")
        np_ = min(args.mmap_nprobe, nlist)
        ivf.nprobe = np_  # written with the file: checks that the search parameter is persisted
        t0 = time.perf_counter()
        faiss.write_index(ivf, path)
        write_s = time.perf_counter() - t0
        fmb = file_mb(path)
        log(
            f"IVF{nlist}: train on {n_train:,} in {train_s:.1f}s, add {add_s:.1f}s; "
            f"list sizes mean {sizes.mean():.0f}, "
            f"max {sizes.max()}, empty {int((sizes == 0).sum())}; write_index {write_s:.1f}s (load avg {loadavg()})"
        )
        for nprobe in args.nprobes:
            if nprobe > nlist:
                continue
            ivf.nprobe = nprobe
            _, found, qps = batch_search(ivf, q)
            rec = recall_at_k(found, gt)
            p50, p95, nl = single_query_latency(ivf, q, lat_q, args.latency_budget_s)
            scanned = sizes.mean() * nprobe  # rough
            res.rows.append(
                Row(
                    n,
                    f"IVF{nlist},Flat",
                    f"nprobe={nprobe}",
                    train_s,
                    add_s,
                    fmb,
                    drss,
                    dpeak,
                    p50,
                    p95,
                    nl,
                    cpu_s,
                    LAST_CPU_P50_MS,
                    qps,
                    rec,
                    f"train {n_train:,}; ~{scanned:,.0f} vecs scanned",
                )
            )
            log(f"  nprobe={nprobe}: recall@10 {rec:.3f}, p50 {p50:.2f} ms, p95 {p95:.2f} ms, batch {qps:.0f} QPS")
        if not args.no_mmap:
            mmap_checks(faiss, res, n, "IVF", ivf, path, q, np_, min(lat_q, 200))
            if first:
                add_check(faiss, res, "IVF", path)
        del ivf
        os.remove(path)

    # ---- HNSW
    gc.collect()
    if args.skip_hnsw:
        res.rows.append(Row(n, "HNSW32,Flat", "–", note="skipped (--skip-hnsw)"))
    else:
        predicted = None
        if hnsw_hist:
            n0, t_0 = hnsw_hist[-1]
            predicted = t_0 * (n / n0) * (math.log(n) / math.log(n0))
        if predicted is not None and predicted > args.hnsw_budget_s * 1.25:
            reason = (
                f"not built: predicted build {predicted / 60:.1f} min (EXTRAPOLATED from {hnsw_hist[-1][0]:,} "
                f"as t·(N/N0)·(logN/logN0)) > budget {args.hnsw_budget_s / 60:.0f} min"
            )
            log("HNSW " + reason)
            est_mb = n * (DIM * 4 + 2 * 32 * 4 * 1.07 + 8) / 2**20
            res.rows.append(Row(n, "HNSW32,Flat", "efC=40", None, predicted, est_mb, note="EXTRAPOLATED, " + reason))
        else:
            reset_peak_rss()
            r0, p0 = rss_mb(), peak_rss_mb()
            hnsw = faiss.IndexHNSWFlat(DIM, 32, faiss.METRIC_INNER_PRODUCT)
            hnsw.hnsw.efConstruction = 40
            c0, t0 = time.process_time(), time.perf_counter()
            chunk = 50_000
            aborted = None
            for s in range(0, n, chunk):
                hnsw.add(x[s : s + chunk])
                el = time.perf_counter() - t0
                done = s + min(chunk, n - s)
                if done < n:
                    eta = el * (n / done) * (math.log(n) / math.log(max(done, 2)))
                    if el > args.hnsw_budget_s or (done >= 100_000 and eta > args.hnsw_budget_s * 1.5):
                        aborted = (done, el, eta)
                        break
            add_s = time.perf_counter() - t0
            cpu_s = time.process_time() - c0
            drss, dpeak = rss_mb() - r0, peak_rss_mb() - p0
            if aborted:
                done, el, eta = aborted
                reason = (
                    f"stopped after {done:,} vectors in {el:.0f}s; full build EXTRAPOLATED to {eta / 60:.1f} min "
                    f"> budget {args.hnsw_budget_s / 60:.0f} min"
                )
                log("HNSW " + reason)
                est_mb = n * (DIM * 4 + 2 * 32 * 4 * 1.07 + 8) / 2**20
                res.rows.append(Row(n, "HNSW32,Flat", "efC=40", None, eta, est_mb, note="EXTRAPOLATED, " + reason))
                del hnsw
            else:
                hnsw_hist.append((n, add_s))
                path = os.path.join(workdir, f"hnsw_{n}.faiss")
                hnsw.hnsw.efSearch = args.mmap_ef  # written with the file: checks that efSearch is persisted
                t0 = time.perf_counter()
                faiss.write_index(hnsw, path)
                write_s = time.perf_counter() - t0
                fmb = file_mb(path)
                log(f"HNSW32: build {add_s:.1f}s, write_index {write_s:.1f}s (load avg {loadavg()})")
                for ef in args.ef_search:
                    hnsw.hnsw.efSearch = ef
                    _, found, qps = batch_search(hnsw, q)
                    rec = recall_at_k(found, gt)
                    p50, p95, nl = single_query_latency(hnsw, q, lat_q, args.latency_budget_s)
                    res.rows.append(
                        Row(
                            n,
                            "HNSW32,Flat",
                            f"efC=40, efSearch={ef}",
                            None,
                            add_s,
                            fmb,
                            drss,
                            dpeak,
                            p50,
                            p95,
                            nl,
                            cpu_s,
                            LAST_CPU_P50_MS,
                            qps,
                            rec,
                        )
                    )
                    log(
                        f"  efSearch={ef}: recall@10 {rec:.3f}, p50 {p50:.2f} ms, p95 {p95:.2f} ms, batch {qps:.0f} QPS"
                    )
                if not args.no_mmap:
                    mmap_checks(faiss, res, n, "HNSW", hnsw, path, q, args.mmap_ef, min(lat_q, 200))
                    if first:
                        add_check(faiss, res, "HNSW", path)
                del hnsw
                os.remove(path)
    del x
    gc.collect()


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=None, help=f"database sizes (default {DEFAULT_SIZES})")
    ap.add_argument("--quick", action="store_true", help=f"small run: sizes {QUICK_SIZES}")
    ap.add_argument("--queries", type=int, default=1000)
    ap.add_argument("--nprobes", type=int, nargs="+", default=[8, 32, 64, 128])
    ap.add_argument(
        "--ivf-nlist",
        type=int,
        nargs="+",
        default=None,
        help="nlist values to build (default: 4*sqrt(N) rounded to a power of two)",
    )
    ap.add_argument("--ivf-train-mult", type=int, default=64, help="train IVF on min(N, this * nlist) vectors")
    ap.add_argument("--ef-search", type=int, nargs="+", default=[64, 128])
    ap.add_argument("--mmap-nprobe", type=int, default=32, help="nprobe used for the save/load comparison")
    ap.add_argument("--mmap-ef", type=int, default=128, help="efSearch used for the save/load comparison")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument(
        "--latency-threads",
        type=int,
        default=None,
        help="OpenMP threads while timing single queries (default: --threads)",
    )
    ap.add_argument("--latency-queries", type=int, default=1000, help="single-query searches per configuration")
    ap.add_argument(
        "--latency-budget-s",
        type=float,
        default=60.0,
        help="stop single-query timing of one configuration after this many seconds (>= 50 queries)",
    )
    ap.add_argument("--hnsw-budget-s", type=float, default=600.0, help="skip/stop HNSW builds predicted to take longer")
    ap.add_argument("--skip-hnsw", action="store_true")
    ap.add_argument(
        "--skip-flat-latency",
        action="store_true",
        help="time no single Flat queries (Flat is still built: it gives the exact neighbours)",
    )
    ap.add_argument("--no-mmap", action="store_true", help="skip the save/load checks")
    ap.add_argument("--clusters", type=int, default=2000)
    ap.add_argument("--sigma", type=float, default=1.0)
    ap.add_argument("--structure", choices=("isotropic", "subspace"), default="isotropic")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--workdir", default=None, help="where index files are written (default: a temp dir)")
    args = ap.parse_args(argv)
    sizes = args.sizes or (QUICK_SIZES if args.quick else DEFAULT_SIZES)

    import faiss

    faiss.omp_set_num_threads(args.threads)
    global LATENCY_THREADS
    LATENCY_THREADS = args.latency_threads
    spec = DataSpec(args.clusters, args.sigma, args.structure, seed=args.seed)
    t_all = time.perf_counter()
    print("# FAISS index benchmark\n")
    print(
        f"* faiss {faiss.__version__} ({faiss.get_compile_options().strip()}), numpy {np.__version__}, "
        f"Python {sys.version.split()[0]}, omp threads {args.threads} (single-query timing: "
        f"{args.latency_threads or args.threads}), CPUs visible {os.cpu_count()}"
    )
    print(f"* data: {DIM}-d float32, {spec.describe()}")
    print(f"* queries: {args.queries:,} held-out draws from the same distribution; k = {K}; recall@{K} vs IndexFlatIP")
    print(
        f"* sizes: {', '.join(f'{s:,}' for s in sizes)}; load average at start: {loadavg()} "
        f"(other processes on this machine can inflate timings)\n",
        flush=True,
    )

    gen = Generator(spec)
    q = gen.draw(args.queries, stream=2)
    res = Results()
    workdir = args.workdir or tempfile.mkdtemp(prefix="index_bench_")
    os.makedirs(workdir, exist_ok=True)
    hnsw_hist: list[tuple[int, float]] = []
    try:
        for i, n in enumerate(sizes):
            if i == 0:
                x = gen.draw(min(n, 20_000), stream=1)
                sims = q[:200] @ x.T
                top = -np.sort(-sims, axis=1)[:, :K]
                res.notes.append(
                    f"data check (first 20k points, 200 queries): mean cosine of query to its top-1 "
                    f"{top[:, 0].mean():.3f}, to its 10th {top[:, -1].mean():.3f}, to a random point "
                    f"{sims.mean():.3f}"
                )
                del x, sims
            run_size(faiss, args, gen, q, n, res, workdir, hnsw_hist, first=(i == 0))
            print_table(res)
            print(flush=True)
    finally:
        if not args.workdir:
            shutil.rmtree(workdir, ignore_errors=True)
    res.notes.append(f"load average at end: {loadavg()}; total wall time {(time.perf_counter() - t_all) / 60:.1f} min")
    res.notes.append(
        "p50/p95: one query per search() call, k=10, warm caches; batch QPS: one search() of all queries; "
        "CPU ms p50 / build CPU s: process CPU time (all threads, incl. OpenMP spin-waiting), less "
        "sensitive than wall time to other processes competing for the cores"
    )
    res.notes.append(
        "RSS Δ: growth of VmRSS over the build (includes the training sample copy for IVF and allocator "
        "slack); file MB: faiss.write_index size = serialize_index size = in-memory payload"
    )
    print("\n# FINAL")
    print_table(res)
    return 0


if __name__ == "__main__":
    sys.exit(main())
