"""The reader study's SQLite database (WAL mode): items with their key, readers, answers.

Tokens are stored only as SHA-256 hashes, so a copied database does not carry working invite
links. Each answer is one INSERT committed at once (synchronous=FULL): a server killed after
replying has the answer on disk. (reader, item) is the primary key of an answer and a repeat
is ignored, so a double submit is idempotent and the first answer stands. Which items were
served to which reader is kept too: an answer counts only for an item the reader was shown.
"""

from __future__ import annotations

import hashlib
import secrets
import sqlite3
import time
from pathlib import Path

import numpy as np

from dermsynth.errors import DataError

DB_NAME = "study.sqlite"
ANSWERS = {"single": ("real", "synthetic"), "attention": ("real", "synthetic"), "pair": ("left", "right")}

SCHEMA = """
CREATE TABLE IF NOT EXISTS items (item_id TEXT PRIMARY KEY, task TEXT NOT NULL, truth TEXT NOT NULL,
    image_a TEXT NOT NULL UNIQUE, image_b TEXT UNIQUE, label TEXT, method TEXT, skin_group TEXT,
    source_id TEXT, ref_id TEXT, native_size INTEGER);
CREATE TABLE IF NOT EXISTS readers (reader_id INTEGER PRIMARY KEY AUTOINCREMENT, name TEXT NOT NULL UNIQUE,
    token_hash TEXT NOT NULL UNIQUE, order_seed INTEGER NOT NULL, created TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS answers (reader_id INTEGER NOT NULL REFERENCES readers(reader_id),
    item_id TEXT NOT NULL REFERENCES items(item_id), answer TEXT NOT NULL, confidence INTEGER NOT NULL,
    diagnosis TEXT, answered_at TEXT NOT NULL, PRIMARY KEY (reader_id, item_id));
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS served (reader_id INTEGER NOT NULL REFERENCES readers(reader_id),
    item_id TEXT NOT NULL REFERENCES items(item_id), served_at TEXT NOT NULL, PRIMARY KEY (reader_id, item_id));
CREATE TABLE IF NOT EXISTS revoked (reader_id INTEGER PRIMARY KEY REFERENCES readers(reader_id),
    revoked_at TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS admin_sessions (session_hash TEXT PRIMARY KEY, expires REAL NOT NULL);
"""


def existing_study(study: Path) -> Path:
    """``study`` when it holds a study's database; else a DataError (nothing is created there)."""
    if not (study / DB_NAME).is_file():
        raise DataError(f"{study} is not a reader study (no {DB_NAME}); create one with "
                        "`dermsynth reader-study create --store STORE --out FOLDER`")
    return study


def connect(path: str | Path) -> sqlite3.Connection:
    conn = sqlite3.connect(str(path), timeout=30, isolation_level=None, check_same_thread=False)
    conn.row_factory = sqlite3.Row
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    conn.execute("PRAGMA foreign_keys=ON")
    return conn


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def create_schema(conn: sqlite3.Connection) -> None:
    conn.executescript(SCHEMA)


def insert_items(conn: sqlite3.Connection, rows: list[dict]) -> None:
    cols = ["item_id", "task", "truth", "image_a", "image_b", "label", "method", "skin_group", "source_id", "ref_id",
            "native_size"]
    with conn:
        conn.execute("BEGIN")
        conn.executemany(f"INSERT INTO items ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})",
                         [[r.get(c) for c in cols] for r in rows])


def add_reader(conn: sqlite3.Connection, name: str) -> str:
    """A new reader and their invite token (shown once; only its hash is kept)."""
    token = secrets.token_urlsafe(24)
    try:
        conn.execute("INSERT INTO readers (name, token_hash, order_seed, created) VALUES (?, ?, ?, ?)",
                     (name, token_hash(token), secrets.randbits(31), time.strftime("%Y-%m-%dT%H:%M:%S")))
    except sqlite3.IntegrityError:
        raise ValueError(f"a reader named {name!r} exists already; choose another name") from None
    return token


def reader_for(conn: sqlite3.Connection, token: str) -> sqlite3.Row | None:
    """The reader whose invite this is, unless it was revoked."""
    return conn.execute("SELECT * FROM readers WHERE token_hash = ? AND reader_id NOT IN "
                        "(SELECT reader_id FROM revoked)", (token_hash(token),)).fetchone()


def reader_order(conn: sqlite3.Connection, reader: sqlite3.Row) -> list[str]:
    """The reader's own random order of all items (fixed by their seed, so a reload resumes)."""
    ids = [r["item_id"] for r in conn.execute("SELECT item_id FROM items ORDER BY item_id")]
    return [ids[i] for i in np.random.default_rng(reader["order_seed"]).permutation(len(ids))]


