"""The ONNX Runtime encoder of the default model: vectors comparable with sentence-transformers (the reference),
a query path without torch, the manifest's backend, and the vendored sample's shipped embeddings."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from mind_core import config
from mind_core.kb import embed
from mind_core.kb.build import build_kb, seed_paths
from mind_core.kb.store import KBError, KnowledgeBase

ROOT = Path(__file__).resolve().parents[2]
SAMPLE = ROOT / "data" / "mind_sample"


@pytest.fixture(scope="module")
def texts() -> list[str]:
    lines = (SAMPLE / "intentions.jsonl").read_text(encoding="utf-8").splitlines()
    picked = [json.loads(x)["intention"] for x in lines[::17][:200]]
    return picked + ["hat", "a warm wool hat for winter walks", ""]  # short, typical and empty queries


def _recall_at_10(ref: np.ndarray, got: np.ndarray) -> float:
    s_ref, s_got = ref @ ref.T, got @ got.T
    np.fill_diagonal(s_ref, -np.inf)
    np.fill_diagonal(s_got, -np.inf)
    a, b = np.argsort(-s_ref, axis=1)[:, :10], np.argsort(-s_got, axis=1)[:, :10]
    return float(np.mean([len(set(x) & set(y)) / 10 for x, y in zip(a, b)]))


def test_onnx_vectors_match_sentence_transformers(texts):
    ref = embed.get_embedder(None, "torch").encode(texts)
    fp32 = embed.get_embedder(None, "onnx").encode(texts)
    int8 = embed.get_embedder(None, "onnx-int8").encode(texts)
    assert fp32.shape == ref.shape == int8.shape == (len(texts), 384)
    assert np.allclose(np.linalg.norm(fp32, axis=1), 1.0, atol=1e-5)
    cos_ref = ref @ ref.T
    fp32_diff = float(np.abs(cos_ref - fp32 @ fp32.T).max())
    int8_diff = float(np.abs(cos_ref - int8 @ int8.T).max())
    print(
        f"\nmax |cos_torch - cos_onnx| over {len(texts)} sample texts: fp32 {fp32_diff:.2e}, int8 {int8_diff:.3f}; "
        f"neighbour recall@10 vs torch: fp32 {_recall_at_10(ref, fp32):.3f}, int8 {_recall_at_10(ref, int8):.3f}"
    )
    assert fp32_diff < 1e-5
    assert int8_diff < 0.15  # approximate by design; the number is reported above and in docs/measurements.md
    assert _recall_at_10(ref, int8) >= 0.93  # 0.959 with the attention-only recipe (printed above)
    # a batch and one text at a time give the same vectors (padding does not leak into the mean)
    one = np.stack([embed.get_embedder(None, "onnx").encode_one(t) for t in texts[:5]])
    assert np.abs(one - fp32[:5]).max() < 1e-5


@pytest.mark.skipif(not embed.native_bf16(), reason="this CPU has no native bfloat16 (AVX512-BF16 / AMX)")
def test_torch_bf16_vectors_are_close_to_fp32(texts):
    ref = embed.get_embedder(None, "torch").encode(texts)
    bf16 = embed.get_embedder(None, "torch-bf16")
    got = bf16.encode(texts)
    assert bf16.backend == "torch-bf16" and got.dtype == np.float32 and got.shape == ref.shape
    assert np.allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)  # renormalised in float32
    diff = float(np.abs(ref @ ref.T - got @ got.T).max())
    print(f"\nmax |cos_fp32 - cos_bf16| {diff:.3f}; recall@10 vs fp32 {_recall_at_10(ref, got):.3f}")
    assert 0 < diff < 0.1  # really bfloat16 (not fp32 by mistake), and close
    assert _recall_at_10(ref, got) >= 0.95


def test_torch_bf16_is_refused_without_native_bfloat16(monkeypatch):
    import torch

    monkeypatch.setattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", lambda: False)
    with pytest.raises(ValueError, match="no native bfloat16"):
        embed._require_bf16("cpu")


def test_backend_rules():
    assert embed.resolve_backend("all-MiniLM-L6-v2", "auto") == "onnx"
    assert embed.resolve_backend("sentence-transformers/all-MiniLM-L6-v2", None) == "onnx"
    assert embed.resolve_backend("/models/other", "auto") == "torch"
    with pytest.raises(ValueError, match="exports only the packaged"):
        embed.resolve_backend("/models/other", "onnx")
    with pytest.raises(ValueError, match="unknown embedding backend"):
        embed.resolve_backend("all-MiniLM-L6-v2", "tensorrt")
    assert embed.query_backend("all-MiniLM-L6-v2", "torch") == "onnx"
    assert embed.query_backend("all-MiniLM-L6-v2", "onnx-int8") == "onnx-int8"
    assert embed.query_backend("all-MiniLM-L6-v2", "torch-bf16") == "onnx"  # fp32 queries, no torch import
    assert embed.query_backend("/models/other", "torch-bf16") == "torch"
    assert embed.resolve_backend("/models/other", "torch-bf16") == "torch-bf16"
    assert embed.get_embedder(None, "onnx") is embed.get_embedder("all-MiniLM-L6-v2", "auto")


def test_search_process_imports_neither_torch_nor_transformers(sample_kb_dir):
    code = (
        "import json, sys, io, contextlib\n"
        "from mind_core.cli.main import main\n"
        "buf = io.StringIO()\n"
        "with contextlib.redirect_stdout(buf):\n"
        f"    rc = main(['search', '--kb', {str(sample_kb_dir)!r}, '--query', 'a warm hat', '--json', '-k', '3'])\n"
        "mods = [m for m in ('torch', 'transformers', 'sentence_transformers') if m in sys.modules]\n"
        "print(json.dumps({'rc': rc, 'hits': len(buf.getvalue().splitlines()), 'heavy': mods}))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert out.returncode == 0, out.stderr[-2000:]
    assert json.loads(out.stdout.strip().splitlines()[-1]) == {"rc": 0, "hits": 3, "heavy": []}


def test_the_export_runs_in_a_child_so_the_caller_never_imports_torch(tmp_path):
    """A first export (empty cache) in a process that then encodes: torch and transformers stay out of it (a
    1.26M-row build or the dashboard's server would otherwise carry them, ~0.4 GB); a model folder that cannot be
    exported fails with the child's error and leaves no export folder behind."""
    code = (
        "import json, sys\n"
        "from pathlib import Path\n"
        "from mind_core.kb import embed\n"
        "from mind_core.kb.onnx_encoder import ensure_exported\n"
        "vec = embed.get_embedder(None, 'onnx').encode_one('a warm hat')\n"
        "bad = Path(sys.argv[1]); bad.mkdir(); (bad / 'model.safetensors').write_bytes(b'not weights')\n"
        "try:\n"
        "    ensure_exported('broken', bad); err = None\n"
        "except RuntimeError as e:\n"
        "    err = str(e)\n"
        "mods = [m for m in ('torch', 'transformers', 'sentence_transformers') if m in sys.modules]\n"
        "print(json.dumps({'dim': len(vec), 'heavy': mods, 'err': err}))\n"
    )
    env = {**os.environ, "MIND_CACHE_DIR": str(tmp_path / "cache")}
    out = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path / "broken-model")],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=ROOT,
        env=env,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    res = json.loads(out.stdout.strip().splitlines()[-1])
    assert res["dim"] == 384 and res["heavy"] == []
    assert res["err"] and res["err"].startswith("exporting broken to ONNX failed (exit 1)")
    exports = sorted(p.name for p in (tmp_path / "cache" / "onnx").iterdir() if p.is_dir())
    assert len(exports) == 1 and exports[0].startswith("all-MiniLM-L6-v2-v4-")  # nothing of the broken one


