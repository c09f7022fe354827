"""What the Review page shows (pure functions): the card of one intention to rate, the human labels aligned with a
KB's rows (the thresholds page's "human" ground truth) and the tables of the review statistics."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from dashboard.presenters.text import clean_title
from mind_core.review.analysis import item_labels
from mind_core.schema import intention_body, relation_phrase


@dataclass(frozen=True)
class ProductSide:
    asin: str
    title: str
    description: str
    image_urls: tuple[str, ...]


@dataclass(frozen=True)
class ItemCard:
    """One intention as the annotator sees it: the two products, the relation and the intention; no verdict, no
    reason, no score (nothing that anchors the answer)."""

    intention_id: str
    relation: str
    phrase: str
    body: str
    full_text: str
    products: tuple[ProductSide, ProductSide]


def _side(kb, asin: str) -> ProductSide:
    product = kb.product(asin) or {}
    urls = product.get("image_urls")
    urls = [] if urls is None else list(urls)
    return ProductSide(
        asin=str(asin),
        title=clean_title(product.get("title") or "") or str(asin),
        description=str(product.get("description") or ""),
        image_urls=tuple(str(u) for u in urls[:2]),
    )


def item_card(kb, pos: int) -> ItemCard:
    row = kb.intentions.iloc[pos]
    text = str(row["intention"] or "")
    relation = str(row["relation"])
    try:
        phrase = relation_phrase(relation)
    except ValueError:
        phrase = relation
    return ItemCard(
        intention_id=str(row["intention_id"]),
        relation=relation,
        phrase=phrase,
        body=intention_body(text),
        full_text=text,
        products=(_side(kb, str(row["asin_a"])), _side(kb, str(row["asin_b"]))),
    )


def human_truth(intentions: pd.DataFrame, answers: pd.DataFrame) -> pd.Series:
    """Per KB row: ``yes`` / ``no`` (the majority plausibility of the human answers) or None (not rated, or a tie),
    a series the thresholds page uses in place of the filter's verdicts."""
    labels = item_labels(answers)["label"] if len(answers) else pd.Series(dtype=object)
    ids = intentions["intention_id"].astype(str)
    values = ids.map(labels).astype(object)
    return values.where(values.isin(["yes", "no"]), None)


def agreement_table(report: dict) -> pd.DataFrame:
    rows = []
    for q, a in report["agreement"].items():
        lo, hi = a["krippendorff_alpha_ci95"]
        row = {
            "question": q,
            "annotators": a["annotators"],
            "items rated by 2+": a["items"],
            "Krippendorff's alpha": a["krippendorff_alpha"],
            "alpha 95% CI": _ci_text(lo, hi),
            "level": a["level"],
        }
        if "cohen_kappa" in a:
            row.update(
                {
                    "Cohen's kappa": a["cohen_kappa"],
                    "kappa 95% CI": _ci_text(*a["cohen_kappa_ci95"]),
                    "kappa weights": a["cohen_kappa_weights"],
                    "raw agreement": a["percent_agreement"],
                }
            )
        rows.append(row)
    return pd.DataFrame(rows)


def _ci_text(lo, hi) -> str:
    return "–" if lo is None or hi is None else f"{lo:.3f} – {hi:.3f}"


def filter_table(report: dict) -> pd.DataFrame:
    """All relations first, then one row per relation: items, kept, precision of kept, recall."""
    f = report["filter"]
    keys = ("items", "kept", "human_plausible", "precision_kept", "recall", "filtered_implausible")
    rows = [{"relation": "all", **{k: f[k] for k in keys}}]
    rows += [{"relation": r["relation"], **{k: r[k] for k in keys}} for r in f["per_relation"]]
    df = pd.DataFrame(rows)
    return df.rename(
        columns={
            "human_plausible": "plausible (people)",
            "precision_kept": "precision of kept",
            "filtered_implausible": "filtered & implausible",
        }
    ).replace({None: np.nan})


def scores_table(report: dict, labels: dict[str, str]) -> pd.DataFrame:
    rows = [
        {
            "score": labels.get(name, name),
            "intentions": s["items"],
            "ROC AUC vs people": s["auc"],
            "95% CI": _ci_text(*s["auc_ci95"]),
        }
        for name, s in report["scores"].items()
    ]
    return pd.DataFrame(rows, columns=["score", "intentions", "ROC AUC vs people", "95% CI"])
