"""The review database: one row per (KB, intention, annotator), in SQLite by default or any SQLAlchemy database.

``MIND_REVIEW_DB`` (:attr:`mind_core.config.Settings.review_db_url`) chooses it: an SQLAlchemy URL such as
``postgresql+psycopg://host/reviews`` for a team, or an SQLite file (default ``<MIND_USER_DATA>/review.sqlite``).

SQLite is opened in WAL mode (readers never block the writer), with a 30-second busy timeout and every write
transaction started with ``BEGIN IMMEDIATE``, so writers from several processes (two annotators, a page and a
``review import``) queue for the write lock instead of failing; a write that still meets a locked database is
retried. Writes are upserts on the unique key ``(kb_id, intention_id, annotator)``: answering again replaces the
row, and no answer is ever lost to another writer.

A KB is identified by its folder name (``kb_id``, e.g. ``sample``): intention ids are stable across rebuilds of the
same input, so answers survive ``build-kb --force`` and travel with the KB's name to another machine.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, TypeVar

import pandas as pd
from sqlalchemy import (
    CheckConstraint,
    Column,
    Engine,
    Index,
    Integer,
    MetaData,
    SmallInteger,
    String,
    Table,
    Text,
    UniqueConstraint,
    create_engine,
    delete,
    event,
    func,
    select,
)
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, OperationalError
from sqlalchemy.exc import NoSuchModuleError as _NoDriver

from mind_core.review.protocol import ANSWER_COLUMNS, Answer

log = logging.getLogger(__name__)

SQLITE_BUSY_TIMEOUT_MS = 30_000
WRITE_RETRIES = 5
_WRITE_OPTION = "review_write"
_KEY = ("kb_id", "intention_id", "annotator")
_VALUES = ("plausibility", "typicality", "comment", "created_at")

metadata = MetaData()
answers_table = Table(
    "review_answers",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("kb_id", String(200), nullable=False),
    Column("intention_id", String(200), nullable=False),
    Column("annotator", String(64), nullable=False),
    Column("plausibility", SmallInteger, nullable=False),
    Column("typicality", SmallInteger, nullable=True),
    Column("comment", Text, nullable=True),
    Column("created_at", String(40), nullable=False),
    UniqueConstraint(*_KEY, name="uq_review_answer"),
    CheckConstraint("plausibility IN (0, 1)", name="ck_review_plausibility"),
    CheckConstraint("typicality IS NULL OR (typicality BETWEEN 1 AND 5)", name="ck_review_typicality"),
)
Index("ix_review_kb_annotator", answers_table.c.kb_id, answers_table.c.annotator)

T = TypeVar("T")


class ReviewDBError(RuntimeError):
    """The review database cannot be opened or written (a bad URL, a missing driver, a folder not writable)."""


def kb_id_of(kb_or_path: Any) -> str:
    """The id answers are stored under: the KB folder's name."""
    path = getattr(kb_or_path, "path", kb_or_path)
    return Path(path).expanduser().resolve().name


