"""The user's own KB: intentions distilled on the try page, saved and indexed so the other pages can browse them.

:func:`save_run` merges a run's rows and products into Parquet parts under ``<user data>/_distilled/`` (the
distill layout; the leading underscore keeps the folder out of the sidebar's KB list) and (re)builds the KB folder
``<user data>/my-products``, which the sidebar lists. Saves are serialised by a file lock, so two browser sessions
saving at once both land.

On a shared dashboard (README "Deployment and security") that one folder would mix every visitor's runs, so the
page saves under ``<user data>/annotators/<name>/`` instead (:func:`annotator_root`; the name typed on the page,
made a safe folder name by :func:`annotator_folder`). It separates people by name, not by login: anyone who types
the same name shares that KB.
"""

from __future__ import annotations

import re
import time
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from mind_core import config, io
from mind_core.kb.build import build_kb
from mind_core.schema import INTENTION_COLUMNS, INTENTIONS_SCHEMA, PRODUCT_COLUMNS, PRODUCTS_SCHEMA, Product

USER_KB_NAME = "my-products"
#: Parquet parts the user KB is built from, under the user data folder
USER_DATA_SUBDIR = "_distilled"
#: per-name saved runs of a shared dashboard, under the user data folder
ANNOTATORS_SUBDIR = "annotators"
ANNOTATOR_MAX_LEN = 40


@dataclass
class SaveReport:
    kb_dir: Path
    added: int
    replaced: int
    total: int
    seconds: float

    def text(self) -> str:
        what = f"{self.added} new" + (f", {self.replaced} replaced" if self.replaced else "")
        return (
            f"Saved ({what}) into the user KB `{self.kb_dir}` — {self.total} intentions in it now. Pick it in "
            "the sidebar's KB list to browse and search them."
        )


def user_data_dir(root: str | Path | None = None) -> Path:
    return Path(root) if root is not None else config.settings().user_data_dir


def annotator_folder(name: str) -> str:
    """A safe folder name for an annotator's name: ASCII letters (accents dropped) and digits, lower case, other
    characters as single dashes, at most :data:`ANNOTATOR_MAX_LEN` characters. Raises ValueError for a name
    with nothing left (empty, only punctuation)."""
    ascii_ = unicodedata.normalize("NFKD", name or "").encode("ascii", "ignore").decode("ascii")
    folder = re.sub(r"[^a-z0-9]+", "-", ascii_.lower()).strip("-")[:ANNOTATOR_MAX_LEN].strip("-")
    if not folder:
        raise ValueError("Type your name (letters or digits): saved runs are kept per name on this dashboard.")
    return folder


def annotator_root(name: str, root: str | Path | None = None) -> Path:
    """The user data folder of one annotator: ``<user data>/annotators/<annotator_folder(name)>``, for
    :func:`save_run` / :func:`user_kb_path` (``root=``)."""
    return user_data_dir(root) / ANNOTATORS_SUBDIR / annotator_folder(name)


def user_kb_path(root: str | Path | None = None, name: str = USER_KB_NAME) -> Path:
    """The KB folder :func:`save_run` builds (listed by the sidebar: ``user_kb_dir()/<name>/manifest.json``)."""
    return user_data_dir(root) / name


def save_run(
    rows: Sequence[dict], products: Sequence[Product], *, root: str | Path | None = None, name: str = USER_KB_NAME
) -> SaveReport:
    """Merge ``rows`` (KB intention rows, ``source = distilled:...``) and their products into the user's Parquet
    tables under ``<root>/_distilled/`` (distill layout: ``intentions/part-*.parquet``, ``products/part-*.parquet``;
    a row with the same ``intention_id`` — same pair, relation and backend — is replaced) and (re)build the KB
    folder ``<root>/<name>`` from them, embeddings and FAISS index included. Serialised by a file lock, so two
    browser sessions saving at once both land."""
    rows = [r for r in rows if (r.get("intention") or "").strip()]
    if not rows:
        raise ValueError("nothing to save: the run produced no intention")
    bad = [r.get("source") for r in rows if not str(r.get("source", "")).startswith("distilled:")]
    if bad:
        raise ValueError(f"only distilled rows can be saved here, got source {bad[0]!r}")
    t0 = time.perf_counter()
    base = user_data_dir(root)
    data = base / USER_DATA_SUBDIR
    ipath = data / "intentions" / "part-user.parquet"
    ppath = data / "products" / "part-user.parquet"
    with io.file_lock(base / ".save.lock"):
        old_rows = pq.read_table(ipath).to_pylist() if ipath.exists() else []
        old_products = pq.read_table(ppath).to_pylist() if ppath.exists() else []
        new_ids = {r["intention_id"] for r in rows}
        kept = [r for r in old_rows if r["intention_id"] not in new_ids]
        replaced = len(old_rows) - len(kept)
        merged = kept + [{c: r.get(c) for c in INTENTION_COLUMNS} for r in rows]
        prods = {p["asin"]: p for p in old_products}
        for p in products:
            prods[p.asin] = {c: getattr(p, c) for c in PRODUCT_COLUMNS}
        io.write_parquet(pa.Table.from_pylist(merged, schema=INTENTIONS_SCHEMA), ipath)
        io.write_parquet(pa.Table.from_pylist(list(prods.values()), schema=PRODUCTS_SCHEMA), ppath)
        kb_dir = user_kb_path(root, name)
        build_kb([data], kb_dir, progress=False)
    return SaveReport(kb_dir, len(rows) - replaced, replaced, len(merged), time.perf_counter() - t0)
