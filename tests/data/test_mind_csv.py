"""MIND's own files: the official MIND_Distillation CSV and FolkScope's packed annotation batches, built into KBs
that match the JSONL build of the same rows; broken files give file:line: column messages; metadata join."""

from __future__ import annotations

import csv
import gzip
import json
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from mind_core.data.kb_files import load_inputs
from mind_core.data.mind_csv import PACKED_FIELDS, write_official_csv
from mind_core.kb.build import build_kb
from mind_core.schema import ValidationError

REPO = Path(__file__).resolve().parents[2]
SAMPLE = REPO / "data" / "mind_sample"
META = REPO / "tests" / "fixtures" / "amazon_meta_sample.json.gz"
COMPARED = ["asin_a", "asin_b", "relation", "intention", "verdict", "reason", "tail", "category"]


@pytest.fixture(scope="module")
def sample_rows():
    loaded = load_inputs([SAMPLE])
    return loaded.intentions, loaded.products


def _official(path: Path, rows, products, **kw) -> Path:
    write_official_csv(rows, products, path, **kw)
    return path


def _packed_from_sample(folder: Path) -> list[Path]:
    """The sample written back into FolkScope's packed layout: instance ``b<k>-<row>-<slot>`` goes to row ``row``,
    slot ``slot`` of ``crowdsourcing_integrate_4500_b<k>.csv``; slots the sample lacks stay empty."""
    by_file: dict[str, dict[tuple[int, int], dict]] = {}
    for line in (SAMPLE / "intentions.jsonl").read_text(encoding="utf-8").splitlines():
        r = json.loads(line)
        k, row, slot = r["id"].split("-")
        by_file.setdefault(k, {})[(int(row), int(slot))] = r
    header = [f"{f}_{s}" for s in ("1", "2") for f in PACKED_FIELDS]
    paths = []
    for k, cells in sorted(by_file.items()):
        path = folder / f"crowdsourcing_integrate_4500_{k}.csv"
        n_rows = max(row for row, _ in cells) + 1
        with path.open("w", encoding="utf-8", newline="") as fh:
            w = csv.writer(fh)
            w.writerow(header)
            for row in range(n_rows):
                out = []
                for slot in (1, 2):
                    r = cells.get((row, slot))
                    out += _packed_slot(r) if r else [""] * len(PACKED_FIELDS)
                w.writerow(out)
        paths.append(path)
    return paths


def _packed_slot(r: dict) -> list[str]:
    a, b = r["product_a"], r["product_b"]
    urls_a = (a["image_urls"] + ["", "", ""])[:3]
    urls_b = (b["image_urls"] + ["", "", ""])[:3]
    values = {
        "id_a": a["asin"],
        "id_b": b["asin"],
        "Product_a": a["title"],
        "Product_b": b["title"],
        "Cate": {"electronics": "elec"}.get(r["category"], r["category"]),
        "Relation": r["relation"],
        "product_a_desc": a["description"],
        "product_b_desc": b["description"],
        "Intention": r["intention"],
        "tail": r["tail"] or "",
        "Agreement": r["filter_reason"] or "",
        "item_a_img1_url": urls_a[0],
        "item_a_img2_url": urls_a[1],
        "item_a_img3_url": urls_a[2],
        "item_b_img1_url": urls_b[0],
        "item_b_img2_url": urls_b[1],
        "item_b_img3_url": urls_b[2],
        "item_a_cate": a["category"],
        "item_b_cate": b["category"],
        "item_a_link": f"https://amazon.com/dp/{a['asin']}",
        "item_b_link": f"https://amazon.com/dp/{b['asin']}",
    }
    return [values[f] for f in PACKED_FIELDS]


def _table(kb: Path):
    return pq.read_table(kb / "intentions.parquet").to_pandas()


# --- round trips: the same rows as the JSONL build -----------------------------------------------------------------


