"""Continuous filter scores for every KB row, and the metrics of a threshold rule "score >= t".

MIND keeps an intention when the role-aware filter answers "yes". To see what a stricter or looser filter would
keep, every row gets continuous scores (higher = more likely worth keeping):

``p_yes``
    The LVLM filter's P(yes) = P(yes) / (P(yes) + P(no)) over the first answer token (see
    :mod:`mind_core.lvlm`), stored in the intentions table by ``distill``. None for rows whose backend gave no
    logits/logprobs, e.g. every row of the vendored MIND sample.
``p_yes_rescored``
    The same quantity recomputed later for a slice of the KB by ``python -m mind_core rescore`` with any backend;
    kept next to the KB under ``<kb>/rescore/<source>/part-*.parquet`` (see :mod:`mind_core.distill.rescore`).
    When a row was rescored by several backends / runs, the most recent answer (``created_at``) wins; its backend is in
    ``rescore_source`` and its parsed answer in ``verdict_rescored``.
``grounding``
    Cosine similarity (all-MiniLM-L6-v2, or the KB's embedding model) between the intention's stored embedding and
    the embedding of the pair text :func:`pair_text`: ``"<title A>. <first 60 words of description A>\\n<title B>.
    <first 60 words of description B>"`` (whitespace collapsed; the encoder reads at most 256 word pieces, which
    cuts the end of B's description for 0.6 % of the sample's pairs). How much the intention talks about these two
    products. NaN when a product of the row is not in the products table, and for KBs built with ``--vectors``
    (the pair texts would have to be encoded on this machine, which is what ``--vectors`` avoids).
``critic``
    P(keep) of a learned critic (:mod:`mind_core.scores.critic`) trained on a KB's verdicts or on human labels;
    written into ``<kb>/scores.parquet`` by ``critic score`` or by ``build-kb`` with the default critic
    (:mod:`mind_core.kb.critic`). Rows whose pair the critic was trained on get out-of-fold scores.
``typicality``
    Cosine similarity between the intention's embedding and the centroid (mean of the L2-normalised embeddings) of
    all *other* intentions with the same relation (leave-one-out, so a row never counts towards its own centroid).
    How typical the intention is of its relation. NaN for a relation with a single row.

``grounding`` and ``typicality`` are computed once by ``build-kb`` (:func:`write_build_scores`) into
``<kb>/scores.parquet`` (``intention_id, grounding, typicality`` as float32, one row per intentions row, same
order), listed in the manifest's artifacts like every other file so staleness checks cover it.
:func:`load_scores` (``KnowledgeBase.scores``) joins everything into one frame aligned with ``kb.intentions``.

Threshold metrics (pure functions; ``verdict`` "yes" is the positive class):

* a row is *kept at t* when ``score >= t`` (ties with t are kept);
* rows whose score is NaN are left out of every score-based number (kept counts, kept rate, precision, recall,
  histograms) and counted separately as ``nan``;
* rows with verdict None (unjudged) count in ``kept`` / ``kept_rate`` but not in precision / recall / F1;
* precision = TP / (TP + FP), recall = TP / (TP + FN), F1 = 2TP / (2TP + FP + FN) over scored, judged rows; each
  is NaN when its denominator is 0 (nothing kept, no "yes" rows, neither); kept rate = kept / scored rows.

At 1.26M rows the page works on :class:`ScoreHistogram` (counts per group x bin x verdict, bins 0.01 wide):
thresholds snap to bin edges, which makes every count exact, and a slider move costs O(groups x bins).
"""

from __future__ import annotations

from dataclasses import dataclass

BIN_WIDTH = 0.01


@dataclass(frozen=True)
class ScoreDef:
    key: str
    label: str
    #: fixed slider range, or None for the data's range
    fixed_range: tuple[float, float] | None
    definition: str


SCORE_DEFS: dict[str, ScoreDef] = {
    d.key: d
    for d in (
        ScoreDef(
            "p_yes",
            "P(yes) of the LVLM filter",
            (0.0, 1.0),
            "P(yes) / (P(yes) + P(no)) over the first answer token of the role-aware filter, recorded by distill "
            "when the backend gave logits/logprobs.",
        ),
        ScoreDef(
            "p_yes_rescored",
            "P(yes), rescored",
            (0.0, 1.0),
            "P(yes) of the role-aware filter recomputed by `python -m mind_core rescore` (the latest rescoring "
            "of each row wins; its backend is in rescore_source).",
        ),
        ScoreDef(
            "critic",
            "critic P(keep) (learned)",
            (0.0, 1.0),
            "P(keep) of a critic learned from a KB's verdicts or human labels (`python -m mind_core critic`; the "
            "default one: logistic regression on the intention's word n-grams and its relation, trained on the "
            "sample). Rows whose pair the critic was trained on are scored out-of-fold, by a model that never saw "
            "that pair.",
        ),
        ScoreDef(
            "grounding",
            "grounding (intention vs. pair text)",
            None,
            'Cosine similarity (MiniLM) between the intention and the pair text "<title A>. <first 60 words of '
            'description A> / <title B>. <first 60 words of description B>".',
        ),
        ScoreDef(
            "typicality",
            "typicality (intention vs. its relation)",
            None,
            "Cosine similarity (MiniLM) between the intention and the centroid of all other intentions of the "
            "same relation (leave-one-out mean of normalised embeddings).",
        ),
    )
}
SCORE_KEYS: tuple[str, ...] = tuple(SCORE_DEFS)


def available_scores(scores) -> list[str]:
    """Score keys with at least one value, in :data:`SCORE_KEYS` order."""
    return [k for k in SCORE_KEYS if k in scores and scores[k].notna().any()]
