"""Facets: which rows a query looks at. Applied as a row mask before ranking, the same in every search mode and
for every caller (pages, CLI ``search`` / ``export``, ``rescore --where``).

A facet with values keeps the rows whose column holds one of them; facets combine with "and". ``verdicts`` takes
``yes``, ``no`` and ``none`` (unjudged); ``p_yes_range`` keeps rows whose P(yes) lies in the closed range (rows
without one are left out when it is set).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from mind_core.query.derived import remember

#: columns a facet (or ``--where COLUMN=...``) can name, and the Facets field for each
FACET_COLUMNS: dict[str, str] = {
    "relation": "relations",
    "category": "categories",
    "verdict": "verdicts",
    "source": "sources",
}


@dataclass(frozen=True)
class Facets:
    relations: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()
    verdicts: tuple[str, ...] = ()  # "yes", "no", "none" (unjudged)
    sources: tuple[str, ...] = ()
    p_yes_range: tuple[float, float] | None = None  # inclusive; rows without P(yes) are excluded when set

    @property
    def active(self) -> bool:
        return bool(self.relations or self.categories or self.verdicts or self.sources or self.p_yes_range)

    @classmethod
    def of(cls, **columns: str | Iterable[str] | None) -> Facets:
        """From column names: ``Facets.of(relation=["usedFor"], verdict="yes")`` (None or empty: no facet)."""
        fields: dict[str, tuple[str, ...]] = {}
        for column, values in columns.items():
            if column not in FACET_COLUMNS:
                raise ValueError(f"unknown facet {column!r}; choose one of {', '.join(FACET_COLUMNS)}")
            if values is None:
                continue
            vals = (values,) if isinstance(values, str) else tuple(values)
            if vals:
                fields[FACET_COLUMNS[column]] = tuple(dict.fromkeys(vals))
        return cls(**fields)

    @classmethod
    def from_where(cls, where: Mapping[str, Sequence[str]] | None) -> Facets:
        return cls.of(**dict(where or {}))


def facet_mask(kb, facets: Facets | None) -> np.ndarray | None:
    """Boolean row mask for the facets, or None when no facet is set (= all rows). The last 16 masks per KB are
    kept (1.26 MB each at 1.26M rows; building one costs ~30 ms there)."""
    if facets is None or not facets.active:
        return None

    def compute() -> np.ndarray:
        mask = _facet_mask(kb.intentions, facets)
        mask.flags.writeable = False  # shared between calls: callers combine it with & into new arrays
        return mask

    return remember(kb, "facet_masks", facets, compute, limit=16)


def filter_rows(kb, facets: Facets | None) -> pd.DataFrame:
    """The KB rows the facets keep, in KB order."""
    mask = facet_mask(kb, facets)
    return kb.intentions if mask is None else kb.intentions[mask]


def _facet_mask(df: pd.DataFrame, facets: Facets) -> np.ndarray:
    mask = np.ones(len(df), dtype=bool)
    for col, want in (("relation", facets.relations), ("category", facets.categories), ("source", facets.sources)):
        if want:
            mask &= _category_isin(df[col], want)
    if facets.verdicts:
        v = df["verdict"]
        m = _category_isin(v, [x for x in facets.verdicts if x != "none"])
        if "none" in facets.verdicts:
            m |= v.isna().to_numpy()
        mask &= m
    if facets.p_yes_range is not None:
        lo, hi = facets.p_yes_range
        p = df["p_yes"].to_numpy(dtype=float, na_value=np.nan)
        with np.errstate(invalid="ignore"):
            mask &= (p >= lo) & (p <= hi)
    return mask


def _category_isin(col: pd.Series, values: Sequence[str]) -> np.ndarray:
    if isinstance(col.dtype, pd.CategoricalDtype):
        wanted = [col.cat.categories.get_loc(v) for v in values if v in col.cat.categories]
        return np.isin(col.cat.codes.to_numpy(), np.asarray(wanted, dtype=np.int64))
    return col.isin(list(values)).to_numpy()


def parse_where(specs: Sequence[str] | None) -> Facets:
    """``["relation=usedFor,isA", "verdict=no"]`` (``--where``, repeatable; all must hold) -> :class:`Facets`.
    Raises ``ValueError`` with what is wrong and an example."""
    where: dict[str, list[str]] = {}
    for spec in specs or []:
        col, sep, values = spec.partition("=")
        col = col.strip()
        if not sep or col not in FACET_COLUMNS:
            raise ValueError(
                f"--where {spec!r}: expected COLUMN=VALUE[,VALUE...] with COLUMN one of "
                f"{', '.join(FACET_COLUMNS)} (e.g. relation=usedFor)"
            )
        vals = [v.strip() for v in values.split(",") if v.strip()]
        if not vals:
            raise ValueError(f"--where {spec!r}: no value after '='")
        where.setdefault(col, []).extend(vals)
    return Facets.from_where(where)
