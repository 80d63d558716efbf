"""SQLite storage for accounts, sessions, API tokens, batches and jobs.

The schema is versioned with ``PRAGMA user_version``: ``MIGRATIONS[i]`` takes a database
from version ``i`` to ``i + 1``, so opening an old file upgrades it in place and keeps
its history. Add a migration at the end; never edit one that has shipped.

Every query that reads or changes a user's data takes the user's id and filters on it:
asking for another user's job gives ``None``, exactly like asking for one that never
existed. Queries are small and indexed; the gateway calls them on its event loop.
"""
from __future__ import annotations

import json
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

from ..errors import INTERRUPTED, EngineError

MIGRATIONS: list[str] = [
    # 0 -> 1: accounts, sessions, tokens, batches, jobs
    """
    CREATE TABLE users (
        id INTEGER PRIMARY KEY,
        name TEXT NOT NULL UNIQUE COLLATE NOCASE,
        pw_hash TEXT NOT NULL,
        created_at REAL NOT NULL
    );
    CREATE TABLE sessions (
        token_hash TEXT PRIMARY KEY,
        user_id INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
        created_at REAL NOT NULL,
        expires_at REAL NOT NULL
    );
    CREATE TABLE tokens (
        id INTEGER PRIMARY KEY,
        user_id INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
        name TEXT NOT NULL,
        token_hash TEXT NOT NULL UNIQUE,
        created_at REAL NOT NULL,
        revoked_at REAL
    );
    CREATE TABLE batches (
        id TEXT PRIMARY KEY,
        user_id INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
        pipeline TEXT NOT NULL,
        created_at REAL NOT NULL
    );
    CREATE TABLE jobs (
        id TEXT PRIMARY KEY,
        user_id INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
        batch_id TEXT REFERENCES batches(id) ON DELETE SET NULL,
        pipeline TEXT NOT NULL,
        input_name TEXT NOT NULL,
        input_sha TEXT NOT NULL,
        input_bytes INTEGER NOT NULL,
        output_sha TEXT,
        output_bytes INTEGER NOT NULL DEFAULT 0,
        status TEXT NOT NULL,
        error_code TEXT,
        error_message TEXT,
        meta_json TEXT NOT NULL DEFAULT '{}',
        created_at REAL NOT NULL,
        finished_at REAL
    );
    CREATE INDEX jobs_by_user ON jobs(user_id, created_at);
    CREATE INDEX jobs_by_batch ON jobs(batch_id);
    """,
    # 1 -> 2: thumbnails in history, and when a token was last used
    """
    ALTER TABLE jobs ADD COLUMN thumb_sha TEXT;
    ALTER TABLE tokens ADD COLUMN last_used_at REAL;
    CREATE INDEX jobs_by_input ON jobs(input_sha);
    CREATE INDEX jobs_by_output ON jobs(output_sha);
    """,
]
SCHEMA_VERSION = len(MIGRATIONS)

STATUS_QUEUED, STATUS_DONE, STATUS_FAILED = "queued", "done", "failed"


class NameTaken(EngineError):
    """Sign-up with a name that already has an account."""


def _job(row: sqlite3.Row | None) -> dict[str, Any] | None:
    return None if row is None else _job_of(row)


def _row_id(cur: sqlite3.Cursor) -> int:
    """The rowid an INSERT just made (sqlite3 sets it after every successful INSERT)."""
    assert cur.lastrowid is not None, "lastrowid after an INSERT"
    return cur.lastrowid


def _job_of(row: sqlite3.Row) -> dict[str, Any]:
    job = dict(row)
    job["meta"] = json.loads(job.pop("meta_json") or "{}")
    return job


