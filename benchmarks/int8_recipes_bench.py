"""int8 recipes for the default encoder, side by side in one run: which MatMuls are quantised, and SmoothQuant-style
smoothing (Xiao et al. 2023) before dynamic int8 — against fp32 ONNX, on the vendored sample.

    python benchmarks/int8_recipes_bench.py [--kb indexes/sample] [--alphas 0.5,0.75,0.9,1.0] [--n 640]

Recipes: every weight MatMul int8 (per-channel weights, dynamic per-tensor activations); the shipped ``onnx-int8``
(attention projections only); and for each alpha, every MatMul int8 after smoothing: each encoder Linear gets the
per-input-channel scale ``s = max|X|^alpha / max|W|^(1 - alpha)`` (max|X| from 512 sample intentions that are not
among the queries), computed exactly as ``x * (1/s)`` followed by the Linear with ``W * s``, which moves activation
outliers into the weights before the quantiser sees them; one alpha (``--layer0-fp32-alpha``) is also measured with
encoder layer 0 left in fp32. The scaled model is exported and quantised here
(under ``.cache/int8-recipes/``, not used by the product). Printed: texts/s on the first ``--n`` intentions (timing
interleaved in 4 rounds), the ratio to fp32 ONNX and to sentence-transformers torch fp32, and recall@10 of each
recipe's neighbours against fp32 ONNX over the whole KB (queries = the first 1,600 intentions, self excluded).
"""

from __future__ import annotations

import argparse
import itertools
import os
import time
from pathlib import Path

import numpy as np
from embed_bench import neighbours, recall

REPO = Path(__file__).resolve().parent.parent
N_QUERIES = 1600


def smoothed(model_dir: Path, calib: list[str], alpha: float):
    import torch
    from transformers import AutoModel, AutoTokenizer

    class SmoothLinear(torch.nn.Module):
        def __init__(self, lin: torch.nn.Linear, s: torch.Tensor):
            super().__init__()
            self.register_buffer("inv", 1.0 / s)
            self.weight = torch.nn.Parameter(lin.weight.data * s[None, :])
            self.bias = lin.bias

        def forward(self, x):
            return torch.nn.functional.linear(x * self.inv, self.weight, self.bias)

    tok = AutoTokenizer.from_pretrained(str(model_dir))
    model = AutoModel.from_pretrained(str(model_dir)).eval()
    lins = {n: m for n, m in model.named_modules() if isinstance(m, torch.nn.Linear) and "encoder.layer" in n}
    stats: dict[str, torch.Tensor] = {}

    def hook(name):
        def record(_mod, inp, _out):
            x = inp[0].detach().abs().reshape(-1, inp[0].shape[-1]).amax(0)
            stats[name] = torch.maximum(stats[name], x) if name in stats else x

        return record

    handles = [m.register_forward_hook(hook(n)) for n, m in lins.items()]
    with torch.no_grad():
        for i in range(0, len(calib), 32):
            model(**tok(calib[i : i + 32], padding=True, truncation=True, max_length=256, return_tensors="pt"))
    for h in handles:
        h.remove()
    for name, lin in lins.items():
        w = lin.weight.data.abs().amax(0).clamp(min=1e-5)
        s = (stats[name].clamp(min=1e-5) ** alpha / w ** (1 - alpha)).clamp(min=1e-5)
        parent, attr = name.rsplit(".", 1)
        setattr(model.get_submodule(parent), attr, SmoothLinear(lin, s))
    return model


def quantise_all(src: Path, dst: Path, keep_fp32_layer: int | None = None) -> None:
    """Every weight MatMul int8, except those of encoder layer ``keep_fp32_layer``."""
    import onnx

    from mind_core.kb.onnx_encoder import quantise_int8

    exclude = []
    if keep_fp32_layer is not None:
        graph = onnx.load(str(src), load_external_data=False).graph
        exclude = [n.name for n in graph.node if n.op_type == "MatMul" and f"/layer.{keep_fp32_layer}/" in n.name]
    quantise_int8(src, dst, exclude)


