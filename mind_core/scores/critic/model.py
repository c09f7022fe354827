"""Train a critic with cross-fitting, apply it, save and load it (safetensors + JSON, no pickle).

Cross-fitting. Rows are split into ``K`` folds by pair: ``fold(pair) = sha1(pair_id) mod K``, so every intention of
a pair is in the same fold. Fold model ``k`` is trained on the labelled rows of the other folds; the full model on
every labelled row. When a critic scores rows (:meth:`Critic.score`), a row whose pair the critic was trained on is
scored by the model of its pair's fold (which never saw that pair), every other row by the full model. So the
training KB gets out-of-fold scores, another KB gets plain scores, and a KB that shares some pairs with the training
KB gets both, row by row: no row is ever scored by a model that saw its pair. The validation numbers in the
manifest are those out-of-fold scores against the labels.

Model selection inside a fold never looks at the fold's own rows: the linear model's ``C`` is chosen by an inner
pair-grouped cross-validation over the fold's training rows (``sha1("inner:" + pair_id) mod 3``); the MLP stops at
the epoch with the best AUC on a pair-disjoint tenth of the fold's training rows.

On disk (``MODEL_DIR``)::

    critic.json          the manifest: format, model, features, parameters, labels, training KB (path, checksum,
                         rows), validation (per-fold AUC, mean ± sd, pooled AUC with bootstrap interval,
                         per-relation AUC, reliability bins), relations, files with their SHA-256
    critic.safetensors   arrays of the full model (``full.*``) and of each fold model (``fold<k>.*``): ``idf`` (text
                         features) and the learner's weights
    vocabulary.json      the n-grams of the text features (index = column), when the model has them
    train_pairs.json     the pair ids the critic was trained on (sorted)
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import math
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from mind_core import __version__, io
from mind_core.scores.critic.features import (
    EMBEDDING_BLOCKS,
    CriticData,
    CriticError,
    FeatureSource,
    build_vocabulary,
    doc_freq,
    idf_from_df,
)
from mind_core.scores.critic.learners import LEARNERS, fit_linear, fit_mlp, sigmoid
from mind_core.scores.metrics import auc_bootstrap_ci, reliability_table, roc_auc

FORMAT = "mind-critic"
FORMAT_VERSION = 1
MANIFEST_FILE = "critic.json"
WEIGHTS_FILE = "critic.safetensors"
VOCABULARY_FILE = "vocabulary.json"
PAIRS_FILE = "train_pairs.json"
DEFAULT_FOLDS = 5
INNER_FOLDS = 3
MIN_PER_CLASS = 10


@dataclass(frozen=True)
class Preset:
    name: str
    kind: str  # a key of LEARNERS
    features: tuple[str, ...]
    summary: str
    #: values of the linear model's C the inner cross-validation chooses from (they bracket the optimum on the
    #: sample: the inner AUC falls off on both sides)
    c_grid: tuple[float, ...] = (1.0, 2.0, 4.0)


PRESETS: dict[str, Preset] = {
    p.name: p
    for p in (
        Preset(
            "text-linear",
            "linear",
            ("tfidf", "relation"),
            "logistic regression on the intention's word uni+bigrams (TF-IDF) and the relation",
        ),
        Preset(
            "embed-linear",
            "linear",
            ("intention_emb", "relation"),
            "logistic regression on the stored MiniLM intention embedding and the relation (the issue's baseline)",
            (0.25, 0.5, 1.0, 2.0),
        ),
        Preset(
            "embed-pair-linear",
            "linear",
            ("intention_emb", "pair_emb", "emb_product", "relation", "scores"),
            "logistic regression on intention + pair-text embeddings, their product, relation, grounding, typicality",
            (0.25, 0.5, 1.0, 2.0),
        ),
        Preset(
            "embed-pair-mlp",
            "mlp",
            ("intention_emb", "pair_emb", "emb_product", "relation", "scores"),
            "one-hidden-layer MLP on intention + pair-text embeddings, their product, relation, grounding, typicality",
        ),
        Preset(
            "text-embed-mlp",
            "mlp",
            ("tfidf", "intention_emb", "relation"),
            "one-hidden-layer MLP on the TF-IDF n-grams, the intention embedding and the relation",
        ),
    )
}
#: chosen by pair-disjoint validation on the vendored sample (docs/measurements.md, "The learned critic")
DEFAULT_PRESET = "text-linear"


def _hash_mod(key: str, n: int) -> int:
    return int.from_bytes(hashlib.sha1(key.encode("utf-8")).digest()[:8], "big") % n


def fold_of(pair_ids: Sequence[str], k: int, salt: str = "") -> np.ndarray:
    """The fold (0..k-1) of each pair: ``sha1(salt + pair_id) mod k`` (the same on every machine)."""
    return np.fromiter((_hash_mod(salt + str(p), k) for p in pair_ids), dtype=np.int64, count=len(pair_ids))


@dataclass
class Member:
    """One fitted model of a critic: the full model or a fold model. ``df`` / ``n_docs``: the document frequencies
    of the vocabulary over the member's own training rows (its idf; None without text features)."""

    learner: Any  # Linear | MLP
    df: np.ndarray | None = None
    n_docs: int = 0
    params: dict[str, Any] = field(default_factory=dict)

    @property
    def idf(self) -> np.ndarray | None:
        return None if self.df is None else idf_from_df(self.df, self.n_docs)

    def predict(self, source: FeatureSource, rows: np.ndarray | None = None) -> np.ndarray:
        return sigmoid(self.learner.decision(source.matrix(self.idf, rows)))