class Store:
    """One SQLite file; one connection guarded by a lock (blob work runs in threads)."""

    def __init__(self, path: Path | str, *, target_version: int = SCHEMA_VERSION) -> None:
        self.path = str(path)
        self._conn = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        self._conn.row_factory = sqlite3.Row
        self._lock = threading.RLock()
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA foreign_keys=ON")
        self.migrate(target_version)

    def close(self) -> None:
        self._conn.close()

    @property
    def version(self) -> int:
        return self._conn.execute("PRAGMA user_version").fetchone()[0]

    def migrate(self, target: int = SCHEMA_VERSION) -> None:
        """Apply each missing migration in its own transaction."""
        with self._lock:
            current = self.version
            if current > SCHEMA_VERSION:
                raise RuntimeError(f"{self.path} has schema version {current}; this engine knows "
                                   f"up to {SCHEMA_VERSION}: upgrade the engine")
            for version in range(current, target):
                self._conn.executescript(f"BEGIN; {MIGRATIONS[version]}; PRAGMA user_version = {version + 1}; COMMIT;")

    def _all(self, sql: str, *args: Any) -> list[sqlite3.Row]:
        with self._lock:
            return self._conn.execute(sql, args).fetchall()

    def _one(self, sql: str, *args: Any) -> sqlite3.Row | None:
        with self._lock:
            return self._conn.execute(sql, args).fetchone()

    def _scalar(self, sql: str, *args: Any) -> int:
        """The one number an aggregate query (COUNT, COALESCE(SUM...)) always answers."""
        row = self._one(sql, *args)
        assert row is not None, "an aggregate query answers one row"
        return int(row[0])

    def _run(self, sql: str, *args: Any) -> sqlite3.Cursor:
        with self._lock:
            return self._conn.execute(sql, args)

    # -- accounts -------------------------------------------------------------------------

    def create_user(self, name: str, pw_hash: str) -> int:
        try:
            cur = self._run("INSERT INTO users (name, pw_hash, created_at) VALUES (?, ?, ?)",
                            name, pw_hash, time.time())
        except sqlite3.IntegrityError:
            raise NameTaken(name) from None
        return _row_id(cur)

    def user_by_name(self, name: str) -> dict | None:
        row = self._one("SELECT * FROM users WHERE name = ?", name)
        return dict(row) if row else None

    def set_password_hash(self, user_id: int, pw_hash: str) -> None:
        self._run("UPDATE users SET pw_hash = ? WHERE id = ?", pw_hash, user_id)

    def add_session(self, user_id: int, token_hash: str, ttl_s: float) -> None:
        now = time.time()
        self._run("DELETE FROM sessions WHERE expires_at < ?", now)
        self._run("INSERT INTO sessions VALUES (?, ?, ?, ?)", token_hash, user_id, now, now + ttl_s)

    def session_user(self, token_hash: str) -> dict | None:
        row = self._one("SELECT u.id, u.name FROM sessions s JOIN users u ON u.id = s.user_id "
                        "WHERE s.token_hash = ? AND s.expires_at > ?", token_hash, time.time())
        return dict(row) if row else None

    def drop_session(self, token_hash: str) -> None:
        self._run("DELETE FROM sessions WHERE token_hash = ?", token_hash)

    def add_token(self, user_id: int, name: str, token_hash: str) -> int:
        cur = self._run("INSERT INTO tokens (user_id, name, token_hash, created_at) VALUES (?, ?, ?, ?)",
                        user_id, name, token_hash, time.time())
        return _row_id(cur)

    def token_user(self, token_hash: str) -> dict | None:
        row = self._one("SELECT u.id, u.name, t.id AS token_id FROM tokens t JOIN users u ON u.id = t.user_id "
                        "WHERE t.token_hash = ? AND t.revoked_at IS NULL", token_hash)
        if row is None:
            return None
        self._run("UPDATE tokens SET last_used_at = ? WHERE id = ?", time.time(), row["token_id"])
        return {"id": row["id"], "name": row["name"]}

    def tokens(self, user_id: int) -> list[dict]:
        return [dict(r) for r in self._all(
            "SELECT id, name, created_at, last_used_at, revoked_at FROM tokens WHERE user_id = ? "
            "ORDER BY id DESC", user_id)]

    def revoke_token(self, user_id: int, token_id: int) -> bool:
        cur = self._run("UPDATE tokens SET revoked_at = ? WHERE id = ? AND user_id = ? AND revoked_at IS NULL",
                        time.time(), token_id, user_id)
        return cur.rowcount == 1

    # -- batches and jobs -----------------------------------------------------------------

    def add_batch(self, batch_id: str, user_id: int, pipeline: str) -> None:
        self._run("INSERT INTO batches VALUES (?, ?, ?, ?)", batch_id, user_id, pipeline, time.time())

    def batch(self, user_id: int, batch_id: str) -> dict | None:
        row = self._one("SELECT * FROM batches WHERE id = ? AND user_id = ?", batch_id, user_id)
        return dict(row) if row else None

    def batch_jobs(self, user_id: int, batch_id: str) -> list[dict]:
        rows = self._all("SELECT * FROM jobs WHERE batch_id = ? AND user_id = ? ORDER BY rowid",
                         batch_id, user_id)
        return [_job_of(r) for r in rows]

    def add_job(self, job_id: str, user_id: int, *, batch_id: str | None, pipeline: str,
                input_name: str, input_sha: str, input_bytes: int) -> None:
        self._run("INSERT INTO jobs (id, user_id, batch_id, pipeline, input_name, input_sha, input_bytes, "
                  "status, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", job_id, user_id, batch_id,
                  pipeline, input_name, input_sha, input_bytes, STATUS_QUEUED, time.time())

    def finish_job(self, job_id: str, *, output_sha: str, output_bytes: int, thumb_sha: str | None,
                   meta: dict) -> None:
        self._run("UPDATE jobs SET status = ?, output_sha = ?, output_bytes = ?, thumb_sha = ?, meta_json = ?, "
                  "finished_at = ? WHERE id = ?", STATUS_DONE, output_sha, output_bytes, thumb_sha,
                  json.dumps(meta), time.time(), job_id)

    def fail_job(self, job_id: str, code: str, message: str) -> None:
        self._run("UPDATE jobs SET status = ?, error_code = ?, error_message = ?, finished_at = ? WHERE id = ?",
                  STATUS_FAILED, code, message, time.time(), job_id)

    def fail_unfinished(self, message: str) -> int:
        """Mark jobs left queued by a previous run (the gateway stopped) as failed."""
        cur = self._run("UPDATE jobs SET status = ?, error_code = ?, error_message = ?, "
                        "finished_at = ? WHERE status = ?", STATUS_FAILED, INTERRUPTED, message, time.time(),
                        STATUS_QUEUED)
        return cur.rowcount

    def job(self, user_id: int, job_id: str) -> dict | None:
        return _job(self._one("SELECT * FROM jobs WHERE id = ? AND user_id = ?", job_id, user_id))

    def jobs(self, user_id: int, *, limit: int = 50, offset: int = 0) -> list[dict]:
        rows = self._all("SELECT * FROM jobs WHERE user_id = ? ORDER BY created_at DESC, rowid DESC "
                         "LIMIT ? OFFSET ?", user_id, limit, offset)
        return [_job_of(r) for r in rows]

    def count_jobs(self, user_id: int) -> int:
        return self._scalar("SELECT COUNT(*) FROM jobs WHERE user_id = ?", user_id)

    def delete_job(self, user_id: int, job_id: str) -> dict | None:
        """Delete and return the job (None if the user has no such job)."""
        with self._lock:
            job = self.job(user_id, job_id)
            if job is not None:
                self._run("DELETE FROM jobs WHERE id = ? AND user_id = ?", job_id, user_id)
            return job

    def usage_bytes(self, user_id: int) -> int:
        """Bytes a user stores (inputs and outputs, each job counted on its own)."""
        return self._scalar("SELECT COALESCE(SUM(input_bytes + output_bytes), 0) FROM jobs WHERE user_id = ?",
                            user_id)

    def sha_in_use(self, sha: str) -> bool:
        return self._one("SELECT 1 FROM jobs WHERE input_sha = ?1 OR output_sha = ?1 OR thumb_sha = ?1 LIMIT 1",
                         sha) is not None

    def expired_jobs(self, *, older_than: float, keep_per_user: int) -> list[tuple[int, str]]:
        """(user_id, job_id) of finished jobs past the age limit or beyond each user's newest N."""
        rows = self._all(
            "SELECT user_id, id FROM (SELECT user_id, id, created_at, status, ROW_NUMBER() OVER "
            "(PARTITION BY user_id ORDER BY created_at DESC, rowid DESC) AS n FROM jobs) "
            "WHERE status != ? AND (created_at < ? OR n > ?)", STATUS_QUEUED, older_than, keep_per_user)
        return [(r[0], r[1]) for r in rows]
