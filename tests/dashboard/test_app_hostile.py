"""Issue 16 (2): KB, question-file and model text is never rendered as Markdown / HTML on any page.

A KB whose titles, descriptions, categories, intentions and filter reasons carry image and link syntax, an
IntentionQA file with the same in its ids, questions and relations, and a model that answers with it: every page
that shows such text is opened through AppTest and every Markdown-rendering element (markdown, captions, alerts,
headings, expander / status / button / widget labels and help, radio options) is checked for the syntax left
unescaped. Text inside a proper code span is literal and does not count.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

APP = str(Path(__file__).resolve().parents[2] / "app.py")

#: a backtick to break out of a code span, a remote image (the browser would fetch it), a phishing link, raw HTML
PAYLOAD = "x` ![x](http://127.0.0.1:9/x.png) [click](http://evil) <img src=x>"
#: what is left of it when it is not escaped: the target of a link or image, an HTML tag not backslash-escaped
NEEDLES = re.compile(r"\]\(https?:|(?<!\\)<img")


def _product(asin: str, name: str) -> dict:
    return {
        "asin": asin,
        "title": f"{name} {PAYLOAD}",
        "description": f"A {name.lower()} described by a model. {PAYLOAD}",
        "image_urls": [],
        "category": f"Home {PAYLOAD}",
    }


@pytest.fixture(scope="module")
def hostile_kb_dir(tmp_path_factory) -> Path:
    from mind_core.kb.build import build_kb

    src = tmp_path_factory.mktemp("hostile_src")
    a, b, c = _product("H000000001", "Hat"), _product("H000000002", "Mug"), _product("H000000003", "Scarf")
    rows = [
        ("h-1", "usedFor", a, b, "yes"),
        ("h-2", "isA", a, c, "no"),
        ("h-3", "capableOf", b, c, "yes"),
    ]
    with open(src / "intentions.jsonl", "w", encoding="utf-8") as f:
        for rid, rel, pa_, pb_, verdict in rows:
            rec = {
                "id": rid,
                "category": f"hostile {PAYLOAD}",
                "relation": rel,
                "product_a": pa_,
                "product_b": pb_,
                "intention": f"hostile intention about warm winter hats {PAYLOAD}",
                "filter_verdict": verdict,
                "filter_reason": f"{verdict.capitalize()}. Because {PAYLOAD}",
            }
            f.write(json.dumps(rec) + "\n")
    out = tmp_path_factory.mktemp("hostile") / "kb"
    build_kb([src], out, progress=False)
    return out


@pytest.fixture(scope="module")
def hostile_questions(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("hostile_iqa")
    recs = []
    for i in range(5):
        recs.append(
            {
                "id": f"Q{i} {PAYLOAD}",
                "task": "intention_understanding",
                "question": f"A customer buys a hat and a mug. Why? {PAYLOAD}",
                "products": [
                    {"asin": "H000000001", "title": f"Hat {PAYLOAD}"},
                    {"asin": "H000000002", "title": f"Mug {PAYLOAD}"},
                ],
                "choices": [f"because warm winter hats {PAYLOAD}", "because b", "because c", "because d"],
                "answer_index": 0,
                "relation": f"usedFor {PAYLOAD}",
                "typicality": 0.8,
            }
        )
    (d / "hostile.jsonl").write_text("\n".join(json.dumps(r) for r in recs) + "\n", encoding="utf-8")
    return d


@pytest.fixture()
def app(hostile_kb_dir, hostile_questions, monkeypatch, tmp_path):
    monkeypatch.setenv("MIND_KB", str(hostile_kb_dir))
    monkeypatch.setenv("MIND_USER_DATA", str(tmp_path / "user"))
    monkeypatch.setenv("MIND_INTENTIONQA_DIR", str(hostile_questions))

    def make(page: str, **query) -> AppTest:
        at = AppTest.from_file(APP, default_timeout=240)
        at.switch_page(page)
        for key, value in query.items():
            at.query_params[key] = value
        return at.run()

    return make


# --- what counts as rendered Markdown -----------------------------------------------------------------------------


def strip_code_spans(text: str) -> str:
    """``text`` without its CommonMark code spans (their content is shown literally)."""
    out, i, n = [], 0, len(text)
    while i < n:
        ch = text[i]
        if ch == "\\" and i + 1 < n:
            out.append(text[i : i + 2])
            i += 2
            continue
        if ch == "`":
            j = i
            while j < n and text[j] == "`":
                j += 1
            run = j - i
            m = re.compile("(?<!`)" + "`" * run + "(?!`)").search(text, j)
            if m:
                i = m.end()
                continue
            out.append(text[i:j])
            i = j
            continue
        out.append(ch)
        i += 1
    return "".join(out)


def _walk(node):
    yield node
    for child in getattr(node, "children", {}).values():
        yield from _walk(child)


MARKDOWN_BODIES = {"markdown", "caption", "title", "header", "subheader", "error", "warning", "info", "success"}


def rendered_markdown(at: AppTest) -> list[tuple[str, str]]:
    """(element type, text) of every string the page renders as Markdown."""
    found = []
    for node in _walk(at._tree):
        kind = getattr(node, "type", "")
        proto = getattr(node, "proto", None)
        if kind in MARKDOWN_BODIES:
            found.append((kind, str(node.value)))
        label = getattr(node, "label", None)
        if isinstance(label, str):
            found.append((f"{kind} label", label))
        help_text = getattr(proto, "help", None) if proto is not None else None
        if isinstance(help_text, str) and help_text:
            found.append((f"{kind} help", help_text))
        if kind == "radio":
            found += [("radio option", str(o)) for o in node.options]
    return found


def unescaped(at: AppTest) -> list[tuple[str, str]]:
    bad = []
    for kind, text in rendered_markdown(at):
        plain = strip_code_spans(text)
        if NEEDLES.search(plain):
            bad.append((kind, text[:300]))
    return bad


def test_the_checker_sees_raw_and_broken_out_syntax():
    from dashboard.presenters.text import md, md_code, md_escape

    assert NEEDLES.search(strip_code_spans(PAYLOAD))  # the payload's backticks do not hide it
    assert NEEDLES.search(strip_code_spans(f"`{PAYLOAD}`"))  # breaks out of a naive code span
    for safe in (md_escape(PAYLOAD), md_code(PAYLOAD), md("**{}** · {}", PAYLOAD, md_code(PAYLOAD))):
        assert not NEEDLES.search(strip_code_spans(safe)), safe


# --- the pages ----------------------------------------------------------------------------------------------------


def _ok(at: AppTest) -> None:
    assert not at.exception, at.exception
    assert not unescaped(at), unescaped(at)


def test_products_page_escapes_kb_text(app):
    at = app("dashboard/views/products.py")  # the most connected products: titles in button labels
    _ok(at)
    assert any("Hat" in b.label for b in at.button)
    at = app("dashboard/views/products.py", asin="H000000001")
    _ok(at)
    assert any("filter's reason" in e.label for e in at.expander)  # the reasons are shown
    at.text_input(key="product_query").input(f"nothing {PAYLOAD}").run()
    _ok(at)
    at = app("dashboard/views/products.py", asin=PAYLOAD)  # a crafted deep link
    _ok(at)
    assert at.warning


def test_search_page_escapes_kb_and_query_text(app):
    at = app("dashboard/views/search.py")
    at.radio(key="mode").set_value("keyword")
    at.text_input(key="query").input("hostile").run()
    _ok(at)
    assert len(at.dataframe) == 1
    at.text_input(key="query").input(f"zzzunknown {PAYLOAD}").run()
    _ok(at)


def test_categories_and_thresholds_pages_escape_kb_text(app):
    _ok(app("dashboard/views/categories.py"))
    _ok(app("dashboard/views/thresholds.py"))


def test_intentionqa_page_escapes_question_kb_and_model_text(app, fake_openai):
    fake_openai.set(mcq_answer=PAYLOAD)
    at = app("dashboard/views/intentionqa.py")
    at.radio(key="iqa_backend").set_value("openai").run()
    at.text_input(key="iqa_endpoint").set_value(fake_openai.url)
    at.selectbox(key="iqa_file").set_value(next(o for o in at.selectbox(key="iqa_file").options if "hostile" in o))
    at.multiselect(key="iqa_methods").set_value(["overlap", "embed+kb", "lvlm"])
    at.number_input(key="iqa_n").set_value(5)
    at.button[0].click().run()
    _ok(at)
    assert "Full text of the retrieved intentions" in [e.label for e in at.expander]
    assert any("answered" in c.value for c in at.caption)  # the model's raw answer is shown
    # a typed path that is no file, and a file whose content is not a question
    at.text_input(key="iqa_file_typed").set_value(f"/nonexistent/{PAYLOAD}")
    at.button[0].click().run()
    _ok(at)
    assert at.error


def test_try_page_escapes_kb_text(app):
    at = app("dashboard/views/try_product.py")
    at.radio(key="try_A_source").set_value("From the KB").run()
    label = next(o for o in at.selectbox(key="try_A_pick").options if o.endswith("H000000001"))
    at.selectbox(key="try_A_pick").set_value(label).run()
    _ok(at)
    assert any("described by a model" in c.value for c in at.caption)


def test_review_page_escapes_kb_text_and_the_annotator_name(app):
    at = app("dashboard/views/review.py")
    at.text_input(key="review_annotator").set_value(f"ann {PAYLOAD}"[:60]).run()
    _ok(at)
    assert any(m.value.startswith("#### ") for m in at.markdown)  # an intention card is shown
    at.text_input(key="review_comment").set_value(PAYLOAD).run()
    at.button(key="review_t3").click().run()
    _ok(at)
    at.button(key="review_undo").click().run()
    _ok(at)
    at.button(key="review_no").click().run()
    at.radio(key="review_mode").set_value("Results").run()
    _ok(at)
    assert at.dataframe


def test_sidebar_escapes_a_typed_kb_path(app):
    at = app("dashboard/views/home.py")
    at.text_input(key="kb_typed").input(f"/nonexistent/{PAYLOAD}").run()
    _ok(at)
    assert at.error


def test_plotly_labels_from_kb_text_are_escaped():
    """plotly renders ``<a href>`` / ``<b>`` in tick, legend and hover labels: KB categories and question-file
    relations reach them only escaped, and a heatmap cell still selects the rows of its raw category."""
    import pandas as pd

    from dashboard.presenters import charts
    from dashboard.presenters.intentionqa import fig_by_group
    from dashboard.presenters.threshold_charts import fig_kept_grouped

    link = '<a href="http://evil">Home</a>'
    table = pd.DataFrame({"usedFor": [3, 1]}, index=[link, "plain"])
    heat = charts.fig_heatmap(table)
    shown = list(heat.layout.yaxis.ticktext) + [str(c) for row in heat.data[0].customdata for c in row]
    assert (
        shown and not any("<a " in s for s in shown) and "&lt;a href=&quot;http://evil&quot;&gt;Home&lt;/a&gt;" in shown
    )
    df = pd.DataFrame({"relation": ["usedFor", "usedFor"], "verdict": ["yes", "no"], "category": [link, "plain"]})
    assert charts.rows_for_selection(df, "heatmap", [{"x": "usedFor", "y": link}]).tolist() == [0]

    kept = pd.DataFrame({"group": [link], "rows": [2], "kept": [1], "yes": [1], "kept_rate": [0.5]})
    bars = fig_kept_grouped(kept, kept, "category")
    assert all("<a " not in str(x) for trace in bars.data for x in trace.x)
    run = {"result": {"per_relation": {link: {"accuracy": 0.5, "n": 2, "ci95": [0.1, 0.9]}}}}
    grouped = fig_by_group({"overlap": run}, "per_relation", "relation")
    assert all("<a " not in str(x) for trace in grouped.data for x in trace.x)
