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
    """Write ``df`` to the file ``path`` (atomically); the format is ``fmt`` or the file's extension.
    :class:`ValueError` with a one-line message for a directory, an unknown extension or a folder that cannot be
    written."""
    path = Path(path)
    if path.is_dir():
        raise ValueError(
            f"--out {path} is a directory; give a file name, e.g. {path / 'intentions.csv'} "
            f"(the extension picks the format: {', '.join(EXPORT_FORMATS)})"
        )
    if not fmt and path.suffix.lstrip(".").lower() not in EXPORT_FORMATS:
        raise ValueError(
            f"cannot tell the format of {path.name!r} from its extension; name the file "
            f"{' / '.join('.' + f for f in EXPORT_FORMATS)} or pass --format"
        )
    data = export_frame(df, fmt or path.suffix.lstrip("."))
    if not path.parent.is_dir():
        raise ValueError(f"--out {path}: the folder {path.parent} does not exist")
    try:
        io.write_bytes(path, data)
    except OSError as err:
        raise ValueError(f"--out {path}: cannot write there ({err.strerror or err})") from None
    return path


def export_rows(rows: Sequence[dict], fmt: str, products: Sequence[Product] = ()) -> bytes:
    """Intention rows (dicts: the KB columns) plus both products' titles, as CSV / JSONL / Parquet bytes."""
    df = pd.DataFrame([{c: r.get(c) for c in INTENTION_COLUMNS} for r in rows], columns=list(INTENTION_COLUMNS))
    titles = {p.asin: p.title for p in products}
    df["title_a"] = df["asin_a"].map(titles)
    df["title_b"] = df["asin_b"].map(titles)
    return export_frame(df, fmt)
