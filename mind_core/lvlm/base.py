"""The one Backend protocol every LVLM implementation follows.

A backend turns a batch of :class:`LVLMRequest` (images + text, optionally a forced answer prefix) into
:class:`LVLMResponse` (generated text, and P(yes) for filter questions when the backend can compute it).
Implementations: ``transformers`` (local folder / HF id), ``openai`` (any /v1/chat/completions server),
``offline`` (text-only fallback: OCR + colours + a small local LLM from a PyPI package).
"""

from __future__ import annotations

from collections.abc import Sequence
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
