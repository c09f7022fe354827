"""Crash-safe files: atomic writes (temporary file, fsync, rename), JSON-lines appends, file locks, checksums.

Every file the project writes goes through here, so one rule holds everywhere: a reader (or a run killed with
``kill -9`` and started again) sees either the old complete file or the new complete file, never half of one.

* :func:`atomic_path` yields a hidden temporary path next to the target (``.<name>.<random>.tmp``); when the block
  ends the file is fsynced, renamed over the target with ``os.replace`` (atomic on POSIX) and the folder fsynced;
  on an error the temporary file is removed. :func:`write_bytes`, :func:`write_text`, :func:`write_json`,
  :func:`write_parquet` and :func:`write_npy` are the usual cases. Caches that are rebuilt when lost pass
  ``durable=False`` (no fsync: faster, still never half-visible).
* :func:`append_jsonl` appends whole lines; a line torn by a killed writer is closed first so the next record
  starts on its own line, and :func:`read_jsonl` skips such a torn line.
* :func:`file_lock` is an ``flock`` on a lock file: exclusive, blocking or not (:class:`LockBusy`).
* :func:`will_need` asks the kernel to read scattered ranges of memory-mapped files together, ahead of use.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import hashlib
import json
import os
import secrets
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

TEMP_SUFFIX = ".tmp"


class LockBusy(RuntimeError):
    """Another process holds the lock (only raised by ``file_lock(..., blocking=False)``)."""


# --- atomic writes ---------------------------------------------------------------------------------------------


def fsync_dir(folder: str | os.PathLike[str]) -> None:
    """Make a rename inside ``folder`` durable (best effort: some filesystems refuse to fsync a folder)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def temp_path_for(path: Path) -> Path:
    """A fresh hidden temporary name next to ``path``: ``.<name>.<8 hex>.tmp``."""
    return path.with_name(f".{path.name}.{secrets.token_hex(4)}{TEMP_SUFFIX}")


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str], *, durable: bool = True) -> Iterator[Path]:
    """Yield a temporary path to write ``path``'s new content to; on success it replaces ``path`` atomically."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_path_for(target)
    try:
        yield tmp
        if durable:
            with open(tmp, "rb+") as fh:
                os.fsync(fh.fileno())
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    if durable:
        fsync_dir(target.parent)


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a fresh temporary folder next to ``path`` to fill; on success it is published as ``path`` with one
    rename, so nobody ever sees a half-written folder. When ``path`` exists by then (another process published
    it first) the new copy is dropped and the existing one kept. On failure the temporary folder is removed."""
    import shutil

    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_path_for(target)
    tmp.mkdir()
    try:
        yield tmp
        try:
            os.rename(tmp, target)  # fails when target exists (non-empty folder): keep the first one
        except OSError:
            if not target.is_dir():
                raise
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            fsync_dir(target.parent)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def swap_dir(new: str | os.PathLike[str], target: str | os.PathLike[str]) -> None:
    """Publish the complete folder ``new`` as ``target``, replacing what is there in one step, then delete the old
    one. On Linux the two folders are exchanged with ``renameat2(RENAME_EXCHANGE)``: at every moment ``target`` is
    either the whole old folder or the whole new one (a process that already has files of the old one open or
    mapped keeps reading them). Elsewhere the old folder is first renamed aside (a moment without ``target``)."""
    import shutil

    new, target = Path(new), Path(target)
    for folder in (new, *(p for p in new.rglob("*") if p.is_dir())):
        fsync_dir(folder)
    if not target.exists():
        os.rename(new, target)
        fsync_dir(target.parent)
        return
    if _exchange(new, target):
        fsync_dir(target.parent)
        shutil.rmtree(new, ignore_errors=True)  # the old folder, now under the staging name
        return
    aside = temp_path_for(target)
    os.rename(target, aside)
    os.rename(new, target)
    fsync_dir(target.parent)
    shutil.rmtree(aside, ignore_errors=True)


