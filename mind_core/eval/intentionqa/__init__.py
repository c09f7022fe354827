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

import hashlib
import json
import math
import re
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

TASKS: dict[str, str] = {"intention_understanding": "task 1", "intention_utilization": "task 2"}
METHODS: tuple[str, ...] = ("overlap", "embed", "embed+kb", "lvlm", "lvlm+kb")
KB_METHODS = frozenset({"embed+kb", "lvlm+kb"})
LVLM_METHODS = frozenset({"lvlm", "lvlm+kb"})
LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
MIN_SCORED_CHOICES = 4  # the benchmark skips questions with fewer options
KB_INTENTION_WORDS = 60  # retrieved intentions are cut to this many words in lvlm+kb prompts
DEFAULT_K = 5
DEFAULT_BOOTSTRAP = 1000
LVLM_MAX_NEW_TOKENS = 10  # upstream's 0-shot setting

ProgressFn = Callable[[int, int], None]


class DataError(ValueError):
    """A malformed question file; the message starts with ``file:line:``."""


# --- questions ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Question:
    id: str
    task: str
    variant: str
    question: str
    products: tuple[tuple[str, str], ...]  # (asin, title), as shown in the question
    choices: tuple[str, ...]
    answer_index: int
    relation: str
    typicality: float | None
    item_a_id: str
    item_b_id: str
    prompt_0shot: str
    line: int = 0

    @property
    def n_choices(self) -> int:
        return len(self.choices)

    @property
    def answer_letter(self) -> str:
        return LETTERS[self.answer_index]

    @property
    def scored(self) -> bool:
        """True when the benchmark's scorer counts this question (at least 4 options)."""
        return self.n_choices >= MIN_SCORED_CHOICES

    @property
    def key(self) -> str:
        """Unique within and across files: task 1 and task 2 share ids."""
        return f"{self.task}/{self.variant}/{self.id}"

    @property
    def pair_id(self) -> str:
        from mind_core.schema import pair_id

        return pair_id(self.item_a_id, self.item_b_id)

    @property
    def typicality_bucket(self) -> str:
        return "n/a" if self.typicality is None else f"{self.typicality:.1f}"

    def context_text(self) -> str:
        """What the ``overlap`` method compares the choices with (see the module docstring)."""
        if self.task == "intention_understanding":
            return " ".join(title for _asin, title in self.products)
        title = self.products[0][1] if self.products else ""
        return f"{title} {intention_clause(self)}"


def intention_clause(q: Question) -> str:
    """Task 2: the intention part of the stem ("because ..."), i.e. the first line minus "A customer buys <A>"."""
    first = q.question.split("\n", 1)[0]
    title = q.products[0][1] if q.products else ""
    prefix = f"A customer buys {title}"
    if title and first.startswith(prefix):
        first = first[len(prefix) :]
    return first.lstrip(" ,")


def zero_shot_prompt(question: str, choices: Sequence[str]) -> str:
    """The upstream 0-shot prompt: stem, lettered options, "Answer A or B or C or D only without any other word."."""
    letters = LETTERS[: len(choices)]
    options = "\n".join(f"{letter}. {text}" for letter, text in zip(letters, choices))
    return f"{question}\n{options}\nAnswer {' or '.join(letters)} only without any other word."


def _fail(path: Path, line: int, msg: str) -> DataError:
    return DataError(f"{path}:{line}: {msg}")


