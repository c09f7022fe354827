"""Load intention/product rows from our JSONL layout (as in ``data/mind_sample``) or from Parquet parts.

Two JSONL row shapes are accepted for intentions:

* the MIND sample shape: ``id, relation, product_a{asin,title,...}, product_b{...}, intention,
  filter_verdict, filter_reason, category, tail``;
* the flat KB shape written by ``export`` / ``distill``: ``intention_id, asin_a, asin_b, relation, intention,
  verdict, reason, p_yes, category, source, ...``.

Every row is validated. A bad row stops loading with a message naming file, line and field, unless
``skip_bad=True``: then it is skipped and counted in the :class:`LoadReport` (nothing is dropped silently).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from mind_core.data.files import iter_text_lines
from mind_core.schema import (
    ALL_RELATION_PHRASES,
    INTENTION_COLUMNS,
    PRODUCT_COLUMNS,
    VERDICTS,
    Intention,
    Product,
    ValidationError,
    pair_id,
)

SAMPLE_SOURCE = "mind-sample"


@dataclass
class LoadReport:
    files: list[str] = field(default_factory=list)
    intentions: int = 0
    products: int = 0
    skipped: int = 0
    errors: list[str] = field(default_factory=list)  # first 20 messages of skipped rows

    def add_error(self, err: ValidationError) -> None:
        self.skipped += 1
        if len(self.errors) < 20:
            self.errors.append(str(err))


@dataclass
class LoadedRows:
    intentions: list[dict[str, Any]]
    products: dict[str, dict[str, Any]]
    report: LoadReport


# --- field checks ----------------------------------------------------------------------------------------------


def _require(row: dict, name: str, kind: type | tuple[type, ...], where: dict, *, optional: bool = False):
    if name not in row or row[name] is None:
        if optional:
            return None
        raise ValidationError("missing required field", field=name, **where)
    value = row[name]
    if not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool):
        want = kind.__name__ if isinstance(kind, type) else "/".join(k.__name__ for k in kind)
        raise ValidationError(f"expected {want}, got {type(value).__name__} {str(value)[:40]!r}", field=name, **where)
    return value


def _nonempty(value: str, name: str, where: dict) -> str:
    if not value.strip():
        raise ValidationError("must not be empty", field=name, **where)
    return value


def _relation(row: dict, where: dict) -> str:
    rel = _require(row, "relation", str, where)
    if rel not in ALL_RELATION_PHRASES:
        raise ValidationError(
            f"unknown relation {rel!r} (valid: {', '.join(ALL_RELATION_PHRASES)})", field="relation", **where
        )
    return rel


def _verdict(row: dict, name: str, where: dict) -> str | None:
    v = _require(row, name, str, where, optional=True)
    if v is None:
        return None
    v = v.strip().lower()
    if v not in VERDICTS:
        raise ValidationError(f"must be 'yes', 'no' or null, got {v!r}", field=name, **where)
    return v


def validate_product(row: Any, where: dict, prefix: str = "") -> dict[str, Any]:
    if not isinstance(row, dict):
        raise ValidationError(
            f"expected an object, got {type(row).__name__}", field=prefix.rstrip(".") or None, **where
        )
    w = where
    asin = _nonempty(_require(row, "asin", str, w), prefix + "asin", w)
    title = _require(row, "title", str, w)
    desc = _require(row, "description", str, w, optional=True) or ""
    urls = _require(row, "image_urls", list, w, optional=True) or []
    for i, u in enumerate(urls):
        if not isinstance(u, str):
            raise ValidationError(f"item {i} is {type(u).__name__}, expected str", field=prefix + "image_urls", **w)
    cat = _require(row, "category", str, w, optional=True) or ""
    return Product(
        asin=asin, title=title, description=desc, image_urls=list(dict.fromkeys(urls)), category=cat
    ).to_dict()


def _prefixed(err: ValidationError, prefix: str) -> ValidationError:
    return ValidationError(err.reason, path=err.path, line=err.line, field=prefix + (err.field or ""))


def validate_intention(row: Any, where: dict) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Validate one intention row (either shape); return (KB row, embedded products)."""
    if not isinstance(row, dict):
        raise ValidationError(f"expected a JSON object, got {type(row).__name__}", **where)
    products: list[dict[str, Any]] = []
    if "product_a" in row or "product_b" in row:  # MIND sample shape
        for key in ("product_a", "product_b"):
            if key not in row:
                raise ValidationError("missing required field", field=key, **where)
            try:
                products.append(validate_product(row[key], where, prefix=key + "."))
            except ValidationError as err:
                raise (_prefixed(err, key + ".") if err.field and not err.field.startswith(key) else err) from None
        rid = _require(row, "id", str, where)
        rec = Intention(
            intention_id=rid,
            asin_a=products[0]["asin"],
            asin_b=products[1]["asin"],
            relation=_relation(row, where),
            intention=_require(row, "intention", str, where),
            verdict=_verdict(row, "filter_verdict", where),
            reason=_require(row, "filter_reason", str, where, optional=True),
            category=_require(row, "category", str, where, optional=True) or "",
            source=_require(row, "source", str, where, optional=True) or SAMPLE_SOURCE,
            tail=_require(row, "tail", str, where, optional=True),
        )
    else:  # flat KB shape
        p_yes = _require(row, "p_yes", (int, float), where, optional=True)
        if p_yes is not None and not 0.0 <= float(p_yes) <= 1.0:
            raise ValidationError(f"must be within [0, 1], got {p_yes}", field="p_yes", **where)
        rec = Intention(
            intention_id=_nonempty(_require(row, "intention_id", str, where), "intention_id", where),
            asin_a=_nonempty(_require(row, "asin_a", str, where), "asin_a", where),
            asin_b=_nonempty(_require(row, "asin_b", str, where), "asin_b", where),
            relation=_relation(row, where),
            intention=_require(row, "intention", str, where),
            verdict=_verdict(row, "verdict", where),
            reason=_require(row, "reason", str, where, optional=True),
            p_yes=None if p_yes is None else float(p_yes),
            category=_require(row, "category", str, where, optional=True) or "",
            source=_require(row, "source", str, where, optional=True) or "",
            created_at=_require(row, "created_at", str, where, optional=True) or "",
            tail=_require(row, "tail", str, where, optional=True),
            flags=_require(row, "flags", str, where, optional=True) or "",
        )
    if rec.asin_a == rec.asin_b:
        raise ValidationError("a pair needs two different products", field="asin_b", **where)
    out = rec.to_dict()
    out["pair_id"] = pair_id(rec.asin_a, rec.asin_b)
    return out, products


