"""Write a ~1.26M-intention input folder (+ aligned embeddings) made by repeating the real MIND sample.

SYNTHETIC, for performance measurements only. Encoding 1.26M texts with MiniLM on a CPU takes days, so:

* every copy ``c`` (0..copies-1) repeats all sample intention rows with new ids (``<id>~c<c>``);
* products: each sample product gets ``variants`` (37) copies with ASIN ``<asin>~v<k>`` and title suffix
  `` · variant k`` (k > 0); copy ``c`` pairs product variant ``c % variants`` of A with variant
  ``(c // variants) % variants`` of B, so every (A, B) pair is distinct for copies < variants² (1,369) and each
  product variant takes part in ~10 copies (realistic partner counts, ~200k products);
* intention text, relation, verdict, reason and intention category are the source row's (relation and verdict
  stay consistent with the text); ``p_yes`` (None in the sample) is synthetic: 0.75 ± 0.15 for kept rows, 0.25 ±
  0.15 for filtered ones (clipped to [0, 1]), so the score facet has something to filter;
* embeddings: each row's vector is its source row's real MiniLM vector (from an already built sample KB's
  ``embeddings.npy``) plus Gaussian noise (σ = 0.01 per dimension, |noise| ≈ 0.2) and renormalised — identical
  duplicated vectors would degenerate IVF training.

Then build it with the CLI (IVF is chosen automatically above 50k vectors)::

    python benchmarks/make_scale_kb.py --sample-kb indexes/sample --out scale --copies 371
    python -m mind_core build-kb --input scale/input --vectors scale/vectors.npy --out scale/kb

``--layout mind-csv --rows 1264441`` writes MIND's official CSV layout instead (one ``mind.csv.gz``, the columns
``role_aware_filter.py`` writes, titles and descriptions inline, ``Agreement`` = the filter's answer), as many rows
as MIND's KB; ids are then made by the loader from the content::

    python benchmarks/make_scale_kb.py --layout mind-csv --rows 1264441 --out scale-csv
    python -m mind_core build-kb --input scale-csv/input/mind.csv.gz --vectors scale-csv/vectors.npy --out scale-csv/kb
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from mind_core.schema import INTENTIONS_SCHEMA, PRODUCTS_SCHEMA

REPO = Path(__file__).resolve().parent.parent

VARIANTS = 37
INTENTION_PART_COPIES = 40  # copies per Parquet part (≈136k rows)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sample-kb", default=str(REPO / "indexes" / "sample"), help="a built sample KB folder")
    ap.add_argument("--out", default=str(REPO / "scale"))
    ap.add_argument("--copies", type=int, default=371, help="371 × 3,397 = 1,260,287 intentions")
    ap.add_argument("--rows", type=int, default=None, help="exact number of intentions (overrides --copies)")
    ap.add_argument("--layout", choices=("parquet", "mind-csv"), default="parquet")
    ap.add_argument("--noise", type=float, default=0.01)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)

    t0 = time.perf_counter()
    src = Path(args.sample_kb)
    out = Path(args.out)
    inp = out / "input"
    inp.mkdir(parents=True, exist_ok=True)
    for old in inp.glob("*.parquet"):
        old.unlink()
    rng = np.random.default_rng(args.seed)

    intentions = pq.read_table(src / "intentions.parquet")
    products = pq.read_table(src / "products.parquet")
    emb = np.load(src / "embeddings.npy").astype(np.float32)
    n = intentions.num_rows
    assert emb.shape[0] == n, "embeddings.npy does not match intentions.parquet"
    if args.rows:
        args.copies = -(-args.rows // n)
    total = args.rows or n * args.copies
    if args.layout == "mind-csv":
        return write_mind_csv(args, intentions, products, emb, out, inp, rng, total, t0)

    # products: VARIANTS copies each
    pcols = products.to_pydict()
    prod_rows = {c: [] for c in PRODUCTS_SCHEMA.names}
    for k in range(VARIANTS):
        prod_rows["asin"] += [f"{a}~v{k}" for a in pcols["asin"]]
        prod_rows["title"] += [t if k == 0 else f"{t} · variant {k}" for t in pcols["title"]]
        for c in ("description", "image_urls", "category"):
            prod_rows[c] += pcols[c]
    pq.write_table(pa.table(prod_rows, schema=PRODUCTS_SCHEMA), inp / "products.parquet", compression="zstd")

    base = intentions.to_pydict()
    verdict = np.array([v or "" for v in base["verdict"]])
    vecs = np.lib.format.open_memmap(
        out / "vectors.npy", mode="w+", dtype=np.float16, shape=(n * args.copies, emb.shape[1])
    )
    part_rows: dict[str, list] = {c: [] for c in INTENTIONS_SCHEMA.names}
    part = 0

    def flush():
        nonlocal part, part_rows
        if part_rows["intention_id"]:
            pq.write_table(
                pa.table(part_rows, schema=INTENTIONS_SCHEMA),
                inp / f"intentions-{part:04d}.parquet",
                compression="zstd",
            )
            part += 1
            part_rows = {c: [] for c in INTENTIONS_SCHEMA.names}

    for c in range(args.copies):
        va, vb = c % VARIANTS, (c // VARIANTS) % VARIANTS
        a = [f"{x}~v{va}" for x in base["asin_a"]]
        b = [f"{x}~v{vb}" for x in base["asin_b"]]
        p_yes = np.where(verdict == "yes", 0.75, 0.25) + rng.normal(0, 0.15, n)
        cols = {
            "intention_id": [f"{i}~c{c}" for i in base["intention_id"]],
            "pair_id": [f"{x}|{y}" if x <= y else f"{y}|{x}" for x, y in zip(a, b)],
            "asin_a": a,
            "asin_b": b,
            "p_yes": [round(float(p), 4) for p in np.clip(p_yes, 0, 1)],
            "source": ["scale-synthetic"] * n,
        }
        for col in INTENTIONS_SCHEMA.names:
            part_rows[col] += cols.get(col, base[col])
        noisy = emb + rng.normal(0, args.noise, emb.shape).astype(np.float32)
        noisy /= np.linalg.norm(noisy, axis=1, keepdims=True)
        vecs[c * n : (c + 1) * n] = noisy.astype(np.float16)
        if (c + 1) % INTENTION_PART_COPIES == 0:
            flush()
    flush()
    vecs.flush()
    print(
        f"wrote {n * args.copies:,} intentions in {part} parts, {VARIANTS * products.num_rows:,} products, "
        f"vectors {vecs.shape} -> {out} in {time.perf_counter() - t0:.1f} s"
    )
    print(f"next: python -m mind_core build-kb --input {inp} --vectors {out / 'vectors.npy'} --out {out / 'kb'}")
    return 0


def write_mind_csv(args, intentions, products, emb, out: Path, inp: Path, rng, total: int, t0: float) -> int:
    from mind_core.data.mind_csv import write_official_csv

    n = intentions.num_rows
    base = intentions.to_pylist()
    prods = {p["asin"]: p for p in products.to_pylist()}
    vecs = np.lib.format.open_memmap(out / "vectors.npy", mode="w+", dtype=np.float16, shape=(total, emb.shape[1]))

    def rows():
        done = 0
        for c in range(args.copies):
            va, vb = c % VARIANTS, (c // VARIANTS) % VARIANTS
            take = min(n, total - done)
            for r in base[:take]:
                yield {**r, "asin_a": f"{r['asin_a']}~v{va}", "asin_b": f"{r['asin_b']}~v{vb}"}
            noisy = emb[:take] + rng.normal(0, args.noise, (take, emb.shape[1])).astype(np.float32)
            noisy /= np.linalg.norm(noisy, axis=1, keepdims=True)
            vecs[done : done + take] = noisy.astype(np.float16)
            done += take

    class Variants(dict):
        def get(self, asin, default=None):
            stem, _, k = asin.rpartition("~v")
            p = prods.get(stem)
            if p is None:
                return default
            return p if k == "0" else {**p, "title": f"{p['title']} · variant {k}"}

    for old in inp.glob("*.csv*"):
        old.unlink()
    written = write_official_csv(rows(), Variants(), inp / "mind.csv.gz")
    vecs.flush()
    size = (inp / "mind.csv.gz").stat().st_size
    print(
        f"wrote {written:,} intentions in MIND's official layout ({size / 1e6:.0f} MB gzipped), vectors {vecs.shape} "
        f"-> {out} in {time.perf_counter() - t0:.1f} s"
    )
    vec_path, kb_path = out / "vectors.npy", out / "kb"
    print(f"next: python -m mind_core build-kb --input {inp / 'mind.csv.gz'} --vectors {vec_path} --out {kb_path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