@pytest.fixture()
def fresh_cache(tmp_path, monkeypatch):
    """An empty embedding cache that reuses this machine's ONNX export (exporting again costs ~10 s)."""
    onnx_dir = config.cache_dir("onnx")
    embed.get_embedder(None, "onnx")  # make sure the export exists
    cache = tmp_path / "cache"
    cache.mkdir()
    os.symlink(onnx_dir, cache / "onnx")
    monkeypatch.setenv("MIND_CACHE_DIR", str(cache))
    return cache


def test_manifest_records_the_backend_and_a_change_rebuilds(small_input_dir, tmp_path):
    out = tmp_path / "kb"
    first = build_kb([small_input_dir], out, progress=False, embed_backend="onnx")
    assert first.manifest["embed_backend"] == "onnx"
    assert build_kb([small_input_dir], out, progress=False).status == "unchanged"  # auto = onnx here
    again = build_kb([small_input_dir], out, progress=False, embed_backend="onnx-int8")
    assert again.status != "unchanged" and "embed_backend changed ('onnx' -> 'onnx-int8')" in again.reason
    kb = KnowledgeBase(out)
    assert kb.embed_backend == "onnx-int8" and kb.encoder.backend == "onnx-int8"
    with pytest.raises(KBError, match="exports only the packaged"):
        build_kb([small_input_dir], tmp_path / "kb2", progress=False, embed_model="/no/model", embed_backend="onnx")


@pytest.mark.skipif(not embed.native_bf16(), reason="this CPU has no native bfloat16 (AVX512-BF16 / AMX)")
def test_a_torch_bf16_build_has_its_own_cache_and_fp32_queries(fresh_cache, small_input_dir, tmp_path):
    built = build_kb([small_input_dir], tmp_path / "kb", progress=False, embed_backend="torch-bf16")
    assert built.manifest["embed_backend"] == "torch-bf16" and built.manifest.get("embed_recipe") is None
    assert (fresh_cache / "embeddings" / "all-MiniLM-L6-v2.torch-bf16.sqlite").is_file()  # never mixed with fp32
    kb = KnowledgeBase(tmp_path / "kb")
    assert kb.encoder.backend == "onnx"
    again = build_kb([small_input_dir], tmp_path / "kb", progress=False, embed_backend="onnx")
    assert "embed_backend changed ('torch-bf16' -> 'onnx')" in again.reason