def safe_url(url: str) -> str:
    """``url`` with any password hidden (for messages and the page)."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return "<unreadable database URL>"


def _sqlite_pragmas(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection, _record):  # pragma: no cover - exercised through every sqlite test
        dbapi_connection.isolation_level = None  # SQLAlchemy emits BEGIN itself (below)
        cur = dbapi_connection.cursor()
        cur.execute(f"PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}")
        cur.execute("PRAGMA journal_mode = WAL")
        cur.execute("PRAGMA synchronous = NORMAL")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn):  # a write takes the write lock at once: two writers queue instead of deadlocking
        conn.exec_driver_sql("BEGIN IMMEDIATE" if conn.get_execution_options().get(_WRITE_OPTION) else "BEGIN")


def _locked(err: OperationalError) -> bool:
    text = str(err.orig if err.orig is not None else err).lower()
    return "locked" in text or "busy" in text


class ReviewStore:
    """Answers in a database (see the module docstring). Thread-safe: every call takes its own connection."""

    def __init__(self, url: str):
        self.url = url
        try:
            parsed = make_url(url)
        except ArgumentError:
            raise ReviewDBError(f"MIND_REVIEW_DB: {url!r} is not a database URL or an SQLite file path") from None
        self.dialect = parsed.get_backend_name()
        if self.dialect == "sqlite" and parsed.database and parsed.database != ":memory:":
            folder = Path(parsed.database).expanduser().parent
            try:
                folder.mkdir(parents=True, exist_ok=True)
            except OSError as err:
                raise ReviewDBError(f"review database folder {folder}: {err.strerror or err}") from None
        try:
            self.engine = create_engine(url, pool_pre_ping=self.dialect != "sqlite")
        except (_NoDriver, ImportError) as err:
            raise ReviewDBError(f"review database {safe_url(url)}: no driver installed ({err})") from None
        if self.dialect == "sqlite":
            _sqlite_pragmas(self.engine)
        try:
            self._write(lambda conn: metadata.create_all(conn))
        except OperationalError as err:
            raise ReviewDBError(f"review database {safe_url(url)}: {err.orig or err}") from None

    def __repr__(self) -> str:
        return f"ReviewStore({safe_url(self.url)})"

    def describe(self) -> str:
        return safe_url(self.url)

    def close(self) -> None:
        self.engine.dispose()

    # -- writing
    def _write(self, work: Callable[[Any], T]) -> T:
        """Run ``work(connection)`` in one write transaction, retried when the database stays locked."""
        for attempt in range(WRITE_RETRIES):
            try:
                with self.engine.connect() as conn:
                    conn = conn.execution_options(**{_WRITE_OPTION: True})
                    with conn.begin():
                        return work(conn)
            except OperationalError as err:
                if not _locked(err) or attempt == WRITE_RETRIES - 1:
                    raise
                log.info("review database busy, retrying (%d/%d)", attempt + 1, WRITE_RETRIES)
                time.sleep(0.05 * 2**attempt)
        raise AssertionError("unreachable")

    def _upsert(self, conn, rows: list[dict]) -> None:
        if not rows:
            return
        table = answers_table
        if self.dialect in ("sqlite", "postgresql"):
            if self.dialect == "sqlite":
                from sqlalchemy.dialects.sqlite import insert
            else:
                from sqlalchemy.dialects.postgresql import insert
            stmt = insert(table)
            stmt = stmt.on_conflict_do_update(
                index_elements=[table.c[k] for k in _KEY], set_={k: stmt.excluded[k] for k in _VALUES}
            )
            conn.execute(stmt, rows)
            return
        for row in rows:  # any other database: replace inside the same transaction
            conn.execute(delete(table).where(*(table.c[k] == row[k] for k in _KEY)))
        conn.execute(table.insert(), rows)

    def put(self, kb_id: str, answers: Iterable[Answer]) -> int:
        """Store ``answers`` for ``kb_id`` in one transaction (all or none); an existing (intention, annotator)
        row is replaced. Returns the number of answers written."""
        rows = [{"kb_id": kb_id, **a.as_row()} for a in answers]
        self._write(lambda conn: self._upsert(conn, rows))
        return len(rows)

    def undo_last(self, kb_id: str, annotator: str) -> dict | None:
        """Delete ``annotator``'s latest answer on ``kb_id`` and return it (None when there is none). The
        intention is then offered again."""
        t = answers_table

        def work(conn):
            row = (
                conn.execute(
                    select(t)
                    .where(t.c.kb_id == kb_id, t.c.annotator == annotator)
                    .order_by(t.c.created_at.desc(), t.c.id.desc())
                    .limit(1)
                )
                .mappings()
                .first()
            )
            if row is None:
                return None
            conn.execute(delete(t).where(t.c.id == row["id"]))
            return {c: row[c] for c in ANSWER_COLUMNS}

        return self._write(work)

    # -- reading
    def answers(self, kb_id: str, annotator: str | None = None) -> pd.DataFrame:
        """The answers on ``kb_id`` (of one annotator, if given): :data:`ANSWER_COLUMNS`, ordered by time, then
        intention and annotator; ``typicality`` is a nullable integer column."""
        t = answers_table
        query = select(*(t.c[c] for c in ANSWER_COLUMNS)).where(t.c.kb_id == kb_id)
        if annotator is not None:
            query = query.where(t.c.annotator == annotator)
        query = query.order_by(t.c.created_at, t.c.intention_id, t.c.annotator)
        with self.engine.connect() as conn:
            rows = conn.execute(query).all()
        df = pd.DataFrame(rows, columns=list(ANSWER_COLUMNS))
        df["plausibility"] = df["plausibility"].astype("int64")
        df["typicality"] = pd.array(df["typicality"].tolist(), dtype="Int64")
        for col in ("intention_id", "annotator", "comment", "created_at"):
            df[col] = df[col].astype(object)
        return df

    def rated_ids(self, kb_id: str, annotator: str) -> set[str]:
        t = answers_table
        with self.engine.connect() as conn:
            return set(
                conn.execute(select(t.c.intention_id).where(t.c.kb_id == kb_id, t.c.annotator == annotator)).scalars()
            )

    def count(self, kb_id: str, annotator: str | None = None) -> int:
        t = answers_table
        query = select(func.count()).select_from(t).where(t.c.kb_id == kb_id)
        if annotator is not None:
            query = query.where(t.c.annotator == annotator)
        with self.engine.connect() as conn:
            return int(conn.execute(query).scalar_one())

    def signature(self, kb_id: str) -> tuple[int, str | None, int]:
        """(number of answers, latest answer time, sum of row ids) on ``kb_id``: changes whenever an answer is
        written or undone (a key for caches of what is computed from the answers)."""
        t = answers_table
        with self.engine.connect() as conn:
            n, latest, ids = conn.execute(
                select(func.count(), func.max(t.c.created_at), func.sum(t.c.id)).where(t.c.kb_id == kb_id)
            ).one()
        return int(n), latest, int(ids or 0)

    def annotators(self, kb_id: str) -> dict[str, int]:
        """Annotator name -> number of answers on ``kb_id``."""
        t = answers_table
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(t.c.annotator, func.count()).where(t.c.kb_id == kb_id).group_by(t.c.annotator)
            ).all()
        return {name: int(n) for name, n in sorted(rows)}

    def journal_mode(self) -> str | None:
        """SQLite's journal mode (``wal``); None for other databases."""
        if self.dialect != "sqlite":
            return None
        with self.engine.connect() as conn:
            return str(conn.exec_driver_sql("PRAGMA journal_mode").scalar_one()).lower()


_stores: dict[str, ReviewStore] = {}


def open_store(url: str) -> ReviewStore:
    """The :class:`ReviewStore` for ``url``, one per URL and process (its engine holds the connection pool)."""
    store = _stores.get(url)
    if store is None:
        store = _stores[url] = ReviewStore(url)
    return store
