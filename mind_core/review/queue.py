"""Which intention a reviewer sees next: the review queues, as orders over a KB's rows (pure functions).

Every queue is seeded and the same for every annotator, so two people who rate the start of one queue rate the
same intentions and their agreement can be measured. A queue is an order of row positions; :func:`next_unrated`
then skips what this annotator has already rated.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd


@dataclass(frozen=True)
class QueueKind:
    key: str
    label: str
    help: str


QUEUES: dict[str, QueueKind] = {
    q.key: q
    for q in (
        QueueKind("random", "random", "intentions in a seeded random order (the same for every annotator)"),
        QueueKind("relation", "stratified by relation", "the relations take turns, so each gets rated early"),
        QueueKind("kept-filtered", "kept vs filtered", "intentions the filter kept and filtered take turns"),
        QueueKind(
            "uncertain",
            "most uncertain first",
            "the score (critic P(keep) or the filter's P(yes)) nearest 0.5 first; rows without it are left out",
        ),
        QueueKind("product", "one product's intentions", "every intention of one product's pairs"),
    )
}
#: scores the "uncertain" queue can sort by (columns of :func:`mind_core.kb.store.load_scores`)
UNCERTAIN_SCORES: tuple[str, ...] = ("critic", "p_yes", "p_yes_rescored")


class QueueError(ValueError):
    """A queue that cannot be built as asked (unknown kind, no product, no score)."""


def _interleave(perm: np.ndarray, groups: np.ndarray) -> np.ndarray:
    """``perm`` reordered so the groups take turns: the first of each group, then the second of each..."""
    g = groups[perm]
    codes, _ = pd.factorize(g, sort=True)
    rank = pd.Series(codes).groupby(codes).cumcount().to_numpy()
    return perm[np.lexsort((codes, rank))]


def queue_order(
    intentions: pd.DataFrame,
    kind: str,
    *,
    seed: int = 0,
    scores: Sequence[float] | np.ndarray | pd.Series | None = None,
    asin: str | None = None,
) -> np.ndarray:
    """Row positions of ``intentions`` in the order queue ``kind`` offers them (see :data:`QUEUES`).

    ``scores`` (aligned with the rows) is needed by ``uncertain``, ``asin`` by ``product``."""
    if kind not in QUEUES:
        raise QueueError(f"unknown queue {kind!r}; choose one of {', '.join(QUEUES)}")
    n = len(intentions)
    perm = np.random.default_rng(seed).permutation(n)
    if kind == "random":
        return perm
    if kind == "relation":
        return _interleave(perm, intentions["relation"].astype(object).to_numpy())
    if kind == "kept-filtered":
        verdict = intentions["verdict"].astype(object).to_numpy()
        judged = perm[np.isin(verdict[perm], ["yes", "no"])]
        return _interleave(judged, verdict)
    if kind == "uncertain":
        if scores is None:
            raise QueueError("the uncertain queue needs a score (critic P(keep) or P(yes))")
        s = pd.to_numeric(pd.Series(np.asarray(scores, dtype=float)), errors="coerce").to_numpy()
        if len(s) != n:
            raise QueueError(f"{len(s)} scores for {n} rows")
        valid = perm[~np.isnan(s[perm])]
        if not len(valid):
            raise QueueError("no row of this KB has that score")
        return valid[np.argsort(np.abs(s[valid] - 0.5), kind="stable")]
    # product
    if not asin:
        raise QueueError("the product queue needs a product (ASIN)")
    a = intentions["asin_a"].astype(object).to_numpy()
    b = intentions["asin_b"].astype(object).to_numpy()
    mine = np.flatnonzero((a == asin) | (b == asin))
    if not len(mine):
        raise QueueError(f"no intention of this KB involves product {asin}")
    order = pd.DataFrame({"pair": intentions["pair_id"].astype(object).to_numpy()[mine], "pos": mine})
    order["relation"] = intentions["relation"].astype(object).to_numpy()[mine]
    return order.sort_values(["pair", "relation", "pos"], kind="stable")["pos"].to_numpy()


def next_unrated(order: np.ndarray, ids: np.ndarray, rated: Collection[str], n: int = 1) -> list[int]:
    """The first ``n`` positions of ``order`` whose intention id is not in ``rated``."""
    out: list[int] = []
    if n <= 0:
        return out
    for pos in order:
        if ids[pos] not in rated:
            out.append(int(pos))
            if len(out) == n:
                break
    return out


def remaining(order: np.ndarray, ids: np.ndarray, rated: Collection[str]) -> int:
    """How many intentions of the queue this annotator has not rated."""
    if not len(order):
        return 0
    return int((~pd.Index(ids[order]).isin(list(rated))).sum())
