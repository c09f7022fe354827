"""Issue 16 (7): visitors see no traceback; a KB that cannot be opened gets one clear line on every page."""

from __future__ import annotations

import shutil
import tomllib
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]


def test_streamlit_shows_no_exception_details():
    conf = tomllib.loads((ROOT / ".streamlit" / "config.toml").read_text(encoding="utf-8"))
    assert conf["client"]["showErrorDetails"] in ("type", "none")  # Streamlit 1.67: full | stacktrace | type | none


def _garble(path: Path) -> None:
    size = path.stat().st_size
    path.write_bytes(np.random.default_rng(1).integers(0, 256, size, dtype=np.uint8).tobytes())


@pytest.fixture()
def damaged(sample_kb_dir, tmp_path):
    def make(name: str) -> Path:
        kb = tmp_path / "indexes-copy" / name.replace(".", "-")
        shutil.copytree(sample_kb_dir, kb)
        _garble(kb / name)
        return kb

    return make


@pytest.mark.parametrize("page", ["home", "products", "search", "categories", "intentionqa", "thresholds"])
def test_a_damaged_table_is_one_line_on_every_page(open_page, damaged, page):
    kb = damaged("intentions.parquet")
    at = open_page(f"dashboard/views/{page}.py", MIND_KB=str(kb))
    assert not at.exception, at.exception
    (error,) = [e.value.replace("\\", "") for e in at.error]
    assert error.startswith("No usable knowledge base: intentions.parquet is damaged") and "build-kb" in error
    assert "\n" not in error and "Traceback" not in error


def test_damaged_embeddings_on_the_search_page(open_page, damaged):
    kb = damaged("embeddings.npy")
    at = open_page("dashboard/views/search.py", MIND_KB=str(kb))
    at.multiselect(key="f_relation").set_value(["usedFor"])  # a facet: the exact search reads embeddings.npy
    at.text_input(key="query").input("keep warm in winter").run()
    assert not at.exception, at.exception
    shown = " ".join(e.value.replace("\\", "") for e in [*at.error, *at.warning])
    assert "embeddings.npy is damaged" in shown and "build-kb" in shown and "--force" in shown
    assert "pickle" not in shown
