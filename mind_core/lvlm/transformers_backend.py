"""Local vision-language model through Hugging Face transformers.

``TransformersBackend("llava-hf/llava-1.5-7b-hf")`` or ``TransformersBackend("/models/qwen2-vl-2b")``:

* loads ``AutoProcessor`` + ``AutoModelForImageTextToText`` from a local folder or an HF id (from the local HF
  cache when offline); ``trust_remote_code`` is False unless asked for;
* device / dtype auto: CUDA with bfloat16 (float16 on GPUs without bf16) when available, else CPU float32;
  ``device=`` / ``dtype=`` override;
* prompts go through the model's own chat template (``processor.apply_chat_template``), one ``{"type": "image"}``
  placeholder per request image before the text; the request's ``prefill`` is appended after the generation
  prompt so the answer continues it (``meta["prefill_applied"] = True``; ``text`` is the continuation);
* batched generation with left padding (``batch_size``, default 4); requests with and without images are batched
  separately (some processors cannot mix them); a CUDA out-of-memory batch is split in halves and retried;
* P(yes) for ``want_yes_prob`` requests from the raw logits of the first answer token: softmax over the whole
  vocabulary, P(yes) = sum over the token ids of the yes-variants ("Yes", "yes", " Yes", " yes", "YES": the first
  non-space sub-token of each), P(no) likewise; ``p_yes = P(yes) / (P(yes) + P(no))``; raw values in ``meta``.

Errors that stop the backend raise :class:`BackendError` with what to do: a missing folder, an HF id that cannot
be loaded (offline and not cached), a config that is not a vision-language model.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from mind_core.config import settings
from mind_core.lvlm.base import (
    BackendError,
    GenParams,
    LVLMRequest,
    LVLMResponse,
    yes_no_from_probs,
    yes_no_token_ids,
)
from mind_core.lvlm.registry import BackendOption, register_backend

log = logging.getLogger(__name__)

_DTYPES = {
    "float32": "float32",
    "fp32": "float32",
    "float16": "float16",
    "fp16": "float16",
    "half": "float16",
    "bfloat16": "bfloat16",
    "bf16": "bfloat16",
}
_EXAMPLES = "llava-hf/llava-1.5-7b-hf, Qwen/Qwen2-VL-2B-Instruct or HuggingFaceTB/SmolVLM-Instruct"


def _looks_like_path(model: str) -> bool:
    return (
        model.startswith(("/", "./", "../", "~", ".\\"))
        or "\\" in model
        or model.count("/") != 1
        or os.path.isabs(model)
    )


def _hub_reachable(timeout: float = 3.0) -> bool:
    """A quick TCP check of the Hugging Face endpoint, so an offline machine fails in seconds instead of after the
    hub client's retries."""
    import socket
    from urllib.parse import urlparse

    url = urlparse(settings().hf_endpoint)
    try:
        with socket.create_connection(
            (url.hostname or "huggingface.co", url.port or (443 if url.scheme == "https" else 80)), timeout=timeout
        ):
            return True
    except OSError:
        return False


def _first_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return text[0][:300] if text else type(err).__name__


