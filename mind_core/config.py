"""Where things live. Every path can be overridden by an environment variable (documented in README)."""

from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
DATA_DIR = REPO_ROOT / "data"
SAMPLE_DATA_DIR = DATA_DIR / "mind_sample"
INDEXES_DIR = REPO_ROOT / "indexes"


def default_kb_dir() -> Path:
    """The KB the app opens: ``MIND_KB`` or ``indexes/sample`` (built from the vendored sample by ``make run``)."""
    return Path(os.environ.get("MIND_KB") or INDEXES_DIR / "sample")


def cache_dir() -> Path:
    """Downloaded images and other caches: ``MIND_CACHE_DIR`` or ``.cache/`` in the repository."""
    path = Path(os.environ.get("MIND_CACHE_DIR") or REPO_ROOT / ".cache")
    path.mkdir(parents=True, exist_ok=True)
    return path


def user_kb_dir() -> Path:
    """Where the app saves intentions distilled live (``MIND_USER_DATA`` or ``data/user``)."""
    return Path(os.environ.get("MIND_USER_DATA") or DATA_DIR / "user")
