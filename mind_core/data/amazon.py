"""Amazon Review Data (2018) product metadata -> products and co-buy pairs.

The input is JSON lines, optionally gzip-compressed, one product per line with (among others) ``asin``, ``title``,
``description`` (list of str), ``imageURLHighRes`` / ``imageURL`` (lists of URLs), ``also_buy`` (list of ASINs)
and ``category`` (list, top level first). Every line is validated; a bad line stops loading with a message naming
file, line and field, unless ``skip_bad=True``, in which case it is skipped and counted. Some 2018 files hold Python
dict reprs (``{'asin': ...}``) instead of JSON: those lines are reported as bad, never evaluated.

Co-buy pairs are the ``also_buy`` links whose two products are both in the file. A link present in both directions
gives one pair (A = the smaller ASIN); otherwise A is the product whose ``also_buy`` names B. The order is
deterministic: by the position of the link's first appearance in the file.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mind_core.data.files import iter_text_lines
from mind_core.schema import CoBuyPair, Product, ValidationError


@dataclass
class AmazonReport:
    path: str = ""
    lines: int = 0
    products: int = 0
    pairs: int = 0
    skipped: int = 0
    duplicates: int = 0  # repeated ASINs (the first line wins)
    dangling_links: int = 0  # also_buy entries naming a product that is not in the file
    symmetric_links: int = 0  # pairs linked in both directions (counted once)
    errors: list[str] = field(default_factory=list)  # first 20 messages of skipped lines

    def add_error(self, err: ValidationError) -> None:
        self.skipped += 1
        if len(self.errors) < 20:
            self.errors.append(str(err))

    def summary(self) -> str:
        text = (
            f"{self.path}: {self.products} products, {self.pairs} co-buy pairs from {self.lines} lines"
            f" ({self.dangling_links} also_buy links to products not in the file"
        )
        if self.duplicates:
            text += f", {self.duplicates} repeated ASINs ignored"
        text += ")"
        if self.skipped:
            text += f"; skipped {self.skipped} bad lines"
        return text


@dataclass
class AmazonMetadata:
    products: dict[str, Product]  # in file order
    pairs: list[CoBuyPair]
    report: AmazonReport


def _str_list(row: dict, name: str, where: dict) -> list[str]:
    value = row.get(name)
    if value is None:
        return []
    if isinstance(value, str):  # tolerated: a single string where a list is documented
        return [value] if value.strip() else []
    if not isinstance(value, list):
        raise ValidationError(f"expected a list of strings, got {type(value).__name__}", field=name, **where)
    out: list[str] = []
    for i, item in enumerate(value):
        if not isinstance(item, str):
            raise ValidationError(f"item {i} is {type(item).__name__}, expected str", field=name, **where)
        if item.strip():
            out.append(item.strip())
    return out


def parse_product_line(row: Any, where: dict) -> tuple[Product, list[str]]:
    """Validate one decoded metadata line; return the product and its ``also_buy`` ASINs."""
    if not isinstance(row, dict):
        raise ValidationError(f"expected a JSON object, got {type(row).__name__}", **where)
    asin = row.get("asin")
    if not isinstance(asin, str) or not asin.strip():
        raise ValidationError(
            "missing required field" if asin is None else f"expected a non-empty string, got {str(asin)[:40]!r}",
            field="asin",
            **where,
        )
    title = row.get("title")
    if not isinstance(title, str):
        raise ValidationError(
            "missing required field" if title is None else f"expected str, got {type(title).__name__}",
            field="title",
            **where,
        )
    if not title.strip():
        raise ValidationError("must not be empty", field="title", **where)
    description = "\n".join(_str_list(row, "description", where))
    urls = _str_list(row, "imageURLHighRes", where) or _str_list(row, "imageURL", where)
    categories = _str_list(row, "category", where)
    category = categories[0] if categories else ""
    if not category and isinstance(row.get("main_cat"), str):
        category = row["main_cat"].strip()
    also_buy = _str_list(row, "also_buy", where)
    product = Product(
        asin=asin.strip(),
        title=" ".join(title.split()),
        description=description,
        image_urls=list(dict.fromkeys(urls)),
        category=category,
    )
    return product, also_buy


def iter_metadata(
    path: str | Path, report: AmazonReport, *, skip_bad: bool = False
) -> Iterator[tuple[Product, list[str]]]:
    """Yield ``(product, also_buy)`` for every valid line of a metadata file."""
    path = Path(path)
    for lineno, line in iter_text_lines(path):
        report.lines += 1
        where = {"path": str(path), "line": lineno}
        try:
            try:
                row = json.loads(line)
            except json.JSONDecodeError as err:
                hint = (
                    " (this line looks like a Python dict repr, not JSON; convert the file to strict JSON "
                    "lines, e.g. with json.dumps, or re-run with --skip-bad)"
                    if line.lstrip().startswith("{'")
                    else ""
                )
                raise ValidationError(f"invalid JSON ({err.msg} at column {err.colno}){hint}", **where) from None
            yield parse_product_line(row, where)
        except ValidationError as err:
            if not skip_bad:
                raise
            report.add_error(err)


def cobuy_pairs(
    links: list[tuple[str, str]], known: set[str] | dict, report: AmazonReport | None = None
) -> list[CoBuyPair]:
    """Unordered co-buy pairs from directed ``(asin, also_buy_asin)`` links, in order of first appearance.
    Links to unknown products and self-links are dropped; a link in both directions gives one pair with the
    smaller ASIN as A."""
    directed = set(links)
    seen: set[tuple[str, str]] = set()
    pairs: list[CoBuyPair] = []
    for a, b in links:
        if a == b:
            continue
        if b not in known or a not in known:
            if report is not None:
                report.dangling_links += 1
            continue
        key = (a, b) if a < b else (b, a)
        if key in seen:
            continue
        seen.add(key)
        if (b, a) in directed:
            if report is not None:
                report.symmetric_links += 1
            pairs.append(CoBuyPair(*key))
        else:
            pairs.append(CoBuyPair(a, b))
    return pairs


def load_amazon_metadata(path: str | Path, *, skip_bad: bool = False) -> AmazonMetadata:
    """Read a metadata file (``.json``/``.jsonl``, optionally ``.gz``) into products and co-buy pairs."""
    path = Path(path)
    if not path.exists():
        raise ValidationError("metadata file does not exist", path=str(path))
    if path.is_dir():
        raise ValidationError("expected a file of JSON lines, got a folder", path=str(path))
    report = AmazonReport(path=str(path))
    products: dict[str, Product] = {}
    links: list[tuple[str, str]] = []
    for product, also_buy in iter_metadata(path, report, skip_bad=skip_bad):
        if product.asin in products:
            report.duplicates += 1
            continue
        products[product.asin] = product
        links.extend((product.asin, b) for b in dict.fromkeys(also_buy))
    pairs = cobuy_pairs(links, products, report)
    report.products, report.pairs = len(products), len(pairs)
    return AmazonMetadata(products=products, pairs=pairs, report=report)
