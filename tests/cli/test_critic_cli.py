"""``critic train`` / ``critic score`` as written in the README: a KB without a critic, training on verdicts and on
human labels, scoring the training KB (out-of-fold) and another KB (plain where its pairs are new), the manifest
staying consistent, and the errors a user can fix."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pandas as pd
import pytest

from mind_core.cli.main import main
from mind_core.kb.build import build_kb
from mind_core.kb.store import KnowledgeBase
from mind_core.scores import available_scores
from mind_core.scores.critic import load_critic
from mind_core.scores.metrics import roc_auc


@pytest.fixture()
def plain_kb(small_input_dir, tmp_path, monkeypatch):
    """The 120-row KB built with the default critic turned off."""
    monkeypatch.setenv("MIND_CRITIC", "none")
    out = tmp_path / "kb"
    build_kb([small_input_dir], out, progress=False)
    monkeypatch.delenv("MIND_CRITIC")
    return out


def test_a_kb_built_without_a_critic_has_no_critic_column(plain_kb):
    kb = KnowledgeBase(plain_kb)
    assert kb.manifest["scores"]["critic"] is None
    assert "critic" not in available_scores(kb.scores)


def test_train_then_score_the_training_kb_and_another(plain_kb, sample_kb_dir, tmp_path, capsys):
    model = tmp_path / "model"
    assert main(["critic", "train", "--kb", str(plain_kb), "--out", str(model), "--folds", "3", "--C", "2"]) == 0
    err = capsys.readouterr().err
    assert "pair-disjoint AUC" in err and "per relation:" in err and f"saved text-linear critic to {model}" in err
    critic = load_critic(model)
    assert critic.manifest["labels"] == "verdict" and critic.manifest["training_kb"]["labelled"] == 120

    # the training KB: every row out-of-fold, so the column's AUC is the validation AUC
    assert main(["critic", "score", "--kb", str(plain_kb), "--model", str(model)]) == 0
    assert "120 out-of-fold" in capsys.readouterr().err
    kb = KnowledgeBase(plain_kb)  # the manifest's artifact sizes were updated: the KB opens unchanged
    assert roc_auc(kb.scores["critic"], kb.intentions["verdict"]) == pytest.approx(critic.validation_auc)
    assert kb.manifest["scores"]["critic"]["out_of_fold_rows"] == 120
    assert main(["critic", "score", "--kb", str(plain_kb), "--model", str(model), "--if-missing"]) == 0
    assert "already has the scores" in capsys.readouterr().err

    # another KB (a copy of the full sample): the 120 trained-on rows out-of-fold, the rest by the full model
    other = tmp_path / "sample"
    shutil.copytree(sample_kb_dir, other)
    assert main(["critic", "score", "--kb", str(other), "--model", str(model)]) == 0
    big = KnowledgeBase(other)
    info = big.manifest["scores"]["critic"]
    seen = big.intentions["pair_id"].isin(critic.train_pairs).to_numpy()
    assert info["out_of_fold_rows"] == int(seen.sum()) >= 120 and info["plain_rows"] == int((~seen).sum())
    assert np.allclose(big.scores["critic"].to_numpy()[: len(kb.intentions)], kb.scores["critic"].to_numpy())
    assert big.scores["critic"].between(0, 1).all()


def test_build_kb_is_a_noop_after_critic_score(plain_kb, small_input_dir, tmp_path, capsys):
    from mind_core.config import DEFAULT_CRITIC_DIR

    assert main(["critic", "score", "--kb", str(plain_kb), "--model", str(DEFAULT_CRITIC_DIR)]) == 0
    assert build_kb([small_input_dir], plain_kb, progress=False).status == "unchanged"
    assert "critic" in available_scores(KnowledgeBase(plain_kb).scores)


def test_human_labels(plain_kb, tmp_path, capsys):
    model = tmp_path / "human"
    args = ["critic", "train", "--kb", str(plain_kb), "--out", str(model), "--labels", "human", "--folds", "3"]
    assert main([*args, "--C", "2"]) == 2
    err = capsys.readouterr().err
    assert "no human labels for this KB" in err and str(plain_kb / "labels" / "human.parquet") in err
    assert not model.exists()
    kb = KnowledgeBase(plain_kb)
    labels = pd.DataFrame(
        {
            "intention_id": kb.intentions["intention_id"].astype(str),
            "label": np.where(kb.intentions["verdict"].astype(str) == "yes", "keep", "drop"),
        }
    ).iloc[:100]
    (plain_kb / "labels").mkdir()
    labels.to_parquet(plain_kb / "labels" / "human.parquet")
    assert main([*args, "--C", "2"]) == 0
    manifest = json.loads((model / "critic.json").read_text())
    assert manifest["labels"] == "human" and manifest["training_kb"]["labelled"] == 100
    assert manifest["training_kb"]["human_labels"]["labelled"] == 100
    bad = tmp_path / "bad.csv"
    bad.write_text("intention_id,label\nnot-an-id,yes\n")
    assert main([*args, "--labels-file", str(bad)]) == 2
    assert "not in this KB" in capsys.readouterr().err


def test_user_errors_exit_2(plain_kb, tmp_path, capsys):
    assert main(["critic", "score", "--kb", str(plain_kb), "--model", str(tmp_path / "none")]) == 2
    assert "not a critic model folder" in capsys.readouterr().err
    assert main(["critic", "train", "--kb", str(tmp_path / "missing"), "--out", str(tmp_path / "m")]) == 2
    assert main(["critic", "train", "--kb", str(plain_kb), "--out", str(tmp_path / "m"), "--labels-file", "x"]) == 2
    assert "--labels-file goes with --labels human" in capsys.readouterr().err
    manifest = json.loads((plain_kb / "manifest.json").read_text())  # a KB built before scores existed
    del manifest["artifacts"]["scores.parquet"]
    (plain_kb / "manifest.json").write_text(json.dumps(manifest))
    from mind_core.config import DEFAULT_CRITIC_DIR

    assert main(["critic", "score", "--kb", str(plain_kb), "--model", str(DEFAULT_CRITIC_DIR)]) == 2
    assert "rebuild it with build-kb --force" in capsys.readouterr().err
