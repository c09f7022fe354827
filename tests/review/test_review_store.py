"""mind_core.review.store: one row per (KB, intention, annotator), upsert, undo, WAL, and no answer lost when
several processes write into one SQLite file at the same moment."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pandas as pd
import pytest

from mind_core.config import Settings
from mind_core.review.protocol import AnswerError, check_answer
from mind_core.review.store import ReviewDBError, ReviewStore, kb_id_of, safe_url

REPO = Path(__file__).resolve().parents[2]


def _a(iid: str, who: str, p: int, t: int | None = None, *, at: str, comment: str | None = None):
    return check_answer(iid, who, p, t, comment, at, now="unused")


@pytest.fixture()
def store(tmp_path):
    s = ReviewStore(f"sqlite:///{tmp_path / 'review.sqlite'}")
    yield s
    s.close()


def test_sqlite_is_in_wal_mode_and_answering_again_replaces(store):
    assert store.journal_mode() == "wal"
    store.put("kb", [_a("i1", "ann", 1, 4, at="2026-01-01T00:00:00.000Z")])
    store.put("kb", [_a("i1", "bob", 1, 2, at="2026-01-01T00:00:01.000Z")])
    store.put("kb", [_a("i1", "ann", 0, None, at="2026-01-01T00:00:02.000Z", comment="on second thought")])
    df = store.answers("kb")
    assert len(df) == 2 and store.count("kb") == 2
    ann = df[df["annotator"] == "ann"].iloc[0]
    assert ann["plausibility"] == 0 and pd.isna(ann["typicality"]) and ann["comment"] == "on second thought"
    assert ann["created_at"] == "2026-01-01T00:00:02.000Z"
    assert store.rated_ids("kb", "ann") == {"i1"} and store.rated_ids("other-kb", "ann") == set()
    assert store.annotators("kb") == {"ann": 1, "bob": 1}


def test_undo_removes_the_latest_answer_of_that_annotator_only(store):
    store.put("kb", [_a("i1", "ann", 1, 3, at="2026-01-01T00:00:00.000Z")])
    store.put("kb", [_a("i2", "ann", 1, 5, at="2026-01-01T00:00:05.000Z")])
    store.put("kb", [_a("i3", "bob", 0, at="2026-01-01T00:00:09.000Z")])
    before = store.signature("kb")
    undone = store.undo_last("kb", "ann")
    assert undone["intention_id"] == "i2" and undone["typicality"] == 5
    assert store.rated_ids("kb", "ann") == {"i1"} and store.rated_ids("kb", "bob") == {"i3"}
    assert store.signature("kb") != before
    assert store.undo_last("kb", "ann")["intention_id"] == "i1"
    assert store.undo_last("kb", "ann") is None


def test_a_batch_is_all_or_nothing(store):
    good = _a("i1", "ann", 1, 3, at="2026-01-01T00:00:00.000Z")
    store.put("kb", [good])
    bad = good.__class__(**{**good.as_row(), "intention_id": "i2", "typicality": 9})  # bypasses the checks
    with pytest.raises(Exception, match="(?i)constraint"):
        store.put("kb", [_a("i3", "ann", 1, 2, at="2026-01-01T00:00:01.000Z"), bad])
    assert store.rated_ids("kb", "ann") == {"i1"}


def test_answers_are_validated():
    with pytest.raises(AnswerError, match="not 0 or 1"):
        check_answer("i", "ann", "maybe", now="t")
    with pytest.raises(AnswerError, match="1-5"):
        check_answer("i", "ann", 1, 6, now="t")
    with pytest.raises(AnswerError, match="empty"):
        check_answer("i", "  ", 1, 3, now="t")
    with pytest.raises(AnswerError, match="ISO 8601"):
        check_answer("i", "ann", 1, 3, None, "yesterday", now="t")
    a = check_answer(" i ", " ann ", "yes", "4.0", "", "", now="2026-01-01T00:00:00.000Z")
    assert (a.intention_id, a.annotator, a.plausibility, a.typicality, a.comment) == ("i", "ann", 1, 4, None)
    assert a.created_at == "2026-01-01T00:00:00.000Z"


def test_settings_choose_the_database(tmp_path):
    s = Settings.from_env({"MIND_USER_DATA": str(tmp_path / "u")})
    assert s.review_db_url == f"sqlite:///{(tmp_path / 'u' / 'review.sqlite').resolve()}"
    s = Settings.from_env({"MIND_REVIEW_DB": str(tmp_path / "team.db")})
    assert s.review_db_url == f"sqlite:///{(tmp_path / 'team.db').resolve()}"
    url = "postgresql+psycopg://reviewer:s3cret@db.example/reviews"
    s = Settings.from_env({"MIND_REVIEW_DB": url}).replace(review_db=None)
    assert s.review_db_url == url and "s3cret" not in repr(s)
    assert "s3cret" not in safe_url(url) and "db.example" in safe_url(url)
    assert Settings.from_env({}).replace(review_db=str(tmp_path / "x.sqlite")).review_db_url.endswith("x.sqlite")


def test_a_bad_database_is_a_clear_error(tmp_path):
    with pytest.raises(ReviewDBError, match="not a database URL"):
        ReviewStore("::nonsense::")
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(ReviewDBError, match="folder"):
        ReviewStore(f"sqlite:///{blocker / 'sub' / 'review.sqlite'}")


def test_kb_id_is_the_folder_name(tmp_path):
    assert kb_id_of(tmp_path / "indexes" / "sample") == "sample"


WRITER = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from mind_core.review.protocol import check_answer
    from mind_core.review.store import ReviewStore
    url, who, n, shared, go = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4] == "1", Path(sys.argv[5])
    store = ReviewStore(url)
    while not go.exists():
        time.sleep(0.001)
    for i in range(n):
        iid = f"i{i}"
        # shared: every writer answers the same intentions under one name (upserts colliding on one key)
        a = check_answer(iid, "same" if shared else who, i % 2, (i % 5) + 1 if i % 2 else None, who, None,
                         now=f"2026-01-01T00:00:{i % 60:02d}.000Z")
        store.put("kb", [a])
    print("done", who)
    """
)


@pytest.mark.parametrize("shared", [False, True], ids=["distinct-annotators", "same-keys"])
def test_concurrent_writers_in_separate_processes_lose_no_answer(tmp_path, shared):
    db = tmp_path / "review.sqlite"
    url = f"sqlite:///{db}"
    ReviewStore(url).close()  # create the schema first, as the page or the CLI would have
    go = tmp_path / "go"
    n, writers = 150, 3
    env = {"PYTHONPATH": str(REPO)}
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", WRITER, url, f"w{k}", str(n), "1" if shared else "0", str(go)],
            cwd=REPO,
            env={**os.environ, **env},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for k in range(writers)
    ]
    time.sleep(1.0)  # let every writer open its engine and wait at the line
    go.write_text("go")
    for p in procs:
        out, err = p.communicate(timeout=300)
        assert p.returncode == 0, err[-2000:]
        assert out.startswith("done")
    store = ReviewStore(url)
    if shared:
        assert store.count("kb") == n  # one row per key: the upserts replaced, none failed or duplicated
        assert store.annotators("kb") == {"same": n}
    else:
        assert store.count("kb") == n * writers  # every answer of every writer is there
        assert store.annotators("kb") == {f"w{k}": n for k in range(writers)}
