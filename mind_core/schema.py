"""The data model: relations, verdicts, row flags, products, co-buy pairs, intentions, and the table layouts.

This module is the one home of each of these facts: the 20 MIND relation keys and their prompt phrases
(docs/relations.md), what a verdict is and how it is shown, what each row flag means, the timestamp format, and the
column layout and Parquet schema of every table the project writes (KB intentions / products, filter scores,
rescored answers).
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, fields
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

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


# --- verdicts --------------------------------------------------------------------------------------------------

#: what the role-aware filter can answer; None = not judged (or an answer that began with neither word)
VERDICTS: tuple[str, ...] = ("yes", "no")
#: how a verdict is shown (pages, CLI, exports for people): MIND keeps "yes" intentions and filters "no" ones
VERDICT_LABELS: dict[str | None, str] = {"yes": "kept", "no": "filtered", None: "unjudged"}
#: integer codes per row (histograms, charts): YES = 0, NO = 1, UNJUDGED = 2, in VERDICT_LABELS order
YES, NO, UNJUDGED = 0, 1, 2
VERDICT_CODE_LABELS: tuple[str, ...] = ("kept", "filtered", "unjudged")


#: a filter answer's verdict is its leading word: "Yes, ..." / "**No.** ..." / "yes" (any case, leading punctuation
#: and markdown allowed)
_LEADING_VERDICT = re.compile(r"^[\W_]*(yes|no)\b", re.IGNORECASE)


def verdict_of(answer: str | None) -> str | None:
    """``"yes"`` / ``"no"`` from the leading word of a role-aware filter answer (MIND's ``Agreement``), or None
    when it starts with neither."""
    m = _LEADING_VERDICT.match(answer or "")
    return m.group(1).lower() if m else None


def verdict_label(verdict: object) -> str:
    """ "kept" / "filtered" / "unjudged" for a verdict value (anything but "yes" / "no" is unjudged)."""
    return VERDICT_LABELS.get(verdict, "unjudged") if isinstance(verdict, str) else "unjudged"


def verdict_codes(verdicts: Iterable[object] | pd.Series) -> np.ndarray:
    """:data:`YES` / :data:`NO` / :data:`UNJUDGED` per row (int8), fast on categorical columns."""
    s = verdicts if isinstance(verdicts, pd.Series) else pd.Series(list(verdicts), dtype=object)
    if isinstance(s.dtype, pd.CategoricalDtype):
        lut = np.array([_code(c) for c in s.cat.categories] + [UNJUDGED], dtype=np.int8)
        return lut[s.cat.codes.to_numpy()]  # code -1 (missing) picks the last entry
    return np.fromiter((_code(v) for v in s.to_numpy(dtype=object)), dtype=np.int8, count=len(s))


def _code(value: object) -> int:
    return YES if value == "yes" else NO if value == "no" else UNJUDGED


# --- row flags -------------------------------------------------------------------------------------------------

#: what a flag in an intention row's ``flags`` (comma list) means
FLAG_TEXT: dict[str, str] = {
    "no_phrase": "the model did not begin with the requested opening",
    "over_length": "longer than MIND's 120 words",
    "text_only": "text-only fallback: the model did not see the images",
    "one_image": "only one product had an image",
    "filter_unparsed": "the filter answer began with neither yes nor no",
    "not_filtered": "the filter did not run (stopped or failed)",
    "critic_verdict": "the verdict is the learned critic's (P(keep) >= threshold), not the LVLM filter's",
    "lvlm_disagrees": "the LVLM filter answered the other way (its answer is the reason)",
}


def flags_text(flags: Sequence[str]) -> str:
    """Flags as stored: comma-joined, order kept, no repeats, no empties."""
    return ",".join(dict.fromkeys(f for f in flags if f))


def split_flags(flags: str | None) -> list[str]:
    return [f for f in (flags or "").split(",") if f]


def add_flags(flags: str | None, *extra: str) -> str:
    return flags_text([*split_flags(flags), *extra])


def flag_notes(flags: str | None) -> list[str]:
    """What each flag of a row means, in words (unknown flags as they are)."""
    return [FLAG_TEXT.get(f, f) for f in split_flags(flags)]


# --- intention text ------------------------------------------------------------------------------------------

#: The boilerplate most MIND intentions open with (83 % of the sample): "The potential co-buy intention [for these
#: two products | for people purchasing <A> and <B> simultaneously | ...] could be / would be / is [that] ...".
#: The earliest verb wins, so an opening never swallows a later sentence.
INTENTION_OPENING = re.compile(
    r"^\s*(?:\*\*)?the\s+potential\s+co-?\s*buy(?:ing)?\s+intention\b.{0,300}?"
    r"\b(?:(?:could|would|might|may|can)\s+be|is)\b(?:\*\*)?[\s:,]*(?:that\b\s*)?",
    re.IGNORECASE | re.DOTALL,
)


def intention_body(text: str | None) -> str:
    """The informative part of an intention: the text without MIND's opening boilerplate
    (:data:`INTENTION_OPENING`), first letter capitalised. Text without the opening, or with nothing after it,
    is returned unchanged. Tables, cards and charts show this; details, exports and the KB keep the full text."""
    if not text:
        return text or ""
    m = INTENTION_OPENING.match(text)
    if not m:
        return text
    rest = text[m.end() :].lstrip()
    if not any(ch.isalnum() for ch in rest):
        return text
    return rest[0].upper() + rest[1:]


# --- time ------------------------------------------------------------------------------------------------------


def now_utc() -> str:
    """The timestamp written into rows (``created_at``): UTC, milliseconds, ``2026-12-02T18:16:03.412Z``; such
    strings sort in time order, which "the latest answer wins" relies on."""
    return _dt.datetime.now(_dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


# --- errors ----------------------------------------------------------------------------------------------------


class ValidationError(ValueError):
    """Bad input data: names the file, the 1-based line and the field so a user can fix it."""

    def __init__(
        self,
        message: str,
        *,
        path: str | None = None,
        line: int | None = None,
        field: str | None = None,
        kind: str = "field",
    ):
        """``kind``: what ``field`` names in the message, ``field`` (JSON / Parquet) or ``column`` (CSV)."""
        self.path, self.line, self.field, self.reason, self.kind = path, line, field, message, kind
        where = ":".join(str(x) for x in (path, line) if x is not None)
        parts = [p for p in (where, f"{kind} {field!r}" if field else None, message) if p]
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
        # by hand, not dataclasses.asdict (a deep copy: a third of build-kb's parsing time at 1.26M rows)
        return {
            "asin": self.asin,
            "title": self.title,
            "description": self.description,
            "image_urls": list(self.image_urls),
            "category": self.category,
        }


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
        return {f: getattr(self, f) for f in _INTENTION_FIELDS}


_INTENTION_FIELDS = tuple(f.name for f in fields(Intention))

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

# --- Parquet schemas of every table the project writes ------------------------------------------------------------

INTENTIONS_SCHEMA = pa.schema(
    [
        ("intention_id", pa.string()),
        ("pair_id", pa.string()),
        ("asin_a", pa.string()),
        ("asin_b", pa.string()),
        ("relation", pa.string()),
        ("intention", pa.string()),
        ("verdict", pa.string()),
        ("reason", pa.string()),
        ("p_yes", pa.float64()),
        ("category", pa.string()),
        ("source", pa.string()),
        ("created_at", pa.string()),
        ("tail", pa.string()),
        ("flags", pa.string()),
    ]
)
PRODUCTS_SCHEMA = pa.schema(
    [
        ("asin", pa.string()),
        ("title", pa.string()),
        ("description", pa.string()),
        ("image_urls", pa.list_(pa.string())),
        ("category", pa.string()),
    ]
)
#: ``<kb>/scores.parquet``: the build-time filter scores, one row per intentions row, same order
SCORES_SCHEMA = pa.schema([("intention_id", pa.string()), ("grounding", pa.float32()), ("typicality", pa.float32())])
#: the learned critic's P(keep), a column ``critic score`` (or ``build-kb`` with a default critic) adds to it
CRITIC_COLUMN = "critic"
SCORES_SCHEMA_WITH_CRITIC = SCORES_SCHEMA.append(pa.field(CRITIC_COLUMN, pa.float32()))
#: human keep / drop judgements a critic can learn from (``critic train --labels human``):
#: ``<kb>/labels/human.parquet`` or ``human.csv`` with these columns; ``label`` is yes / no
HUMAN_LABELS_DIR = "labels"
HUMAN_LABELS_FILES: tuple[str, ...] = ("human.parquet", "human.csv")
HUMAN_LABELS_COLUMNS: tuple[str, ...] = ("intention_id", "label")
#: the folder under a KB where ``rescore`` writes: ``<kb>/rescore/<source>/part-*.parquet``
RESCORE_DIR = "rescore"
#: ``<kb>/rescore/<source>/part-*.parquet``: the filter's answer asked again by ``rescore``
RESCORE_SCHEMA = pa.schema(
    [
        ("intention_id", pa.string()),
        ("p_yes", pa.float64()),
        ("verdict", pa.string()),
        ("reason", pa.string()),
        ("source", pa.string()),
        ("created_at", pa.string()),
        ("flags", pa.string()),
    ]
)
RESCORE_COLUMNS: tuple[str, ...] = tuple(RESCORE_SCHEMA.names)
assert tuple(INTENTIONS_SCHEMA.names) == INTENTION_COLUMNS and tuple(PRODUCTS_SCHEMA.names) == PRODUCT_COLUMNS