def test_official_csv_of_the_sample_builds_the_same_rows_as_the_jsonl(tmp_path, sample_rows, sample_kb_dir):
    rows, products = sample_rows
    # three portions (as `--portion` writes them), one gzipped, merged into one KB
    thirds = [rows[:1000], rows[1000:2500], rows[2500:]]
    (tmp_path / "in").mkdir()
    _official(tmp_path / "in" / "co_buy_1_3.csv", thirds[0], products)
    _official(tmp_path / "in" / "co_buy_2_3.csv.gz", thirds[1], products)
    _official(tmp_path / "in" / "co_buy_3_3.csv", thirds[2], products)
    res = build_kb([tmp_path / "in"], tmp_path / "kb", progress=False)
    assert set(res.manifest["input_layouts"].values()) == {"mind-official"}
    got, want = _table(tmp_path / "kb"), _table(sample_kb_dir)
    assert len(got) == len(want) == 3397
    assert got[COMPARED].equals(want[COMPARED])
    assert (got["verdict"] == "yes").sum() == 1487
    assert got["intention_id"].str.fullmatch(r"m-[0-9a-f]{16}(-\d+)?").all() and got["intention_id"].is_unique
    # products: titles and descriptions as in the sample (the official layout has no image URLs or categories)
    gp = pq.read_table(tmp_path / "kb" / "products.parquet").to_pandas().set_index("asin")
    wp = pq.read_table(sample_kb_dir / "products.parquet").to_pandas().set_index("asin")
    assert gp.index.equals(wp.index)
    assert gp["title"].equals(wp["title"]) and gp["description"].equals(wp["description"])
    # the counts: 7 (pair, relation) repeats in the sample (its README), 2,974 pairs
    c = res.manifest["counts"]
    assert c["pairs"] == 2974 and c["repeated_pair_relations"] == 7 and c["stub_products"] == 0


def test_official_ids_are_stable_and_repeats_are_kept(tmp_path, sample_rows):
    rows, products = sample_rows
    a = _official(tmp_path / "a.csv", rows[:50], products)
    b = _official(tmp_path / "renamed_portion.csv", rows[:50], products)
    ids_a = [r["intention_id"] for r in load_inputs([a]).intentions]
    assert ids_a == [r["intention_id"] for r in load_inputs([b]).intentions]  # same input -> same ids
    # a verbatim repeated row is kept with the next free suffix and counted as a repeated (pair, relation)
    rep = _official(tmp_path / "rep.csv", rows[:3] + rows[:1], products)
    loaded = load_inputs([rep])
    ids = [r["intention_id"] for r in loaded.intentions]
    assert ids[3] == ids[0] + "-2" and loaded.report.repeated_pair_relations == 1


def test_official_without_agreement_is_unjudged(tmp_path, sample_rows):
    rows, products = sample_rows
    src = _official(tmp_path / "full.csv", rows[:5], products, with_cate=False)
    lines = list(csv.reader(src.open(encoding="utf-8", newline="")))
    drop = lines[0].index("Agreement")
    gen = tmp_path / "co_buy_intention_w_relation_intention_1_1.csv"  # what intention_generation.py writes
    with gen.open("w", encoding="utf-8", newline="") as fh:
        csv.writer(fh).writerows([c for i, c in enumerate(line) if i != drop] for line in lines)
    loaded = load_inputs([gen])
    assert [r["verdict"] for r in loaded.intentions] == [None] * 5
    assert [r["reason"] for r in loaded.intentions] == [None] * 5
    assert loaded.intentions[0]["tail"] == rows[0]["tail"] and loaded.intentions[0]["category"] == ""


def test_packed_batches_rebuild_the_sample_exactly(tmp_path, sample_kb_dir):
    _packed_from_sample(tmp_path)
    res = build_kb([tmp_path], tmp_path / "kb", progress=False)
    assert set(res.manifest["input_layouts"].values()) == {"folkscope-packed"}
    got, want = _table(tmp_path / "kb"), _table(sample_kb_dir)
    # same ids as data/mind_sample (b<k>-<row>-<slot>), same rows in the same order
    assert got["intention_id"].tolist() == want["intention_id"].tolist()
    assert got[COMPARED].equals(want[COMPARED])
    assert res.manifest["counts"]["empty_slots"] == 4000 - 3397
    # products: image URLs of every instance united, as the sample's products.jsonl has them
    gp = pq.read_table(tmp_path / "kb" / "products.parquet").to_pandas().set_index("asin")
    wp = pq.read_table(sample_kb_dir / "products.parquet").to_pandas().set_index("asin")
    assert gp.index.equals(wp.index)
    for col in ("title", "description", "category"):
        assert gp[col].equals(wp[col]), col
    assert [list(x) for x in gp["image_urls"]] == [list(x) for x in wp["image_urls"]]


