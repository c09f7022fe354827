"""The IntentionQA methods. Every method returns one :class:`~mind_core.eval.intentionqa.scoring.Prediction` per
question; the rules are in the package docstring (:mod:`mind_core.eval.intentionqa`)."""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from mind_core.eval.intentionqa.cache import AnswerCache
from mind_core.eval.intentionqa.questions import LETTERS, Question
from mind_core.eval.intentionqa.scoring import Prediction, answer_letter_for, make_prediction

METHODS: tuple[str, ...] = ("overlap", "embed", "embed+kb", "lvlm", "lvlm+kb")
KB_METHODS = frozenset({"embed+kb", "lvlm+kb"})
LVLM_METHODS = frozenset({"lvlm", "lvlm+kb"})
#: which method a "+kb" method is compared with
KB_BASE = {"embed+kb": "embed", "lvlm+kb": "lvlm"}
KB_INTENTION_WORDS = 60  # retrieved intentions are cut to this many words in lvlm+kb prompts
DEFAULT_K = 5
LVLM_MAX_NEW_TOKENS = 10  # upstream's 0-shot setting

ProgressFn = Callable[[int, int], None]


_TOKEN = re.compile(r"[a-z0-9]+")


def tokens(text: str) -> set[str]:
    return set(_TOKEN.findall(text.lower()))


def overlap_scores(q: Question) -> list[float]:
    ctx = tokens(q.context_text())
    out = []
    for choice in q.choices:
        toks = tokens(choice)
        out.append(len(ctx & toks) / len(toks) if toks else 0.0)
    return out


def _argmax_letter(scores: Sequence[float]) -> str:
    return LETTERS[int(np.argmax(np.asarray(scores)))]  # argmax: the first best wins ties


def run_overlap(questions: Sequence[Question], progress: ProgressFn | None = None) -> list[Prediction]:
    preds = []
    for i, q in enumerate(questions, 1):
        s = overlap_scores(q)
        preds.append(make_prediction(q, "overlap", _argmax_letter(s), scores=[round(x, 6) for x in s]))
        if progress and (i % 200 == 0 or i == len(questions)):
            progress(i, len(questions))
    return preds


class TextVectors:
    """Embeddings of the distinct question and choice texts, encoded once through the persistent cache."""

    def __init__(
        self,
        questions: Sequence[Question],
        embed_model: str | None = None,
        progress: ProgressFn | None = None,
        chunk: int = 256,
        *,
        encoder=None,
    ):
        """``encoder``: a KB's own query encoder (``kb.encoder``); else the encoder of ``embed_model``."""
        from mind_core.kb.embed import get_embedder

        self.embedder = encoder if encoder is not None else get_embedder(embed_model)
        texts = list(dict.fromkeys(t for q in questions for t in (q.question, *q.choices)))
        self._row = {t: i for i, t in enumerate(texts)}
        parts = []
        for start in range(0, len(texts), chunk):  # chunks so a progress bar can move
            parts.append(self.embedder.encode_cached(texts[start : start + chunk]))
            if progress:
                progress(min(start + chunk, len(texts)), len(texts))
        self.vecs = np.concatenate(parts) if parts else np.zeros((0, self.embedder.dim), dtype=np.float32)

    def __call__(self, text: str) -> np.ndarray:
        return self.vecs[self._row[text]]

    def many(self, texts: Sequence[str]) -> np.ndarray:
        return self.vecs[[self._row[t] for t in texts]]


def run_embed(
    questions: Sequence[Question], vectors: TextVectors, progress: ProgressFn | None = None
) -> list[Prediction]:
    preds = []
    for i, q in enumerate(questions, 1):
        s = vectors.many(q.choices) @ vectors(q.question)
        preds.append(make_prediction(q, "embed", _argmax_letter(s), scores=[round(float(x), 6) for x in s]))
        if progress and (i % 200 == 0 or i == len(questions)):
            progress(i, len(questions))
    return preds


@dataclass
class Retrieval:
    rows: np.ndarray  # KB row numbers (FAISS ids)
    sims: np.ndarray  # cosine similarities to the question

    def weights(self) -> np.ndarray:
        w = np.clip(self.sims.astype(np.float64), 0.0, None)
        total = w.sum()
        return w / total if total > 0 else np.full(len(w), 1.0 / max(len(w), 1))


def retrieve(kb, questions: Sequence[Question], vectors: TextVectors, k: int) -> dict[str, Retrieval]:
    """Top-k KB intentions per question: one batched FAISS search with the question embeddings."""
    from mind_core.query.semantic import nearest_many

    if vectors.embedder.model_name != kb.embed_model:
        raise ValueError(
            f"the question vectors use {vectors.embedder.model_name!r} but the KB's index was built "
            f"with {kb.embed_model!r}"
        )
    if not questions:
        return {}
    hits = nearest_many(kb, vectors.many([q.question for q in questions]), k)
    return {q.key: Retrieval(rows=rows, sims=sims) for q, (rows, sims) in zip(questions, hits)}


