"""Answers in and out of files: ``review import`` reads CSV / JSON Lines / Parquet, ``review export`` writes them,
and the human labels file ``critic train --labels human`` reads (``<kb>/labels/human.parquet``).

A file holds :data:`~mind_core.review.protocol.ANSWER_COLUMNS` (``comment`` and ``created_at`` optional). A bad
row stops the import with ``file:line: column 'x': what is wrong`` (CSV: the line the record starts on; JSON Lines:
its line; Parquet: ``row N``) and nothing is written: an import is one transaction. Exported files read back into
exactly the same rows.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Collection, Iterator
from pathlib import Path

import pandas as pd
import pyarrow as pa

from mind_core import io
from mind_core.kb.export import export_frame
from mind_core.review.analysis import human_labels_frame
from mind_core.review.protocol import ANSWER_COLUMNS, REQUIRED_COLUMNS, Answer, AnswerError, check_answer
from mind_core.schema import HUMAN_LABELS_DIR, HUMAN_LABELS_FILES, ValidationError, now_utc

IMPORT_FORMATS = ("csv", "jsonl", "parquet")


def file_format(path: str | Path) -> str:
    """``csv``, ``jsonl`` or ``parquet`` from the file name (``.json`` / ``.ndjson`` are JSON Lines)."""
    suffix = Path(path).suffix.lower().lstrip(".")
    fmt = {"json": "jsonl", "ndjson": "jsonl"}.get(suffix, suffix)
    if fmt not in IMPORT_FORMATS:
        raise ValidationError(f"unknown file type .{suffix}; use .csv, .jsonl or .parquet", path=str(path))
    return fmt


def _records(path: Path, fmt: str) -> Iterator[tuple[int, dict, str]]:
    """``(line, record, kind)`` for each record; ``kind`` is what a field is called in messages."""
    if fmt == "parquet":
        try:
            frame = pd.read_parquet(path)
        except Exception as err:  # pyarrow raises several types for a damaged file
            raise ValidationError(f"not a readable Parquet file ({err})", path=str(path)) from None
        _check_columns(path, list(frame.columns), 1, "column")
        for i, rec in enumerate(frame.astype(object).where(frame.notna(), None).to_dict("records"), start=1):
            yield i, rec, "column"
        return
    try:
        handle = open(path, encoding="utf-8", newline="")  # noqa: SIM115 (closed below)
    except OSError as err:
        raise ValidationError(err.strerror or str(err), path=str(path)) from None
    with handle:
        try:
            if fmt == "csv":
                reader = csv.DictReader(handle)
                _check_columns(path, reader.fieldnames or [], 1, "column")
                start = reader.line_num + 1
                for rec in reader:
                    if None in rec:
                        raise ValidationError(
                            f"{len(rec[None])} more value(s) than header columns", path=str(path), line=start
                        )
                    yield start, rec, "column"
                    start = reader.line_num + 1
            else:
                for line, text in enumerate(handle, start=1):
                    if not text.strip():
                        continue
                    try:
                        rec = json.loads(text)
                    except json.JSONDecodeError as err:
                        raise ValidationError(f"not JSON ({err.msg})", path=str(path), line=line) from None
                    if not isinstance(rec, dict):
                        raise ValidationError("not a JSON object", path=str(path), line=line)
                    _check_columns(path, list(rec), line, "field")
                    yield line, rec, "field"
        except UnicodeDecodeError as err:
            raise ValidationError(f"not UTF-8 text ({err.reason})", path=str(path)) from None
        except csv.Error as err:
            raise ValidationError(f"broken CSV ({err})", path=str(path), line=reader.line_num) from None


def _check_columns(path: Path, columns: list, line: int, kind: str) -> None:
    missing = [c for c in REQUIRED_COLUMNS if c not in columns]
    if missing:
        raise ValidationError(
            f"no {kind} {', '.join(missing)} (need {', '.join(REQUIRED_COLUMNS)}; optional: typicality, comment, "
            "created_at)",
            path=str(path),
            line=line,
        )


def read_answers(path: str | Path, known_ids: Collection[str] | None = None) -> list[Answer]:
    """Every answer in ``path``, validated; :class:`ValidationError` naming ``file:line`` and the column at the
    first bad row (an unknown intention id when ``known_ids`` is given, a value off the scale, a second answer by
    the same annotator to the same intention)."""
    path = Path(path)
    fmt = file_format(path)
    if not path.is_file():
        raise ValidationError("no such file", path=str(path))
    now = now_utc()
    seen: dict[tuple[str, str], int] = {}
    out: list[Answer] = []
    for line, rec, kind in _records(path, fmt):
        try:
            answer = check_answer(*(rec.get(c) for c in ANSWER_COLUMNS), now=now)
        except AnswerError as err:
            raise ValidationError(str(err), path=str(path), line=line, field=err.field, kind=kind) from None
        if known_ids is not None and answer.intention_id not in known_ids:
            raise ValidationError(
                f"{answer.intention_id!r} is not an intention of this KB (answers belong to the KB they were made on)",
                path=str(path),
                line=line,
                field="intention_id",
                kind=kind,
            )
        key = (answer.intention_id, answer.annotator)
        if key in seen:
            raise ValidationError(
                f"{answer.annotator!r} already answered {answer.intention_id!r} on line {seen[key]}",
                path=str(path),
                line=line,
                field="annotator",
                kind=kind,
            )
        seen[key] = line
        out.append(answer)
    return out


def answers_table(answers: pd.DataFrame) -> pa.Table:
    """The answers as an Arrow table with fixed types (typicality a nullable int8, the rest strings / int8)."""
    schema = pa.schema(
        [
            ("intention_id", pa.string()),
            ("annotator", pa.string()),
            ("plausibility", pa.int8()),
            ("typicality", pa.int8()),
            ("comment", pa.string()),
            ("created_at", pa.string()),
        ]
    )
    cols = {
        "intention_id": answers["intention_id"].astype(str).tolist(),
        "annotator": answers["annotator"].astype(str).tolist(),
        "plausibility": answers["plausibility"].astype(int).tolist(),
        "typicality": [None if pd.isna(v) else int(v) for v in answers["typicality"]],
        "comment": [None if v is None or (isinstance(v, float) and pd.isna(v)) else str(v) for v in answers["comment"]],
        "created_at": answers["created_at"].astype(str).tolist(),
    }
    return pa.table(cols, schema=schema)


def write_answers(answers: pd.DataFrame, path: str | Path) -> Path:
    """Write ``answers`` (:data:`ANSWER_COLUMNS`) as CSV, JSON Lines or Parquet (from the suffix), atomically."""
    path = Path(path)
    fmt = file_format(path)
    frame = answers[list(ANSWER_COLUMNS)].copy()
    frame["typicality"] = pd.array(frame["typicality"].tolist(), dtype="Int64")
    if fmt == "parquet":
        return io.write_parquet(answers_table(frame), path)
    return io.write_bytes(path, export_frame(frame, fmt))


def human_labels_path(kb_dir: str | Path) -> Path:
    """``<kb>/labels/human.parquet``: where ``critic train --labels human`` looks first."""
    return Path(kb_dir) / HUMAN_LABELS_DIR / HUMAN_LABELS_FILES[0]


def write_human_labels(answers: pd.DataFrame, kb_dir: str | Path) -> tuple[Path, int]:
    """Write the majority plausibility of every rated intention as ``<kb>/labels/human.parquet``
    (``intention_id, label``); ties are left out. Returns the path and the number of labels."""
    labels = human_labels_frame(answers)
    path = human_labels_path(kb_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    table = pa.table({"intention_id": labels["intention_id"].tolist(), "label": labels["label"].tolist()})
    io.write_parquet(table, path)
    return path, len(labels)
