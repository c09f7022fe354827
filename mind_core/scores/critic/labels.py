"""What a critic learns from: the KB's recorded verdicts, or human labels.

``verdict``
    The role-aware filter's recorded yes / no (``intentions.verdict``); rows without one are not trained on.
``human``
    A table of human judgements, :data:`~mind_core.schema.HUMAN_LABELS_COLUMNS` = ``intention_id, label``, as
    Parquet or CSV: by default ``<kb>/labels/human.parquet`` (or ``human.csv``; the review tool writes it there),
    or any file given with ``--labels-file``. ``label`` is ``yes`` / ``no`` (also ``keep`` / ``drop``,
    ``1`` / ``0``, ``true`` / ``false``, any case). An id that is not in the KB, a label that is none of these,
    or two different labels for one id is an error naming the row; rows of the KB without a label are not trained
    on. There is no fallback: without the file, ``--labels human`` stops and says where the file is expected.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pandas as pd

from mind_core.schema import HUMAN_LABELS_COLUMNS, HUMAN_LABELS_DIR, HUMAN_LABELS_FILES
from mind_core.scores.critic.features import CriticError

LABEL_SOURCES = ("verdict", "human")
_VALUES = {"yes": 1.0, "keep": 1.0, "1": 1.0, "true": 1.0, "no": 0.0, "drop": 0.0, "0": 0.0, "false": 0.0}


def verdict_labels(verdicts) -> np.ndarray:
    """1 for "yes", 0 for "no", NaN otherwise."""
    v = pd.Series(np.asarray(verdicts, dtype=object)).astype(object)
    return np.where(v == "yes", 1.0, np.where(v == "no", 0.0, np.nan))


def human_labels_path(kb_dir: str | Path, given: str | Path | None = None) -> Path:
    """The labels file to read: ``given``, else the first of ``<kb>/labels/human.{parquet,csv}`` that exists;
    :class:`CriticError` saying where it is expected when there is none."""
    if given is not None:
        path = Path(given)
        if not path.is_file():
            raise CriticError(f"--labels-file {path}: no such file")
        return path
    folder = Path(kb_dir) / HUMAN_LABELS_DIR
    for name in HUMAN_LABELS_FILES:
        if (folder / name).is_file():
            return folder / name
    raise CriticError(
        f"--labels human: no human labels for this KB (expected {folder / HUMAN_LABELS_FILES[0]} or "
        f"{folder / HUMAN_LABELS_FILES[1]} with columns {', '.join(HUMAN_LABELS_COLUMNS)}, or pass --labels-file); "
        "use --labels verdict to train on the filter's recorded verdicts"
    )


def read_human_labels(path: str | Path, intention_ids) -> tuple[np.ndarray, dict]:
    """Labels aligned with ``intention_ids`` (1 keep, 0 drop, NaN unlabelled) and what the manifest records
    (file, SHA-256, counts)."""
    path = Path(path)
    try:
        if path.suffix.lower() == ".parquet":
            table = pd.read_parquet(path)
        else:
            table = pd.read_csv(path, dtype=str, keep_default_na=False)
    except Exception as err:  # pyarrow / csv raise several types for a damaged file
        raise CriticError(f"{path}: not a readable Parquet / CSV file ({err})") from None
    missing = [c for c in HUMAN_LABELS_COLUMNS if c not in table.columns]
    if missing:
        raise CriticError(f"{path}: no column {', '.join(missing)} (need {', '.join(HUMAN_LABELS_COLUMNS)})")
    ids = table["intention_id"].astype(str).str.strip().to_numpy()
    raw = table["label"].astype(str).str.strip().str.lower().to_numpy()
    values = np.array([_VALUES.get(x, np.nan) for x in raw])
    bad = np.flatnonzero(np.isnan(values))
    line = 2 if path.suffix.lower() != ".parquet" else 1  # CSV: 1-based with the header line; Parquet: row number
    if len(bad):
        i = int(bad[0])
        raise CriticError(f"{path}: row {i + line}: label {table['label'].iloc[i]!r} is not yes/no (keep/drop, 1/0)")
    by_id: dict[str, float] = {}
    for i, (key, val) in enumerate(zip(ids, values)):
        if key in by_id and by_id[key] != val:
            raise CriticError(f"{path}: row {i + line}: intention {key} has two different labels")
        by_id[key] = float(val)
    pos = pd.Index(np.asarray(intention_ids, dtype=object)).get_indexer(list(by_id))
    if (pos < 0).any():
        unknown = [k for k, p in zip(by_id, pos) if p < 0]
        raise CriticError(
            f"{path}: {len(unknown)} labelled intention id(s) are not in this KB (first: {unknown[0]}); "
            "labels belong to the KB they were made on"
        )
    y = np.full(len(intention_ids), np.nan)
    y[pos] = list(by_id.values())
    info = {
        "file": str(path),
        "sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
        "labelled": len(by_id),
        "keep": int(sum(v > 0.5 for v in by_id.values())),
    }
    return y, info