def test_the_vendored_sample_builds_without_encoding(fresh_cache, tmp_path):
    keys, vecs = seed_paths(SAMPLE, "all-MiniLM-L6-v2", "onnx")
    assert keys.is_file() and vecs.is_file(), "the sample ships its embeddings"
    res = build_kb([SAMPLE], tmp_path / "sample", progress=False)
    cache = res.manifest["embedding_cache"]
    assert cache["encoded_intentions"] == 0 and cache["encoded_pair_texts"] == 0 and cache["seeded"] > 3000
    # the shipped vectors are the encoder's (float16-rounded)
    kb = KnowledgeBase(tmp_path / "sample")
    row = kb.intentions.iloc[7]
    fresh = kb.encoder.encode_one(row["intention"])
    assert float(fresh @ np.asarray(kb.embeddings[7], dtype=np.float32)) > 0.999


def test_a_seed_of_another_backend_is_not_used(fresh_cache, small_input_dir, tmp_path):
    folder = tmp_path / "input"
    shutil.copytree(small_input_dir, folder)
    keys, vecs = seed_paths(folder, "all-MiniLM-L6-v2", "torch")
    keys.parent.mkdir()
    np.save(keys, np.zeros((1, 20), np.uint8))
    np.save(vecs, np.zeros((1, 384), np.float16))
    res = build_kb([folder], tmp_path / "kb", progress=False, embed_backend="onnx")
    assert res.manifest["embedding_cache"]["seeded"] == 0
    assert res.manifest["embedding_cache"]["encoded_intentions"] > 100


def test_shipped_embeddings_match_their_checksums():
    from mind_core.io import sha256_file

    readme = (SAMPLE / "README.md").read_text(encoding="utf-8")
    for path in seed_paths(SAMPLE, "all-MiniLM-L6-v2", "onnx"):
        assert f"`{sha256_file(path)}`" in readme, f"{path.name}: checksum not in data/mind_sample/README.md"


def test_int8_quantises_the_attention_projections_only():
    """Issue 18: int8 of every MatMul reordered MIND's close neighbours (recall@10 0.90); feed-forward stays fp32."""
    import onnx

    from mind_core.kb.onnx_encoder import ONNX_VARIANTS, ensure_exported

    name = embed.default_model_name()
    folder = ensure_exported(name, Path(embed.resolve_model_path(name)))
    graph = onnx.load(str(folder / ONNX_VARIANTS["onnx-int8"])).graph
    quantised = [n.name for n in graph.node if n.op_type == "MatMulInteger"]
    assert len(quantised) == 24  # 6 layers x (query, key, value, output dense) of the attention
    assert all("/attention/" in n for n in quantised)


def test_the_fp32_export_adds_the_attention_mask_without_nan_guards():
    """Traced with eager attention: transformers' SDPA path put Where / IsNaN over every attention score (~18 % of
    ONNX Runtime's time on MIND intentions); the eager graph adds the mask once per layer and gives the same vectors
    (test_onnx_vectors_match_sentence_transformers)."""
    import onnx

    from mind_core.kb.onnx_encoder import ONNX_VARIANTS, ensure_exported

    name = embed.default_model_name()
    folder = ensure_exported(name, Path(embed.resolve_model_path(name)))
    ops = [n.op_type for n in onnx.load(str(folder / ONNX_VARIANTS["onnx"])).graph.node]
    assert "IsNaN" not in ops and ops.count("Softmax") == 6
    assert ops.count("Where") <= 2  # the additive mask is built once (not one Where per layer)


def test_a_kb_of_the_old_int8_recipe_is_rebuilt(small_input_dir, tmp_path):
    out = tmp_path / "kb"
    first = build_kb([small_input_dir], out, progress=False, embed_backend="onnx-int8")
    assert first.manifest["embed_recipe"] == "attention-int8-v4"
    manifest = json.loads((out / "manifest.json").read_text())
    del manifest["embed_recipe"]  # as written before the recipe was recorded (every MatMul int8)
    (out / "manifest.json").write_text(json.dumps(manifest))
    again = build_kb([small_input_dir], out, progress=False, embed_backend="onnx-int8")
    assert (
        again.status == "built" and "embed_recipe changed ('int8-all-matmul-v1' -> 'attention-int8-v4')" in again.reason
    )
    assert build_kb([small_input_dir], out, progress=False, embed_backend="onnx").manifest["embed_recipe"] is None
