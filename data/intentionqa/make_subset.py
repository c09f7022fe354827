"""Rebuild the vendored IntentionQA test subsets from the full normalised files.

    python data/intentionqa/make_subset.py /work/shared/data/intentionqa data/intentionqa

Takes 60 question ids per file with numpy's default_rng(0) (task 2 uses the same ids as task 1, so the two
files describe the same pairs) and copies those lines unchanged, in file order.
"""

import json
import sys
from pathlib import Path

import numpy as np

N = 60


def pick(lines: list[str], seed: int = 0) -> list[int]:
    return sorted(np.random.default_rng(seed).choice(len(lines), size=N, replace=False).tolist())


def main(src: str, dst: str) -> None:
    src_dir, dst_dir = Path(src), Path(dst)
    t1 = (src_dir / "task1.jsonl").read_text(encoding="utf-8").splitlines()
    rows = pick(t1)
    ids = {json.loads(t1[i])["id"] for i in rows}
    out = {"task1_sample.jsonl": [t1[i] for i in rows]}
    t2 = (src_dir / "task2.jsonl").read_text(encoding="utf-8").splitlines()
    out["task2_sample.jsonl"] = [ln for ln in t2 if json.loads(ln)["id"] in ids]
    br = (src_dir / "task1_byrelation.jsonl").read_text(encoding="utf-8").splitlines()
    out["task1_byrelation_sample.jsonl"] = [br[i] for i in pick(br)]
    for name, lines in out.items():
        assert len(lines) == N, (name, len(lines))
        (dst_dir / name).write_text("\n".join(lines) + "\n", encoding="utf-8")
        print(f"{name}: {len(lines)} questions")


if __name__ == "__main__":
    main(*sys.argv[1:3])
