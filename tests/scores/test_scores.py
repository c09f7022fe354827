"""Filter scores: threshold metrics on small hand-computed cases, histograms = row-level metrics, build-time
scores (range, row alignment, manifest artifact, staleness)."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest

from mind_core import scores as defs
from mind_core.kb.build import build_kb
from mind_core.kb.store import KnowledgeBase, StaleIndexError
from mind_core.scores import build as B
from mind_core.scores import histograms as Hist
from mind_core.scores import metrics as S

nan = math.nan


# --- threshold metrics, by hand ----------------------------------------------------------------------------------

# score:   0.9  0.8  0.8  0.5  0.3  NaN  0.7   0.2
# verdict: yes  no   yes  yes  no   yes  None  no
SC = [0.9, 0.8, 0.8, 0.5, 0.3, None, 0.7, 0.2]
VE = ["yes", "no", "yes", "yes", "no", "yes", None, "no"]


def test_threshold_metrics_hand_computed_with_ties_nan_and_unjudged():
    m = S.threshold_metrics(SC, VE, 0.8)  # ties at 0.8 are kept
    assert (m.rows, m.nan, m.scored, m.kept) == (8, 1, 7, 3)
    assert (m.tp, m.fp, m.fn, m.tn) == (2, 1, 1, 2)  # the NaN "yes" is not a false negative
    assert m.precision == pytest.approx(2 / 3) and m.recall == pytest.approx(2 / 3)
    assert m.f1 == pytest.approx(4 / 6) and m.kept_rate == pytest.approx(3 / 7)
    m = S.threshold_metrics(SC, VE, 0.6)  # the unjudged 0.7 is kept but not in precision/recall
    assert (m.kept, m.tp, m.fp, m.fn, m.tn) == (4, 2, 1, 1, 2)
    m = S.threshold_metrics(SC, VE, 0.0)
    assert (m.kept, m.tp, m.fp, m.fn, m.tn) == (7, 3, 3, 0, 0) and m.recall == 1.0 and m.precision == 0.5
    m = S.threshold_metrics(SC, VE, 0.95)  # nothing kept: precision undefined, recall 0, F1 0
    assert m.kept == 0 and math.isnan(m.precision) and m.recall == 0.0 and m.f1 == 0.0


def test_empty_all_yes_all_nan():
    m = S.threshold_metrics([], [], 0.5)
    assert (m.rows, m.scored, m.kept) == (0, 0, 0)
    assert all(math.isnan(x) for x in (m.kept_rate, m.precision, m.recall, m.f1))
    m = S.threshold_metrics([0.2, 0.6, 0.9], ["yes"] * 3, 0.5)  # all yes: precision 1, recall 2/3
    assert m.precision == 1.0 and m.recall == pytest.approx(2 / 3) and m.f1 == pytest.approx(0.8)
    assert math.isnan(S.roc_auc([0.2, 0.6, 0.9], ["yes"] * 3))  # no negatives: AUC undefined
    m = S.threshold_metrics([nan, nan], ["yes", "no"], 0.5)
    assert (m.nan, m.scored, m.kept) == (2, 0, 0) and math.isnan(m.kept_rate) and math.isnan(m.recall)
    with pytest.raises(ValueError, match="3 scores but 2 verdicts"):
        S.threshold_metrics([1, 2, 3], ["yes", "no"], 0.5)


def test_kept_counts_per_group_with_empty_and_all_nan_groups():
    out = S.kept_counts([0.9, 0.1, nan, 0.5, nan], ["a", "a", "b", "c", "c"], 0.5).set_index("group")
    assert out.loc["a", ["rows", "nan", "scored", "kept"]].tolist() == [2, 0, 2, 1]
    assert out.loc["b", ["rows", "nan", "scored", "kept"]].tolist() == [1, 1, 0, 0]
    assert math.isnan(out.loc["b", "kept_rate"]) and out.loc["c", "kept_rate"] == 1.0
    assert S.kept_counts([], [], 0.5).empty


def test_roc_auc_ties_and_pr_curve():
    # positives 0.8, 0.5; negatives 0.8, 0.2: pairs (0.8>0.8 tie=.5)+(0.8>0.2)+(0.5<0.8)+(0.5>0.2) = 2.5 / 4
    assert S.roc_auc([0.8, 0.5, 0.8, 0.2], ["yes", "yes", "no", "no"]) == pytest.approx(0.625)
    assert S.roc_auc([0.1, 0.9, nan, 0.5], ["no", "yes", "yes", None]) == 1.0
    curve = S.pr_curve(SC, VE)
    assert curve["threshold"].tolist() == [0.2, 0.3, 0.5, 0.7, 0.8, 0.9]  # distinct scores, ties once
    row = curve.set_index("threshold").loc[0.8]
    assert row["kept"] == 3 and row["precision"] == pytest.approx(2 / 3) and row["recall"] == pytest.approx(2 / 3)
    for t in (0.2, 0.5, 0.9):
        m = S.threshold_metrics(SC, VE, t)
        r = curve.set_index("threshold").loc[t]
        assert (r["kept"], r["f1"]) == pytest.approx((m.kept, m.f1))


def test_flips_between_two_thresholds():
    f = S.flips(SC, 0.75, 0.3)  # B looser: rows with 0.3 <= s < 0.75 are kept by B only
    assert f["row"].tolist() == [4, 3, 6] and set(f["kept_by"]) == {"B"}
    assert S.flips(SC, 0.5, 0.5).empty
    assert S.flips(SC, 0.3, 0.75)["kept_by"].tolist() == ["A"] * 3


# --- histograms ------------------------------------------------------------------------------------------------


def test_histogram_counts_equal_row_level_metrics_at_every_edge():
    rng = np.random.default_rng(0)
    n = 2000
    s = np.round(rng.uniform(-0.3, 0.9, n), 2)  # many ties exactly on bin edges
    s[rng.choice(n, 50, replace=False)] = nan
    v = rng.choice(np.array(["yes", "no", None], dtype=object), n, p=[0.45, 0.45, 0.1])
    rel = rng.choice(["usedFor", "isA", "cause"], n)
    hist = Hist.ScoreHistogram.build(s, v, {"relation": rel})
    assert hist.edges[0] <= np.nanmin(s) and hist.edges[-1] > np.nanmax(s)
    curve = hist.curve()
    for k in range(0, len(hist.edges), 7):
        t = float(hist.edges[k])
        m, h = S.threshold_metrics(s, v, t), hist.metrics(t)
        assert m == h, t
        assert curve.loc[k, "kept"] == m.kept
        direct = S.kept_counts(s, rel, t).set_index("group")
        by = hist.kept_by("relation", t).set_index("group")
        assert by["kept"].to_dict() == direct["kept"].to_dict()
        assert by["nan"].to_dict() == direct["nan"].to_dict()
    assert hist.snap(0.123) == 0.12 and hist.snap(99) == hist.edges[-1] and hist.metrics(hist.edges[-1]).kept == 0
    # the binary rule's keeps per relation, NaN scores included
    by = hist.kept_by("relation", 0.0).set_index("group")
    assert by["yes"].to_dict() == pd.Series(v == "yes").groupby(rel).sum().to_dict()


def test_histogram_of_probabilities_spans_zero_to_one():
    hist = Hist.ScoreHistogram.build([0.2, 0.4, 1.0], ["no", "yes", "yes"], fixed_range=(0.0, 1.0))
    assert hist.edges[0] == 0.0 and hist.edges[-1] == 1.01 and hist.metrics(1.0).kept == 1
    assert Hist.best_f1_threshold(hist) == pytest.approx(0.21)  # keeps 0.4 and 1.0: precision 1, recall 1


# --- build-time scores -----------------------------------------------------------------------------------------


def test_scores_at_build_time_are_row_aligned_cosines(sample_kb, sample_kb_dir):
    sc = sample_kb.scores
    n = len(sample_kb.intentions)
    assert len(sc) == n and (sc.index == sample_kb.intentions.index).all()
    assert "scores.parquet" in sample_kb.manifest["artifacts"]
    assert sample_kb.manifest["scores"]["grounding"]["computed"] is True
    for key in ("grounding", "typicality"):
        values = sc[key].to_numpy()
        assert np.isfinite(values).all() and (values >= -1).all() and (values <= 1).all(), key
    # recompute three rows from the stored embeddings: grounding uses the documented pair text
    from mind_core.kb.embed import get_embedder

    emb = np.asarray(sample_kb.embeddings, dtype=np.float32)
    rows = [0, 1234, n - 1]
    texts = []
    for i in rows:
        r = sample_kb.intentions.iloc[i]
        a, b = sample_kb.product(r["asin_a"]), sample_kb.product(r["asin_b"])
        texts.append(B.pair_text(a["title"], a["description"], b["title"], b["description"]))
    assert texts[0].startswith("Classic Aviator Hat") and "\nAviator Pilot Cap" in texts[0]
    pv = get_embedder().encode_cached(texts)
    assert sc["grounding"].to_numpy()[rows] == pytest.approx((emb[rows] * pv).sum(axis=1), abs=2e-3)
    # typicality: leave-one-out centroid of the relation
    rel = sample_kb.intentions["relation"].astype(object).to_numpy()
    i = 77
    others = np.flatnonzero(rel == rel[i])
    others = others[others != i]
    centroid = emb[others].mean(axis=0)
    expect = emb[i] @ centroid / np.linalg.norm(emb[i]) / np.linalg.norm(centroid)
    assert sc["typicality"].iloc[i] == pytest.approx(expect, abs=2e-3)
    assert sc["p_yes"].isna().all()  # the MIND sample records verdicts only


def test_scores_artifact_staleness_and_old_kbs(small_input_dir, tmp_path):
    out = tmp_path / "kb"
    build_kb([small_input_dir], out, progress=False)
    (out / "scores.parquet").write_bytes(b"not parquet")
    with pytest.raises(StaleIndexError, match="scores.parquet changed"):
        KnowledgeBase(out)
    assert "scores.parquet changed" in build_kb([small_input_dir], out, progress=False).reason
    # a KB built before scores existed: opens (scores NaN, flagged) and build-kb rebuilds it without --force
    manifest = json.loads((out / "manifest.json").read_text())
    del manifest["artifacts"]["scores.parquet"]
    (out / "manifest.json").write_text(json.dumps(manifest))
    kb = KnowledgeBase(out)
    assert kb.scores.attrs["missing_file"] and kb.scores["grounding"].isna().all()
    assert defs.available_scores(kb.scores) == []
    res = build_kb([small_input_dir], out, progress=False)
    assert res.status == "built" and "no scores.parquet yet" in res.reason
    assert defs.available_scores(KnowledgeBase(out).scores) == ["critic", "grounding", "typicality"]


def test_typicality_leave_one_out_by_hand():
    v = np.array([[1, 0], [0, 1], [1, 1], [3, 4]], dtype=float)
    t = B.typicality_scores(v, ["r", "r", "r", "single"])
    # row 0: others (0,1) + (1,1)/√2 -> cos with (1,0) = (1/√2) / |(1/√2, 1 + 1/√2)|
    other = np.array([0, 1]) + np.array([1, 1]) / np.sqrt(2)
    assert t[0] == pytest.approx(other[0] / np.linalg.norm(other), abs=1e-6)
    assert math.isnan(t[3])


def test_scores_command_reports_auc_and_strictest_relation(sample_kb_dir, capsys):
    from mind_core.cli.main import main

    assert main(["scores", "--kb", str(sample_kb_dir), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert set(out["scores"]) == {"critic", "grounding", "typicality"}
    assert 0.0 <= out["scores"]["grounding"]["auc"] <= 1.0
    critic = out["scores"]["critic"]
    lo, hi = critic["auc_ci95"]
    assert lo < critic["auc"] < hi and critic["auc"] > 0.72  # the shipped critic, out-of-fold on its own sample
    assert out["critic"]["out_of_fold_rows"] == 3397 and out["critic"]["plain_rows"] == 0
    strictest = out["relations"][0]
    assert (strictest["relation"], strictest["kept"], strictest["judged"]) == ("distinctFrom", 57, 240)
    assert main(["scores", "--kb", str(sample_kb_dir)]) == 0
    text = capsys.readouterr().out
    assert "grounding       AUC" in text and "distinctFrom  kept   57/ 240 = 23.8%" in text
    assert "critic          AUC 0.7" in text and "[95% CI" in text and "3397 rows scored out-of-fold" in text
