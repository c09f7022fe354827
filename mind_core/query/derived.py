"""Data derived from a loaded KB (keyword index, product index, embedding map): computed once, then kept.

Each is remembered on the :class:`~mind_core.kb.store.KnowledgeBase` object (dropped with it) and saved as an
``.npz`` file under ``<cache>/derived/`` keyed by the intentions table's SHA-256 from the manifest, so a new
process reads it instead of computing it again; a file that does not load or does not fit the KB is rebuilt.
"""

from __future__ import annotations

import hashlib
import logging
import time
import weakref
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from mind_core import config, io
from mind_core.kb.store import INTENTIONS_FILE

log = logging.getLogger(__name__)

T = TypeVar("T")

#: per loaded KB object: name -> derived object
_PER_KB: weakref.WeakKeyDictionary[Any, dict[str, Any]] = weakref.WeakKeyDictionary()


def memo(kb) -> dict[str, Any]:
    """A dict that lives as long as ``kb`` (for small per-KB caches: query vectors, facet masks)."""
    return _PER_KB.setdefault(kb, {})


def kb_key(kb) -> str:
    """32 hex characters naming the KB's content: its intentions' SHA-256 (else its resolved path)."""
    meta = kb.manifest.get("artifacts", {}).get(INTENTIONS_FILE, {})
    return (meta.get("sha256") or hashlib.sha256(str(Path(kb.path).resolve()).encode()).hexdigest())[:32]


def derived_path(kb, name: str) -> Path:
    return config.cache_dir("derived") / f"{name}-{kb_key(kb)}.npz"


def derived(
    kb,
    name: str,
    build: Callable[[], T],
    to_arrays: Callable[[T], dict[str, np.ndarray]],
    from_arrays: Callable[[dict[str, np.ndarray]], T | None],
) -> T:
    """The derived object ``name`` of ``kb``: from memory, else from its cache file (``from_arrays`` returns None
    when the arrays do not fit the KB), else ``build()`` and saved (``to_arrays``; never pickled)."""
    per_kb = memo(kb)
    if name in per_kb:
        return per_kb[name]
    path = derived_path(kb, name)
    value: T | None = None
    if path.exists():
        try:
            with np.load(path, allow_pickle=False) as z:
                value = from_arrays({k: z[k] for k in z.files})
        except (OSError, ValueError, KeyError) as err:
            log.warning("derived data %s unreadable (%s); rebuilding", path, err)
            value = None
    if value is None:
        t0 = time.perf_counter()
        value = build()
        log.info("built %s for %s in %.1f s", name, kb.path, time.perf_counter() - t0)
        try:
            io.write_npz(path, **to_arrays(value))
        except OSError as err:
            log.warning("cannot save %s to %s: %s", name, path, err)
    per_kb[name] = value
    return value


def remember(kb, bucket: str, key: Any, compute: Callable[[], T], limit: int) -> T:
    """A small per-KB LRU-ish memo: the last ``limit`` values of ``compute`` by ``key`` in ``bucket``."""
    store = memo(kb).setdefault(bucket, {})
    if key in store:
        return store[key]
    value = compute()
    if len(store) >= limit:
        store.pop(next(iter(store)))
    store[key] = value
    return value
