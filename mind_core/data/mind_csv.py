"""MIND's and FolkScope's own CSV layouts -> intention rows (the MIND sample shape of :mod:`mind_core.data.kb_files`).

Two layouts, told apart by the header (:func:`detect_layout`):

``mind-official``
    What HKUST-KnowComp/MIND_Distillation writes (``MIND/llava/serve/role_aware_filter.py``;
    ``intention_generation.py`` writes the same without ``Agreement``): one row per (pair, relation), columns
    ``id_a, id_b, Product_a, Product_b, Relation, Intention, product_a_desc, product_b_desc, Agreement, tail``
    and sometimes ``Cate``. ids: ``m-<16 hex>``, the SHA-1 of (id_a, id_b, Relation, Intention): the same input
    gives the same ids whatever the file is called or where the row is (a row repeated verbatim gets ``-2``,
    ``-3`` ...).
``folkscope-packed``
    FolkScope's annotation batches (``Annotation/crowdsourcing_integrate_4500_b{1..4}.csv`` at commit cc66ac7):
    every row packs two instances, the :data:`PACKED_FIELDS` suffixed ``_1`` and ``_2`` (42 columns). ids:
    ``b<k>-<row>-<slot>`` for a file named ``..._b<k>.csv`` (the ids of ``data/mind_sample``), else
    ``<file stem>-<row>-<slot>``; ``row`` is the 0-based data row. A slot whose fields are all empty is skipped
    and counted.

Meaning of the columns: ``id_a`` / ``id_b`` ASINs, ``Product_*`` titles, ``product_*_desc`` stage-1 descriptions,
``Intention`` the stage-2 text, ``Relation`` the relation key, ``Agreement`` the role-aware filter's answer
(verdict = its first word, :func:`mind_core.schema.verdict_of`; reason = the whole answer; no column or an empty
cell = unjudged), ``tail`` the FolkScope assertion the pair and relation were sampled from (lineage), ``Cate`` the
intention category (``elec`` -> ``electronics``).

Records are streamed (one at a time, any file size); errors name the physical line on which the record starts and
the CSV column: ``file.csv:12: column 'Relation': unknown relation 'usedfor' ...``.
"""

from __future__ import annotations

import csv
import hashlib
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mind_core.data.files import bad_utf8, damaged, open_text
from mind_core.schema import ValidationError, verdict_of

MIND_SOURCE = "mind"
PACKED_SOURCE = "mind-sample"

OFFICIAL_REQUIRED: tuple[str, ...] = (
    "id_a",
    "id_b",
    "Product_a",
    "Product_b",
    "Relation",
    "Intention",
    "product_a_desc",
    "product_b_desc",
    "tail",
)
OFFICIAL_OPTIONAL: tuple[str, ...] = ("Agreement", "Cate")
#: the 21 fields of one instance in FolkScope's packed batches (each appears as ``<field>_1`` and ``<field>_2``)
PACKED_FIELDS: tuple[str, ...] = (
    "id_a",
    "id_b",
    "Product_a",
    "Product_b",
    "Cate",
    "Relation",
    "product_a_desc",
    "product_b_desc",
    "Intention",
    "tail",
    "Agreement",
    "item_a_img1_url",
    "item_a_img2_url",
    "item_a_img3_url",
    "item_b_img1_url",
    "item_b_img2_url",
    "item_b_img3_url",
    "item_a_cate",
    "item_b_cate",
    "item_a_link",
    "item_b_link",
)
PACKED_SLOTS = ("1", "2")
LAYOUTS: dict[str, str] = {
    "mind-official": "MIND_Distillation output: " + ", ".join(OFFICIAL_REQUIRED) + " [, Agreement, Cate]",
    "folkscope-packed": "FolkScope annotation batch: two instances per row, "
    + ", ".join(PACKED_FIELDS[:6])
    + ", ... suffixed _1 and _2 (42 columns)",
}
CATEGORY_NAMES = {"elec": "electronics"}

#: KB field (as :func:`mind_core.data.kb_files.validate_intention` names it) -> the CSV column it comes from
_FIELD_COLUMN = {
    "relation": "Relation",
    "intention": "Intention",
    "product_a": "id_a",
    "product_b": "id_b",
    "product_a.asin": "id_a",
    "product_b.asin": "id_b",
    "asin_b": "id_b",
    "product_a.title": "Product_a",
    "product_b.title": "Product_b",
    "product_a.description": "product_a_desc",
    "product_b.description": "product_b_desc",
    "filter_verdict": "Agreement",
    "filter_reason": "Agreement",
    "category": "Cate",
    "tail": "tail",
}
_ASIN = re.compile(r"^\S{1,64}$")
_BATCH = re.compile(r"_b(\d+)$")