@register_backend(
    "transformers",
    summary="a local vision-language model: a model folder or a Hugging Face id (AutoModelForImageTextToText)",
    title="transformers (local model)",
    describe=lambda o: f"transformers · {o.get('model') or '(no model chosen)'} — a local vision-language model",
    options=(
        BackendOption(
            "model",
            "a local model folder (with config.json) or a Hugging Face id such as llava-hf/llava-1.5-7b-hf",
            required=True,
            setting="transformers_model",
            label="Model folder or Hugging Face id",
            placeholder="/models/llava-1.5-7b-hf",
        ),
        BackendOption("batch_size", "generation batch size (default 4)", type=int, label="Batch size"),
        BackendOption("device", "cuda, cuda:1, cpu ... (default: cuda when available)", cli=False),
        BackendOption("dtype", "auto, float32, float16 or bfloat16 (default auto)", cli=False),
    ),
)
class TransformersBackend:
    """See the module docstring."""

    name = "transformers"
    text_only = False

    def __init__(
        self,
        model: str,
        *,
        device: str | None = None,
        dtype: str | None = None,
        batch_size: int = 4,
        trust_remote_code: bool = False,
        local_files_only: bool | None = None,
        chat_template: str | None = None,
        revision: str | None = None,
    ):
        import torch
        import transformers
        from transformers import AutoConfig, AutoModelForImageTextToText, AutoProcessor
        from transformers.models.auto.modeling_auto import MODEL_FOR_IMAGE_TEXT_TO_TEXT_MAPPING_NAMES

        self._torch = torch
        if int(batch_size) < 1:
            raise BackendError("batch_size must be at least 1")
        self.batch_size = int(batch_size)
        self.model = str(model)
        path = Path(self.model).expanduser()
        common: dict[str, Any] = {"trust_remote_code": bool(trust_remote_code)}
        if revision:
            common["revision"] = revision
        if path.exists():
            if not path.is_dir():
                raise BackendError(
                    f"--model {model!r} is a file; the transformers backend needs a model folder "
                    "(with config.json) or a Hugging Face id. For a .gguf file use --backend offline"
                )
            if not (path / "config.json").is_file():
                raise BackendError(
                    f"model folder {str(path)!r} has no config.json; point --model at the folder "
                    "that save_pretrained / `hf download` produced"
                )
            source = str(path)
            common["local_files_only"] = True
        elif _looks_like_path(self.model):
            raise BackendError(
                f"model folder {str(path)!r} does not exist; pass an existing local folder or a "
                f"Hugging Face id such as {_EXAMPLES}"
            )
        else:
            source = self.model
            if local_files_only is None:
                from huggingface_hub import try_to_load_from_cache

                cached = isinstance(try_to_load_from_cache(self.model, "config.json", revision=revision), str)
                offline = settings().hf_hub_offline
                local_files_only = cached or offline or not _hub_reachable()
            common["local_files_only"] = bool(local_files_only)
        try:
            config = AutoConfig.from_pretrained(source, **common)
        except OSError as err:
            raise BackendError(
                f"could not load {self.model!r}: it is not a local folder, and the Hugging Face id cannot be loaded "
                f"here ({_first_line(err)}). On an offline machine, download it where there is internet "
                f"(`hf download {self.model} --local-dir DIR`) and pass --model DIR, or point HF_HOME at a cache "
                "that holds it"
            ) from None
        except ValueError as err:
            raise BackendError(
                f"{self.model!r} has a config transformers {transformers.__version__} cannot read "
                f"({_first_line(err)}); a custom architecture may need trust_remote_code=True "
                "(only for code you trust)"
            ) from None
        model_type = getattr(config, "model_type", "?")
        auto_map = getattr(config, "auto_map", None) or {}
        remote_ok = bool(trust_remote_code) and "AutoModelForImageTextToText" in auto_map
        if model_type not in MODEL_FOR_IMAGE_TEXT_TO_TEXT_MAPPING_NAMES and not remote_ok:
            vision = any(hasattr(config, a) for a in ("vision_config", "vision_tower", "mm_vision_tower"))
            why = (
                "AutoModelForImageTextToText cannot map it" if vision else "it has no vision tower (a text-only model)"
            )
            raise BackendError(
                f"{self.model!r} is not a vision-language model this backend can load: config type "
                f"{model_type!r}, {why}. Use an image-text-to-text model such as {_EXAMPLES}; for a text-only "
                "LLM use --backend offline or an OpenAI-compatible server"
            )
        self.config = config

        # device / dtype
        if device in (None, "", "auto"):
            device = "cuda" if torch.cuda.is_available() else "cpu"
        self.device = torch.device(device)
        if dtype in (None, "", "auto"):
            if self.device.type == "cuda":
                dtype = "bfloat16" if torch.cuda.is_bf16_supported() else "float16"
            else:
                dtype = "float32"
        if str(dtype) not in _DTYPES:
            raise BackendError(f"dtype must be auto, float32, float16 or bfloat16, not {dtype!r}")
        self.dtype = getattr(torch, _DTYPES[str(dtype)])

        t0 = time.perf_counter()
        try:
            self.processor = AutoProcessor.from_pretrained(source, **common)
        except Exception as err:
            hint = ""
            if importlib.util.find_spec("torchvision") is None:
                hint = (
                    " (some processors, e.g. Qwen2-VL's with its video processor, need torchvision: "
                    f"pip install torchvision matching torch {torch.__version__})"
                )
            raise BackendError(
                f"could not load the processor of {self.model!r}: {type(err).__name__}: {_first_line(err)}{hint}"
            ) from None
        if getattr(self.processor, "image_processor", None) is None or not hasattr(self.processor, "tokenizer"):
            raise BackendError(
                f"{self.model!r} has no image processor + tokenizer pair (AutoProcessor gave "
                f"{type(self.processor).__name__}); it is not a usable vision-language model folder"
            )
        if chat_template:
            template = Path(chat_template).read_text() if Path(chat_template).is_file() else chat_template
            self.processor.chat_template = template
        if not (
            getattr(self.processor, "chat_template", None) or getattr(self.processor.tokenizer, "chat_template", None)
        ):
            raise BackendError(f"{self.model!r} ships no chat template; pass chat_template=<jinja string or file>")
        self.tokenizer = self.processor.tokenizer
        self.tokenizer.padding_side = "left"
        if self.tokenizer.pad_token_id is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        try:
            self.hf_model = AutoModelForImageTextToText.from_pretrained(source, dtype=self.dtype, **common)
        except (OSError, ValueError) as err:
            raise BackendError(f"could not load the weights of {self.model!r}: {_first_line(err)}") from None
        self.hf_model.to(self.device).eval()
        self.load_seconds = time.perf_counter() - t0
        tok = self.tokenizer
        self.yes_ids, self.no_ids = yes_no_token_ids(
            lambda text: tok.encode(text, add_special_tokens=False), lambda tid: tok.decode([tid])
        )
        log.info("loaded %s on %s (%s) in %.1f s", self.model, self.device, self.dtype, self.load_seconds)

    def __repr__(self) -> str:
        return f"TransformersBackend(model={self.model!r}, device={self.device}, dtype={self.dtype})"

    # ----------------------------------------------------------------------------------------------------------
    def build_prompt(self, req: LVLMRequest) -> str:
        """The exact text the model sees: chat template (system, images, user text, generation prompt) +
        the prefill."""
        user = [{"type": "image"} for _ in req.images] + [{"type": "text", "text": req.prompt}]
        attempts = []
        if req.system:
            attempts.append(
                [
                    {"role": "system", "content": [{"type": "text", "text": req.system}]},
                    {"role": "user", "content": user},
                ]
            )
            attempts.append([{"role": "system", "content": req.system}, {"role": "user", "content": user}])
            merged = [{"type": "image"} for _ in req.images] + [
                {"type": "text", "text": f"{req.system}\n\n{req.prompt}"}
            ]
            attempts.append([{"role": "user", "content": merged}])  # templates without a system role
        else:
            attempts.append([{"role": "user", "content": user}])
        last: Exception | None = None
        for messages in attempts:
            try:
                text = self.processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
                break
            except Exception as err:  # jinja TemplateError / raise_exception("System role not supported")
                last = err
        else:
            raise BackendError(f"the chat template of {self.model!r} failed: {_first_line(last)}")
        if isinstance(text, list):
            text = text[0]
        if req.prefill:
            text += ("" if text.endswith((" ", "\n")) else " ") + req.prefill
        return text

    def _encode(self, chunk: Sequence[LVLMRequest]) -> Any:
        texts = [self.build_prompt(r) for r in chunk]
        kwargs: dict[str, Any] = {"text": texts, "return_tensors": "pt", "padding": True}
        if any(r.images for r in chunk):
            kwargs["images"] = [[im.convert("RGB") for im in r.images] for r in chunk]
        bos = self.tokenizer.bos_token
        if bos and all(t.startswith(bos) for t in texts):
            kwargs["add_special_tokens"] = False  # the template already put BOS
        return self.processor(**kwargs).to(self.device, dtype=self.dtype)

    def _gen_kwargs(self, params: GenParams) -> dict[str, Any]:
        kw: dict[str, Any] = {
            "max_new_tokens": int(params.max_new_tokens),
            "return_dict_in_generate": True,
            "output_logits": True,
            "pad_token_id": self.tokenizer.pad_token_id,
        }
        if params.do_sample and params.temperature > 0:
            kw.update(do_sample=True, temperature=float(params.temperature))
            if params.top_p is not None:
                kw["top_p"] = float(params.top_p)
        else:
            kw.update(do_sample=False, temperature=None, top_p=None, top_k=None)
        return kw

    def _run_chunk(self, chunk: Sequence[LVLMRequest], params: GenParams) -> list[LVLMResponse]:
        torch = self._torch
        try:
            inputs = self._encode(chunk)
        except BackendError:
            raise
        except Exception as err:
            if len(chunk) > 1:  # find the bad request(s); the others go on
                return [r for req in chunk for r in self._run_chunk([req], params)]
            return [
                LVLMResponse(text="", error=f"could not prepare the inputs: {type(err).__name__}: {_first_line(err)}")
            ]
        t0 = time.perf_counter()
        if params.seed is not None:
            torch.manual_seed(int(params.seed))
        try:
            with torch.inference_mode():
                out = self.hf_model.generate(**inputs, **self._gen_kwargs(params))
        except torch.cuda.OutOfMemoryError:
            torch.cuda.empty_cache()
            if len(chunk) > 1:
                half = len(chunk) // 2
                log.warning("CUDA out of memory at batch %d; splitting", len(chunk))
                return self._run_chunk(chunk[:half], params) + self._run_chunk(chunk[half:], params)
            return [
                LVLMResponse(
                    text="", error="CUDA out of memory for a single request (lower max_new_tokens or the image size)"
                )
            ]
        seconds = time.perf_counter() - t0
        prompt_len = inputs["input_ids"].shape[1]
        new = out.sequences[:, prompt_len:]
        first_logits = out.logits[0].float() if out.logits else None
        results = []
        for i, req in enumerate(chunk):
            text = self.tokenizer.decode(new[i], skip_special_tokens=True).strip()
            n_new = int((new[i] != self.tokenizer.pad_token_id).sum())
            meta: dict[str, Any] = {
                "new_tokens": n_new,
                "seconds": round(seconds / len(chunk), 4),
                "batch_size": len(chunk),
                "device": str(self.device),
                "dtype": str(self.dtype).replace("torch.", ""),
            }
            if req.prefill:
                meta["prefill_applied"] = True
            p_yes = None
            if req.want_yes_prob and first_logits is not None:
                probs = torch.softmax(first_logits[i], dim=-1)
                p_yes, lp_meta = yes_no_from_probs(float(probs[self.yes_ids].sum()), float(probs[self.no_ids].sum()))
                meta.update(lp_meta)
                top = torch.topk(probs, k=min(5, probs.shape[-1]))
                meta["top_tokens"] = [
                    (self.tokenizer.decode([int(t)]), round(float(p), 4)) for p, t in zip(top.values, top.indices)
                ]
            results.append(LVLMResponse(text=text, p_yes=p_yes, meta=meta))
        return results

    def generate(self, requests: Sequence[LVLMRequest], params: GenParams) -> list[LVLMResponse]:
        """One response per request, in order. Requests are grouped (with / without images) and run in batches
        of ``batch_size`` with left padding."""
        order = sorted(range(len(requests)), key=lambda i: (len(requests[i].images) > 0, i))
        out: list[LVLMResponse | None] = [None] * len(requests)
        start = 0
        while start < len(order):
            has_img = len(requests[order[start]].images) > 0
            idx = []
            while (
                start < len(order)
                and len(idx) < self.batch_size
                and (len(requests[order[start]].images) > 0) == has_img
            ):
                idx.append(order[start])
                start += 1
            for i, resp in zip(idx, self._run_chunk([requests[i] for i in idx], params)):
                out[i] = resp
        return [r for r in out if r is not None]

    def close(self) -> None:
        self.hf_model = None
        if self._torch.cuda.is_available():
            self._torch.cuda.empty_cache()
