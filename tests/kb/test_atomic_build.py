"""A rebuild that fails or is killed leaves the previous KB as it was; readers see the old KB or the new one,
never a mix; a KB object opened before a rebuild keeps serving its own files (issue 16, case 1)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from mind_core.kb.build import STAGING_PREFIX, build_kb
from mind_core.kb.store import KBError, KnowledgeBase

REPO = Path(__file__).resolve().parents[2]


def _manifest(kb: Path) -> dict:
    return json.loads((kb / "manifest.json").read_text())


def _files(kb: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(kb.iterdir()) if p.is_file()}


@pytest.fixture()
def built(tmp_path, small_input_dir):
    out = tmp_path / "kb"
    build_kb([small_input_dir], out, progress=False)
    (out / "rescore").mkdir()
    (out / "rescore" / "note.txt").write_text("answers of a rescore run")
    return out


def _bad_row_input(tmp_path: Path, small_input_dir: Path) -> Path:
    bad = tmp_path / "bad_input"
    bad.mkdir()
    for f in small_input_dir.iterdir():
        (bad / f.name).write_bytes(f.read_bytes())
    with (bad / "intentions.jsonl").open("a", encoding="utf-8") as fh:
        fh.write('{"id": "x", "relation": "nope"}\n')
    return bad


@pytest.mark.parametrize("case", ["embed_model", "vectors_shape", "ivf_too_small", "bad_row"])
def test_a_failed_rebuild_leaves_the_previous_kb(tmp_path, small_input_dir, built, case):
    before = _files(built)
    kwargs: dict = {"progress": False, "force": True}
    inputs = [small_input_dir]
    if case == "embed_model":
        kwargs["embed_model"] = "/no/such/model"
    elif case == "vectors_shape":
        np.save(tmp_path / "v.npy", np.ones((7, 384), dtype=np.float32))
        kwargs["vectors"] = tmp_path / "v.npy"
    elif case == "ivf_too_small":
        kwargs["index_kind"] = "ivf"
    else:
        inputs = [_bad_row_input(tmp_path, small_input_dir)]
    with pytest.raises((KBError, ValueError)):
        build_kb(inputs, built, **kwargs)
    assert _files(built) == before  # every byte as it was
    assert (built / "rescore" / "note.txt").exists()
    assert not list(built.parent.glob(f"{STAGING_PREFIX}*"))  # nothing left behind
    kb = KnowledgeBase(built)  # still opens and searches
    assert kb.index.ntotal == len(kb.intentions) == 120


def test_a_rebuild_keeps_what_else_is_in_the_folder(tmp_path, small_input_dir, built):
    res = build_kb([small_input_dir], built, progress=False, force=True)
    assert res.status == "built"
    assert (built / "rescore" / "note.txt").read_text() == "answers of a rescore run"


def _kill_mid_build(cmd: list[str], parent: Path, target: str) -> None:
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and proc.poll() is None:
            stage = list(parent.glob(f"{STAGING_PREFIX}{target}-*"))
            if stage and (stage[0] / "intentions.parquet").exists():
                break
            time.sleep(0.02)
        assert proc.poll() is None, "the build finished before it could be killed"
        os.killpg(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(timeout=30)


def test_kill_9_during_force_rebuild_leaves_the_previous_kb(tmp_path, small_input_dir, built):
    before = _files(built)
    # the whole sample into the same folder: killed as soon as the new tables are being written
    code = (
        "from mind_core.kb.build import build_kb; "
        f"build_kb([{str(REPO / 'data' / 'mind_sample')!r}], {str(built)!r}, force=True, progress=False)"
    )
    _kill_mid_build([sys.executable, "-c", code], built.parent, built.name)
    assert _files(built) == before
    assert list(built.parent.glob(f"{STAGING_PREFIX}{built.name}-*"))  # the killed build's folder ...
    res = build_kb([small_input_dir], built, progress=False, force=True)
    assert res.status == "built"
    assert not list(built.parent.glob(f"{STAGING_PREFIX}{built.name}-*"))  # ... removed by the next build


def test_readers_during_rebuilds_always_see_a_whole_kb(tmp_path, small_input_dir, built):
    """A reader process opens the KB in a loop while this process rebuilds it three times."""
    code = (
        "import sys, time\n"
        "from mind_core.kb.store import KnowledgeBase\n"
        "ok = bad = 0\n"
        "end = time.monotonic() + float(sys.argv[2])\n"
        "while time.monotonic() < end:\n"
        "    try:\n"
        "        kb = KnowledgeBase(sys.argv[1]); assert kb.index.ntotal == len(kb.intentions) == len(kb.scores)\n"
        "        ok += 1\n"
        "    except Exception as err:\n"
        "        bad += 1; print(type(err).__name__, err, file=sys.stderr)\n"
        "print(ok, bad)\n"
    )
    reader = subprocess.Popen(
        [sys.executable, "-c", code, str(built), "25"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    time.sleep(3)
    for _ in range(3):
        build_kb([small_input_dir], built, progress=False, force=True)
    out, err = reader.communicate(timeout=120)
    ok, bad = map(int, out.split())
    assert bad == 0, err
    assert ok > 0


def test_an_open_kb_keeps_serving_its_own_files_after_a_rebuild(tmp_path, small_input_dir, built):
    kb = KnowledgeBase(built)  # opened, nothing heavy loaded yet
    n_old = len(kb.intentions)
    smaller = tmp_path / "smaller"
    smaller.mkdir()
    lines = (small_input_dir / "intentions.jsonl").read_text(encoding="utf-8").splitlines()[:40]
    (smaller / "intentions.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    (smaller / "products.jsonl").write_bytes((small_input_dir / "products.jsonl").read_bytes())
    build_kb([smaller], built, progress=False)
    assert len(KnowledgeBase(built).intentions) == 40
    # the old object loads its index, embeddings and scores now, from the files it opened
    assert kb.index.ntotal == n_old and kb.embeddings.shape[0] == n_old and len(kb.scores) == n_old
    from mind_core.query import search

    assert len(search(kb, "hiking", mode="semantic", k=5).hits) == 5
