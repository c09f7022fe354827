"""LVLM backends behind one protocol (:mod:`~mind_core.lvlm.base`) and one registry (:mod:`~mind_core.lvlm.registry`).

``make_backend("openai", endpoint=...)`` / ``make_backend(config)`` builds one by name; ``backends()`` lists them
with the options each declares. Heavy libraries (torch, transformers, httpx, llama_cpp) are imported only when a
backend is built.
"""

from mind_core.lvlm.base import (
    NO_VARIANTS,
    YES_VARIANTS,
    Backend,
    BackendError,
    GenParams,
    LVLMRequest,
    LVLMResponse,
    answer_text,
    source_label,
    yes_no_from_probs,
    yes_no_from_top_logprobs,
)
from mind_core.lvlm.registry import BackendConfig, BackendInfo, BackendOption, backend_names, backends, make_backend

__all__ = [
    "NO_VARIANTS",
    "YES_VARIANTS",
    "Backend",
    "BackendConfig",
    "BackendError",
    "BackendInfo",
    "BackendOption",
    "GenParams",
    "LVLMRequest",
    "LVLMResponse",
    "answer_text",
    "backend_names",
    "backends",
    "make_backend",
    "source_label",
    "yes_no_from_probs",
    "yes_no_from_top_logprobs",
]