@dataclass
class CriticScores:
    values: np.ndarray  # P(keep) per row, float64
    out_of_fold: np.ndarray  # bool per row: scored by a fold model (its pair was in the training set)

    @property
    def n_out_of_fold(self) -> int:
        return int(self.out_of_fold.sum())


@dataclass
class Critic:
    manifest: dict[str, Any]
    vocabulary: list[str]
    full: Member
    folds: list[Member]
    train_pairs: frozenset[str]
    path: Path | None = None

    # -- what it is
    @property
    def preset(self) -> str:
        return self.manifest["model"]

    @property
    def kind(self) -> str:
        return self.manifest["kind"]

    @property
    def features(self) -> tuple[str, ...]:
        return tuple(self.manifest["features"])

    @property
    def relations(self) -> list[str]:
        return list(self.manifest["relations"])

    @property
    def n_folds(self) -> int:
        return int(self.manifest["folds"])

    @property
    def embed_model(self) -> str | None:
        return self.manifest.get("embed_model")

    @property
    def needs_embeddings(self) -> bool:
        return bool(set(self.features) & set(EMBEDDING_BLOCKS))

    @property
    def validation_auc(self) -> float:
        return float(self.manifest["validation"]["auc"])

    @property
    def fingerprint(self) -> str:
        """SHA-256 of the weights file: names this exact model."""
        return self.manifest["files"][WEIGHTS_FILE]["sha256"]

    def describe(self) -> str:
        v = self.manifest["validation"]
        return (
            f"{self.preset} critic ({', '.join(self.features)}), trained on {self.manifest['labels']} labels of "
            f"{self.manifest['training_kb']['labelled']} rows; pair-disjoint AUC {v['auc']:.3f} "
            f"(folds {v['fold_auc_mean']:.3f} ± {v['fold_auc_sd']:.3f})"
        )

    # -- scoring
    def check_data(self, data: CriticData) -> None:
        if self.needs_embeddings and data.embed_model and self.embed_model and data.embed_model != self.embed_model:
            raise CriticError(
                f"the critic reads {self.embed_model} embeddings but these rows have {data.embed_model} ones; "
                "train a critic on this KB or use a text-only one (--model text-linear)"
            )

    def score(self, data: CriticData) -> CriticScores:
        """P(keep) of every row, by the cross-fitting rule (module docstring)."""
        self.check_data(data)
        n = len(data)
        out = np.full(n, np.nan)
        if n == 0:
            return CriticScores(out, np.zeros(0, dtype=bool))
        source = FeatureSource.build(data, self.features, self.vocabulary, self.relations)
        seen = np.fromiter((p in self.train_pairs for p in data.pair_id), dtype=bool, count=n)
        fold = fold_of(data.pair_id, self.n_folds)
        plain = np.flatnonzero(~seen)
        if len(plain):
            out[plain] = self.full.predict(source, plain)
        for k, member in enumerate(self.folds):
            rows = np.flatnonzero(seen & (fold == k))
            if len(rows):
                out[rows] = member.predict(source, rows)
        return CriticScores(out, seen)

    # -- saving
    def save(self, folder: str | Path) -> Path:
        """Write the model folder (module docstring); the manifest goes last, with the checksum of every other
        file, so a folder whose writing was interrupted does not load."""
        from safetensors.numpy import save as st_save

        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        tensors: dict[str, np.ndarray] = {}
        for name, member in [("full", self.full), *((f"fold{k}", m) for k, m in enumerate(self.folds))]:
            for key, arr in member.learner.arrays().items():
                tensors[f"{name}.{key}"] = np.ascontiguousarray(arr)
            if member.df is not None:
                small = member.n_docs < np.iinfo(np.uint16).max  # df <= n_docs: halves the file
                tensors[f"{name}.df"] = np.ascontiguousarray(member.df.astype(np.uint16 if small else np.uint32))
                tensors[f"{name}.n_docs"] = np.array([member.n_docs], dtype=np.int64)
        blobs = {
            WEIGHTS_FILE: st_save(tensors, metadata={"format": FORMAT, "version": str(FORMAT_VERSION)}),
            PAIRS_FILE: (json.dumps(sorted(self.train_pairs)) + "\n").encode("utf-8"),
        }
        if self.vocabulary:
            blobs[VOCABULARY_FILE] = (json.dumps(self.vocabulary, ensure_ascii=False) + "\n").encode("utf-8")
        else:
            (folder / VOCABULARY_FILE).unlink(missing_ok=True)
        files = {}
        for name, data in blobs.items():
            io.write_bytes(folder / name, data)
            files[name] = {"bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}
        self.manifest["files"] = files
        self.manifest["members"] = {
            "full": self.full.params,
            **{f"fold{k}": m.params for k, m in enumerate(self.folds)},
        }
        io.write_json(folder / MANIFEST_FILE, self.manifest, ensure_ascii=False)
        self.path = folder
        return folder


def load_critic(folder: str | Path) -> Critic:
    """A saved critic (checksums verified); :class:`CriticError` with what is wrong otherwise."""
    from safetensors.numpy import load as st_load

    folder = Path(folder)
    mpath = folder / MANIFEST_FILE
    if not mpath.is_file():
        raise CriticError(
            f"{folder} is not a critic model folder (no {MANIFEST_FILE}); train one with: "
            f"python -m mind_core critic train --kb DIR --out {folder}"
        )
    try:
        manifest = json.loads(mpath.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as err:
        raise CriticError(f"{mpath}: unreadable ({err}); train the critic again") from None
    if manifest.get("format") != FORMAT or manifest.get("format_version") != FORMAT_VERSION:
        raise CriticError(
            f"{mpath}: format {manifest.get('format')!r} v{manifest.get('format_version')}, this version reads "
            f"{FORMAT!r} v{FORMAT_VERSION}; train the critic again"
        )
    blobs: dict[str, bytes] = {}
    for name, meta in manifest.get("files", {}).items():
        try:
            data = (folder / name).read_bytes()
        except OSError as err:
            raise CriticError(f"{folder / name}: {err}; train the critic again") from None
        if hashlib.sha256(data).hexdigest() != meta["sha256"]:
            raise CriticError(f"{folder / name} does not match its checksum in {MANIFEST_FILE}; train the critic again")
        blobs[name] = data
    if WEIGHTS_FILE not in blobs or PAIRS_FILE not in blobs:
        raise CriticError(f"{mpath} lists no {WEIGHTS_FILE} / {PAIRS_FILE}; train the critic again")
    tensors = st_load(blobs[WEIGHTS_FILE])
    learner_cls = LEARNERS[manifest["kind"]]

    def member(name: str) -> Member:
        arrays = {k.split(".", 1)[1]: v for k, v in tensors.items() if k.split(".", 1)[0] == name}
        df, n_docs = arrays.pop("df", None), arrays.pop("n_docs", np.zeros(1, np.int64))
        return Member(learner_cls.from_arrays(arrays), df, int(n_docs[0]), manifest.get("members", {}).get(name, {}))

    vocabulary = json.loads(blobs[VOCABULARY_FILE]) if VOCABULARY_FILE in blobs else []
    return Critic(
        manifest=manifest,
        vocabulary=vocabulary,
        full=member("full"),
        folds=[member(f"fold{k}") for k in range(int(manifest["folds"]))],
        train_pairs=frozenset(json.loads(blobs[PAIRS_FILE])),
        path=folder,
    )


# --- training --------------------------------------------------------------------------------------------------


def _auc(scores: np.ndarray, y: np.ndarray) -> float:
    return roc_auc(scores, np.where(y > 0.5, "yes", "no"))


def _fit_member(
    preset: Preset,
    source: FeatureSource,
    rows: np.ndarray,
    y: np.ndarray,
    pair_ids: np.ndarray,
    has_text: bool,
    *,
    C: float | None,
    seed: int,
) -> Member:
    """Fit one model on ``rows`` (with its own idf from those rows); hyper-parameters from those rows only."""
    df, n_docs = doc_freq(source.counts, rows) if has_text else (None, 0)
    idf = idf_from_df(df, n_docs) if df is not None else None
    x = source.matrix(idf, rows)
    c_grid = preset.c_grid
    if preset.kind == "linear":
        chosen, inner = (C, None) if C is not None else _choose_c(source, rows, y, pair_ids, has_text, c_grid)
        learner = fit_linear(x, y[rows], C=chosen)
        params = {"C": chosen, "rows": len(rows), **({"inner_auc": inner} if inner else {})}
        return Member(learner, df, n_docs, params)
    stop_mask = fold_of(pair_ids[rows], 10, "stop:") == 0
    learner, epoch = fit_mlp(x, y[rows], np.flatnonzero(stop_mask), seed=seed)
    return Member(learner, df, n_docs, {"epochs": epoch, "rows": len(rows), "stop_rows": int(stop_mask.sum())})


def _choose_c(
    source: FeatureSource,
    rows: np.ndarray,
    y: np.ndarray,
    pair_ids: np.ndarray,
    has_text: bool,
    c_grid: Sequence[float],
) -> tuple[float, dict[str, float]]:
    """``C`` from ``c_grid`` with the best pooled AUC of an inner pair-grouped CV over ``rows`` (each inner
    split's matrices are built once; each C starts from the previous one's solution)."""
    inner = fold_of(pair_ids[rows], INNER_FOLDS, "inner:")
    pred = {c: np.empty(len(rows)) for c in c_grid}
    for j in range(INNER_FOLDS):
        tr, va = rows[inner != j], rows[inner == j]
        idf = idf_from_df(*doc_freq(source.counts, tr)) if has_text else None
        x_tr, x_va = source.matrix(idf, tr), source.matrix(idf, va)
        start = None
        for c in c_grid:
            model = fit_linear(x_tr, y[tr], C=c, start=start)
            start = model
            pred[c][inner == j] = model.decision(x_va)
    aucs = {str(c): round(_auc(pred[c], y[rows]), 4) for c in c_grid}
    best = max(c_grid, key=lambda c: (aucs[str(c)], -c))
    return best, aucs


def labelled_summary(y: np.ndarray, pair_ids: np.ndarray, folds: int) -> str | None:
    """Why these labels cannot train a critic, or None."""
    lab = ~np.isnan(y)
    pos, neg = int((y[lab] > 0.5).sum()), int((y[lab] <= 0.5).sum())
    if pos < MIN_PER_CLASS or neg < MIN_PER_CLASS:
        return f"{pos} keep and {neg} drop labels; a critic needs at least {MIN_PER_CLASS} of each"
    n_pairs = len(set(pair_ids[lab]))
    if n_pairs < 2 * folds:
        return f"labelled rows come from {n_pairs} pairs; {folds}-fold cross-fitting needs at least {2 * folds}"
    return None


def train_critic(
    data: CriticData,
    labels: np.ndarray,
    *,
    model: str = DEFAULT_PRESET,
    folds: int = DEFAULT_FOLDS,
    C: float | None = None,
    seed: int = 0,
    labels_source: str = "verdict",
    training_kb: dict[str, Any] | None = None,
    n_boot: int = 1000,
    log: Callable[[str], None] | None = None,
) -> Critic:
    """Train the ``model`` preset (:data:`PRESETS`) on ``labels`` (1 keep, 0 drop, NaN = no label: not trained on)
    with ``folds``-fold cross-fitting grouped by pair; returns the critic with its validation in the manifest."""
    if model not in PRESETS:
        raise CriticError(f"unknown critic model {model!r}; choose one of {', '.join(PRESETS)}")
    if folds < 2:
        raise CriticError("cross-fitting needs at least 2 folds")
    preset = PRESETS[model]
    say = log or (lambda _msg: None)
    t0 = time.perf_counter()
    y = np.asarray(labels, dtype=np.float64)
    if len(y) != len(data):
        raise CriticError(f"{len(y)} labels for {len(data)} rows")
    pair_ids = np.asarray(data.pair_id, dtype=object)
    problem = labelled_summary(y, pair_ids, folds)
    if problem:
        raise CriticError(problem)
    labelled = np.flatnonzero(~np.isnan(y))
    has_text = "tfidf" in preset.features
    vocabulary = build_vocabulary(list(data.text[labelled])) if has_text else []
    relations = sorted(set(data.relation[labelled]))
    source = FeatureSource.build(data, preset.features, vocabulary, relations)
    fold = fold_of(pair_ids, folds)

    oof = np.full(len(data), np.nan)
    members: list[Member] = []
    fold_aucs: list[float] = []
    for k in range(folds):
        train_rows = labelled[fold[labelled] != k]
        member = _fit_member(preset, source, train_rows, y, pair_ids, has_text, C=C, seed=seed + k)
        rows = np.flatnonzero(fold == k)
        oof[rows] = member.predict(source, rows)
        held = rows[~np.isnan(y[rows])]
        fold_aucs.append(_auc(oof[held], y[held]))
        members.append(member)
        say(f"fold {k + 1}/{folds}: AUC {fold_aucs[-1]:.3f} on {len(held)} rows ({member.params})")
    full_c = C
    if preset.kind == "linear" and C is None:  # the value the folds chose most often (ties: the smaller)
        counts = Counter(m.params["C"] for m in members)
        full_c = min(counts, key=lambda c: (-counts[c], c))
    full = _fit_member(preset, source, labelled, y, pair_ids, has_text, C=full_c, seed=seed)
    seconds = time.perf_counter() - t0
    validation = validation_report(oof[labelled], y[labelled], data.relation[labelled], fold_aucs, n_boot=n_boot)
    manifest = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "model": preset.name,
        "kind": preset.kind,
        "summary": preset.summary,
        "features": list(preset.features),
        "feature_recipe": _recipe(preset.features),
        "relations": relations,
        "vocabulary_size": len(vocabulary),
        "embed_model": data.embed_model if set(preset.features) & set(EMBEDDING_BLOCKS) else None,
        "labels": labels_source,
        "training_kb": {
            **(training_kb or {}),
            "rows": len(data),
            "labelled": len(labelled),
            "keep": int((y[labelled] > 0.5).sum()),
            "pairs": len(set(pair_ids[labelled])),
        },
        "folds": folds,
        "fold_rule": f"fold = sha1(pair_id) mod {folds}; a row whose pair was trained on is scored by its fold's model",
        "selection": (
            f"C from {list(preset.c_grid)} by inner {INNER_FOLDS}-fold pair-grouped CV in each fold; the full "
            "model takes the C the folds chose most often"
            if preset.kind == "linear" and C is None
            else (f"C = {C} (given)" if preset.kind == "linear" else "epochs: best AUC on a pair-disjoint tenth")
        ),
        "validation": validation,
        "train_seconds": round(seconds, 1),
        "trained_at": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "mind_core_version": __version__,
        "seed": seed,
    }
    train_pairs = frozenset(pair_ids[labelled])
    return Critic(manifest, vocabulary, full, members, train_pairs)


def _recipe(features: Sequence[str]) -> dict[str, Any]:
    from mind_core.scores.critic import features as F

    out: dict[str, Any] = {}
    if "tfidf" in features:
        out["tfidf"] = {
            "token_pattern": F._TOKEN.pattern,
            "lowercase": True,
            "ngrams": list(F.NGRAMS),
            "min_df": F.MIN_DF,
            "tf": "1 + ln(tf)",
            "idf": "ln((1 + n) / (1 + df)) + 1",
            "norm": "l2",
        }
    if "pair_emb" in features:
        out["pair_emb"] = "the grounding score's pair text (mind_core.scores.build.pair_text), encoded"
    return out


def validation_report(
    scores: np.ndarray, y: np.ndarray, relations: np.ndarray, fold_aucs: Sequence[float], *, n_boot: int = 1000
) -> dict[str, Any]:
    """Pooled out-of-fold AUC (+ 95 % bootstrap interval), per-fold mean ± sd, per-relation AUC, reliability bins,
    and the threshold that keeps the same share as the labels."""
    verdicts = np.where(y > 0.5, "yes", "no")
    auc = roc_auc(scores, verdicts)
    lo, hi = auc_bootstrap_ci(scores, verdicts, n_boot=n_boot)
    per_rel = []
    for rel in sorted(set(relations)):
        sel = relations == rel
        per_rel.append(
            {
                "relation": rel,
                "rows": int(sel.sum()),
                "keep": int((y[sel] > 0.5).sum()),
                "auc": roc_auc(scores[sel], verdicts[sel]),
            }
        )
    share = float((y > 0.5).mean())
    t_share = float(np.quantile(scores, 1 - share)) if len(scores) else math.nan
    kept = scores >= t_share
    tp = int((kept & (y > 0.5)).sum())
    rel_table = reliability_table(scores, verdicts)
    out = {
        "rows": len(scores),
        "auc": auc,
        "auc_ci95": [lo, hi],
        "fold_auc": [round(a, 4) for a in fold_aucs],
        "fold_auc_mean": float(np.mean(fold_aucs)),
        "fold_auc_sd": float(np.std(fold_aucs, ddof=1)) if len(fold_aucs) > 1 else math.nan,
        "per_relation": per_rel,
        "keep_share": share,
        "same_share_threshold": t_share,
        "same_share_precision": tp / max(1, int(kept.sum())),
        "same_share_recall": tp / max(1, int((y > 0.5).sum())),
        "brier": float(np.mean((scores - (y > 0.5)) ** 2)),
        "reliability": rel_table.to_dict(orient="records"),
    }
    return json.loads(json.dumps(out, default=float))
