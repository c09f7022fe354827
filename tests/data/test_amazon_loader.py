"""mind_core.data.amazon: Amazon Review 2018 metadata -> products + co-buy pairs."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest

from mind_core.data.amazon import cobuy_pairs, load_amazon_metadata
from mind_core.schema import CoBuyPair, ValidationError

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"


def _line(asin, title="A product", **kw) -> str:
    return json.dumps({"asin": asin, "title": title, **kw})


def _write(tmp_path, lines, name="meta.json") -> Path:
    path = tmp_path / name
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_fixture_gz_and_plain_agree():
    gz = load_amazon_metadata(FIXTURES / "amazon_meta_sample.json.gz")
    plain = load_amazon_metadata(FIXTURES / "amazon_meta_sample.json")
    assert gz.products == plain.products and gz.pairs == plain.pairs
    assert 35 <= len(gz.products) <= 45 and 20 <= len(gz.pairs) <= 30
    assert gz.report.symmetric_links == 1 and gz.report.dangling_links == 1
    assert gz.report.skipped == 0
    ids = [p.pair_id for p in gz.pairs]
    assert len(ids) == len(set(ids))  # no symmetric duplicates
    assert all(p.asin_a in gz.products and p.asin_b in gz.products for p in gz.pairs)
    assert sum(1 for p in gz.products.values() if not p.description) == 3  # stage 1 has work


def test_fixture_is_reproducible(tmp_path):
    """The generator script writes exactly the committed bytes."""
    import shutil
    import subprocess
    import sys

    work = tmp_path / "fixtures"
    work.mkdir()
    shutil.copy(FIXTURES / "make_amazon_fixture.py", work)
    sample = next(
        (
            p
            for p in (
                FIXTURES.parents[1] / "data" / "mind_sample",
                FIXTURES.parents[2] / "shared" / "data" / "mind_sample",
            )
            if (p / "products.jsonl").exists()
        ),
        None,
    )
    if sample is None:
        pytest.skip("vendored MIND sample not found")
    subprocess.run(
        [sys.executable, str(work / "make_amazon_fixture.py"), "--sample", str(sample)], check=True, capture_output=True
    )
    for name in ("amazon_meta_sample.json", "amazon_meta_sample.json.gz"):
        assert (work / name).read_bytes() == (FIXTURES / name).read_bytes(), name


def test_product_fields(tmp_path):
    path = _write(
        tmp_path,
        [
            json.dumps(
                {
                    "asin": "A1",
                    "title": "  Red   Tent ",
                    "description": ["Sleeps two.", "", "Waterproof."],
                    "imageURL": ["http://x/small.jpg"],
                    "imageURLHighRes": ["http://x/big.jpg", "http://x/big.jpg"],
                    "also_buy": ["B1", "Z9"],
                    "category": ["Sports & Outdoors", "Camping"],
                }
            ),
            json.dumps(
                {
                    "asin": "B1",
                    "title": "Stove",
                    "imageURL": ["http://x/s.jpg"],
                    "category": [],
                    "main_cat": "Sports & Outdoors",
                    "also_buy": [],
                }
            ),
        ],
    )
    meta = load_amazon_metadata(path)
    a, b = meta.products["A1"], meta.products["B1"]
    assert a.title == "Red Tent"
    assert a.description == "Sleeps two.\nWaterproof."
    assert a.image_urls == ["http://x/big.jpg"]  # high-res preferred, repeats removed
    assert a.category == "Sports & Outdoors"
    assert b.image_urls == ["http://x/s.jpg"] and b.description == "" and b.category == "Sports & Outdoors"
    assert meta.pairs == [CoBuyPair("A1", "B1")]
    assert meta.report.dangling_links == 1


def test_pairs_symmetric_once_and_deterministic_order():
    links = [("C", "A"), ("A", "C"), ("B", "D"), ("D", "B"), ("A", "B"), ("A", "A"), ("A", "X")]
    pairs = cobuy_pairs(links, {"A", "B", "C", "D"})
    assert pairs == [CoBuyPair("A", "C"), CoBuyPair("B", "D"), CoBuyPair("A", "B")]
    # the order follows the input, the canonical direction does not depend on it
    assert cobuy_pairs(list(reversed(links)), {"A", "B", "C", "D"}) == [
        CoBuyPair("A", "B"),
        CoBuyPair("B", "D"),
        CoBuyPair("A", "C"),
    ]
    assert cobuy_pairs(links, {"A", "B", "C", "D"}) == pairs  # same input, same output


def test_one_directional_link_keeps_direction(tmp_path):
    path = _write(tmp_path, [_line("Z1", also_buy=["A1"]), _line("A1")])
    assert load_amazon_metadata(path).pairs == [CoBuyPair("Z1", "A1")]


@pytest.mark.parametrize(
    "bad, field_name, message",
    [
        ("{'asin': 'X1', 'title': 'python repr'}", None, "Python dict repr"),
        ('{"asin": "X1", "title": "cut', None, "invalid JSON"),
        ('["not", "an", "object"]', None, "expected a JSON object"),
        ('{"title": "no asin"}', "asin", "missing required field"),
        ('{"asin": "", "title": "t"}', "asin", "non-empty"),
        ('{"asin": "X1"}', "title", "missing required field"),
        ('{"asin": "X1", "title": "  "}', "title", "must not be empty"),
        ('{"asin": "X1", "title": 5}', "title", "expected str"),
        ('{"asin": "X1", "title": "t", "also_buy": "B1, B2", "description": {"a": 1}}', "description", "list"),
        ('{"asin": "X1", "title": "t", "imageURLHighRes": [1, 2]}', "imageURLHighRes", "item 0"),
    ],
)
def test_bad_lines_name_file_line_and_field(tmp_path, bad, field_name, message):
    path = _write(tmp_path, [_line("A1", also_buy=["B1"]), bad, _line("B1")])
    with pytest.raises(ValidationError) as info:
        load_amazon_metadata(path)
    err = info.value
    assert err.path == str(path) and err.line == 2 and err.field == field_name
    assert message in str(err) and f"{path}:2" in str(err)
    # with skip_bad the line is counted and the rest loads
    meta = load_amazon_metadata(path, skip_bad=True)
    assert meta.report.skipped == 1 and len(meta.report.errors) == 1
    assert set(meta.products) == {"A1", "B1"} and meta.pairs == [CoBuyPair("A1", "B1")]


def test_python_repr_is_never_evaluated(tmp_path):
    path = _write(tmp_path, ["{'asin': __import__('os').getcwd(), 'title': 'x'}", _line("A1")])
    meta = load_amazon_metadata(path, skip_bad=True)
    assert list(meta.products) == ["A1"] and meta.report.skipped == 1


def test_blank_lines_duplicates_and_gz(tmp_path):
    text = "\n".join([_line("A1", also_buy=["B1"]), "", _line("B1", title="first"), _line("B1", title="second")])
    path = tmp_path / "m.json.gz"
    with gzip.open(path, "wt", encoding="utf-8") as fh:
        fh.write(text + "\n")
    meta = load_amazon_metadata(path)
    assert meta.products["B1"].title == "first" and meta.report.duplicates == 1
    assert meta.report.lines == 3


def test_damaged_gz_and_missing_file(tmp_path):
    path = tmp_path / "bad.json.gz"
    path.write_bytes(gzip.compress((_line("A1") + "\n").encode() * 50)[:60])
    with pytest.raises(ValidationError, match="unreadable"):
        load_amazon_metadata(path)
    with pytest.raises(ValidationError, match="does not exist"):
        load_amazon_metadata(tmp_path / "none.json")
