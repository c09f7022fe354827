"""Loader validation: every bad-input case names file, line and field; --skip-bad counts instead."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest

from mind_core.data.kb_files import load_inputs
from mind_core.schema import RELATION_PHRASES, RELATIONS, ValidationError, parse_relations, relation_phrase

SAMPLE = Path(__file__).resolve().parents[2] / "data" / "mind_sample"


def good_row(i: int = 0, **over) -> dict:
    row = {
        "id": f"t-{i}",
        "category": "clothing",
        "relation": "usedFor",
        "product_a": {
            "asin": f"A{i}",
            "title": "Hiking boots",
            "description": "Sturdy boots.",
            "image_urls": ["http://x/a.jpg"],
            "category": "Clothing",
        },
        "product_b": {
            "asin": f"B{i}",
            "title": "Wool socks",
            "description": "Warm socks.",
            "image_urls": [],
            "category": "Clothing",
        },
        "intention": "The potential co-buy intention could be they are both used for hiking.",
        "tail": None,
        "filter_verdict": "yes",
        "filter_reason": "Yes, they go together.",
    }
    row.update(over)
    return row


def write_jsonl(path: Path, rows: list) -> Path:
    path.write_text("\n".join(r if isinstance(r, str) else json.dumps(r) for r in rows) + "\n", encoding="utf-8")
    return path


def test_relation_table_has_the_20_keys():
    assert len(RELATIONS) == 20
    assert "propertOf" in RELATIONS and "propertyOf" in RELATIONS and "causeDesire" not in RELATIONS
    assert relation_phrase("open") == "" and RELATION_PHRASES["usedFor"] == "they are both used for"
    assert relation_phrase("causeDesire") == "the person wants his"
    assert parse_relations("all") == list(RELATIONS)
    assert parse_relations("usedFor, isA,usedFor") == ["usedFor", "isA"]
    with pytest.raises(ValueError, match="unknown relation 'usedfor'"):
        parse_relations("usedfor")


def test_vendored_sample_loads_with_readme_counts():
    loaded = load_inputs([SAMPLE])
    assert loaded.report.intentions == 3397 and loaded.report.products == 5472 and loaded.report.skipped == 0
    rows = loaded.intentions
    assert sum(r["verdict"] == "yes" for r in rows) == 1487
    assert len({r["pair_id"] for r in rows}) == 2974
    assert sum(r["category"] == "clothing" for r in rows) == 2073
    assert all(r["source"] == "mind-sample" for r in rows)


def test_flat_kb_rows_and_gz(tmp_path):
    row = {
        "intention_id": "x1",
        "asin_a": "A",
        "asin_b": "B",
        "relation": "isA",
        "intention": "they both are a type of hat",
        "verdict": None,
        "p_yes": 0.25,
        "source": "distilled:openai:m",
    }
    with gzip.open(tmp_path / "rows.jsonl.gz", "wt") as fh:
        fh.write(json.dumps(row) + "\n")
    loaded = load_inputs([tmp_path / "rows.jsonl.gz"])
    assert loaded.intentions[0]["p_yes"] == 0.25 and loaded.intentions[0]["pair_id"] == "A|B"
    assert set(loaded.products) == {"A", "B"}  # referenced products get a stub row, not a silent drop


@pytest.mark.parametrize(
    "bad, line, field, message",
    [
        ("{not json", 2, None, "invalid JSON"),
        (good_row(1, relation="wantsTo"), 2, "relation", "unknown relation 'wantsTo'"),
        ({k: v for k, v in good_row(1).items() if k != "intention"}, 2, "intention", "missing required field"),
        (good_row(1, intention=42), 2, "intention", "expected str, got int"),
        (good_row(1, filter_verdict="maybe"), 2, "filter_verdict", "must be 'yes', 'no' or null"),
        (good_row(1, product_b={"title": "no asin"}), 2, "product_b.asin", "missing required field"),
        (
            good_row(1, product_a={"asin": "A1", "title": "t", "image_urls": "http://x"}),
            2,
            "product_a.image_urls",
            "expected list",
        ),
        (good_row(0), 2, "intention_id", "duplicate intention id"),
        ([1, 2], 2, None, "expected a JSON object"),
    ],
)
def test_bad_rows_name_file_line_field(tmp_path, bad, line, field, message):
    path = write_jsonl(tmp_path / "intentions.jsonl", [good_row(0), bad, good_row(2)])
    with pytest.raises(ValidationError) as exc:
        load_inputs([tmp_path])
    err = exc.value
    assert err.path == str(path) and err.line == line and err.field == field
    assert message in str(err) and f"{path}:{line}" in str(err)
    # --skip-bad: the bad row is skipped and counted, the good ones stay
    loaded = load_inputs([tmp_path], skip_bad=True)
    assert loaded.report.skipped == 1 and loaded.report.intentions == 2
    assert message in loaded.report.errors[0]


def test_missing_input_and_empty_folder(tmp_path):
    with pytest.raises(ValidationError, match="input does not exist"):
        load_inputs([tmp_path / "nope"])
    with pytest.raises(ValidationError, match="no .jsonl"):
        load_inputs([tmp_path])
    (tmp_path / "x.tsv").write_text("a\tb\n")
    with pytest.raises(ValidationError, match="unsupported file type"):
        load_inputs([tmp_path / "x.tsv"])
    (tmp_path / "x.csv").write_text("a,b\n")
    with pytest.raises(ValidationError, match=r"x.csv:1: unknown CSV layout: columns seen \['a', 'b'\]"):
        load_inputs([tmp_path / "x.csv"])


def test_bad_product_file_and_parquet(tmp_path):
    write_jsonl(tmp_path / "intentions.jsonl", [good_row(0)])
    write_jsonl(tmp_path / "products.jsonl", [{"asin": "A0", "title": 5}])
    with pytest.raises(ValidationError) as exc:
        load_inputs([tmp_path])
    assert exc.value.field == "title" and exc.value.line == 1 and "products.jsonl" in exc.value.path
    (tmp_path / "products.jsonl").unlink()
    (tmp_path / "broken.parquet").write_bytes(b"PAR1 not really")
    with pytest.raises(ValidationError, match="not a readable Parquet file"):
        load_inputs([tmp_path])


def test_truncated_gzip_is_reported(tmp_path):
    data = gzip.compress(("\n".join(json.dumps(good_row(i)) for i in range(50)) + "\n").encode())
    (tmp_path / "intentions.jsonl.gz").write_bytes(data[: len(data) // 2])
    with pytest.raises(ValidationError, match="unreadable after line"):
        load_inputs([tmp_path])


@pytest.mark.parametrize(
    ("text", "body"),
    [
        ("The potential co-buy intention for these two products could be that the buyer hikes.", "The buyer hikes."),
        ("The potential co-buy intention could be they are both used for hiking.", "They are both used for hiking."),
        (
            "The potential co-buy intention for people purchasing the Cisco SG200 Switch and the Tripp Lite Patch "
            "Panel simultaneously could be to build a rack.",
            "To build a rack.",
        ),
        (
            "The potential co-buy intention for these two products is that they are both dancewear.",
            "They are both dancewear.",
        ),
        (
            "The potential co-buy intention for these two products, the A and the B, could be for camping.",
            "For camping.",
        ),
        ("**The potential co-buy intention could be** that it rains.", "It rains."),
        ("They are both used for hiking.", "They are both used for hiking."),  # no opening: unchanged
        ("The potential co-buy intention could be", "The potential co-buy intention could be"),  # nothing after it
        ("", ""),
    ],
)
def test_intention_body_strips_minds_opening(text, body):
    from mind_core.schema import intention_body

    assert intention_body(text) == body


def test_intention_body_of_the_whole_sample():
    from mind_core.schema import intention_body

    rows = [json.loads(line) for line in (SAMPLE / "intentions.jsonl").read_text(encoding="utf-8").splitlines()]
    bodies = [intention_body(r["intention"]) for r in rows]
    assert sum(b != r["intention"] for b, r in zip(bodies, rows)) == len(rows)  # every sample row has the opening
    assert not any("co-buy intention" in b[:60].lower() for b in bodies)
    assert all(b[:1].isupper() or not b[:1].isalpha() for b in bodies)
