"""Turn raw LVLM answers into KB fields. Nothing is dropped: odd answers are kept and flagged.

* :func:`parse_intention` – accepts the forced opening ("The potential co-buy intention could be <phrase> …"),
  MIND's most common real form ("The potential co-buy intention for these two products could be …", 83 % of the
  sample), or the bare relation phrase ("they are both used for …"). Anything else is kept with the flag
  ``no_phrase``; answers over :data:`~mind_core.distill.prompts.MAX_INTENTION_WORDS` words keep their text and get
  ``over_length``; an answer with nothing after the opening gets ``empty``.
* :func:`parse_filter` – the leading word decides (``Yes``/``No``, any case, punctuation and markdown allowed,
  bare answers too); anything else is ``None`` ("unparsed") with the raw text kept as the reason.
* :func:`join_prefill` – glue a backend's continuation to the opening it was forced to start with.
"""

from __future__ import annotations

import re

from mind_core.distill.prompts import INTENTION_LEAD, MAX_INTENTION_WORDS, intention_opening
from mind_core.schema import INTENTION_OPENING, relation_phrase, verdict_of

#: special tokens and role markers that chat models sometimes leak into their text
_ARTEFACT_TOKENS = re.compile(
    r"<\|(?:im_end|im_start|eot_id|end_of_text|endoftext|end|assistant|user|system|start_header_id|"
    r"end_header_id)\|>|</s>|<s>|<end_of_turn>|<start_of_turn>(?:model|user)?|\[/?INST\]|<pad>|<unk>",
    re.IGNORECASE,
)
#: a leading role label ("ASSISTANT:", "### Response:", "Answer:")
_LEADING_ROLE = re.compile(r"^\s*(?:#+\s*)?(?:assistant|gpt|model|response|answer)\s*:\s*", re.IGNORECASE)
#: a following turn the model started writing by itself ("\nUSER: ...", "\nHuman: ...")
_NEXT_TURN = re.compile(r"\n\s*(?:#+\s*)?(?:user|human|###\s*instruction)\s*:.*\Z", re.IGNORECASE | re.DOTALL)

#: MIND's opening variants ("... for these two products could be ..."): one definition, in schema
_LEAD_VARIANT = INTENTION_OPENING


def strip_artefacts(text: str | None) -> str:
    """Remove leaked chat tokens, a leading role label, a self-started next turn, wrapping quotes."""
    if not text:
        return ""
    out = _ARTEFACT_TOKENS.sub("", text)
    out = _NEXT_TURN.sub("", out)
    out = _LEADING_ROLE.sub("", out, count=1)
    out = out.strip()
    quoted = (out[:1] == out[-1:] and out[:1] in ('"', "'")) or (out[:1], out[-1:]) == ("“", "”")
    if len(out) >= 2 and quoted:
        out = out[1:-1].strip()
    return out


def _norm(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip().lower()


def _starts_with_words(text: str, prefix: str) -> bool:
    """True when ``text`` begins with ``prefix`` as whole words (case and whitespace insensitive)."""
    t, p = _norm(text), _norm(prefix)
    return bool(p) and t.startswith(p) and (len(t) == len(p) or not t[len(p)].isalnum())


def join_prefill(prefill: str, continuation: str | None) -> str:
    """The full answer from the forced opening ``prefill`` and the backend's continuation (which excludes it).

    If the continuation already restates the opening (a backend that could not prefill and a model that obeyed
    the instruction), or starts with the lead or the bare phrase, it is used as is."""
    cont = strip_artefacts(continuation)
    if not prefill:
        return cont
    if not cont:
        return prefill.strip()
    if _LEAD_VARIANT.match(cont) or _starts_with_words(cont, INTENTION_LEAD) or _starts_with_words(cont, prefill):
        return cont
    tail_phrase = prefill[len(INTENTION_LEAD) :].strip() if _starts_with_words(prefill, INTENTION_LEAD) else ""
    if tail_phrase and _starts_with_words(cont, tail_phrase):
        return f"{INTENTION_LEAD} {cont}"
    sep = "" if cont[0] in ",.;:!?" or prefill.endswith((" ", "\n")) else " "
    return f"{prefill.rstrip() if sep else prefill}{sep}{cont}"


def parse_intention(text: str | None, relation: str) -> tuple[str, list[str]]:
    """Clean an intention answer and flag what is off. Returns ``(clean_text, flags)``; flags are a subset of
    ``["no_phrase", "over_length", "empty"]`` in that order. The text is never dropped or cut."""
    clean = re.sub(r"\s+", " ", strip_artefacts(text)).strip()
    clean = re.sub(r"^\*\*(.+?)\*\*", r"\1", clean)  # markdown bold around the opening
    flags: list[str] = []
    opening = intention_opening(relation)
    phrase = relation_phrase(relation)
    rest: str
    if _starts_with_words(clean, opening):
        rest = clean[len(opening) :] if _norm(clean[: len(opening)]) == _norm(opening) else clean
    elif m := _LEAD_VARIANT.match(clean):
        rest = clean[m.end() :]
    elif phrase and _starts_with_words(clean, phrase):
        rest = clean[len(phrase) :]
    elif _starts_with_words(clean, INTENTION_LEAD):
        rest = clean[len(INTENTION_LEAD) :]
    else:
        rest = clean
        flags.append("no_phrase")
    if len(clean.split()) > MAX_INTENTION_WORDS:
        flags.append("over_length")
    if not re.search(r"\w", rest):
        flags.append("empty")
    return clean, flags


def parse_filter(text: str | None) -> tuple[str | None, str]:
    """The role-aware filter's answer -> ``(verdict, reason)``. ``verdict`` is ``"yes"``/``"no"`` from the
    leading word, or ``None`` when the answer does not start with one (then ``reason`` is the raw text).
    The reason is the whole cleaned answer including its leading word, as in MIND's own data."""
    raw = text or ""
    clean = strip_artefacts(raw)
    verdict = verdict_of(clean)
    if verdict is None:
        return None, raw.strip()
    return verdict, clean


def flags_text(flags: list[str] | tuple[str, ...]) -> str:
    """Comma list without repeats, order kept."""
    return ",".join(dict.fromkeys(f for f in flags if f))
