"""Rebuild the vendored IntentionQA test subsets from the full normalised files (vendored gzipped in full/).

    python data/intentionqa/make_subset.py data/intentionqa/full data/intentionqa

Takes 60 question ids per file with numpy's default_rng(0) (task 2 uses the same ids as task 1, so the two
files describe the same pairs) and copies those lines unchanged, in file order.
"""

import gzip
import json
import sys
from pathlib import Path

import numpy as np

N = 60


def pick(lines: list[str], seed: int = 0) -> list[int]:
    return sorted(np.random.default_rng(seed).choice(len(lines), size=N, replace=False).tolist())


def read_lines(folder: Path, stem: str) -> list[str]:
    """The lines of ``<stem>.jsonl`` or ``<stem>.jsonl.gz`` in ``folder``."""
    plain = folder / f"{stem}.jsonl"
    if plain.exists():
        return plain.read_text(encoding="utf-8").splitlines()
    with gzip.open(folder / f"{stem}.jsonl.gz", "rt", encoding="utf-8") as fh:
        return fh.read().splitlines()


def main(src: str, dst: str) -> None:
    src_dir, dst_dir = Path(src), Path(dst)
    t1 = read_lines(src_dir, "task1")
    rows = pick(t1)
    ids = {json.loads(t1[i])["id"] for i in rows}
    out = {"task1_sample.jsonl": [t1[i] for i in rows]}
    t2 = read_lines(src_dir, "task2")
    out["task2_sample.jsonl"] = [ln for ln in t2 if json.loads(ln)["id"] in ids]
    br = read_lines(src_dir, "task1_byrelation")
    out["task1_byrelation_sample.jsonl"] = [br[i] for i in pick(br)]
    for name, lines in out.items():
        assert len(lines) == N, (name, len(lines))
        (dst_dir / name).write_text("\n".join(lines) + "\n", encoding="utf-8")
        print(f"{name}: {len(lines)} questions")


if __name__ == "__main__":
    main(*sys.argv[1:3])