def answered(conn: sqlite3.Connection, reader_id: int) -> set[str]:
    return {r["item_id"] for r in conn.execute("SELECT item_id FROM answers WHERE reader_id = ?", (reader_id,))}


def next_item(conn: sqlite3.Connection, reader: sqlite3.Row) -> tuple[sqlite3.Row | None, int, int]:
    """The first unanswered item in the reader's order, and (answered, total)."""
    order, done = reader_order(conn, reader), answered(conn, reader["reader_id"])
    todo = [i for i in order if i not in done]
    item = conn.execute("SELECT * FROM items WHERE item_id = ?", (todo[0],)).fetchone() if todo else None
    if item is not None:
        conn.execute("INSERT OR IGNORE INTO served (reader_id, item_id, served_at) VALUES (?, ?, ?)",
                     (reader["reader_id"], item["item_id"], time.strftime("%Y-%m-%dT%H:%M:%S")))
    return item, len(done), len(order)


def was_served(conn: sqlite3.Connection, reader_id: int, item_id: str) -> bool:
    """Whether ``item_id`` was ever shown to this reader (by :func:`next_item`)."""
    return conn.execute("SELECT 1 FROM served WHERE reader_id = ? AND item_id = ?", (reader_id, item_id)).fetchone() \
        is not None


def answer_of(conn: sqlite3.Connection, reader_id: int, item_id: str) -> sqlite3.Row | None:
    return conn.execute("SELECT answer, confidence, diagnosis FROM answers WHERE reader_id = ? AND item_id = ?",
                        (reader_id, item_id)).fetchone()


def counts(conn: sqlite3.Connection, reader_id: int) -> tuple[int, int]:
    """(answered by this reader, items in the study)."""
    done = conn.execute("SELECT COUNT(*) FROM answers WHERE reader_id = ?", (reader_id,)).fetchone()[0]
    return done, conn.execute("SELECT COUNT(*) FROM items").fetchone()[0]


def item(conn: sqlite3.Connection, item_id: str) -> sqlite3.Row | None:
    return conn.execute("SELECT * FROM items WHERE item_id = ?", (item_id,)).fetchone()


def record_answer(conn: sqlite3.Connection, reader_id: int, item_id: str, answer: str, confidence: int,
                  diagnosis: str | None) -> bool:
    """Store an answer; False when this reader had answered this item already (kept as it was)."""
    cur = conn.execute("INSERT OR IGNORE INTO answers (reader_id, item_id, answer, confidence, diagnosis, "
                       "answered_at) VALUES (?, ?, ?, ?, ?, ?)",
                       (reader_id, item_id, answer, confidence, diagnosis, time.strftime("%Y-%m-%dT%H:%M:%S")))
    return cur.rowcount == 1


def image_served_to(conn: sqlite3.Connection, reader_id: int, image_id: str) -> bool:
    """Whether the image belongs to an item already served to this reader: a token fetches no image
    ahead of its item, and none of an item it was never shown."""
    return conn.execute("SELECT 1 FROM served s JOIN items i USING (item_id) WHERE s.reader_id = ? AND "
                        "(i.image_a = ? OR i.image_b = ?)", (reader_id, image_id, image_id)).fetchone() is not None


def progress(conn: sqlite3.Connection) -> list[dict]:
    total = conn.execute("SELECT COUNT(*) FROM items").fetchone()[0]
    rows = conn.execute("SELECT r.reader_id, r.name, r.created, COUNT(a.item_id) AS done, MAX(a.answered_at) AS last, "
                        "v.revoked_at AS revoked FROM readers r LEFT JOIN answers a USING (reader_id) "
                        "LEFT JOIN revoked v USING (reader_id) GROUP BY r.reader_id ORDER BY r.name")
    return [{**dict(r), "total": total} for r in rows]


def answers_with_key(conn: sqlite3.Connection) -> list[dict]:
    """Every answer joined with its item's key (admin export and analysis only)."""
    rows = conn.execute("SELECT r.name AS reader, a.item_id, i.task, i.truth, a.answer, a.confidence, a.diagnosis, "
                        "i.label, i.method, i.skin_group, i.source_id, i.ref_id, i.image_a, i.image_b, a.answered_at "
                        "FROM answers a JOIN readers r USING (reader_id) JOIN items i USING (item_id) "
                        "ORDER BY r.name, a.answered_at, a.item_id")
    return [dict(r) for r in rows]