def _exchange(a: Path, b: Path) -> bool:
    """Atomically exchange two paths (Linux renameat2 RENAME_EXCHANGE); False where the system cannot."""
    import ctypes
    import sys

    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        renameat2 = libc.renameat2
    except (OSError, AttributeError):
        return False
    at_fdcwd, rename_exchange = -100, 2
    renameat2.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    # non-zero: EINVAL (a filesystem without exchange), ENOSYS ...: the caller falls back
    return renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange) == 0


class NpyChunks:
    """Read a 2-D ``.npy`` file by row ranges with plain file reads, not a memory map: pages of a mapped file count
    towards the process's resident memory, so streaming a 1.26M x 384 file through a map would add ~1 GB to the
    peak. Supports ``len``, ``shape``, ``dtype``, ``x[a:b]`` (contiguous rows) and ``x[sorted_rows]``."""

    def __init__(self, path: str | os.PathLike[str]):
        import numpy as np

        self.path = Path(path)
        with open(self.path, "rb") as fh:
            version = np.lib.format.read_magic(fh)
            read_header = (
                np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
            )
            shape, fortran, dtype = read_header(fh)
            self.offset = fh.tell()
        if np.dtype(dtype).hasobject:
            raise ValueError(f"{self.path}: holds Python objects (pickled data), which are never loaded")
        if fortran or len(shape) != 2:
            raise ValueError(f"{self.path}: expected a C-order 2-D array, got shape {shape}")
        self.shape, self.dtype = tuple(shape), np.dtype(dtype)
        self._row_bytes = self.shape[1] * self.dtype.itemsize

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, key):
        import numpy as np

        if isinstance(key, slice):
            start, stop, step = key.indices(self.shape[0])
            if step != 1:
                raise ValueError("NpyChunks reads contiguous row ranges only")
            count = max(0, stop - start)
            with open(self.path, "rb") as fh:
                fh.seek(self.offset + start * self._row_bytes)
                data = np.fromfile(fh, dtype=self.dtype, count=count * self.shape[1])
            return data.reshape(count, self.shape[1])
        rows = np.asarray(key, dtype=np.int64)
        out = np.empty((len(rows), self.shape[1]), dtype=self.dtype)
        with open(self.path, "rb") as fh:
            for i, r in enumerate(rows):
                fh.seek(self.offset + int(r) * self._row_bytes)
                out[i] = np.frombuffer(fh.read(self._row_bytes), dtype=self.dtype)
        return out


class NpyWriter:
    """Write a 2-D ``.npy`` array of known shape chunk by chunk (a 1.26M x 384 embedding file never has to be
    in memory at once); :meth:`close` checks every row was written. Readers use ``np.load``."""

    def __init__(self, path: str | os.PathLike[str], shape: tuple[int, int], dtype: Any):
        import numpy as np

        self.path, self.shape, self.dtype = Path(path), tuple(shape), np.dtype(dtype)
        self.rows = 0
        self._fh = open(self.path, "wb")  # noqa: SIM115 - closed in close()
        header = {"descr": np.lib.format.dtype_to_descr(self.dtype), "fortran_order": False, "shape": self.shape}
        np.lib.format.write_array_header_1_0(self._fh, header)

    def write(self, chunk: Any) -> None:
        import numpy as np

        arr = np.ascontiguousarray(chunk, dtype=self.dtype)
        if arr.ndim != 2 or arr.shape[1] != self.shape[1] or self.rows + len(arr) > self.shape[0]:
            raise ValueError(f"chunk {arr.shape} does not fit rows {self.rows}.. of {self.shape}")
        self._fh.write(arr.tobytes())
        self.rows += len(arr)

    def __enter__(self) -> NpyWriter:
        return self

    def __exit__(self, kind, *_exc) -> None:
        if kind is None:
            self.close()
        else:
            self._fh.close()

    def close(self) -> None:
        self._fh.flush()
        os.fsync(self._fh.fileno())
        self._fh.close()
        if self.rows != self.shape[0]:
            raise ValueError(f"{self.path}: {self.rows} rows written, {self.shape[0]} expected")