def parse_question(obj: Any, path: Path, line: int) -> Question:
    """Validate one record; raise :class:`DataError` ``file:line: field 'x': what is wrong``."""
    if not isinstance(obj, dict):
        raise _fail(path, line, f"expected a JSON object, got {type(obj).__name__}")

    def need(name: str, kind: type | tuple[type, ...], what: str) -> Any:
        if name not in obj:
            raise _fail(path, line, f"field '{name}' is missing")
        value = obj[name]
        if not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool):
            raise _fail(path, line, f"field '{name}': expected {what}, got {json.dumps(value)[:60]}")
        return value

    qid = str(need("id", (str, int), "a string id"))
    task = need("task", str, "a task name")
    if task not in TASKS:
        raise _fail(path, line, f"field 'task': {task!r} is not one of {', '.join(TASKS)}")
    question = need("question", str, "the question text")
    if not question.strip():
        raise _fail(path, line, "field 'question' is empty")
    choices = need("choices", list, "a list of option texts")
    if not choices or not all(isinstance(c, str) for c in choices):
        raise _fail(path, line, "field 'choices': expected a non-empty list of strings")
    if len(choices) > len(LETTERS):
        raise _fail(path, line, f"field 'choices': {len(choices)} options, at most {len(LETTERS)} supported")
    answer = need("answer_index", int, "a 0-based integer")
    if not 0 <= answer < len(choices):
        raise _fail(path, line, f"field 'answer_index': {answer} is outside 0..{len(choices) - 1}")
    letter = obj.get("answer_letter")
    if letter is not None and letter != LETTERS[answer]:
        raise _fail(
            path, line, f"field 'answer_letter': {letter!r} disagrees with answer_index {answer} ({LETTERS[answer]!r})"
        )
    products = need("products", list, "a list of {asin, title} objects")
    prods = []
    for i, p in enumerate(products):
        if not isinstance(p, dict) or not isinstance(p.get("asin"), str) or not isinstance(p.get("title"), str):
            raise _fail(path, line, f"field 'products[{i}]': expected an object with string 'asin' and 'title'")
        prods.append((p["asin"], p["title"]))
    want = 2 if task == "intention_understanding" else 1
    if len(prods) < want:
        raise _fail(path, line, f"field 'products': {task} questions show {want} product(s), found {len(prods)}")
    typ = obj.get("typicality")
    if typ is not None and (not isinstance(typ, (int, float)) or isinstance(typ, bool) or not math.isfinite(typ)):
        raise _fail(path, line, f"field 'typicality': expected a number or null, got {json.dumps(typ)[:40]}")
    a_id = obj.get("item_a_id") or prods[0][0]
    b_id = obj.get("item_b_id") or (prods[1][0] if len(prods) > 1 else None)
    if not isinstance(a_id, str) or not isinstance(b_id, str):
        raise _fail(path, line, "fields 'item_a_id' / 'item_b_id': the co-purchased pair's ASINs are needed")
    prompt = obj.get("prompt_0shot")
    if prompt is not None and not isinstance(prompt, str):
        raise _fail(path, line, "field 'prompt_0shot': expected a string")
    return Question(
        id=qid,
        task=task,
        variant=str(obj.get("variant") or "mixRelation"),
        question=question,
        products=tuple(prods),
        choices=tuple(choices),
        answer_index=answer,
        relation=str(obj.get("relation") or "all"),
        typicality=None if typ is None else float(typ),
        item_a_id=a_id,
        item_b_id=b_id,
        prompt_0shot=prompt or zero_shot_prompt(question, choices),
        line=line,
    )


