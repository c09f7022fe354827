"""mind_core.io: atomic writes, JSON lines that survive a torn write, and file locks across processes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from mind_core import io


def test_atomic_write_replaces_and_leaves_no_temp(tmp_path):
    target = tmp_path / "sub" / "a.json"
    io.write_json(target, {"x": 1})
    io.write_json(target, {"x": 2})
    assert json.loads(target.read_text()) == {"x": 2}
    assert [p.name for p in target.parent.iterdir()] == ["a.json"]


def test_a_failed_write_keeps_the_old_file(tmp_path):
    target = tmp_path / "t.txt"
    io.write_text(target, "old")
    with pytest.raises(RuntimeError), io.atomic_path(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("killed mid-way")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["t.txt"]


def test_a_killed_writer_leaves_only_a_temp_file_that_remove_temp_files_clears(tmp_path):
    target = tmp_path / "part-0001.parquet"
    code = (
        "import os, sys\n"
        "from mind_core import io\n"
        f"with io.atomic_path({str(target)!r}) as tmp:\n"
        "    tmp.write_bytes(b'x' * 1000)\n"
        "    os._exit(9)\n"  # dies inside the block, before the rename
    )
    assert subprocess.run([sys.executable, "-c", code]).returncode == 9
    assert not target.exists()
    assert len(list(tmp_path.glob(".part-*" + io.TEMP_SUFFIX))) == 1
    assert io.remove_temp_files(tmp_path, prefix="part-") == 1
    assert list(tmp_path.iterdir()) == []


def test_parquet_and_npy_round_trip_without_pickle(tmp_path):
    table = pa.table({"a": [1, 2], "b": ["x", "y"]})
    io.write_parquet(table, tmp_path / "t.parquet")
    assert pq.read_table(tmp_path / "t.parquet").equals(table)
    arr = np.arange(6, dtype=np.float32).reshape(2, 3)
    io.write_npy(tmp_path / "a.npy", arr)
    assert np.array_equal(np.load(tmp_path / "a.npy", allow_pickle=False), arr)
    with pytest.raises(ValueError):
        io.write_npy(tmp_path / "o.npy", np.array([object()], dtype=object))
    assert not (tmp_path / "o.npy").exists()


def test_jsonl_survives_a_torn_last_line(tmp_path):
    log = tmp_path / "run.jsonl"
    io.append_jsonl(log, [{"i": 1}])
    with open(log, "ab") as fh:
        fh.write(b'{"i": 2, "half')  # a writer killed mid-line
    io.append_jsonl(log, [{"i": 3}, {"i": 4}])
    assert [r["i"] for r in io.read_jsonl(log)] == [1, 3, 4]
    assert list(io.read_jsonl(tmp_path / "missing.jsonl")) == []
    assert io.append_jsonl(log, []) == 0


def _python(code: str) -> subprocess.Popen:
    """A fresh interpreter running ``code`` (not multiprocessing: its spawn re-runs whatever ``__main__`` is, which
    in a full test session may be a page script an AppTest left behind)."""
    return subprocess.Popen([sys.executable, "-c", code])


def test_concurrent_appenders_lose_and_tear_nothing(tmp_path):
    log = str(tmp_path / "c.jsonl")
    code = (
        "import sys\n"
        "from mind_core import io\n"
        "for i in range(200):\n"
        f"    io.append_jsonl({log!r}, [{{'tag': int(sys.argv[1]), 'i': i, 'pad': 'x' * 500}}], durable=False)\n"
    )
    procs = [subprocess.Popen([sys.executable, "-c", code, str(t)]) for t in range(3)]
    assert [p.wait(120) for p in procs] == [0, 0, 0]
    got = list(io.read_jsonl(log))
    assert len(got) == 600 and {(r["tag"], r["i"]) for r in got} == {(t, i) for t in range(3) for i in range(200)}


def test_file_lock_excludes_another_process_and_frees_on_death(tmp_path):
    lock, ready = str(tmp_path / "x.lock"), tmp_path / "ready"
    holder = _python(
        "import time\n"
        "from mind_core import io\n"
        f"with io.file_lock({lock!r}):\n"
        f"    open({str(ready)!r}, 'w').close()\n"
        "    time.sleep(120)\n"
    )
    try:
        deadline = time.monotonic() + 60
        while not ready.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert ready.exists(), "the holder never took the lock"
        with pytest.raises(io.LockBusy, match="locked by another process"), io.file_lock(lock, blocking=False):
            pass
        os.kill(holder.pid, 9)  # a killed holder never leaves the lock stuck
        holder.wait(30)
        with io.file_lock(lock, blocking=False):
            pass
    finally:
        if holder.poll() is None:
            holder.kill()
            holder.wait(30)


def test_sha256_file(tmp_path):
    p = tmp_path / "f"
    p.write_bytes(b"abc")
    assert io.sha256_file(p) == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"


def test_atomic_dir_publishes_whole_or_not_at_all(tmp_path):
    target = tmp_path / "model"
    with pytest.raises(RuntimeError), io.atomic_dir(target) as tmp:
        (tmp / "config.json").write_text("{}")
        raise RuntimeError("save failed half-way")
    assert list(tmp_path.iterdir()) == []  # nothing published, no temp left
    with io.atomic_dir(target) as tmp:
        (tmp / "config.json").write_text('{"first": true}')
    with io.atomic_dir(target) as tmp:  # someone published first: the existing copy wins
        (tmp / "config.json").write_text('{"first": false}')
    assert json.loads((target / "config.json").read_text()) == {"first": True}
    assert [p.name for p in tmp_path.iterdir()] == ["model"]


def _cold_file(path, size_mb: int = 32):
    """A file of ``size_mb`` MB written, synced and dropped from the page cache; skips where the page cache cannot
    be dropped or inspected."""
    path.write_bytes(os.urandom(size_mb << 20))
    with open(path, "rb+") as f:
        os.fsync(f.fileno())
    io.drop_from_page_cache(path)
    left = io.resident_bytes(path)
    if left < 0 or left > (1 << 20):
        pytest.skip(f"the page cache cannot be dropped / inspected here (resident after DONTNEED: {left})")


def _wait_resident(path, at_least: int, timeout: float = 5.0) -> int:
    deadline = time.monotonic() + timeout
    while (got := io.resident_bytes(path)) < at_least and time.monotonic() < deadline:
        time.sleep(0.01)
    return got


def test_will_need_reads_the_asked_pages_of_a_cold_mapping_and_no_more(tmp_path):
    import mmap

    path = tmp_path / "cold.bin"
    _cold_file(path)
    with open(path, "rb") as f, mmap.mmap(f.fileno(), 0, prot=mmap.PROT_READ) as mapped:
        base = np.frombuffer(mapped, dtype=np.uint8).ctypes.data
        page = mmap.PAGESIZE
        # three ranges, two of them overlapping: two madvise calls; nothing is read before this returns
        calls = io.will_need(
            [base + 100 * page + 7, base + 100 * page + 50, base + 5000 * page],
            [base + 100 * page + 60, base + 101 * page + 3, base + 5000 * page + 1],
        )
        assert calls == 2
        got = _wait_resident(path, 3 * page)
        # 101-102 and 5000 (3 pages), not the device's read-ahead around them (128 KB to 8 MB)
        assert 3 * page <= got <= 16 * page, got
        del base


def test_will_need_merges_ranges_and_takes_nothing_or_any_address():
    buf = np.zeros(1 << 20, dtype=np.uint8)
    a = buf.ctypes.data
    assert io.will_need([], []) == 0
    assert io.will_need([a, a + 10, a + 5000], [a + 20, a + 4096, a + 6000]) == 1  # within a page of each other
    assert io.will_need([a + 900_000, a], [a + 900_001, a + 1]) == 2  # any order
    assert io.will_need([8], [16]) == 1  # an unmapped address: madvise fails, advisory only, no exception


def test_prefetch_rows_reads_the_pages_of_those_rows_only(tmp_path):
    """A search's hits from a memory-mapped Arrow table (the KB's fast-open copy): the pages of the asked rows'
    offsets and text, read together, without the read-around of faulting them in one by one."""
    from mind_core.kb.store import prefetch_rows

    path = tmp_path / "table.arrow"
    n = 200_000
    texts = [f"row {i} " + "x" * (80 + i % 50) for i in range(n)]
    table = pa.table({"text": pa.array(texts, type=pa.large_string()), "n": pa.array(np.arange(n))})
    with pa.OSFile(str(path), "wb") as sink, pa.ipc.new_file(sink, table.schema) as writer:
        writer.write_table(table, max_chunksize=n)
    with open(path, "rb+") as f:
        os.fsync(f.fileno())
    with pa.memory_map(str(path)) as src:
        frame = pa.ipc.open_file(src).read_all().to_pandas()  # as KnowledgeBase opens its tables
        io.drop_from_page_cache(path)  # what the open touched stays mapped; the rest of the file is cold
        before = io.resident_bytes(path)
        if not 0 <= before <= (12 << 20):
            pytest.skip(f"the page cache cannot be dropped / inspected here ({before} bytes resident)")
        rows = np.array([120_000, 160_000, 199_999])  # text far beyond what opening the table touched
        assert prefetch_rows(frame, rows) >= 3  # the text ranges (offsets first; "n" is not a string column)
        got = _wait_resident(path, before + 3 * 4096) - before
        assert 3 * 4096 <= got <= 64 * 4096, got  # those rows' pages, no megabytes of read-around
        assert frame["text"].iloc[rows].tolist() == [texts[i] for i in rows]
        assert prefetch_rows(frame, np.array([], dtype=np.int64)) == 0
