"""The learned critic (:mod:`mind_core.scores.critic`) applied to KB folders and to new rows.

* :func:`score_kb` writes the ``critic`` column (P(keep), 0..1) into ``<kb>/scores.parquet`` and records the model
  under ``manifest["scores"]["critic"]`` (the file's new size goes into the artifacts, so staleness checks still
  hold and ``build-kb`` stays a no-op on unchanged input); ``critic score`` runs it.
* :func:`build_hook` does the same inside ``build-kb`` with the default critic (``MIND_CRITIC``, by default the one
  trained on the vendored sample), before the manifest is written.
* :func:`row_scorer` turns a critic into the ``rows -> P(keep)`` function the distill pipeline and the try page
  take (``--filter critic|both``); it encodes nothing unless the critic reads embeddings.
"""

from __future__ import annotations

import datetime as _dt
import json
import logging
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from mind_core import config, io
from mind_core.kb.store import MANIFEST_FILE, SCORES_FILE, KBError
from mind_core.schema import CRITIC_COLUMN, SCORES_SCHEMA, SCORES_SCHEMA_WITH_CRITIC
from mind_core.scores.critic import Critic, CriticData, CriticError, CriticScores, load_critic

log = logging.getLogger(__name__)


def default_critic(settings: config.Settings | None = None) -> Critic | None:
    """The configured critic (``MIND_CRITIC``; default: the shipped one), or None when it is turned off or its
    folder does not load (logged: a KB without a critic column is still a KB)."""
    folder = (settings or config.settings()).critic_dir
    if folder is None:
        return None
    try:
        return _cached_critic(str(Path(folder).resolve()))
    except CriticError as err:
        log.warning("default critic not used: %s", err)
        return None


_loaded: dict[tuple[str, float], Critic] = {}


def _cached_critic(folder: str) -> Critic:
    """One load per folder and manifest version (a retrained critic is picked up)."""
    manifest = Path(folder) / "critic.json"
    key = (folder, manifest.stat().st_mtime if manifest.exists() else 0.0)
    if key not in _loaded:
        _loaded[key] = load_critic(folder)
    return _loaded[key]


def critic_info(critic: Critic, result: CriticScores) -> dict[str, Any]:
    """What a KB's manifest records about the critic column."""
    v = critic.manifest["validation"]
    return {
        "column": CRITIC_COLUMN,
        "model_dir": str(critic.path) if critic.path else None,
        "model": critic.preset,
        "weights_sha256": critic.fingerprint,
        "labels": critic.manifest["labels"],
        "trained_on": critic.manifest["training_kb"].get("intentions_sha256"),
        "validation_auc": v["auc"],
        "rows": len(result.values),
        "out_of_fold_rows": result.n_out_of_fold,
        "plain_rows": len(result.values) - result.n_out_of_fold,
        "scored_at": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
    }


def write_critic_column(path: Path, values: np.ndarray) -> None:
    """Replace (or add) the ``critic`` column of a scores file, atomically; the other columns are kept."""
    table = pq.read_table(path)
    if table.num_rows != len(values):
        raise KBError(f"{path} has {table.num_rows} rows, the critic scored {len(values)}")
    base = table.select([f.name for f in SCORES_SCHEMA])
    col = pa.array(np.asarray(values, dtype=np.float32), pa.float32())
    io.write_parquet(base.append_column(SCORES_SCHEMA_WITH_CRITIC.field(CRITIC_COLUMN), col), path)


def score_kb(kb, critic: Critic) -> dict[str, Any]:
    """Score every row of an opened KB, write the column and update the manifest; returns the manifest entry."""
    path = Path(kb.path)
    if SCORES_FILE not in kb.manifest.get("artifacts", {}):
        raise KBError(
            f"{path} was built before filter scores existed (no {SCORES_FILE}); rebuild it with build-kb --force"
        )
    result = critic.score(CriticData.from_kb(kb))
    write_critic_column(path / SCORES_FILE, result.values)
    info = critic_info(critic, result)
    manifest = json.loads((path / MANIFEST_FILE).read_text())
    manifest["artifacts"][SCORES_FILE] = {
        "bytes": (path / SCORES_FILE).stat().st_size,
        "sha256": io.sha256_file(path / SCORES_FILE),
    }
    manifest.setdefault("scores", {})["critic"] = info
    io.write_json(path / MANIFEST_FILE, manifest, ensure_ascii=True)
    kb.manifest = manifest
    kb._scores = None  # the next kb.scores reads the new column
    return info


def build_hook(
    scores_path: Path,
    intentions_path: Path,
    products: Mapping[str, Mapping[str, Any]],
    vecs,
    embedder,
    *,
    chunk_rows: int = 100_000,
) -> dict[str, Any] | None:
    """``build-kb``: score the new KB's rows with the default critic into ``scores_path`` (already written by
    :func:`~mind_core.scores.build.write_build_scores`). The critic scores each row on its own, so the rows are
    read from ``intentions_path`` (Parquet) and ``vecs`` (an array or :class:`~mind_core.io.NpyChunks`) in chunks
    of ``chunk_rows``: memory stays bounded at 1.26M rows. Returns the manifest entry, or None when no critic is
    configured; a critic that cannot read this KB is logged and recorded as skipped."""
    critic = default_critic()
    if critic is None:
        return None
    table = pq.read_table(scores_path, columns=["grounding", "typicality"])
    grounding = table.column("grounding").to_numpy(zero_copy_only=False)
    typicality = table.column("typicality").to_numpy(zero_copy_only=False)
    values, seen, start = [], [], 0
    columns = ["intention_id", "pair_id", "asin_a", "asin_b", "relation", "intention"]
    try:
        for batch in pq.ParquetFile(intentions_path).iter_batches(batch_size=chunk_rows, columns=columns):
            rows = batch.to_pylist()
            stop = start + len(rows)
            data = CriticData.from_rows(
                rows,
                vectors=np.asarray(vecs[start:stop], dtype=np.float32) if critic.needs_embeddings else None,
                products=products,
                encoder=embedder,
                grounding=grounding[start:stop],
                typicality=typicality[start:stop],
            )
            data.embed_model = getattr(embedder, "model_name", None)
            part = critic.score(data)
            values.append(part.values)
            seen.append(part.out_of_fold)
            start = stop
    except CriticError as err:
        log.warning("default critic not applied: %s", err)
        return {"column": None, "skipped": str(err), "model_dir": str(critic.path)}
    result = CriticScores(np.concatenate(values), np.concatenate(seen))
    write_critic_column(scores_path, result.values)
    return critic_info(critic, result)


def row_scorer(
    critic: Critic, *, products: Mapping[str, Any] | None = None, encoder=None
) -> Callable[[Sequence[Mapping[str, Any]]], np.ndarray]:
    """``rows -> P(keep)`` for the pipeline's ``--filter critic|both``. A critic that reads embeddings gets an
    encoder of its embedding model (loaded on first use) and, for pair-text features, needs ``products``
    (asin -> product dict or :class:`~mind_core.schema.Product`)."""
    state: dict[str, Any] = {"encoder": encoder}

    def enc():
        if state["encoder"] is None and critic.needs_embeddings:
            from mind_core.kb.embed import get_embedder

            state["encoder"] = get_embedder(critic.embed_model)
        return state["encoder"]

    def score(rows: Sequence[Mapping[str, Any]]) -> np.ndarray:
        return critic.score(CriticData.from_rows(rows, products=products, encoder=enc())).values

    return score
