"""The data model: products, co-buy pairs, intentions, and the relation table.

This module is the one place for the 20 MIND relation keys and their prompt phrases
(see RELATIONS.md in the design notes) and for the KB column layout.
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass, field
from typing import Any

# --- relations -------------------------------------------------------------------------------------------------

#: MIND's relation keys (official code, ``relation_lst.json``) -> phrase inserted into the prompts (``utils.py``).
#: ``propertOf`` is a typo that exists in the real data and is kept apart from ``propertyOf``.
#: ``open`` has an empty phrase.
RELATION_PHRASES: dict[str, str] = {
    "can": "they both can",
    "effect": "they both have an effect of",
    "usedFor": "they are both used for",
    "createdBy": "they are created by",
    "isA": "they both are a type of",
    "capableOf": "they both are capable of",
    "propertOf": "they both have a property of",
    "open": "",
    "cause": "the person wants to",
    "mannerOf": "they both are a manner of",
    "propertyOf": "they both have a property of",
    "definedAs": "they both are defined as",
    "partOf": "they both are a part of",
    "symbolOf": "they both are symbols of",
    "similarTo": "they both are similar to",
    "deriveFrom": "they are derived from",
    "madeOf": "they both are made of",
    "distinctFrom": "they are distinct from",
    "relatedTo": "they both are related to",
    "other": "they both are",
}
#: In the phrase table of the official code but not in MIND's relation list nor in the sample data.
EXTRA_RELATION_PHRASES: dict[str, str] = {"causeDesire": "the person wants his"}

RELATIONS: tuple[str, ...] = tuple(RELATION_PHRASES)
ALL_RELATION_PHRASES: dict[str, str] = {**RELATION_PHRASES, **EXTRA_RELATION_PHRASES}

VERDICTS = ("yes", "no")


def relation_phrase(relation: str) -> str:
    """The prompt phrase of a relation key; raises ``ValueError`` naming the valid keys."""
    try:
        return ALL_RELATION_PHRASES[relation]
    except KeyError:
        raise ValueError(f"unknown relation {relation!r}; valid keys: {', '.join(ALL_RELATION_PHRASES)}") from None


def parse_relations(spec: str | None) -> list[str]:
    """Parse ``all`` or a comma list like ``usedFor,isA`` into relation keys (validated, order kept, no repeats)."""
    if spec is None or spec.strip().lower() in ("", "all"):
        return list(RELATIONS)
    keys: list[str] = []
    for part in spec.split(","):
        key = part.strip()
        if not key:
            continue
        relation_phrase(key)
        if key not in keys:
            keys.append(key)
    if not keys:
        raise ValueError("no relation given")
    return keys


# --- errors ----------------------------------------------------------------------------------------------------


class ValidationError(ValueError):
    """Bad input data: names the file, the 1-based line and the field so a user can fix it."""

    def __init__(self, message: str, *, path: str | None = None, line: int | None = None, field: str | None = None):
        self.path, self.line, self.field, self.reason = path, line, field, message
        where = ":".join(str(x) for x in (path, line) if x is not None)
        parts = [p for p in (where, f"field {field!r}" if field else None, message) if p]
        super().__init__(": ".join(parts))


# --- records ---------------------------------------------------------------------------------------------------


@dataclass
class Product:
    asin: str
    title: str
    description: str = ""
    image_urls: list[str] = field(default_factory=list)
    category: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class CoBuyPair:
    """An unordered co-buy link stored in a canonical order: A is the product whose ``also_buy`` named B
    (or, for symmetric links, the smaller ASIN)."""

    asin_a: str
    asin_b: str

    @property
    def pair_id(self) -> str:
        return pair_id(self.asin_a, self.asin_b)


def pair_id(asin_a: str, asin_b: str) -> str:
    """Order-independent id of a product pair: ``<smaller asin>|<larger asin>``."""
    a, b = sorted((asin_a, asin_b))
    return f"{a}|{b}"


def intention_id(asin_a: str, asin_b: str, relation: str, source: str) -> str:
    """Stable id for a distilled (pair, relation, source) row, so re-runs never duplicate it."""
    digest = hashlib.sha1(f"{asin_a}|{asin_b}|{relation}|{source}".encode()).hexdigest()[:16]
    return f"d-{digest}"


@dataclass
class Intention:
    """One KB row: an intention for (pair, relation), with the role-aware filter's verdict."""

    intention_id: str
    asin_a: str
    asin_b: str
    relation: str
    intention: str
    verdict: str | None = None  # "yes" / "no" / None (not filtered or unparsed)
    reason: str | None = None
    p_yes: float | None = None
    category: str = ""
    source: str = ""
    created_at: str = ""
    tail: str | None = None
    flags: str = ""  # comma list, e.g. "no_phrase,over_length,text_only"
    pair_id: str = ""

    def __post_init__(self) -> None:
        if not self.pair_id:
            self.pair_id = pair_id(self.asin_a, self.asin_b)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


#: Column order of the KB ``intentions`` table (Parquet); the FAISS id of a row is its position in this table.
INTENTION_COLUMNS: tuple[str, ...] = (
    "intention_id",
    "pair_id",
    "asin_a",
    "asin_b",
    "relation",
    "intention",
    "verdict",
    "reason",
    "p_yes",
    "category",
    "source",
    "created_at",
    "tail",
    "flags",
)
PRODUCT_COLUMNS: tuple[str, ...] = ("asin", "title", "description", "image_urls", "category")