def write_bytes(path: str | os.PathLike[str], data: bytes, *, durable: bool = True) -> Path:
    with atomic_path(path, durable=durable) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def write_text(path: str | os.PathLike[str], text: str, *, durable: bool = True) -> Path:
    return write_bytes(path, text.encode("utf-8"), durable=durable)


def write_json(path: str | os.PathLike[str], obj: Any, *, durable: bool = True, **dumps: Any) -> Path:
    dumps.setdefault("indent", 2)
    dumps.setdefault("ensure_ascii", False)
    return write_text(path, json.dumps(obj, **dumps) + "\n", durable=durable)


def write_parquet(table: Any, path: str | os.PathLike[str], *, durable: bool = True, compression: str = "zstd") -> Path:
    """A pyarrow Table as a Parquet file (zstd)."""
    import pyarrow.parquet as pq

    with atomic_path(path, durable=durable) as tmp:
        pq.write_table(table, tmp, compression=compression)
    return Path(path)


def write_npy(path: str | os.PathLike[str], array: Any, *, durable: bool = True) -> Path:
    """A numpy array as ``.npy`` (never pickled)."""
    import numpy as np

    with atomic_path(path, durable=durable) as tmp, open(tmp, "wb") as fh:
        np.save(fh, array, allow_pickle=False)
    return Path(path)


def write_npz(path: str | os.PathLike[str], *, durable: bool = False, **arrays: Any) -> Path:
    """Named numpy arrays as an uncompressed ``.npz`` (never pickled); caches by default (no fsync)."""
    import numpy as np

    with atomic_path(path, durable=durable) as tmp, open(tmp, "wb") as fh:
        np.savez(fh, **arrays)
    return Path(path)


def remove_temp_files(folder: str | os.PathLike[str], prefix: str = "") -> int:
    """Delete the temporary files a killed writer left in ``folder`` (those of targets starting with ``prefix``);
    returns how many. Call it only while holding the lock of whoever writes there."""
    root = Path(folder)
    if not root.is_dir():
        return 0
    n = 0
    for tmp in root.glob(f".{prefix}*{TEMP_SUFFIX}"):
        with contextlib.suppress(OSError):
            tmp.unlink()
            n += 1
    return n


# --- JSON lines ------------------------------------------------------------------------------------------------


def append_jsonl(path: str | os.PathLike[str], records: Iterable[dict[str, Any]], *, durable: bool = True) -> int:
    """Append one JSON object per line (non-JSON values through ``str``); returns the number written. A last line
    torn by a killed writer (no trailing newline) is closed first, so it stays the only damaged line."""
    lines = [json.dumps(rec, ensure_ascii=False, default=str) + "\n" for rec in records]
    if not lines:
        return 0
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(target, "a+b") as fh:
        fh.seek(0, os.SEEK_END)
        if fh.tell():
            fh.seek(-1, os.SEEK_END)
            if fh.read(1) != b"\n":
                fh.write(b"\n")
        fh.write("".join(lines).encode("utf-8"))
        fh.flush()
        if durable:
            os.fsync(fh.fileno())
    return len(lines)


def read_jsonl(path: str | os.PathLike[str]) -> Iterator[dict[str, Any]]:
    """The JSON objects of a file written by :func:`append_jsonl`, skipping lines that do not parse (a torn line)
    and lines that are not objects. A missing file reads as empty."""
    try:
        fh = open(path, encoding="utf-8", errors="replace")  # noqa: SIM115 (closed below)
    except FileNotFoundError:
        return
    with fh:
        for raw in fh:
            try:
                rec = json.loads(raw)
            except json.JSONDecodeError:
                continue
            if isinstance(rec, dict):
                yield rec


# --- locks -----------------------------------------------------------------------------------------------------


