"""Issue 16 cases 6 and 7: checksums are verified where it matters (build-kb's up-to-date decision, the Arrow
cache's key and its writing), manifests are validated, and damaged files / bad ``--out`` paths are one clear line
(exit 2), never a traceback."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pandas as pd
import pytest

from mind_core.cli.main import main as cli_main
from mind_core.kb import store
from mind_core.kb.build import build_kb
from mind_core.kb.store import KBError, KnowledgeBase
from mind_core.query import semantic


def _garble(path, keep: int = 64) -> None:
    """Same size, other bytes after the first ``keep`` (sizes in the manifest still match)."""
    size = path.stat().st_size
    noise = np.random.default_rng(1).integers(0, 256, size - keep, dtype=np.uint8).tobytes()
    path.write_bytes(path.read_bytes()[:keep] + noise)


@pytest.fixture
def kb_dir(small_input_dir, tmp_path):
    out = tmp_path / "kb"  # the Arrow cache is keyed by each file's identity: no other test's copy is hit
    build_kb([small_input_dir], out, progress=False)
    return out


def test_every_artifact_has_a_checksum_and_build_kb_verifies_them(kb_dir, small_input_dir):
    manifest = json.loads((kb_dir / "manifest.json").read_text())
    assert all(len(a["sha256"]) == 64 for a in manifest["artifacts"].values())
    assert len(manifest["artifacts"]) == 5
    assert build_kb([small_input_dir], kb_dir, progress=False).status == "unchanged"
    # a same-size damaged index used to make build-kb say "up to date" (and search crash)
    _garble(kb_dir / "index.faiss")
    res = build_kb([small_input_dir], kb_dir, progress=False)
    assert res.status == "built" and res.reason.startswith("index.faiss is damaged: its content does not match")
    assert build_kb([small_input_dir], kb_dir, progress=False).status == "unchanged"
    # a KB whose manifest predates per-artifact checksums is rebuilt once
    manifest = json.loads((kb_dir / "manifest.json").read_text())
    del manifest["artifacts"]["embeddings.npy"]["sha256"]
    (kb_dir / "manifest.json").write_text(json.dumps(manifest))
    res = build_kb([small_input_dir], kb_dir, progress=False)
    assert res.status == "built" and "no checksum of embeddings.npy" in res.reason


def test_a_damaged_index_is_one_line_from_search(kb_dir, capsys, monkeypatch):
    monkeypatch.setattr(semantic, "EXACT_MAX", 10)  # 120 rows: take the FAISS path
    _garble(kb_dir / "index.faiss", keep=0)
    code = cli_main(["search", "--kb", str(kb_dir), "--query", "warm hat"])
    err = capsys.readouterr().err
    assert code == 2 and "index.faiss is damaged" in err and "--force" in err and "Traceback" not in err


def test_a_warm_arrow_cache_does_not_hide_a_damaged_table(kb_dir):
    manifest = store.read_manifest(kb_dir)
    KnowledgeBase(kb_dir)  # writes the Arrow copy
    assert store._arrow_cache_path(kb_dir, manifest).is_file()
    KnowledgeBase(kb_dir)  # served from it
    _garble(kb_dir / "intentions.parquet")
    with pytest.raises(KBError, match=r"^intentions.parquet is damaged"):
        KnowledgeBase(kb_dir)


def test_a_crafted_folder_cannot_seed_another_kbs_cache(kb_dir, small_input_dir, tmp_path):
    """A folder whose manifest claims the real KB's checksums (sizes fitted to its own files) used to write its
    rows into the cache under the real KB's key; the real KB then served them."""
    real_ids = set(pd.read_parquet(kb_dir / "intentions.parquet")["intention_id"])
    other_in = tmp_path / "other_in"
    other_in.mkdir()
    lines = (small_input_dir / "intentions.jsonl").read_text().splitlines()
    rows = [json.loads(x) for x in lines]
    for r in rows:
        r["id"] = "evil-" + r["id"]
        r["intention"] = "They are both something you must buy at http://evil.example " + r["intention"]
    (other_in / "intentions.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    shutil.copy(small_input_dir / "products.jsonl", other_in / "products.jsonl")
    crafted = tmp_path / "crafted"
    build_kb([other_in], crafted, progress=False)
    real_manifest = json.loads((kb_dir / "manifest.json").read_text())
    own = json.loads((crafted / "manifest.json").read_text())
    for name, meta in real_manifest["artifacts"].items():  # claim the real checksums, keep its own sizes
        meta["bytes"] = own["artifacts"][name]["bytes"]
    (crafted / "manifest.json").write_text(json.dumps(real_manifest))
    store._arrow_cache_path(kb_dir, real_manifest).unlink(missing_ok=True)  # the crafted folder is opened first
    with pytest.raises(KBError, match=r"^intentions.parquet is damaged: its content does not match"):
        KnowledgeBase(crafted)
    assert set(KnowledgeBase(kb_dir).intentions["intention_id"]) == real_ids
    assert store._arrow_cache_path(crafted, real_manifest) != store._arrow_cache_path(kb_dir, real_manifest)


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("[]", "is not of type 'object'"),
        ("{}", "'embed_model' is a required property"),
        ('{"embed_model": "m", "embed_dim": 384, "counts": {}, "artifacts": {}}', "artifacts: 'intentions.parquet' is"),
        (
            '{"embed_model": "m", "embed_dim": "384", "counts": {"intentions": 1}, "artifacts": '
            '{"intentions.parquet": {"bytes": 1}, "products.parquet": {"bytes": -1}}}',
            "artifacts.products.parquet.bytes: -1 is less than the minimum of 0",
        ),
        ("null", "None is not of type 'object'"),
    ],
)
def test_malformed_manifests_are_one_line(kb_dir, capsys, text, problem):
    (kb_dir / "manifest.json").write_text(text)
    with pytest.raises(KBError, match="is not a KB manifest") as err:
        KnowledgeBase(kb_dir)
    assert problem in str(err.value)
    for cmd in (["search", "--kb", str(kb_dir), "--query", "hat"], ["stats", "--kb", str(kb_dir)]):
        assert cli_main(cmd) == 2
        out = capsys.readouterr().err
        assert "is not a KB manifest" in out and "Traceback" not in out
    manifest = json.loads(text) if text not in ("[]", "null") else None
    assert manifest is None or store.manifest_problem(manifest)


def test_export_onto_a_directory_or_an_unknown_extension_is_a_user_error(kb_dir, tmp_path, capsys):
    target = tmp_path / "exports"
    target.mkdir()
    assert cli_main(["export", "--kb", str(kb_dir), "--out", str(target)]) == 2
    assert "is a directory; give a file name" in capsys.readouterr().err
    assert cli_main(["export", "--kb", str(kb_dir), "--out", str(target / "rows")]) == 2
    assert "cannot tell the format of 'rows'" in capsys.readouterr().err
    assert cli_main(["export", "--kb", str(kb_dir), "--out", str(tmp_path / "nope" / "x.csv")]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert cli_main(["export", "--kb", str(kb_dir), "--out", str(target / "rows"), "--format", "jsonl"]) == 0
    assert len((target / "rows").read_text().splitlines()) == 120
