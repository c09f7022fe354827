"""Export KB rows as CSV, JSON Lines or Parquet (files and the pages' download buttons)."""

from __future__ import annotations

from collections.abc import Sequence
from io import BytesIO
from pathlib import Path

import pandas as pd

from mind_core import io
from mind_core.schema import INTENTION_COLUMNS, Product

EXPORT_FORMATS = ("csv", "jsonl", "parquet")


def _plain(df: pd.DataFrame) -> pd.DataFrame:
    out = df.copy()
    for col in out.columns:
        if isinstance(out[col].dtype, pd.CategoricalDtype):
            out[col] = out[col].astype(object).where(out[col].notna(), None)
    return out


def export_frame(df: pd.DataFrame, fmt: str) -> bytes:
    """Serialise rows as CSV, JSON Lines or Parquet bytes (for files and download buttons)."""
    fmt = fmt.lower()
    if fmt not in EXPORT_FORMATS:
        raise ValueError(f"unknown export format {fmt!r}; choose one of {', '.join(EXPORT_FORMATS)}")
    df = _plain(df)
    if fmt == "csv":
        return df.to_csv(index=False).encode("utf-8")
    if fmt == "jsonl":
        return df.to_json(orient="records", lines=True, force_ascii=False).encode("utf-8")
    buf = BytesIO()
    df.to_parquet(buf, index=False)
    return buf.getvalue()


def export(df: pd.DataFrame, path: str | Path, fmt: str | None = None) -> Path:
    path = Path(path)
    fmt = fmt or path.suffix.lstrip(".")
    data = export_frame(df, fmt)
    io.write_bytes(path, data)
    return path


def export_rows(rows: Sequence[dict], fmt: str, products: Sequence[Product] = ()) -> bytes:
    """Intention rows (dicts: the KB columns) plus both products' titles, as CSV / JSONL / Parquet bytes."""
    df = pd.DataFrame([{c: r.get(c) for c in INTENTION_COLUMNS} for r in rows], columns=list(INTENTION_COLUMNS))
    titles = {p.asin: p.title for p in products}
    df["title_a"] = df["asin_a"].map(titles)
    df["title_b"] = df["asin_b"].map(titles)
    return export_frame(df, fmt)
