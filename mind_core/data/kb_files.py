"""Load intention/product rows: our JSONL layout (as in ``data/mind_sample``), Parquet parts, and MIND's and
FolkScope's own CSV layouts (:mod:`mind_core.data.mind_csv`).

Two JSONL row shapes are accepted for intentions:

* the MIND sample shape: ``id, relation, product_a{asin,title,...}, product_b{...}, intention,
  filter_verdict, filter_reason, category, tail``;
* the flat KB shape written by ``export`` / ``distill``: ``intention_id, asin_a, asin_b, relation, intention,
  verdict, reason, p_yes, category, source, ...``.

Every row is validated. A bad row stops loading with a message naming file, line and field, unless
``skip_bad=True``: then it is skipped and counted in the :class:`LoadReport` (nothing is dropped silently).

:class:`InputReader` streams: intention rows come out in batches, so a 1.26M-row input is never held in memory
(only ids, pair keys and the products are); :func:`load_inputs` collects everything for small inputs.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from mind_core.data.files import iter_text_lines
from mind_core.data.mind_csv import CsvRecord, is_csv, iter_csv_records
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
    #: the layout detected for each file: jsonl, parquet, products, mind-official, folkscope-packed
    layouts: dict[str, str] = field(default_factory=dict)
    intentions: int = 0
    products: int = 0
    skipped: int = 0
    errors: list[str] = field(default_factory=list)  # first 20 messages of skipped rows
    pairs: int = 0
    #: rows whose (pair, relation) an earlier row already has (kept: MIND's own files repeat some)
    repeated_pair_relations: int = 0
    #: empty instance slots in FolkScope's packed batches (skipped)
    empty_slots: int = 0
    #: products referenced by an intention but described nowhere (kept with an empty title)
    stub_products: int = 0
    #: ``--metadata`` join: file, products found / not found in it, fields filled
    metadata: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "layouts": dict(self.layouts),
            "intentions": self.intentions,
            "products": self.products,
            "pairs": self.pairs,
            "skipped_rows": self.skipped,
            "repeated_pair_relations": self.repeated_pair_relations,
            "empty_slots": self.empty_slots,
            "stub_products": self.stub_products,
            "metadata": self.metadata,
        }

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


# --- file readers ---

INPUT_SUFFIXES = (".jsonl", ".jsonl.gz", ".parquet", ".csv", ".csv.gz")
#: the longest line a JSONL reader parses before calling the row bad (every field is checked on its own too)
_LINE_FACTOR = 16


def _too_long(row: Any, limit: int, where: dict, prefix: str = "") -> None:
    """Raise for the first string field (nested product objects included) longer than ``limit`` characters."""
    if not isinstance(row, dict):
        return
    for key, value in row.items():
        if isinstance(value, str) and len(value) > limit:
            raise ValidationError(
                f"{len(value)} characters, over the limit of {limit} (MIND_MAX_FIELD_CHARS)",
                field=prefix + str(key),
                **where,
            )
        if isinstance(value, dict):
            _too_long(value, limit, where, prefix + str(key) + ".")


def iter_jsonl(
    path: Path, bad: Callable[[ValidationError], None], max_field_chars: int = 100_000
) -> Iterator[tuple[dict, dict]]:
    """Yield (row, where) for every non-blank line; bad JSON, bytes that are not UTF-8 and over-long lines go to
    ``bad`` (which raises, or counts and returns)."""
    for lineno, line in iter_text_lines(path, on_bad=bad):
        where = {"path": str(path), "line": lineno}
        if len(line) > max_field_chars * _LINE_FACTOR:
            bad(ValidationError(f"line of {len(line)} characters, too long for a row (MIND_MAX_FIELD_CHARS)", **where))
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as err:
            bad(ValidationError(f"invalid JSON ({err.msg} at column {err.colno})", **where))
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
                and f.name.lower().endswith(INPUT_SUFFIXES)
                and not any(part.startswith((".", "_")) for part in f.relative_to(p).parts)
            )
            if not found:
                raise ValidationError("folder has no .jsonl, .jsonl.gz, .parquet, .csv or .csv.gz files", path=str(p))
            files.extend(found)
        else:
            if not p.name.lower().endswith(INPUT_SUFFIXES):
                raise ValidationError(
                    "unsupported file type (use .jsonl, .jsonl.gz, .parquet, or MIND's .csv / .csv.gz)", path=str(p)
                )
            files.append(p)
    return list(dict.fromkeys(files))


def _parquet_kind(path: Path) -> tuple[str, pq.ParquetFile | None]:
    try:
        pf = pq.ParquetFile(path)
    except Exception as err:  # pyarrow raises several types for corrupt files
        raise ValidationError(f"not a readable Parquet file ({err})", path=str(path)) from None
    cols = set(pf.schema_arrow.names)
    if {"asin", "title"} <= cols and "relation" not in cols:
        return "products", pf
    if {"asin_a", "asin_b", "relation", "intention"} <= cols:
        return "intentions", pf
    if {"asin_a", "asin_b", "relation", "status"} <= cols:  # a distill error/progress table
        return "ignore", None
    raise ValidationError(
        f"unknown table layout, columns {sorted(cols)}; expected intention columns {list(INTENTION_COLUMNS)[:6]}... "
        f"or product columns {list(PRODUCT_COLUMNS)}",
        path=str(path),
    )


def _iter_parquet(path: Path, pf: pq.ParquetFile) -> Iterator[tuple[dict, dict]]:
    i = 0
    try:
        for batch in pf.iter_batches(batch_size=8192):
            for row in batch.to_pylist():
                i += 1
                yield row, {"path": str(path), "line": i}
    except ValidationError:
        raise
    except Exception as err:  # a damaged row group
        raise ValidationError(f"unreadable Parquet data after row {i} ({err})", path=str(path)) from None


def _merge_product(have: dict[str, Any], new: dict[str, Any]) -> None:
    """Fill what ``have`` lacks from another instance of the same product; image URLs are united in order."""
    for key in ("title", "description", "category"):
        if not have.get(key) and new.get(key):
            have[key] = new[key]
    extra = [u for u in new.get("image_urls") or [] if u not in have["image_urls"]]
    if extra:
        have["image_urls"] = have["image_urls"] + extra


class InputReader:
    """Stream validated intention rows from ``--input`` folders/files of any supported layout.

    Iterate :meth:`batches` once; afterwards :attr:`products` holds every product (listed in product files,
    embedded in rows, joined from ``metadata``, or a stub) and :attr:`report` the counts."""

    def __init__(
        self,
        inputs: Iterable[str | Path],
        *,
        skip_bad: bool = False,
        max_field_chars: int | None = None,
        metadata: str | Path | None = None,
    ):
        from mind_core import config

        self.inputs = list(inputs)
        self.files = expand_inputs(self.inputs)
        self.skip_bad = skip_bad
        self.max_field_chars = max_field_chars or config.settings().max_field_chars
        self.metadata = Path(metadata) if metadata else None
        self.report = LoadReport()
        self.products: dict[str, dict[str, Any]] = {}
        self._listed: dict[str, dict[str, Any]] = {}
        self._embedded: dict[str, dict[str, Any]] = {}
        self._seen_ids: dict[str, int] = {}  # id -> file number << 40 | line (where it was first seen)
        self._pair_relations: set[int] = set()
        self._pairs: set[str] = set()
        self._done = False

    # -- errors
    def _bad(self, err: ValidationError) -> None:
        if not self.skip_bad:
            raise err
        self.report.add_error(err)

    def _where_seen(self, packed: int) -> str:
        return f"{self.report.files[packed >> 40]}:{packed & ((1 << 40) - 1)}"

    # -- rows
    def _take_intention(self, row: Any, where: dict, record: CsvRecord | None = None) -> dict | None:
        try:
            if record is None:  # CSV cells were checked as they were read
                _too_long(row, self.max_field_chars, where)
            rec, prods = validate_intention(row, where)
        except ValidationError as err:
            self._bad(record.column_error(err) if record is not None else err)
            return None
        rid = rec["intention_id"]
        if rid in self._seen_ids:
            if record is not None and record.generated_id:  # a verbatim repeat: the next free -2, -3 ...
                k = 2
                while f"{rid}-{k}" in self._seen_ids:
                    k += 1
                rid = rec["intention_id"] = f"{rid}-{k}"
            else:
                self._bad(
                    ValidationError(
                        f"duplicate intention id {rid!r} (first seen at {self._where_seen(self._seen_ids[rid])})",
                        field="intention_id",
                        **where,
                    )
                )
                return None
        self._seen_ids[rid] = ((len(self.report.files) - 1) << 40) | int(where.get("line") or 0)
        key = hash((rec["pair_id"], rec["relation"]))
        if key in self._pair_relations:
            self.report.repeated_pair_relations += 1
        else:
            self._pair_relations.add(key)
        self._pairs.add(rec["pair_id"])
        for prod in prods:
            have = self._embedded.get(prod["asin"])
            if have is None:
                self._embedded[prod["asin"]] = prod
            else:
                _merge_product(have, prod)
        return rec

    def _take_product(self, row: Any, where: dict) -> None:
        try:
            _too_long(row, self.max_field_chars, where)
            prod = validate_product(row, where)
        except ValidationError as err:
            self._bad(err)
            return
        self._listed[prod["asin"]] = prod

    def _file_rows(self, path: Path) -> Iterator[dict]:
        """Validated intention rows of one file (product rows are collected, not yielded)."""
        report = self.report
        if is_csv(path):
            for record in iter_csv_records(
                path, on_bad=self._bad, max_field_chars=self.max_field_chars, layouts=report.layouts
            ):
                if not record.row:
                    report.empty_slots += 1
                    continue
                rec = self._take_intention(record.row, record.where, record)
                if rec is not None:
                    yield rec
            return
        if path.suffix == ".parquet":
            kind, pf = _parquet_kind(path)
            report.layouts[str(path)] = f"parquet-{kind}"
            if pf is None:
                return
            for row, where in _iter_parquet(path, pf):
                if kind == "products":
                    self._take_product(row, where)
                elif (rec := self._take_intention(row, where)) is not None:
                    yield rec
            return
        is_products = _is_products_file(path)
        report.layouts[str(path)] = "jsonl-products" if is_products else "jsonl"
        for row, where in iter_jsonl(path, self._bad, self.max_field_chars):
            if is_products:
                self._take_product(row, where)
            elif (rec := self._take_intention(row, where)) is not None:
                yield rec

    def batches(self, rows: int = 16_384) -> Iterator[list[dict[str, Any]]]:
        """Validated intention rows (KB columns + ``pair_id``) in input order, ``rows`` at a time."""
        if self._done:
            raise RuntimeError("InputReader.batches() can be iterated once")
        batch: list[dict[str, Any]] = []
        for path in self.files:
            self.report.files.append(str(path))
            for rec in self._file_rows(path):
                batch.append(rec)
                self.report.intentions += 1
                if len(batch) >= rows:
                    yield batch
                    batch = []
        if batch:
            yield batch
        self._finish()

    def _finish(self) -> None:
        products = dict(self._listed)
        for asin, prod in self._embedded.items():
            products.setdefault(asin, prod)
        if self.metadata is not None:
            self.report.metadata = join_metadata(products, self.metadata, skip_bad=self.skip_bad)
        referenced = {a for pid in self._pairs for a in pid.split("|")}
        missing = sorted(referenced - products.keys())
        for asin in missing:  # a product referenced but never described: keep the row, record a stub
            products[asin] = Product(asin=asin, title="").to_dict()
        self.report.stub_products = len(missing)
        self.products = products
        self.report.products = len(products)
        self.report.pairs = len(self._pairs)
        self._seen_ids.clear()
        self._pair_relations.clear()
        self._done = True


def join_metadata(products: dict[str, dict[str, Any]], path: Path, *, skip_bad: bool = False) -> dict[str, Any]:
    """Fill products from Amazon Review 2018 metadata (``build-kb --metadata``), joined by ASIN: image URLs,
    category, and a title or description where the input has none. The file is streamed; only the products of
    the KB are looked at. Products absent from the file are counted, never dropped."""
    from mind_core.data.amazon import AmazonReport, iter_metadata

    if not path.exists():
        raise ValidationError("metadata file does not exist", path=str(path))
    report = AmazonReport(path=str(path))
    found: set[str] = set()
    filled = {"image_urls": 0, "category": 0, "title": 0, "description": 0}
    for meta, _also_buy in iter_metadata(path, report, skip_bad=skip_bad):
        prod = products.get(meta.asin)
        if prod is None or meta.asin in found:
            continue
        found.add(meta.asin)
        if not prod.get("image_urls") and meta.image_urls:
            prod["image_urls"] = list(meta.image_urls)
            filled["image_urls"] += 1
        for key in ("category", "title", "description"):
            value = getattr(meta, key)
            if not (prod.get(key) or "").strip() and value:
                prod[key] = value
                filled[key] += 1
    return {
        "file": str(path),
        "lines": report.lines,
        "skipped_lines": report.skipped,
        "products_found": len(found),
        "products_not_in_metadata": len(products) - len(found),
        "filled": filled,
    }


def load_inputs(
    inputs: Iterable[str | Path],
    *,
    skip_bad: bool = False,
    max_field_chars: int | None = None,
    metadata: str | Path | None = None,
) -> LoadedRows:
    """Read and validate all intention and product rows from the given folders/files (everything in memory:
    for small inputs and tests; ``build-kb`` streams through :class:`InputReader`)."""
    reader = InputReader(inputs, skip_bad=skip_bad, max_field_chars=max_field_chars, metadata=metadata)
    intentions = [rec for batch in reader.batches() for rec in batch]
    return LoadedRows(intentions=intentions, products=reader.products, report=reader.report)