@dataclass
class CsvRecord:
    """One instance read from a CSV file: the row in the MIND sample shape, where it starts, and how to name a
    KB field as the file's column (for error messages)."""

    row: dict[str, Any]
    where: dict[str, Any]
    suffix: str = ""  # "_1" / "_2" in the packed layout
    generated_id: bool = False  # an id made from the content: a verbatim repeat gets a -2, -3 ... suffix

    def column_error(self, err: ValidationError) -> ValidationError:
        column = _FIELD_COLUMN.get(err.field or "", err.field)
        return ValidationError(
            err.reason,
            path=err.path,
            line=err.line,
            field=(column + self.suffix) if column else None,
            kind="column",
        )


def is_csv(path: Path) -> bool:
    return path.name.lower().endswith((".csv", ".csv.gz"))


def detect_layout(header: Sequence[str], path: Path) -> str:
    """The layout of a CSV header, or a ValidationError listing the known layouts and the columns seen."""
    cols = set(header)
    if {f"{f}_{s}" for f in PACKED_FIELDS for s in PACKED_SLOTS} <= cols:
        return "folkscope-packed"
    if set(OFFICIAL_REQUIRED) - {"tail"} <= cols:  # `tail` is optional in practice: rows without lineage
        return "mind-official"
    missing = sorted(set(OFFICIAL_REQUIRED) - cols)
    known = "; ".join(f"{name} ({desc})" for name, desc in LAYOUTS.items())
    raise ValidationError(
        f"unknown CSV layout: columns seen {list(header)[:30]}"
        + (f" (the official layout would also need {missing})" if len(missing) < len(OFFICIAL_REQUIRED) else "")
        + f"; known layouts: {known}",
        path=str(path),
        line=1,
    )


def _cell(values: dict[str, str], column: str) -> str:
    return values.get(column, "")


def _asin(value: str, column: str, where: dict) -> str:
    v = value.strip()
    if not v:
        raise ValidationError("must not be empty", field=column, kind="column", **where)
    if not _ASIN.match(v):
        raise ValidationError(
            f"expected an ASIN (one word, at most 64 characters), got {v[:40]!r}: are the columns shifted?",
            field=column,
            kind="column",
            **where,
        )
    return v


def _instance(values: dict[str, str], sfx: str, where: dict, source: str) -> dict[str, Any]:
    """Build the MIND-sample-shaped row of one instance from cells named ``<field><sfx>``."""

    def get(name: str) -> str:
        return _cell(values, name + sfx)

    def product(side: str) -> dict[str, Any]:
        urls = [get(f"item_{side}_img{i}_url").strip() for i in (1, 2, 3)]
        return {
            "asin": _asin(get(f"id_{side}"), f"id_{side}{sfx}", where),
            "title": get(f"Product_{side}"),
            "description": get(f"product_{side}_desc"),
            "image_urls": list(dict.fromkeys(u for u in urls if u)),
            "category": get(f"item_{side}_cate").strip(),
        }

    agreement = get("Agreement")
    cate = get("Cate").strip()
    return {
        "relation": get("Relation").strip(),
        "product_a": product("a"),
        "product_b": product("b"),
        "intention": get("Intention"),
        "filter_verdict": verdict_of(agreement) if agreement.strip() else None,
        "filter_reason": agreement if agreement.strip() else None,
        "category": CATEGORY_NAMES.get(cate.lower(), cate),
        "tail": get("tail") if get("tail").strip() else None,
        "source": source,
    }


def content_id(row: dict[str, Any]) -> str:
    key = "\x1f".join((row["product_a"]["asin"], row["product_b"]["asin"], row["relation"], row["intention"]))
    return "m-" + hashlib.sha1(key.encode("utf-8", "surrogatepass")).hexdigest()[:16]