@contextlib.contextmanager
def file_lock(path: str | os.PathLike[str], *, blocking: bool = True) -> Iterator[None]:
    """Hold an exclusive ``flock`` on the file ``path`` (created if missing) for the block. With
    ``blocking=False`` a lock held by another process raises :class:`LockBusy` at once. The lock goes with the
    process: a killed holder never leaves it stuck."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(target, "a+") as fh:
        try:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
        except BlockingIOError:
            raise LockBusy(f"{target} is locked by another process") from None
        try:
            yield
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


# --- checksums -------------------------------------------------------------------------------------------------


def sha256_file(path: str | os.PathLike[str], chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


# --- reading memory-mapped files ahead --------------------------------------------------------------------------
_MADV_WILLNEED = 3  # the same value on Linux and macOS


@functools.cache
def _libc(name: str):
    """libc's ``madvise`` / ``mincore`` through ctypes, or None where there is none (then the functions below do
    nothing / report -1)."""
    import ctypes

    try:
        fn = getattr(ctypes.CDLL(None, use_errno=True), name)
    except (OSError, AttributeError):
        return None
    fn.argtypes = (ctypes.c_void_p, ctypes.c_size_t, ctypes.c_char_p if name == "mincore" else ctypes.c_int)
    fn.restype = ctypes.c_int
    return fn


def will_need(starts: Any, ends: Any) -> int:
    """Ask the kernel to read the address ranges ``[starts[i], ends[i])`` of memory-mapped files now, all at once
    (``madvise(MADV_WILLNEED)``, which returns at once), before the caller touches them.

    Touching cold pages of a mapping one after the other costs one blocking page fault each, and every fault also
    reads around the page (the device's read-ahead: 128 KB to 8 MB): 200 random rows of a 1.26M-row table took
    0.7-1.0 s that way on a cold page cache here, against ~10-20 ms when their exact pages are asked for together
    first (docs/measurements.md). Ranges are rounded out to pages and merged. Advisory only: errors are ignored.
    Returns the number of ``madvise`` calls made."""
    import mmap

    import numpy as np

    fn = _libc("madvise")
    starts = np.asarray(starts, dtype=np.uint64).ravel()
    ends = np.asarray(ends, dtype=np.uint64).ravel()
    if fn is None or not len(starts):
        return 0
    page = np.uint64(mmap.PAGESIZE)
    starts = starts - starts % page
    order = np.argsort(starts, kind="stable")
    starts, ends = starts[order], np.maximum(ends[order], starts[order] + 1)
    # merge: a range that starts within (or a page after) the run so far extends it
    run_end = np.maximum.accumulate(ends)
    new_run = np.ones(len(starts), dtype=bool)
    new_run[1:] = starts[1:] > run_end[:-1] + page
    firsts = np.flatnonzero(new_run)
    lasts = np.append(firsts[1:] - 1, len(starts) - 1)
    for lo, hi in zip(starts[firsts].tolist(), run_end[lasts].tolist()):
        fn(lo, hi - lo, _MADV_WILLNEED)
    return len(firsts)


def resident_bytes(path: str | os.PathLike[str]) -> int:
    """How many bytes of ``path`` are in the page cache now (``mincore`` over a read-only mapping, which reads
    nothing); -1 where that cannot be told."""
    import ctypes
    import mmap

    import numpy as np

    fn = _libc("mincore")
    size = os.path.getsize(path)
    if fn is None:
        return -1
    if not size:
        return 0
    pages = (size + mmap.PAGESIZE - 1) // mmap.PAGESIZE
    vec = ctypes.create_string_buffer(pages)
    with open(path, "rb") as f, mmap.mmap(f.fileno(), size, prot=mmap.PROT_READ) as mapped:
        view = np.frombuffer(mapped, dtype=np.uint8)  # for its address only
        ok = fn(view.ctypes.data, size, vec) == 0
        del view  # the mapping cannot close while a view exports it
    if not ok:
        return -1
    return int(np.count_nonzero(np.frombuffer(vec.raw, dtype=np.uint8) & 1)) * mmap.PAGESIZE


def drop_from_page_cache(path: str | os.PathLike[str]) -> None:
    """Ask the kernel to drop ``path``'s clean pages from the page cache (``posix_fadvise(DONTNEED)``; pages that
    a process has mapped and touched stay): for measuring reads from a cold cache."""
    if not hasattr(os, "posix_fadvise"):
        return
    fd = os.open(path, os.O_RDONLY)
    try:
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)