def test_shared_examples_are_detected(tmp_path):
    shipped = REPO / "tests" / "fixtures" / "mind_formats"
    official = load_inputs([shipped / "example_mind_official.csv"])
    packed = load_inputs([shipped / "example_folkscope_packed.csv"])
    assert list(official.report.layouts.values()) == ["mind-official"]
    assert list(packed.report.layouts.values()) == ["folkscope-packed"]
    keys = ["asin_a", "asin_b", "relation", "intention", "verdict", "reason", "tail"]
    assert [{k: r[k] for k in keys} for r in official.intentions] == [
        {k: r[k] for k in keys} for r in packed.intentions
    ]
    assert official.intentions[0]["tail"].startswith("PersonX bought a product of Item A")


# --- broken files ---------------------------------------------------------------------------------------------


def _write(path: Path, text: str | bytes) -> Path:
    if isinstance(text, str):
        text = text.encode("utf-8")
    path.write_bytes(gzip.compress(text) if path.name.endswith(".gz") else text)
    return path


HEADER = "id_a,id_b,Product_a,Product_b,Relation,Intention,product_a_desc,product_b_desc,Agreement,tail\n"


def _rec(i: int, relation: str = "usedFor", intention: str | None = None, id_a: str | None = None) -> str:
    intention = intention or f'"The potential co-buy intention could be that, for ""hiking"" {i},\nthey match."'
    ids = f"{id_a or f'A{i:04d}'},B{i:04d}"
    return f'{ids},Boots {i},Socks {i},{relation},{intention},"desc a\nline 2",desc b,"Yes, ok",t\n'


# every record of _rec spans 3 physical lines (quoted newlines): the header is line 1, records start at 2, 5, 8
@pytest.mark.parametrize(
    ("name", "body", "line", "column", "message"),
    [
        ("relation.csv", HEADER + _rec(0) + _rec(1, relation="usedfor") + _rec(2), 5, "Relation", "unknown relation"),
        ("asin.csv", HEADER + _rec(0) + _rec(1, id_a='"Hiking boots"') + _rec(2), 5, "id_a", "expected an ASIN"),
        ("shifted.csv", HEADER + _rec(0) + _rec(1, id_a="Hiking boots, brown") + _rec(2), 5, None, "11 cells"),
        ("cells.csv", HEADER + _rec(0) + "A1,B1,x,y\n" + _rec(2), 5, None, "4 cells, the header has 10"),
        (
            "quote.csv",
            HEADER + _rec(0) + _rec(1) + 'A9,B9,x,y,usedFor,"never closed,d,d,Yes,t\n',
            8,
            None,
            "unterminated",
        ),
        ("bytes.csv", None, 5, "Product_a", "not UTF-8 text: byte 0xff"),
        (
            "long.csv",
            HEADER + _rec(0) + _rec(1, intention="x" * 2000) + _rec(2),
            5,
            "Intention",
            "over the limit of 1000",
        ),
    ],
)
def test_broken_official_rows_name_file_line_column(tmp_path, name, body, line, column, message):
    if body is None:  # a byte that is not UTF-8 in one record
        body = (HEADER + _rec(0)).encode() + b"A1,B1,Boots \xff,Socks,usedFor,text,d,d,Yes,t\n" + _rec(2).encode()
    path = _write(tmp_path / name, body)
    with pytest.raises(ValidationError) as exc:
        load_inputs([path], max_field_chars=1000)
    err = exc.value
    assert err.path == str(path) and err.line == line, str(err)
    assert message in str(err)
    if column:
        assert f"{path}:{line}: column {column!r}: " in str(err)
    # --skip-bad: skipped and counted; the good rows stay
    loaded = load_inputs([path], skip_bad=True, max_field_chars=1000)
    assert loaded.report.skipped == 1 and message in loaded.report.errors[0]
    assert len(loaded.intentions) == 2 and loaded.intentions[0]["asin_a"] == "A0000"