def iter_csv_records(
    path: Path,
    *,
    on_bad: Callable[[ValidationError], None] | None = None,
    max_field_chars: int = 100_000,
    layouts: dict[str, str] | None = None,
) -> Iterator[CsvRecord]:
    """Stream the instances of one CSV file of either layout.

    A bad record raises ValidationError (``file:line: column 'x': ...``, line = the physical line where the
    record starts), or with ``on_bad`` is passed to it and skipped. Undecodable bytes, a field over
    ``max_field_chars``, a wrong number of cells and broken quoting are bad records; a damaged ``.gz`` stops the
    file. ``layouts``: filled with ``{path: layout}``."""
    try:
        fh = open_text(path, newline="")
    except OSError as err:
        raise ValidationError(f"cannot open: {err.strerror or err}", path=str(path)) from None
    # the csv module's own cap bounds the memory of an unterminated quote; our check below gives the message
    csv.field_size_limit(max(max_field_chars * 4, 131_072))
    with fh:
        reader = csv.reader(fh, strict=True)
        try:
            header = next(reader, None)
        except (OSError, EOFError) as err:
            raise damaged(path, 0, err) from None
        except csv.Error as err:
            raise ValidationError(f"unreadable CSV header ({err})", path=str(path), line=1) from None
        if header is None:
            raise ValidationError("empty CSV file (no header)", path=str(path))
        if problem := bad_utf8(",".join(header)):
            raise ValidationError(problem, path=str(path), line=1)
        layout = detect_layout(header, path)
        if layouts is not None:
            layouts[str(path)] = layout
        ncols = len(header)
        batch = _BATCH.search(path.name.split(".")[0])
        stem = f"b{batch.group(1)}" if batch else path.name.split(".")[0]
        data_row = -1
        last_line = reader.line_num
        while True:
            start = last_line + 1
            where = {"path": str(path), "line": start}
            try:
                cells = next(reader)
            except StopIteration:
                break
            except (OSError, EOFError) as err:
                raise damaged(path, last_line, err) from None
            except csv.Error as err:
                last_line = reader.line_num
                text = str(err)
                if "field larger than field limit" in text:
                    text = f"a field is longer than {max_field_chars} characters (MIND_MAX_FIELD_CHARS)"
                elif "unexpected end of data" in text:
                    text = "a quoted field that starts in this record is never closed (unterminated quote)"
                _bad(ValidationError(f"broken CSV record: {text}", **where), on_bad)
                continue
            last_line = reader.line_num
            if not cells:  # a blank line
                continue
            data_row += 1
            try:
                if len(cells) != ncols:
                    raise ValidationError(
                        f"{len(cells)} cells, the header has {ncols} (an unquoted comma or a missing quote?)", **where
                    )
                values = dict(zip(header, cells))
                dirty = bad_utf8("".join(cells)) is not None  # one scan per record; the cell is named below
                for col, value in values.items():
                    if len(value) > max_field_chars:
                        raise ValidationError(
                            f"{len(value)} characters, over the limit of {max_field_chars} (MIND_MAX_FIELD_CHARS)",
                            field=col,
                            kind="column",
                            **where,
                        )
                    if dirty and (problem := bad_utf8(value)):
                        raise ValidationError(problem, field=col, kind="column", **where)
            except ValidationError as err:
                _bad(err, on_bad)
                continue
            if layout == "mind-official":
                try:
                    row = _instance(values, "", where, MIND_SOURCE)
                except ValidationError as err:
                    _bad(err, on_bad)
                    continue
                row["id"] = content_id(row)
                yield CsvRecord(row, where, "", generated_id=True)
                continue
            for slot in PACKED_SLOTS:
                sfx = f"_{slot}"
                if not any(values[f"{f}{sfx}"].strip() for f in PACKED_FIELDS):
                    yield CsvRecord({}, where, sfx)  # an empty slot: counted by the caller
                    continue
                try:
                    row = _instance(values, sfx, where, PACKED_SOURCE)
                except ValidationError as err:
                    _bad(err, on_bad)
                    continue
                row["id"] = f"{stem}-{data_row:03d}-{slot}"
                yield CsvRecord(row, where, sfx)


def _bad(err: ValidationError, on_bad: Callable[[ValidationError], None] | None) -> None:
    if on_bad is None:
        raise err
    on_bad(err)


def write_official_csv(rows, products: dict[str, dict[str, Any]], path: Path, *, with_cate: bool = True) -> int:
    """Write intention rows (KB shape: asin_a, asin_b, relation, intention, reason, category, tail) in MIND's
    official layout, as ``role_aware_filter.py`` does (``Agreement`` = the filter's answer); ``.csv.gz`` is
    gzipped. Used to round-trip the sample and to make the 1.26M-row benchmark file. Returns rows written."""
    import gzip
    import io

    cols = ["id_a", "id_b", "Product_a", "Product_b", "Relation", "Intention", "product_a_desc", "product_b_desc"]
    cols += ["Agreement", "tail"] + (["Cate"] if with_cate else [])
    back = {v: k for k, v in CATEGORY_NAMES.items()}
    n = 0
    gz = str(path).endswith(".gz")
    with (
        gzip.open(path, "wb", compresslevel=3) if gz else open(path, "wb") as raw,
        io.TextIOWrapper(raw, encoding="utf-8", newline="") as fh,
    ):
        w = csv.writer(fh)
        w.writerow(cols)
        for r in rows:
            a, b = products.get(r["asin_a"], {}), products.get(r["asin_b"], {})
            cells = [
                r["asin_a"],
                r["asin_b"],
                a.get("title", ""),
                b.get("title", ""),
                r["relation"],
                r["intention"],
                a.get("description", ""),
                b.get("description", ""),
                r.get("reason") or "",
                r.get("tail") or "",
            ]
            if with_cate:
                cells.append(back.get(r.get("category") or "", r.get("category") or ""))
            w.writerow(cells)
            n += 1
    return n
