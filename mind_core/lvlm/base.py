"""The one Backend protocol every LVLM implementation follows.

A backend turns a batch of :class:`LVLMRequest` (images + text, optionally a forced answer prefix) into
:class:`LVLMResponse` (generated text, and P(yes) for filter questions when the backend can compute it).
Implementations: ``transformers`` (local folder / HF id), ``openai`` (any /v1/chat/completions server),
``offline`` (text-only fallback: OCR + colours + a small local LLM from a PyPI package); they register themselves
in :mod:`mind_core.lvlm.registry`.

Response conventions shared by all backends (read them with :func:`answer_text`):

* ``LVLMResponse.text`` never includes the request's ``prefill`` when ``meta["prefill_applied"]`` is True: it is the
  continuation, stripped of leading whitespace. When the backend could not force the opening (OpenAI backend in
  ``prefill_mode="auto"`` and the model did not start with it) ``meta["prefill_applied"]`` is False and ``text`` is
  the answer as the model wrote it.
* ``p_yes`` (filter requests only) = P(yes) / (P(yes) + P(no)) over the first answer token, where P(yes) is the
  probability mass of the yes-variants ("Yes", "yes", " Yes", " yes", "YES") and P(no) of the no-variants. The raw
  masses are in ``meta["p_yes_raw"]`` / ``meta["p_no_raw"]``. None when the backend cannot compute it.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from PIL import Image


@dataclass
class GenParams:
    """Decoding settings. MIND's defaults: sampling, temperature 0.2, up to 512 new tokens."""

    temperature: float = 0.2
    max_new_tokens: int = 512
    do_sample: bool = True
    top_p: float | None = None
    seed: int | None = None


@dataclass
class LVLMRequest:
    prompt: str
    images: list[Image.Image] = field(default_factory=list)
    system: str | None = None
    #: text the answer is forced to begin with (put into the assistant turn); the response text excludes it.
    prefill: str = ""
    #: compute P(yes) over the first answer token (filter questions).
    want_yes_prob: bool = False


@dataclass
class LVLMResponse:
    text: str
    p_yes: float | None = None
    #: set when this one request failed (the batch goes on); ``text`` is then "".
    error: str | None = None
    meta: dict[str, Any] = field(default_factory=dict)


class BackendError(RuntimeError):
    """The backend cannot work at all (server unreachable, model folder missing, not a vision model, ...).
    The message says what to do next."""


@runtime_checkable
class Backend(Protocol):
    #: registry key: "transformers", "openai", "offline"
    name: str
    #: model id/path shown to users and written into ``source = distilled:<name>:<model>``
    model: str
    #: True when the backend cannot see pixels (the offline fallback describes images as OCR text + colours)
    text_only: bool

    def generate(self, requests: Sequence[LVLMRequest], params: GenParams) -> list[LVLMResponse]:
        """One response per request, same order. Per-request failures go into ``LVLMResponse.error``."""
        ...

    def close(self) -> None: ...


def source_label(backend: Backend) -> str:
    """The KB ``source`` value for rows this backend produced."""
    return f"distilled:{backend.name}:{backend.model}"


# --- answers ---------------------------------------------------------------------------------------------------

#: surface forms whose first sub-token counts as "yes" / "no" for P(yes)
YES_VARIANTS: tuple[str, ...] = ("Yes", "yes", " Yes", " yes", "YES")
NO_VARIANTS: tuple[str, ...] = ("No", "no", " No", " no", "NO")


def first_token_ids(
    variants: Sequence[str], encode: Callable[[str], Sequence[int]], decode: Callable[[int], str]
) -> list[int]:
    """Token id of the first non-whitespace sub-token of each variant (deduplicated, order kept): the ids whose
    probability mass counts as "yes" (or "no") in P(yes). ``encode`` / ``decode`` come from the model's
    tokenizer (no special tokens)."""
    ids: list[int] = []
    for v in variants:
        for tid in encode(v):
            if decode(tid).strip():
                if tid not in ids:
                    ids.append(tid)
                break
    return ids


def yes_no_token_ids(
    encode: Callable[[str], Sequence[int]], decode: Callable[[int], str]
) -> tuple[list[int], list[int]]:
    """(yes ids, no ids) of a tokenizer, with any id in both left out of both."""
    yes, no = first_token_ids(YES_VARIANTS, encode, decode), first_token_ids(NO_VARIANTS, encode, decode)
    both = set(yes) & set(no)
    return [i for i in yes if i not in both], [i for i in no if i not in both]


def answer_text(request: LVLMRequest, response: LVLMResponse) -> str:
    """The full answer: the request's prefill joined to the continuation when the backend applied it, else the
    text as the model wrote it."""
    text = response.text or ""
    if request.prefill and response.meta.get("prefill_applied"):
        if not text:
            return request.prefill
        glue = "" if request.prefill.endswith((" ", "\n")) or text[:1] in ",.;:!?'" else " "
        return f"{request.prefill}{glue}{text}"
    return text


def _norm_token(token: str) -> str:
    return token.replace("\u2581", " ").replace("\u0120", " ").strip().strip("*\"'`_").lower()


def yes_no_from_probs(p_yes_raw: float, p_no_raw: float) -> tuple[float | None, dict[str, Any]]:
    """``(p_yes, meta)`` from the raw yes/no probability masses; p_yes None when both are 0."""
    total = p_yes_raw + p_no_raw
    p_yes = (p_yes_raw / total) if total > 0 else None
    return p_yes, {"p_yes_raw": float(p_yes_raw), "p_no_raw": float(p_no_raw)}


def yes_no_from_top_logprobs(top: Iterable[tuple[str, float]]) -> tuple[float | None, dict[str, Any]]:
    """P(yes) from one position's top logprobs ``[(token, logprob), ...]`` (OpenAI ``top_logprobs``).

    Tokens are matched case-insensitively after stripping whitespace / SentencePiece / byte-level space markers and
    markdown quotes, so "Yes", " yes", "YES", "**Yes" all count as yes. Only the listed alternatives are known, so
    P(yes) and P(no) are lower bounds of the true masses; the ratio is what ``p_yes`` reports. None when neither
    appears."""
    y = n = 0.0
    seen = []
    for token, logprob in top:
        if logprob is None or not math.isfinite(logprob):
            continue
        word = _norm_token(token)
        seen.append(token)
        if word == "yes":
            y += math.exp(logprob)
        elif word == "no":
            n += math.exp(logprob)
    p_yes, meta = yes_no_from_probs(y, n)
    meta["top_tokens"] = seen[:5]
    return p_yes, meta


def is_filler_token(token: str) -> bool:
    """True for a first token that carries no answer (whitespace, markdown emphasis, quotes)."""
    return _norm_token(token) == ""