class SessionOf:
    """The fp32 ONNX encoder's tokenisation, batching and pooling around another ONNX graph."""

    def __init__(self, path: Path, base, threads: int):
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.intra_op_num_threads, opts.inter_op_num_threads, opts.log_severity_level = threads, 1, 3
        self.session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
        self.base = base

    def encode(self, texts):
        old, self.base.session = self.base.session, self.session
        try:
            return self.base.encode(texts)
        finally:
            self.base.session = old


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--kb", default=str(REPO / "indexes" / "sample"))
    ap.add_argument("--alphas", default="0.5,0.75,0.9,1.0")
    ap.add_argument(
        "--layer0-fp32-alpha",
        type=float,
        default=0.9,
        help="also this alpha with encoder layer 0 left in fp32 (its 6 weight MatMuls; default 0.9)",
    )
    ap.add_argument("--n", type=int, default=640, help="intentions timed per recipe (default 640)")
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    args = ap.parse_args()

    from transformers import AutoModel

    from mind_core import config
    from mind_core.kb.embed import get_embedder, resolve_model_path
    from mind_core.kb.onnx_encoder import export_last_hidden as export
    from mind_core.kb.store import KnowledgeBase

    kb = KnowledgeBase(args.kb)
    texts = kb.intentions["intention"].tolist()
    model_dir = Path(resolve_model_path(kb.embed_model))
    work = config.cache_dir("int8-recipes")
    calib = texts[N_QUERIES : N_QUERIES + 512]

    fp32 = get_embedder(kb.embed_model, "onnx", threads=args.threads)
    encoders = {
        "torch fp32 (sentence-transformers)": get_embedder(kb.embed_model, "torch", threads=args.threads),
        "onnx fp32": fp32,
        "onnx-int8 as shipped (attention only)": get_embedder(kb.embed_model, "onnx-int8", threads=args.threads),
    }
    plain = work / "plain.onnx"
    if not (work / "plain-int8.onnx").exists():
        export(AutoModel.from_pretrained(str(model_dir)).eval(), plain)
        quantise_all(plain, work / "plain-int8.onnx")
    encoders["every MatMul int8"] = SessionOf(work / "plain-int8.onnx", fp32, args.threads)
    for alpha in (float(a) for a in args.alphas.split(",")):
        dst = work / f"smooth{alpha}-int8.onnx"
        if not dst.exists():
            export(smoothed(model_dir, calib, alpha), work / f"smooth{alpha}.onnx")
            quantise_all(work / f"smooth{alpha}.onnx", dst)
        encoders[f"SmoothQuant alpha {alpha} + every MatMul int8"] = SessionOf(dst, fp32, args.threads)
        if alpha == args.layer0_fp32_alpha:
            keep = work / f"smooth{alpha}-int8-layer0-fp32.onnx"
            if not keep.exists():
                quantise_all(work / f"smooth{alpha}.onnx", keep, keep_fp32_layer=0)
            encoders[f"SmoothQuant alpha {alpha} + int8 except layer 0"] = SessionOf(keep, fp32, args.threads)

    spent = dict.fromkeys(encoders, 0.0)
    for enc in encoders.values():
        enc.encode(texts[:8])
    n = min(args.n, len(texts))
    for a, b in itertools.pairwise(np.linspace(0, n, 5).astype(int)):
        for name, enc in encoders.items():
            t0 = time.perf_counter()
            enc.encode(texts[a:b])
            spent[name] += time.perf_counter() - t0
    vecs = {name: enc.encode(texts) for name, enc in encoders.items()}
    truth = neighbours(vecs["onnx fp32"], vecs["onnx fp32"][:N_QUERIES])
    torch_s = spent["torch fp32 (sentence-transformers)"]
    print(f"{len(texts):,} intentions, {n} timed, {args.threads} threads, load {os.getloadavg()[0]:.1f}\n")
    print("| recipe | texts/s | vs onnx fp32 | vs torch fp32 | recall@10 vs fp32 |\n|---|---:|---:|---:|---:|")
    for name in encoders:
        got = neighbours(vecs[name], vecs[name][:N_QUERIES])
        print(
            f"| {name} | {n / spent[name]:.1f} | {spent['onnx fp32'] / spent[name]:.2f}x "
            f"| {torch_s / spent[name]:.2f}x | {recall(got, truth):.3f} |"
        )


if __name__ == "__main__":
    main()
