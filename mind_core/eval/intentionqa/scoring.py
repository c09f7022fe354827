"""Scoring like the benchmark's own scripts (``evaluation/computeACC.py`` upstream): the answer letter, accuracy
over questions with at least 4 options, bootstrap intervals, and the paired difference of two methods."""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from mind_core.eval.intentionqa.questions import LETTERS, Question

DEFAULT_BOOTSTRAP = 1000


def parse_letter(text: str | None) -> str | None:
    """The benchmark's 0-shot answer reading: strip ``.`` (and surrounding whitespace), first character
    upper-cased. None when nothing is left."""
    if text is None:
        return None
    t = text.strip().strip(".").strip()
    return t[0].upper() if t else None


def answer_letter_for(question: Question, text: str | None) -> str | None:
    """The parsed letter if it names one of this question's options, else None (scored wrong)."""
    letter = parse_letter(text)
    return letter if letter is not None and letter in LETTERS[: question.n_choices] else None


@dataclass
class Prediction:
    key: str
    id: str
    method: str
    letter: str | None  # the chosen option (None: no valid letter)
    correct: bool | None  # None when the question is not scored (< 4 options) or the call failed
    scored: bool
    gold: str
    relation: str
    typicality: str
    raw: str | None = None  # model output (lvlm methods)
    error: str | None = None  # backend error (lvlm methods): left out of accuracy, counted
    scores: list[float] | None = None  # per-choice scores (overlap / embed methods)
    retrieved: list[dict[str, Any]] = field(default_factory=list)  # kb methods: intention_id, intention, score
    cached: bool = False


def make_prediction(q: Question, method: str, letter: str | None, **extra: Any) -> Prediction:
    error = extra.get("error")
    scored = q.scored and error is None
    return Prediction(
        key=q.key,
        id=q.id,
        method=method,
        letter=letter,
        correct=(letter == q.answer_letter) if scored else None,
        scored=scored,
        gold=q.answer_letter,
        relation=q.relation,
        typicality=q.typicality_bucket,
        **extra,
    )


def bootstrap_ci(
    outcomes: Sequence[bool] | np.ndarray, *, n_boot: int = DEFAULT_BOOTSTRAP, seed: int = 0, level: float = 0.95
) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean of 0/1 outcomes (seeded: same input + seed -> same interval)."""
    x = np.asarray(outcomes, dtype=np.float64)
    if len(x) == 0:
        return (math.nan, math.nan)
    rng = np.random.default_rng(seed)
    means = np.empty(n_boot)
    for start in range(0, n_boot, 200):  # bounded memory for large files
        stop = min(n_boot, start + 200)
        means[start:stop] = x[rng.integers(0, len(x), size=(stop - start, len(x)))].mean(axis=1)
    alpha = (1 - level) / 2
    lo, hi = np.quantile(means, [alpha, 1 - alpha])
    return float(lo), float(hi)


def _acc_block(preds: Sequence[Prediction], n_boot: int, seed: int) -> dict[str, Any]:
    outcomes = [bool(p.correct) for p in preds if p.scored]
    n = len(outcomes)
    acc = sum(outcomes) / n if n else math.nan
    lo, hi = bootstrap_ci(outcomes, n_boot=n_boot, seed=seed) if n else (math.nan, math.nan)
    return {"n": n, "correct": int(sum(outcomes)), "accuracy": acc, "ci95": [lo, hi]}


def summarize(preds: Sequence[Prediction], *, n_boot: int = DEFAULT_BOOTSTRAP, seed: int = 0) -> dict[str, Any]:
    """Accuracy over scored questions with a 95 % bootstrap interval, overall, per relation, per typicality."""
    out = _acc_block(preds, n_boot, seed)
    out["n_questions"] = len(preds)
    out["n_skipped_lt4"] = sum(1 for p in preds if not p.scored and p.error is None)
    out["n_errors"] = sum(1 for p in preds if p.error is not None)
    out["n_no_letter"] = sum(1 for p in preds if p.scored and p.letter is None)
    for name, attr in (("per_relation", "relation"), ("per_typicality", "typicality")):
        groups: dict[str, list[Prediction]] = defaultdict(list)
        for p in preds:
            groups[getattr(p, attr)].append(p)
        out[name] = {g: _acc_block(ps, n_boot, seed) for g, ps in sorted(groups.items())}
    return out


def paired_difference(
    base: Sequence[Any], other: Sequence[Any], *, n_boot: int = DEFAULT_BOOTSTRAP, seed: int = 0
) -> dict[str, Any]:
    """Accuracy of ``other`` minus ``base`` on the questions both scored, with a paired percentile bootstrap
    interval (questions resampled together, so the shared difficulty cancels out)."""

    def get(p: Any, name: str) -> Any:  # Prediction objects or their JSON dicts (dashboard)
        return p[name] if isinstance(p, dict) else getattr(p, name)

    by_key = {get(p, "key"): p for p in other}
    pairs = [
        (bool(get(p, "correct")), bool(get(by_key[get(p, "key")], "correct")))
        for p in base
        if get(p, "scored") and get(p, "key") in by_key and get(by_key[get(p, "key")], "scored")
    ]
    diff = np.array([int(o) - int(b) for b, o in pairs], dtype=np.float64)
    lo, hi = bootstrap_ci(diff, n_boot=n_boot, seed=seed) if len(diff) else (math.nan, math.nan)
    return {
        "n": len(pairs),
        "diff": float(diff.mean()) if len(diff) else math.nan,
        "ci95": [lo, hi],
        "only_other_right": int((diff > 0).sum()),
        "only_base_right": int((diff < 0).sum()),
    }


KB_BASE = {"embed+kb": "embed", "lvlm+kb": "lvlm"}


def format_difference(base: str, other: str, d: dict[str, Any]) -> str:
    return (
        f"{other} - {base}: {100 * d['diff']:+.1f} points [{100 * d['ci95'][0]:+.1f}, {100 * d['ci95'][1]:+.1f}] "
        f"(paired bootstrap, n={d['n']}; {d['only_other_right']} questions only {other} gets right, "
        f"{d['only_base_right']} only {base})"
    )
