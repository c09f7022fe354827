"""IntentionQA questions: the normalised JSONL layout (``data/intentionqa/README.md``), validated, sampled."""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mind_core.data.files import iter_text_lines
from mind_core.schema import ValidationError

TASKS: dict[str, str] = {"intention_understanding": "task 1", "intention_utilization": "task 2"}
LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
MIN_SCORED_CHOICES = 4  # the benchmark skips questions with fewer options


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
    """All questions of a normalised IntentionQA JSONL file (``.jsonl`` or ``.jsonl.gz``; blank lines ignored),
    validated, in file order.
    Duplicate (task, variant, id) keys are an error."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"{path}: no such IntentionQA file (the format is described in data/intentionqa/README.md)"
        )
    out: list[Question] = []
    seen: dict[str, int] = {}
    try:
        for line_no, raw in iter_text_lines(path):
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
    except ValidationError as err:  # not UTF-8 text, a damaged .gz
        raise DataError(str(err)) from None
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


# --- files and samples for the page ------------------------------------------------------------------------


def data_files() -> list[Path]:
    """IntentionQA files the dashboard offers: the vendored subsets in ``data/intentionqa/`` and every ``*.jsonl``
    in ``$MIND_INTENTIONQA_DIR`` (e.g. the full benchmark files)."""
    from mind_core import config

    found = sorted(config.INTENTIONQA_DATA_DIR.glob("*.jsonl"))
    found += sorted((config.INTENTIONQA_DATA_DIR / "full").glob("*.jsonl.gz"))
    extra = config.settings().intentionqa_dir
    if extra is not None and extra.is_dir():
        found += sorted(p for p in extra.iterdir() if p.name.endswith((".jsonl", ".jsonl.gz")))
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