def load_questions(path: str | Path, *, limit: int | None = None) -> list[Question]:
    """All questions of a normalised IntentionQA JSONL file (blank lines ignored), validated, in file order.
    Duplicate (task, variant, id) keys are an error."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"{path}: no such IntentionQA file (the format is described in data/intentionqa/README.md)"
        )
    out: list[Question] = []
    seen: dict[str, int] = {}
    with open(path, encoding="utf-8") as fh:
        for line_no, raw in enumerate(fh, 1):
            if not raw.strip():
                continue
            try:
                obj = json.loads(raw)
            except json.JSONDecodeError as err:
                raise _fail(path, line_no, f"not valid JSON ({err.msg} at column {err.colno})") from None
            q = parse_question(obj, path, line_no)
            if q.key in seen:
                raise _fail(path, line_no, f"duplicate question id {q.id!r} (first on line {seen[q.key]})")
            seen[q.key] = line_no
            out.append(q)
            if limit is not None and len(out) >= limit:
                break
    if not out:
        raise DataError(f"{path}: no questions in the file")
    return out


def exclude_pairs(questions: Sequence[Question], pair_ids: Iterable[str]) -> tuple[list[Question], int]:
    """Drop questions whose product pair (order ignored) is in ``pair_ids``; returns (kept, number dropped)."""
    pairs = set(pair_ids)
    kept = [q for q in questions if q.pair_id not in pairs]
    return kept, len(questions) - len(kept)


def sample_questions(questions: Sequence[Question], n: int | None, seed: int = 0) -> list[Question]:
    """A seeded random sample of ``n`` questions, kept in file order (all of them when n is None or larger)."""
    if n is None or n >= len(questions):
        return list(questions)
    idx = np.sort(np.random.default_rng(seed).choice(len(questions), size=n, replace=False))
    return [questions[i] for i in idx]


# --- scoring -----------------------------------------------------------------------------------------------------


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


# --- the methods -------------------------------------------------------------------------------------------------

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
    ):
        from mind_core.kb.embed import get_embedder

        self.embedder = get_embedder(embed_model)
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
    from mind_core.kb.index import search as faiss_search

    if vectors.embedder.model_name != kb.embed_model:
        raise ValueError(
            f"the question vectors use {vectors.embedder.model_name!r} but the KB's index was built "
            f"with {kb.embed_model!r}"
        )
    if not questions:
        return {}
    qv = vectors.many([q.question for q in questions])
    sims, ids = faiss_search(kb.index, qv, k)
    return {q.key: Retrieval(rows=i[i >= 0], sims=s[i >= 0]) for q, s, i in zip(questions, sims, ids)}


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


class AnswerCache:
    """Append-only JSONL of LVLM answers: one line per (question, method, backend, model, prompt).

    A torn last line (the process was killed mid-write) is ignored when reading."""

    def __init__(self, path: str | Path | None):
        self.path = Path(path) if path else None
        self._data: dict[str, dict[str, Any]] = {}
        if self.path and self.path.exists():
            with open(self.path, encoding="utf-8") as fh:
                for raw in fh:
                    try:
                        rec = json.loads(raw)
                    except json.JSONDecodeError:
                        continue
                    if isinstance(rec, dict) and "cache_key" in rec:
                        self._data[rec["cache_key"]] = rec

    @staticmethod
    def key(q: Question, method: str, backend: str, model: str, prompt: str) -> str:
        digest = hashlib.sha1(prompt.encode("utf-8")).hexdigest()[:16]
        return f"{q.key}|{method}|{backend}|{model}|{digest}"

    def get(self, key: str) -> dict[str, Any] | None:
        return self._data.get(key)

    def __len__(self) -> int:
        return len(self._data)

    def add_many(self, records: Sequence[dict[str, Any]]) -> None:
        for rec in records:
            self._data[rec["cache_key"]] = rec
        if self.path and records:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            torn = False
            if self.path.exists() and self.path.stat().st_size:
                with open(self.path, "rb") as fh:
                    fh.seek(-1, 2)
                    torn = fh.read(1) != b"\n"  # a killed writer left half a line: start a fresh one
            with open(self.path, "a", encoding="utf-8") as fh:
                fh.write("\n" if torn else "")
                fh.write("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records))
                fh.flush()


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


# --- one entry point for CLI and dashboard -----------------------------------------------------------------------


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
    import time

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
            vectors = TextVectors(questions, kb.embed_model if kb is not None else None)
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


# --- dashboard helpers -------------------------------------------------------------------------------------------


def data_files() -> list[Path]:
    """IntentionQA files the dashboard offers: the vendored subsets in ``data/intentionqa/`` and every ``*.jsonl``
    in ``$MIND_INTENTIONQA_DIR`` (e.g. the full benchmark files)."""
    import os

    from mind_core.config import DATA_DIR

    found = sorted((DATA_DIR / "intentionqa").glob("*.jsonl"))
    extra = os.environ.get("MIND_INTENTIONQA_DIR")
    if extra and Path(extra).is_dir():
        found += sorted(Path(extra).glob("*.jsonl"))
    return found


def question_view(q: Question) -> dict[str, Any]:
    """What the question browser shows (plain data, picklable)."""
    return {
        "key": q.key,
        "id": q.id,
        "task": q.task,
        "question": q.question,
        "choices": list(q.choices),
        "answer_letter": q.answer_letter,
        "products": [list(p) for p in q.products],
        "scored": q.scored,
        "relation": q.relation,
        "typicality": q.typicality_bucket,
        "pair_id": q.pair_id,
    }


def select_questions(
    path: str | Path, *, n: int | None, seed: int = 0, exclude_pair_ids: Iterable[str] | None = None
) -> tuple[list[Question], int]:
    """Load a file, optionally drop the KB's pairs, then take a seeded sample of ``n``: (questions, dropped)."""
    questions = load_questions(path)
    dropped = 0
    if exclude_pair_ids is not None:
        questions, dropped = exclude_pairs(questions, exclude_pair_ids)
    return sample_questions(questions, n, seed), dropped
