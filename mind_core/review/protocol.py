"""The rating protocol of the human review: what an annotator answers, on which scale, and what a valid answer is.

MIND (Xu et al., arXiv 2406.10701) and FolkScope (Yu et al., arXiv 2211.08316) judge distilled intentions by their
**plausibility** and **typicality**; the text we could read of them names the two criteria, not the exact form.
We use:

plausibility
    0 / 1: could this intention really be why someone buys both products? (as FolkScope's plausibility labels)
typicality
    1-5 Likert: how typical a reason is it for buying these two together (1 = far-fetched, 5 = the obvious reason).
    Asked only of a plausible intention: "not plausible" records no typicality (null).

One answer is one row: ``(kb_id, intention_id, annotator)`` with the values above, an optional comment and the time
of the answer (:func:`mind_core.schema.now_utc`). Answering again replaces the row.
"""

from __future__ import annotations

import datetime as _dt
import math
import re
from dataclasses import dataclass

#: the columns of an answer as files hold them (``review import`` / ``review export``), in this order
ANSWER_COLUMNS: tuple[str, ...] = ("intention_id", "annotator", "plausibility", "typicality", "comment", "created_at")
REQUIRED_COLUMNS: tuple[str, ...] = ("intention_id", "annotator", "plausibility")

PLAUSIBILITY_VALUES: dict[int, str] = {1: "plausible", 0: "not plausible"}
TYPICALITY_MIN, TYPICALITY_MAX = 1, 5
#: what each typicality value means (the page's button help and the README's scale)
TYPICALITY_LABELS: dict[int, str] = {
    1: "far-fetched: possible, but hardly anyone buys the two for this",
    2: "unusual: a reason for some buyers",
    3: "one reason among several",
    4: "a common reason",
    5: "the obvious reason to buy both",
}
PLAUSIBILITY_QUESTION = "Could this really be why someone buys both products?"
TYPICALITY_QUESTION = "How typical a reason is it for buying these two together?"

ANNOTATOR_MAX_CHARS = 64
COMMENT_MAX_CHARS = 2000
_ANNOTATOR_OK = re.compile(r"^[^\x00-\x1f\x7f]+$")
_TRUE = {"1", "yes", "true", "plausible"}
_FALSE = {"0", "no", "false", "not plausible", "implausible"}


class AnswerError(ValueError):
    """A value that is not a valid answer; ``field`` names the column."""

    def __init__(self, field: str, message: str):
        self.field = field
        super().__init__(message)


@dataclass(frozen=True)
class Answer:
    """One validated answer (without its KB)."""

    intention_id: str
    annotator: str
    plausibility: int
    typicality: int | None
    comment: str | None
    created_at: str

    def as_row(self) -> dict:
        return {c: getattr(self, c) for c in ANSWER_COLUMNS}


def _blank(value: object) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value)) or str(value).strip() == ""


def check_annotator(name: object) -> str:
    """The annotator's name, stripped; :class:`AnswerError` when empty, too long or holding control characters."""
    text = "" if _blank(name) else str(name).strip()
    if not text:
        raise AnswerError("annotator", "empty: type a name")
    if len(text) > ANNOTATOR_MAX_CHARS:
        raise AnswerError("annotator", f"longer than {ANNOTATOR_MAX_CHARS} characters")
    if not _ANNOTATOR_OK.match(text):
        raise AnswerError("annotator", "control characters are not allowed")
    return text


def check_plausibility(value: object) -> int:
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, (int, float)) and not _blank(value) and float(value) in (0.0, 1.0):
        return int(value)
    text = "" if _blank(value) else str(value).strip().lower()
    if text in _TRUE:
        return 1
    if text in _FALSE:
        return 0
    raise AnswerError("plausibility", f"{value!r} is not 0 or 1")


def check_typicality(value: object) -> int | None:
    """An integer on the 1-5 scale, or None (no typicality: allowed whatever the plausibility)."""
    if _blank(value):
        return None
    try:
        number = float(str(value).strip())
    except ValueError:
        raise AnswerError("typicality", f"{value!r} is not a whole number {TYPICALITY_MIN}-{TYPICALITY_MAX}") from None
    if not number.is_integer() or not TYPICALITY_MIN <= number <= TYPICALITY_MAX:
        raise AnswerError("typicality", f"{value!r} is not a whole number {TYPICALITY_MIN}-{TYPICALITY_MAX}")
    return int(number)


def check_created_at(value: object) -> str | None:
    """An ISO 8601 timestamp as given (kept verbatim, so files round-trip), or None when blank."""
    if _blank(value):
        return None
    text = str(value).strip()
    try:
        _dt.datetime.fromisoformat(text)
    except ValueError:
        raise AnswerError("created_at", f"{value!r} is not an ISO 8601 time such as 2026-12-02T18:16:03.412Z") from None
    return text


def check_answer(
    intention_id: object,
    annotator: object,
    plausibility: object,
    typicality: object = None,
    comment: object = None,
    created_at: object = None,
    *,
    now: str,
) -> Answer:
    """A validated :class:`Answer` (``now`` is its time when ``created_at`` is blank)."""
    iid = "" if _blank(intention_id) else str(intention_id).strip()
    if not iid:
        raise AnswerError("intention_id", "empty")
    p = check_plausibility(plausibility)
    note = None if _blank(comment) else str(comment)
    if note is not None and len(note) > COMMENT_MAX_CHARS:
        raise AnswerError("comment", f"longer than {COMMENT_MAX_CHARS} characters")
    return Answer(
        intention_id=iid,
        annotator=check_annotator(annotator),
        plausibility=p,
        typicality=check_typicality(typicality),
        comment=note,
        created_at=check_created_at(created_at) or now,
    )
