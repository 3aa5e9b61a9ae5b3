"""Who may get into a reader study, and for how long.

* The **admin token** is a credential the study's owner keeps, like a password: it is typed into
  the login form (or sent as ``Authorization: Bearer`` by a script), never put in a URL, a link
  or a cookie. ``reader-study admin rotate`` replaces it and ends every admin session.
* An **admin session** is a random id in a short-lived cookie, minted by one login with the
  token and ended by logout, by its expiry or by a rotation. A stolen cookie is worth hours, not
  the study.
* An **invitation** (a reader's link) can be revoked, or renewed: the old link stops working and
  the reader's answers are kept.

Only SHA-256 hashes of these secrets are stored, so a copied database opens nothing.
"""

from __future__ import annotations

import secrets
import sqlite3
import time

from dermsynth.reader_study.database import token_hash


def set_admin_token(conn: sqlite3.Connection) -> str:
    """A new admin token (shown once): the previous one stops working and every admin session ends."""
    token = secrets.token_urlsafe(24)
    conn.execute("INSERT OR REPLACE INTO meta (key, value) VALUES ('admin_token_hash', ?)", (token_hash(token),))
    conn.execute("DELETE FROM admin_sessions")
    return token


def is_admin(conn: sqlite3.Connection, token: str) -> bool:
    row = conn.execute("SELECT value FROM meta WHERE key = 'admin_token_hash'").fetchone()
    return row is not None and secrets.compare_digest(row["value"], token_hash(token))


def start_session(conn: sqlite3.Connection, hours: float) -> str:
    """A new admin session lasting ``hours``; its id goes in the cookie (only the hash is kept)."""
    session = secrets.token_urlsafe(32)
    now = time.time()
    conn.execute("DELETE FROM admin_sessions WHERE expires <= ?", (now,))
    conn.execute("INSERT INTO admin_sessions (session_hash, expires) VALUES (?, ?)",
                 (token_hash(session), now + hours * 3600))
    return session


def session_ok(conn: sqlite3.Connection, session: str) -> bool:
    return conn.execute("SELECT 1 FROM admin_sessions WHERE session_hash = ? AND expires > ?",
                        (token_hash(session), time.time())).fetchone() is not None


def end_session(conn: sqlite3.Connection, session: str) -> None:
    conn.execute("DELETE FROM admin_sessions WHERE session_hash = ?", (token_hash(session),))


def _reader_id(conn: sqlite3.Connection, name: str) -> int:
    row = conn.execute("SELECT reader_id FROM readers WHERE name = ?", (name,)).fetchone()
    if row is None:
        names = [r["name"] for r in conn.execute("SELECT name FROM readers ORDER BY name")]
        raise ValueError(f"no reader named {name!r} in this study (readers: {', '.join(names) or 'none'})")
    return row["reader_id"]


def revoke_invite(conn: sqlite3.Connection, name: str) -> None:
    """The reader's link stops working; their answers stay in the study."""
    conn.execute("INSERT OR IGNORE INTO revoked (reader_id, revoked_at) VALUES (?, ?)",
                 (_reader_id(conn, name), time.strftime("%Y-%m-%dT%H:%M:%S")))


def renew_invite(conn: sqlite3.Connection, name: str) -> str:
    """A new link for the reader (shown once), replacing the old one, revoked or not: the reader
    goes on where they were, with the answers they gave."""
    reader_id, token = _reader_id(conn, name), secrets.token_urlsafe(24)
    with conn:
        conn.execute("BEGIN")
        conn.execute("UPDATE readers SET token_hash = ? WHERE reader_id = ?", (token_hash(token), reader_id))
        conn.execute("DELETE FROM revoked WHERE reader_id = ?", (reader_id,))
    return token