# --- file readers ----------------------------------------------------------------------------------------------


def iter_jsonl(path: Path, report: LoadReport, skip_bad: bool) -> Iterator[tuple[dict, dict]]:
    """Yield (row, where) for every non-blank line; bad JSON raises or is counted."""
    for lineno, line in iter_text_lines(path):
        where = {"path": str(path), "line": lineno}
        try:
            row = json.loads(line)
        except json.JSONDecodeError as err:
            e = ValidationError(f"invalid JSON ({err.msg} at column {err.colno})", **where)
            if not skip_bad:
                raise e from None
            report.add_error(e)
            continue
        yield row, where


def _is_products_file(path: Path) -> bool:
    return path.name.lower().startswith("product")


def expand_inputs(inputs: Iterable[str | Path]) -> list[Path]:
    """Turn ``--input`` arguments (folders or files) into the list of data files to read, in a stable order."""
    files: list[Path] = []
    for item in inputs:
        p = Path(item)
        if not p.exists():
            raise ValidationError("input does not exist", path=str(p))
        if p.is_dir():
            found = sorted(
                f
                for f in p.rglob("*")
                if f.is_file()
                and (f.name.endswith((".jsonl", ".jsonl.gz", ".parquet")))
                and not any(part.startswith((".", "_")) for part in f.relative_to(p).parts)
            )
            if not found:
                raise ValidationError("folder has no .jsonl, .jsonl.gz or .parquet files", path=str(p))
            files.extend(found)
        else:
            if not p.name.endswith((".jsonl", ".jsonl.gz", ".parquet")):
                raise ValidationError("unsupported file type (use .jsonl, .jsonl.gz or .parquet)", path=str(p))
            files.append(p)
    return list(dict.fromkeys(files))


def _parquet_rows(path: Path) -> tuple[str, list[dict]]:
    try:
        table = pq.read_table(path)
    except Exception as err:  # pyarrow raises several types for corrupt files
        raise ValidationError(f"not a readable Parquet file ({err})", path=str(path)) from None
    cols = set(table.column_names)
    if {"asin", "title"} <= cols and "relation" not in cols:
        return "products", table.to_pylist()
    if {"asin_a", "asin_b", "relation", "intention"} <= cols:
        return "intentions", table.to_pylist()
    if {"asin_a", "asin_b", "relation", "status"} <= cols:  # a distill error/progress table
        return "ignore", []
    raise ValidationError(
        f"unknown table layout, columns {sorted(cols)}; expected intention columns {list(INTENTION_COLUMNS)[:6]}... "
        f"or product columns {list(PRODUCT_COLUMNS)}",
        path=str(path),
    )


def load_inputs(inputs: Iterable[str | Path], *, skip_bad: bool = False) -> LoadedRows:
    """Read and validate all intention and product rows from the given folders/files."""
    report = LoadReport()
    intentions: list[dict] = []
    products: dict[str, dict] = {}
    embedded: dict[str, dict] = {}
    seen_ids: dict[str, str] = {}

    def take_intention(row: Any, where: dict) -> None:
        try:
            rec, prods = validate_intention(row, where)
            if rec["intention_id"] in seen_ids:
                raise ValidationError(
                    f"duplicate intention id {rec['intention_id']!r} (first seen at {seen_ids[rec['intention_id']]})",
                    field="intention_id",
                    **where,
                )
        except ValidationError as err:
            if not skip_bad:
                raise
            report.add_error(err)
            return
        seen_ids[rec["intention_id"]] = f"{where['path']}:{where['line']}"
        intentions.append(rec)
        for p in prods:
            embedded.setdefault(p["asin"], p)

    def take_product(row: Any, where: dict) -> None:
        try:
            prod = validate_product(row, where)
        except ValidationError as err:
            if not skip_bad:
                raise
            report.add_error(err)
            return
        products[prod["asin"]] = prod

    for path in expand_inputs(inputs):
        report.files.append(str(path))
        if path.suffix == ".parquet":
            kind, rows = _parquet_rows(path)
            take = take_product if kind == "products" else take_intention
            for i, row in enumerate(rows, start=1):
                take(row, {"path": str(path), "line": i})
            continue
        take = take_product if _is_products_file(path) else take_intention
        for row, where in iter_jsonl(path, report, skip_bad):
            take(row, where)

    for asin, prod in embedded.items():
        products.setdefault(asin, prod)
    missing = {a for r in intentions for a in (r["asin_a"], r["asin_b"])} - products.keys()
    for asin in sorted(missing):  # a product referenced but never described: keep the row, record a stub
        products[asin] = Product(asin=asin, title="").to_dict()
    report.intentions, report.products = len(intentions), len(products)
    return LoadedRows(intentions=intentions, products=products, report=report)
