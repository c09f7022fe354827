"""AppTest of the Products, Search and Categories pages on the sample KB (no browser)."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from streamlit.testing.v1 import AppTest

APP = str(Path(__file__).resolve().parents[2] / "app.py")


@pytest.fixture()
def app(sample_kb_dir, monkeypatch, tmp_path):
    monkeypatch.setenv("MIND_KB", str(sample_kb_dir))
    monkeypatch.setenv("MIND_CACHE_DIR", str(tmp_path / "cache"))  # fresh image cache: nothing cached

    def make(page: str, **query) -> AppTest:
        at = AppTest.from_file(APP, default_timeout=120)
        at.switch_page(page)
        for key, value in query.items():
            at.query_params[key] = value
        return at

    return make


def _texts(at) -> str:
    return "\n".join([m.value for m in at.markdown] + [c.value for c in at.caption] + [h.value for h in at.header])


def test_products_deep_link_shows_the_product_and_partners(app, sample_kb):
    at = app("dashboard/views/products.py", asin="B004I41M6K").run()
    assert not at.exception, at.exception
    assert at.header[0].value.replace("\\", "") == sample_kb.products.loc["B004I41M6K", "title"]
    assert any(c.value.startswith("Image unavailable") for c in at.caption)  # Amazon is unreachable here
    assert at.button(key="open_B00DGBVAOK") is not None
    text = _texts(at)
    assert "Aviator Pilot Cap Adult Hat Brown with Buckle" in text and ":red-badge[filtered]" in text


def test_products_partner_button_moves_there_and_kept_only_filters(app, sample_kb):
    at = app("dashboard/views/products.py", asin="B004I41M6K").run()
    at.button(key="open_B00DGBVAOK").click().run()
    assert not at.exception, at.exception
    assert at.query_params["asin"] == ["B00DGBVAOK"] or at.query_params["asin"] == "B00DGBVAOK"
    assert at.header[0].value.replace("\\", "") == "Aviator Pilot Cap Adult Hat Brown with Buckle"

    df = sample_kb.intentions
    busy = pd.concat([df["asin_a"], df["asin_b"]]).value_counts().index[0]
    rows = df[(df["asin_a"] == busy) | (df["asin_b"] == busy)]
    at = app("dashboard/views/products.py", asin=busy).run()
    assert f"· {len(rows):,} intentions" in at.subheader[0].value
    at.toggle(key="kept_only").set_value(True).run()
    assert f"· {(rows['verdict'] == 'yes').sum():,} intentions" in at.subheader[0].value
    assert ":red-badge[filtered]" not in _texts(at)


def test_products_search_box_and_unknown_asin(app):
    at = app("dashboard/views/products.py").run()
    assert not at.exception and len(at.button) >= 5  # most connected products offered
    at.text_input(key="product_query").input("aviator hat").run()
    options = at.selectbox(key="product_pick").options
    assert any("B004I41M6K" in o for o in options)
    at.selectbox(key="product_pick").set_value(next(o for o in options if "B004I41M6K" in o)).run()
    assert not at.exception, at.exception
    assert at.header[0].value.startswith("Classic Aviator Hat")
    at = app("dashboard/views/products.py", asin="NOPE000000").run()
    assert any("No product with ASIN 'NOPE000000'" in w.value for w in at.warning)


def test_search_returns_rows_and_facet_narrows(app):
    at = app("dashboard/views/search.py").run()
    assert not at.exception and any("Type a query" in i.value for i in at.info)
    at.text_input(key="query").input("comfortable").run()
    assert not at.exception, at.exception
    full = at.dataframe[0].value
    assert len(full) == 25 and at.number_input(key="page").max == 8  # 200 ranked, 25 per page
    at.multiselect(key="f_relation").set_value(["usedFor"]).run()
    assert set(at.dataframe[0].value["relation"]) == {"usedFor"}

    at.radio(key="mode").set_value("keyword").run()
    kw = at.dataframe[0].value
    assert len(kw) == 25 and kw["intention"].str.contains("comfortable", case=False).all()
    assert set(kw["relation"]) == {"usedFor"} and any("Rows 1–25 of the top 26 ·" in c.value for c in at.caption)
    at.multiselect(key="f_verdict").set_value(["kept"]).run()
    narrowed = at.dataframe[0].value
    assert set(narrowed["verdict"]) == {"kept"} and len(narrowed) == 14  # = direct pandas count

    at.radio(key="mode").set_value("hybrid").run()
    assert not at.exception and {"cosine", "bm25"} <= set(at.dataframe[0].value.columns)


def test_search_no_hits_and_missing_index(app, sample_kb_dir, tmp_path, monkeypatch):
    at = app("dashboard/views/search.py").run()
    at.radio(key="mode").set_value("keyword").run()
    at.text_input(key="query").input("xyzzyplugh").run()
    assert not at.exception and any("No intentions match" in w.value for w in at.warning)

    import shutil

    broken = tmp_path / "noindex"
    shutil.copytree(sample_kb_dir, broken)
    manifest = json.loads((broken / "manifest.json").read_text())
    manifest["artifacts"].pop("index.faiss")
    (broken / "manifest.json").write_text(json.dumps(manifest))
    (broken / "index.faiss").unlink()
    monkeypatch.setenv("MIND_KB", str(broken))
    at = AppTest.from_file(APP, default_timeout=120)
    at.switch_page("dashboard/views/search.py")
    at.run()
    at.text_input(key="query").input("winter hat").run()
    assert not at.exception and any("index.faiss is missing" in e.value.replace("\\", "") for e in at.error)
    at.radio(key="mode").set_value("keyword").run()
    assert not at.exception and len(at.dataframe[0].value) > 0  # keyword still works


@pytest.fixture()
def served_files(monkeypatch):
    """Bytes behind each media URL (AppTest's mock runtime drops its media storage after every run)."""
    from streamlit.runtime.memory_media_file_storage import MemoryMediaFileStorage

    files: dict[str, bytes] = {}
    original = MemoryMediaFileStorage.load_and_get_id

    def recording(self, path_or_data, mimetype, kind, filename=None):
        file_id = original(self, path_or_data, mimetype, kind, filename)
        files[file_id] = self.get_file(file_id).content
        return file_id

    monkeypatch.setattr(MemoryMediaFileStorage, "load_and_get_id", recording)
    return files


@pytest.mark.parametrize("fmt", ["csv", "jsonl", "parquet"])
def test_search_export_has_the_shown_rows(app, served_files, fmt):
    at = app("dashboard/views/search.py").run()
    at.text_input(key="query").input("usb cable").run()
    at.radio(key="mode").set_value("keyword").run()
    at.selectbox(key="export_fmt").set_value(fmt).run()
    shown = at.dataframe[0].value
    button = at.get("download_button")[0]
    assert f"Export these {len(shown)} rows as {fmt.upper()}" == button.proto.label
    blob = served_files[button.proto.url.rsplit("/", 1)[-1].split(".")[0]]
    exported = {
        "csv": lambda b: pd.read_csv(io.BytesIO(b)),
        "jsonl": lambda b: pd.read_json(io.BytesIO(b), lines=True),
        "parquet": lambda b: pd.read_parquet(io.BytesIO(b)),
    }[fmt](blob)
    assert exported["intention_id"].tolist() == shown["intention_id"].tolist()
    # the table shows the informative part; the download has the full text (README, "Browsing MIND's text")
    assert exported["intention"].tolist() == shown["intention_full"].tolist()
    assert "intention_full" not in exported


def _values(v) -> np.ndarray:
    """A plotly JSON array: a list, or the typed-array form {"dtype", "bdata" (base64), "shape"}."""
    if isinstance(v, dict) and "bdata" in v:
        import base64

        return np.frombuffer(base64.b64decode(v["bdata"]), dtype=v["dtype"])
    return np.asarray(v, dtype=float)


def test_categories_renders_charts_and_table(app):
    at = app("dashboard/views/categories.py").run()
    assert not at.exception, at.exception
    charts = at.get("plotly_chart")
    assert len(charts) == 5  # relation, kept rate, heatmap, lengths, map
    figs = [json.loads(c.proto.spec) for c in charts]
    assert figs[0]["data"][0]["name"] == "kept" and _values(figs[0]["data"][0]["y"]).sum() == 1487  # stacked
    assert _values(figs[2]["data"][0]["z"]).sum() == 3397  # heatmap cells
    assert any("Nothing selected" in c.value for c in at.caption) and len(at.dataframe[0].value) == 500
    at.radio(key="heat_by").set_value("product").run()
    assert (
        not at.exception
        and "Product category" in json.loads(at.get("plotly_chart")[2].proto.spec)["layout"]["title"]["text"]
    )
    at.radio(key="map_color").set_value("relation").run()
    assert not at.exception
    names = {t["name"] for t in json.loads(at.get("plotly_chart")[4].proto.spec)["data"]}
    assert "usedFor" in names and len(names) == 20