def retrieved_records(kb, r: Retrieval) -> list[dict[str, Any]]:
    df = kb.intentions
    out = []
    for row, sim, w in zip(r.rows, r.sims, r.weights()):
        rec = df.iloc[int(row)]
        out.append(
            {
                "row": int(row),
                "intention_id": rec["intention_id"],
                "pair_id": rec["pair_id"],
                "relation": str(rec["relation"]),
                "intention": rec["intention"],
                "score": round(float(sim), 6),
                "weight": round(float(w), 6),
            }
        )
    return out


def embed_kb_scores(
    q_vec: np.ndarray, choice_vecs: np.ndarray, knowledge_vecs: np.ndarray, weights: np.ndarray
) -> np.ndarray:
    """score(c) = cos(q, c) + Σ_j w_j cos(r_j, c)  (all vectors L2-normalised)."""
    s = choice_vecs @ q_vec
    if len(knowledge_vecs):
        s = s + (choice_vecs @ knowledge_vecs.T) @ weights
    return s


def run_embed_kb(
    questions: Sequence[Question], vectors: TextVectors, kb, k: int, progress: ProgressFn | None = None
) -> list[Prediction]:
    hits = retrieve(kb, questions, vectors, k)
    emb = kb.embeddings
    preds = []
    for i, q in enumerate(questions, 1):
        r = hits[q.key]
        know = np.asarray(emb[r.rows], dtype=np.float32)
        s = embed_kb_scores(vectors(q.question), vectors.many(q.choices), know, r.weights())
        preds.append(
            make_prediction(
                q,
                "embed+kb",
                _argmax_letter(s),
                scores=[round(float(x), 6) for x in s],
                retrieved=retrieved_records(kb, r),
            )
        )
        if progress and (i % 200 == 0 or i == len(questions)):
            progress(i, len(questions))
    return preds


# --- LVLM methods ------------------------------------------------------------------------------------------------


def _cut_words(text: str, n: int) -> str:
    words = " ".join(text.split()).split(" ")
    return " ".join(words[:n]) + (" …" if len(words) > n else "")


def lvlm_prompt(q: Question, knowledge: Sequence[str] = ()) -> str:
    """The benchmark's zero-shot prompt, preceded (lvlm+kb) by the retrieved intentions."""
    if not knowledge:
        return q.prompt_0shot
    lines = "\n".join(f"- {_cut_words(t, KB_INTENTION_WORDS)}" for t in knowledge)
    return (
        "Background knowledge: reasons why shoppers bought similar products together, from a knowledge base "
        f"(they may or may not apply):\n{lines}\n\n{q.prompt_0shot}"
    )


def run_lvlm(
    questions: Sequence[Question],
    backend,
    *,
    method: str = "lvlm",
    kb=None,
    vectors: TextVectors | None = None,
    k: int = DEFAULT_K,
    cache: AnswerCache | None = None,
    batch_size: int = 8,
    progress: ProgressFn | None = None,
) -> list[Prediction]:
    """Ask ``backend`` each question (``lvlm``) or each question with the retrieved intentions (``lvlm+kb``)."""
    from mind_core.lvlm.base import GenParams, LVLMRequest

    if method not in LVLM_METHODS:
        raise ValueError(f"run_lvlm handles {sorted(LVLM_METHODS)}, not {method!r}")
    cache = cache if cache is not None else AnswerCache(None)
    hits: dict[str, Retrieval] = {}
    if method == "lvlm+kb":
        if kb is None or vectors is None:
            raise ValueError("lvlm+kb needs a KB and the question vectors")
        hits = retrieve(kb, questions, vectors, k)
    params = GenParams(temperature=0.0, do_sample=False, max_new_tokens=LVLM_MAX_NEW_TOKENS)
    prompts, retrieved = {}, {}
    for q in questions:
        recs = retrieved_records(kb, hits[q.key]) if method == "lvlm+kb" else []
        retrieved[q.key] = recs
        prompts[q.key] = lvlm_prompt(q, [r["intention"] for r in recs])
    keys = {q.key: AnswerCache.key(q, method, backend.name, backend.model, prompts[q.key]) for q in questions}
    todo = [q for q in questions if cache.get(keys[q.key]) is None]
    asked = {q.key for q in todo}
    done = len(questions) - len(todo)
    if progress:
        progress(done, len(questions))
    errors: dict[str, str] = {}
    for start in range(0, len(todo), batch_size):
        batch = todo[start : start + batch_size]
        responses = backend.generate([LVLMRequest(prompt=prompts[q.key]) for q in batch], params)
        fresh = []
        for q, resp in zip(batch, responses):
            if resp.error:
                errors[q.key] = resp.error  # not cached: retried on the next run
                continue
            fresh.append(
                {
                    "cache_key": keys[q.key],
                    "key": q.key,
                    "method": method,
                    "backend": backend.name,
                    "model": backend.model,
                    "raw": resp.text,
                }
            )
        cache.add_many(fresh)
        done += len(batch)
        if progress:
            progress(done, len(questions))
    preds = []
    for q in questions:
        rec = cache.get(keys[q.key])
        if rec is None:
            preds.append(
                make_prediction(q, method, None, error=errors.get(q.key, "no answer"), retrieved=retrieved[q.key])
            )
            continue
        preds.append(
            make_prediction(
                q,
                method,
                answer_letter_for(q, rec["raw"]),
                raw=rec["raw"],
                retrieved=retrieved[q.key],
                cached=q.key not in asked,
            )
        )
    return preds