def test_unknown_header_lists_the_known_layouts(tmp_path):
    path = _write(tmp_path / "x.csv", "id_a,id_b,Product_a,Relation,Intention\nA,B,t,usedFor,x\n")
    with pytest.raises(ValidationError) as exc:
        load_inputs([path])
    text = str(exc.value)
    assert f"{path}:1: unknown CSV layout" in text and "columns seen ['id_a', 'id_b', 'Product_a'" in text
    assert "mind-official" in text and "folkscope-packed" in text and "'Product_b'" in text


def test_truncated_gzip_csv_stops_with_a_clear_error(tmp_path, sample_rows):
    rows, products = sample_rows
    data = _official(tmp_path / "full.csv.gz", rows[:400], products).read_bytes()
    cut = tmp_path / "part.csv.gz"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(ValidationError, match=r"part.csv.gz: unreadable after line \d+ \(a damaged or truncated"):
        load_inputs([cut], skip_bad=True)  # a cut file is never built silently, even with --skip-bad


def test_non_utf8_jsonl_row_is_skipped_on_its_own_line(tmp_path):
    good = json.dumps(json.loads((SAMPLE / "intentions.jsonl").open(encoding="utf-8").readline()))
    rows = [good.replace('"b1-000-2"', f'"x-{i}"') for i in range(150)]
    data = "\n".join(rows).encode("utf-8").split(b"\n")
    data[149] = data[149].replace(b"Aviator", b"Avi\xe4tor", 1)  # line 150
    path = tmp_path / "intentions.jsonl"
    path.write_bytes(b"\n".join(data) + b"\n")
    with pytest.raises(ValidationError) as exc:
        load_inputs([path])
    assert exc.value.line == 150 and "not UTF-8 text: byte 0xe4" in str(exc.value)
    loaded = load_inputs([path], skip_bad=True)
    assert loaded.report.skipped == 1 and len(loaded.intentions) == 149


# --- metadata join --------------------------------------------------------------------------------------------


def test_metadata_fills_images_and_categories_and_counts_the_rest(tmp_path, sample_rows):
    rows, products = sample_rows
    src = _official(tmp_path / "in.csv", rows[:40], products)
    plain = build_kb([src], tmp_path / "kb0", progress=False)
    assert plain.manifest["metadata_join"] is None
    res = build_kb([src], tmp_path / "kb", metadata=META, progress=False)
    meta = res.manifest["metadata_join"]
    prods = pq.read_table(tmp_path / "kb" / "products.parquet").to_pandas().set_index("asin")
    with gzip.open(META, "rt", encoding="utf-8") as fh:
        in_meta = {json.loads(line)["asin"] for line in fh if line.startswith('{"')}
    found = [a for a in prods.index if a in in_meta]
    assert meta["products_found"] == len(found) > 5
    assert meta["products_not_in_metadata"] == len(prods) - len(found) > 0  # counted, not dropped
    assert len(prods) == plain.manifest["counts"]["products"]
    assert all(len(prods.loc[a, "image_urls"]) > 0 for a in found)
    assert all(prods.loc[a, "category"] for a in found)
    assert all(len(prods.loc[a, "image_urls"]) == 0 for a in prods.index if a not in in_meta)
    assert meta["filled"]["image_urls"] == len(found) and meta["filled"]["title"] == 0  # titles were there
    # a changed metadata option rebuilds, with the reason
    assert build_kb([src], tmp_path / "kb", progress=False).reason.startswith("metadata changed")


# --- CLI ------------------------------------------------------------------------------------------------------


def test_cli_build_kb_from_official_csv_and_a_clear_error(tmp_path, sample_rows):
    rows, products = sample_rows
    src = _official(tmp_path / "mind.csv.gz", rows[:30], products)
    cmd = [sys.executable, "-m", "mind_core", "build-kb", "--input", str(src), "--out", str(tmp_path / "kb")]
    ok = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert ok.returncode == 0, ok.stderr
    assert "30 intentions" in ok.stdout and "input layout detected: mind-official" in ok.stdout
    bad = _write(tmp_path / "bad.csv", HEADER + _rec(0) + _rec(1, relation="usedfor"))
    cmd[5] = str(bad)
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert res.returncode == 2 and "Traceback" not in res.stderr
    assert f"{bad}:5: column 'Relation': unknown relation 'usedfor'" in res.stderr
    # the failed build left the previous KB as it was
    assert (tmp_path / "kb" / "manifest.json").exists()
