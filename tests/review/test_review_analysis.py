"""mind_core.review.analysis and .queue: agreement statistics against published / hand-computed values, the human
label, human vs filter and scores against direct pandas computations, and the review queues."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from mind_core.review.analysis import (
    agreement,
    human_labels_frame,
    human_vs_filter,
    human_vs_scores,
    item_labels,
    review_report,
)
from mind_core.review.queue import QueueError, next_unrated, queue_order, remaining
from mind_core.scores.metrics import roc_auc


def _answers(matrix, question="plausibility", names=None) -> pd.DataFrame:
    """Answers from an annotators x items matrix (NaN = not rated)."""
    rows = []
    for r, values in enumerate(matrix):
        for j, v in enumerate(values):
            if v is None or (isinstance(v, float) and math.isnan(v)):
                continue
            row = {"intention_id": f"i{j:03d}", "annotator": (names or [f"a{k}" for k in range(len(matrix))])[r]}
            row["plausibility"] = int(v) if question == "plausibility" else 1
            row["typicality"] = int(v) if question == "typicality" else pd.NA
            rows.append({**row, "comment": None, "created_at": "2026-01-01T00:00:00.000Z"})
    df = pd.DataFrame(rows)
    df["typicality"] = pd.array(df["typicality"].tolist(), dtype="Int64")
    return df


def test_krippendorff_alpha_matches_krippendorffs_own_example():
    # Krippendorff (2011), "Computing Krippendorff's alpha-reliability", the example with missing values:
    # nominal alpha 0.691 (the krippendorff package documents 0.691358)
    nan = float("nan")
    data = [
        [nan, nan, nan, nan, nan, 3, 4, 1, 2, 1, 1, 3, 3, nan, 3],
        [1, nan, 2, 1, 3, 3, 4, 3, nan, nan, nan, nan, nan, nan, nan],
        [nan, nan, 2, 1, 3, 4, 4, nan, 2, 1, 1, 3, 3, nan, 4],
    ]
    out = agreement(_answers(data, "typicality"), "typicality", n_boot=50)
    assert out["annotators"] == 3 and "cohen_kappa" not in out  # kappa only for exactly two annotators
    assert out["items"] == 12  # items rated by at least two
    # our typicality is ordinal; check the nominal value through the plausibility path's level on the same data
    from krippendorff import alpha

    assert out["krippendorff_alpha"] == pytest.approx(alpha(reliability_data=data, level_of_measurement="ordinal"))
    assert round(alpha(reliability_data=data, level_of_measurement="nominal"), 6) == 0.691358


def test_cohen_kappa_for_two_annotators_matches_the_formula():
    a = [1, 1, 0, 1, 0, 0, 1, 1, 1, 0, 1, 1]
    b = [1, 0, 0, 1, 0, 1, 1, 1, 0, 0, 1, 1]
    out = agreement(_answers([a, b]), "plausibility", n_boot=300, seed=1)
    a, b = np.array(a), np.array(b)
    po = (a == b).mean()
    pe = a.mean() * b.mean() + (1 - a.mean()) * (1 - b.mean())
    assert out["cohen_kappa"] == pytest.approx((po - pe) / (1 - pe))
    assert out["percent_agreement"] == pytest.approx(po) and out["cohen_kappa_items"] == 12
    lo, hi = out["cohen_kappa_ci95"]
    assert lo <= out["cohen_kappa"] <= hi and lo < hi
    assert out == agreement(_answers([a.tolist(), b.tolist()]), "plausibility", n_boot=300, seed=1)  # seeded
    # with two annotators alpha is close to kappa (they differ by the expected-disagreement estimate only)
    assert abs(out["krippendorff_alpha"] - out["cohen_kappa"]) < 0.05


def test_typicality_kappa_uses_quadratic_weights():
    from sklearn.metrics import cohen_kappa_score

    a, b = [1, 2, 3, 4, 5, 5, 4, 3], [1, 3, 3, 5, 5, 4, 4, 2]
    out = agreement(_answers([a, b], "typicality"), "typicality", n_boot=20)
    assert out["cohen_kappa_weights"] == "quadratic"
    assert out["cohen_kappa"] == pytest.approx(cohen_kappa_score(a, b, weights="quadratic"))


def test_no_agreement_without_two_annotators_or_without_variation():
    one = agreement(_answers([[1, 0, 1]]), "plausibility", n_boot=10)
    assert one["annotators"] == 1 and math.isnan(one["krippendorff_alpha"])
    same = agreement(_answers([[1, 1, 1], [1, 1, 1]]), "plausibility", n_boot=10)
    assert math.isnan(same["krippendorff_alpha"]) and math.isnan(same["cohen_kappa"])


def test_the_human_label_is_the_majority_and_ties_have_none():
    df = _answers([[1, 1, 0, 0], [1, 0, 0, None], [0, 1, 0, None]])
    labels = item_labels(df)
    assert labels["label"].tolist() == ["yes", "yes", "no", "no"]
    tie = _answers([[1, 0], [0, 0]])
    assert item_labels(tie)["label"].tolist() == [None, "no"]
    assert human_labels_frame(tie).to_dict("list") == {"intention_id": ["i001"], "label": ["no"]}


@pytest.fixture()
def kb_like():
    rng = np.random.default_rng(3)
    n = 200
    intentions = pd.DataFrame(
        {
            "intention_id": [f"i{j:03d}" for j in range(n)],
            "relation": rng.choice(["usedFor", "isA", "capableOf"], n),
            "verdict": rng.choice(["yes", "no", None], n, p=[0.45, 0.45, 0.1]),
            "asin_a": rng.choice(["A1", "A2", "A3"], n),
            "asin_b": rng.choice(["B1", "B2"], n),
        }
    )
    intentions["pair_id"] = intentions["asin_a"] + "-" + intentions["asin_b"]
    truth = np.where(rng.random(n) < 0.7, intentions["verdict"] == "yes", rng.random(n) < 0.5)
    matrix = [[int(t) if rng.random() < 0.9 else 1 - int(t) for t in truth] for _ in range(2)]
    answers = _answers(matrix)
    scores = pd.DataFrame({"critic": np.clip(truth * 0.3 + rng.random(n) * 0.7, 0, 1), "p_yes": np.nan})
    return intentions, answers, scores


def test_human_vs_filter_matches_pandas(kb_like):
    intentions, answers, _ = kb_like
    labels = item_labels(answers)
    out = human_vs_filter(intentions, labels, n_boot=100)
    j = intentions.merge(labels[["label"]], left_on="intention_id", right_index=True)
    j = j[j["verdict"].isin(["yes", "no"]) & j["label"].notna()]
    kept, plaus = j["verdict"] == "yes", j["label"] == "yes"
    assert out["items"] == len(j) and out["kept"] == kept.sum()
    assert out["precision_kept"] == pytest.approx((kept & plaus).sum() / kept.sum())
    assert out["recall"] == pytest.approx((kept & plaus).sum() / plaus.sum())
    assert out["filtered_implausible"] == pytest.approx((~kept & ~plaus).sum() / (~kept).sum())
    lo, hi = out["precision_kept_ci95"]
    assert lo <= out["precision_kept"] <= hi
    per = {r["relation"]: r for r in out["per_relation"]}
    for rel, part in j.groupby("relation"):
        k, p = part["verdict"] == "yes", part["label"] == "yes"
        assert per[rel]["items"] == len(part)
        assert per[rel]["precision_kept"] == pytest.approx((k & p).sum() / k.sum())


def test_human_vs_scores_is_the_auc_against_the_labels(kb_like):
    intentions, answers, scores = kb_like
    labels = item_labels(answers)
    out = human_vs_scores(intentions, scores, labels, n_boot=100)
    assert "p_yes" not in out  # no value at all: left out
    have = labels["label"].notna()
    lab = labels[have]
    pos = intentions.set_index("intention_id").index.get_indexer(lab.index)
    assert out["critic"]["auc"] == pytest.approx(roc_auc(scores["critic"].to_numpy()[pos], lab["label"]))
    assert out["critic"]["items"] == int(have.sum()) and out["critic"]["auc"] > 0.6


def test_the_report_is_json_ready(kb_like):
    import json

    intentions, answers, scores = kb_like
    report = review_report(answers, intentions, scores, n_boot=50)
    text = json.dumps(report, allow_nan=False)  # NaN became null
    assert '"cohen_kappa"' in text and '"krippendorff_alpha"' in text
    assert report["answers"] == len(answers) and report["annotators"] == {"a0": 200, "a1": 200}


# --- queues ------------------------------------------------------------------------------------------------------


def test_random_queue_is_seeded_and_covers_every_row(kb_like):
    intentions = kb_like[0]
    order = queue_order(intentions, "random")
    assert sorted(order) == list(range(len(intentions)))
    assert np.array_equal(order, queue_order(intentions, "random"))  # the same for every annotator
    assert not np.array_equal(order, queue_order(intentions, "random", seed=1))


def test_relation_and_kept_filtered_queues_take_turns(kb_like):
    intentions = kb_like[0]
    rel = intentions["relation"].to_numpy()[queue_order(intentions, "relation")]
    assert len(set(rel[:3])) == 3 and len(set(rel[3:6])) == 3
    order = queue_order(intentions, "kept-filtered")
    v = intentions["verdict"].to_numpy()[order]
    assert set(v) == {"yes", "no"} and len(order) == intentions["verdict"].isin(["yes", "no"]).sum()
    assert all(v[i] != v[i + 1] for i in range(0, 20))


def test_uncertain_queue_sorts_by_distance_to_one_half(kb_like):
    intentions, _, scores = kb_like
    s = scores["critic"].to_numpy().copy()
    s[:5] = np.nan
    order = queue_order(intentions, "uncertain", scores=s)
    assert len(order) == len(s) - 5 and not set(order) & set(range(5))
    d = np.abs(s[order] - 0.5)
    assert np.all(np.diff(d) >= 0)
    with pytest.raises(QueueError, match="no row"):
        queue_order(intentions, "uncertain", scores=np.full(len(s), np.nan))


def test_product_queue_and_skipping_rated(kb_like):
    intentions = kb_like[0]
    order = queue_order(intentions, "product", asin="B2")
    assert set(order) == set(np.flatnonzero((intentions["asin_b"] == "B2").to_numpy()))
    with pytest.raises(QueueError, match="no intention"):
        queue_order(intentions, "product", asin="ZZZ")
    ids = intentions["intention_id"].to_numpy(dtype=object)
    rated = {ids[order[0]], ids[order[2]]}
    assert next_unrated(order, ids, rated, 2) == [int(order[1]), int(order[3])]
    assert remaining(order, ids, rated) == len(order) - 2
