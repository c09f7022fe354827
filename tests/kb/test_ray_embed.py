"""``build-kb --engine ray`` on a local 2-CPU Ray instance: the intention embeddings are encoded by Ray actors
(every distinct text, none by the local loop) and the KB equals the local engine's, embeddings included."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from mind_core import config
from mind_core.cli.main import main as cli_main
from mind_core.kb import ray_embed

REPO = Path(__file__).resolve().parents[2]
SAMPLE = REPO / "data" / "mind_sample"
ROWS = 120


@pytest.fixture(scope="module")
def ray_local():
    import ray  # an extra of the project that `make test` installs: missing, these tests fail, never skip

    ray.init(address="local", num_cpus=2, include_dashboard=False, logging_level=logging.WARNING)
    yield ray
    ray.shutdown()


@pytest.fixture()
def sample_slice(tmp_path) -> Path:
    """The first rows of the vendored sample without its embedding seed, so every text has to be encoded."""
    src = tmp_path / "input"
    src.mkdir()
    with open(SAMPLE / "intentions.jsonl", encoding="utf-8") as fh:
        (src / "intentions.jsonl").write_text("".join(next(fh) for _ in range(ROWS)), encoding="utf-8")
    (src / "products.jsonl").write_bytes((SAMPLE / "products.jsonl").read_bytes())
    return src


def _fresh_cache(tmp_path: Path, name: str, monkeypatch) -> Path:
    """An empty embedding cache; the ONNX export of the default model is reused from the configured cache."""
    shared_onnx = config.cache_dir("onnx")
    cache = tmp_path / name
    cache.mkdir()
    os.symlink(shared_onnx, cache / "onnx")
    monkeypatch.setenv("MIND_CACHE_DIR", str(cache))
    return cache


def test_ray_embeddings_equal_the_local_engines(ray_local, sample_slice, tmp_path, monkeypatch, capsys):
    _fresh_cache(tmp_path, "cache-local", monkeypatch)
    assert cli_main(["build-kb", "--input", str(sample_slice), "--out", str(tmp_path / "local")]) == 0

    _fresh_cache(tmp_path, "cache-ray", monkeypatch)
    calls = []
    monkeypatch.setattr(ray_embed, "missing_texts", _spy(ray_embed.missing_texts, calls))
    args = ["build-kb", "--input", str(sample_slice), "--out", str(tmp_path / "ray"), "--engine", "ray"]
    assert cli_main([*args, "--workers", "2"]) == 0
    capsys.readouterr()

    local, on_ray = (json.loads((tmp_path / k / "manifest.json").read_text()) for k in ("local", "ray"))
    texts = pq.read_table(tmp_path / "ray" / "intentions.parquet", columns=["intention"]).column(0).to_pylist()
    distinct = len(set(texts))
    assert distinct > 100
    # every distinct text went to Ray (the cache was empty), and the local loop found all of them in the cache
    assert calls == [distinct]
    assert on_ray["embedding_cache"]["encoded_intentions"] == distinct == local["embedding_cache"]["encoded_intentions"]
    assert on_ray["embed_engine"] == "ray (a local Ray instance), 2 workers" and local["embed_engine"] == "local"

    a = np.load(tmp_path / "local" / "embeddings.npy")
    b = np.load(tmp_path / "ray" / "embeddings.npy")
    assert a.shape == b.shape == (ROWS, 384) and a.dtype == b.dtype == np.float16
    # the same encoder in another batch composition: float32 values move by ~1e-7, so after the float16
    # rounding almost every value is bitwise equal and none is more than one float16 step away
    diff = np.abs(a.astype(np.float32) - b.astype(np.float32))
    step = np.spacing(np.abs(a)).astype(np.float32)
    assert (diff <= step).all() and (a == b).mean() > 0.99
    assert np.allclose(np.linalg.norm(b.astype(np.float32), axis=1), 1.0, atol=2e-3)
    for name in ("intentions.parquet", "products.parquet"):
        assert pq.read_table(tmp_path / "local" / name).equals(pq.read_table(tmp_path / "ray" / name))
    assert not list(tmp_path.glob(".building-*"))  # the staging folder was swapped in, nothing left beside it

    # unchanged input: a no-op with either engine (the engine is not part of what the KB is)
    assert cli_main([*args]) == 0
    assert "up to date" in capsys.readouterr().out


def _spy(fn, calls):
    def wrapper(*a, **kw):
        out = fn(*a, **kw)
        calls.append(len(out))
        return out

    return wrapper


def test_vectors_and_the_ray_engine_contradict_each_other(tmp_path, capsys):
    npy = tmp_path / "v.npy"
    np.save(npy, np.zeros((1, 384), np.float16))
    args = ["build-kb", "--input", str(SAMPLE), "--out", str(tmp_path / "kb"), "--vectors", str(npy)]
    assert cli_main([*args, "--engine", "ray"]) == 2
    assert "nothing for --engine ray to encode" in capsys.readouterr().err
    assert cli_main(["build-kb", "--input", str(SAMPLE), "--out", str(tmp_path / "kb"), "--workers", "2"]) == 2
    assert "--workers goes with --engine ray" in capsys.readouterr().err
