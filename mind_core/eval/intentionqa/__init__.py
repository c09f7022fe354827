"""IntentionQA (arXiv 2406.10173): does the KB help answer purchase-intention questions?

Input: the normalised JSONL layout of ``data/intentionqa/README.md`` (one question per line: ``question``,
``choices``, ``answer_index``, ``products``, ``item_a_id``/``item_b_id``, ``prompt_0shot`` ...). Task 1 asks which
intention explains buying A and B (choices = intention clauses); task 2 gives A and the intention and asks which
product was bought with it (choices = product titles).

Scoring follows the benchmark's own scripts (``evaluation/computeACC.py`` upstream):

* questions with fewer than 4 options are **skipped** (not scored);
* a model's answer is read by stripping ``.`` and taking the first character, upper-cased; an answer that gives no
  letter of an option (empty, "Perhaps", "E" on a 4-option question) is scored **wrong**;
* accuracy is the plain mean over the scored questions. Calls that failed with a backend error are left out, as
  upstream does, and counted separately (``n_errors``) so they are never silent.

Methods (all return one :class:`Prediction` per question):

``overlap``   lexical overlap, no model: lower-cased alphanumeric token sets; a choice scores
              |tokens(context) ∩ tokens(choice)| / |tokens(choice)|, first best wins ties. Context: both product
              titles (task 1); item A's title + the intention clause of the question (task 2).
``embed``     cosine similarity of MiniLM embeddings: score(c) = cos(e(question), e(c)).
``embed+kb``  retrieve the ``k`` KB intentions nearest to e(question) with the KB's FAISS index (cosine; the
              question text names both products in task 1, product A and the intention in task 2); then
              score(c) = cos(q, c) + Σ_j w_j · cos(r_j, c), with r_j the retrieved intentions' stored embeddings
              and w_j = max(s_j, 0) / Σ max(s_i, 0) their retrieval similarities normalised to sum to 1 — i.e. the
              choice is compared with the question plus the similarity-weighted mean of the retrieved knowledge.
``lvlm``      the backend gets the benchmark's own zero-shot prompt (``prompt_0shot``), greedy decoding, up to 10
              new tokens; the answer letter is parsed as above.
``lvlm+kb``   the same prompt preceded by the ``k`` retrieved intentions (same retrieval as ``embed+kb``, each cut to
              :data:`KB_INTENTION_WORDS` words) as background knowledge.

LVLM answers are appended to a JSONL answer cache keyed by (task, variant, question id, method, backend, model,
SHA-1 of the prompt) as soon as each batch returns, so a killed run resumes where it stopped and a re-run is free.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

from mind_core.eval.intentionqa.cache import AnswerCache
from mind_core.eval.intentionqa.methods import (
    DEFAULT_K,
    KB_BASE,
    KB_INTENTION_WORDS,
    KB_METHODS,
    LVLM_MAX_NEW_TOKENS,
    LVLM_METHODS,
    METHODS,
    ProgressFn,
    Retrieval,
    TextVectors,
    embed_kb_scores,
    lvlm_prompt,
    overlap_scores,
    retrieve,
    retrieved_records,
    run_embed,
    run_embed_kb,
    run_lvlm,
    run_overlap,
    tokens,
)
from mind_core.eval.intentionqa.questions import (
    LETTERS,
    MIN_SCORED_CHOICES,
    TASKS,
    DataError,
    Question,
    data_files,
    exclude_pairs,
    intention_clause,
    load_questions,
    parse_question,
    question_view,
    sample_questions,
    select_questions,
    zero_shot_prompt,
)
from mind_core.eval.intentionqa.scoring import (
    DEFAULT_BOOTSTRAP,
    Prediction,
    answer_letter_for,
    bootstrap_ci,
    format_difference,
    make_prediction,
    paired_difference,
    parse_letter,
    summarize,
)

__all__ = [
    "DEFAULT_BOOTSTRAP",
    "DEFAULT_K",
    "KB_BASE",
    "KB_INTENTION_WORDS",
    "KB_METHODS",
    "LETTERS",
    "LVLM_MAX_NEW_TOKENS",
    "LVLM_METHODS",
    "METHODS",
    "MIN_SCORED_CHOICES",
    "TASKS",
    "AnswerCache",
    "DataError",
    "MethodResult",
    "Prediction",
    "ProgressFn",
    "Question",
    "Retrieval",
    "TextVectors",
    "answer_letter_for",
    "bootstrap_ci",
    "data_files",
    "embed_kb_scores",
    "evaluate",
    "exclude_pairs",
    "format_difference",
    "format_result",
    "intention_clause",
    "load_questions",
    "lvlm_prompt",
    "make_prediction",
    "overlap_scores",
    "paired_difference",
    "parse_letter",
    "parse_question",
    "question_view",
    "retrieve",
    "retrieved_records",
    "run_embed",
    "run_embed_kb",
    "run_lvlm",
    "run_overlap",
    "sample_questions",
    "select_questions",
    "summarize",
    "tokens",
    "zero_shot_prompt",
]


@dataclass
class MethodResult:
    method: str
    k: int | None
    summary: dict[str, Any]
    predictions: list[Prediction]
    backend: str | None = None
    model: str | None = None
    seconds: float = 0.0

    def to_json(self, with_predictions: bool = True) -> dict[str, Any]:
        out = {
            "method": self.method,
            "k": self.k,
            "backend": self.backend,
            "model": self.model,
            "seconds": round(self.seconds, 2),
            **self.summary,
        }
        if with_predictions:
            out["predictions"] = [asdict(p) for p in self.predictions]
        return out


def evaluate(
    questions: Sequence[Question],
    method: str,
    *,
    kb=None,
    k: int = DEFAULT_K,
    backend=None,
    cache: AnswerCache | None = None,
    vectors: TextVectors | None = None,
    n_boot: int = DEFAULT_BOOTSTRAP,
    seed: int = 0,
    batch_size: int = 8,
    progress: ProgressFn | None = None,
) -> MethodResult:
    """Run one method over ``questions`` and summarise it. ``vectors`` can be shared between methods."""
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; choose one of {', '.join(METHODS)}")
    if method in KB_METHODS and kb is None:
        raise ValueError(f"method {method} needs a KB (--kb DIR)")
    if method in LVLM_METHODS and backend is None:
        raise ValueError(f"method {method} needs an LVLM backend (--backend ...)")
    t0 = time.perf_counter()
    if method == "overlap":
        preds = run_overlap(questions, progress)
    else:
        needs_vectors = method != "lvlm"
        if needs_vectors and vectors is None:
            vectors = TextVectors(questions, encoder=kb.encoder if kb is not None else None)
        if method == "embed":
            preds = run_embed(questions, vectors, progress)
        elif method == "embed+kb":
            preds = run_embed_kb(questions, vectors, kb, k, progress)
        else:
            preds = run_lvlm(
                questions,
                backend,
                method=method,
                kb=kb,
                vectors=vectors,
                k=k,
                cache=cache,
                batch_size=batch_size,
                progress=progress,
            )
    return MethodResult(
        method=method,
        k=k if method in KB_METHODS else None,
        summary=summarize(preds, n_boot=n_boot, seed=seed),
        predictions=preds,
        backend=getattr(backend, "name", None) if method in LVLM_METHODS else None,
        model=getattr(backend, "model", None) if method in LVLM_METHODS else None,
        seconds=time.perf_counter() - t0,
    )


def format_result(name: str, r: MethodResult) -> str:
    s = r.summary
    label = r.method + (f" (k={r.k})" if r.k else "") + (f" [{r.backend}:{r.model}]" if r.backend else "")
    acc = "n/a" if not s["n"] else f"{100 * s['accuracy']:.1f}% [{100 * s['ci95'][0]:.1f}, {100 * s['ci95'][1]:.1f}]"
    extra = f"; {s['n_skipped_lt4']} skipped (<4 options)"
    if s["n_errors"]:
        extra += f"; {s['n_errors']} backend errors left out"
    if r.method in LVLM_METHODS:
        extra += f"; {s['n_no_letter']} answers without a valid letter (wrong)"
    return f"{name}  {label:<28} accuracy {acc}  n={s['n']}{extra}  ({r.seconds:.1f} s)"
