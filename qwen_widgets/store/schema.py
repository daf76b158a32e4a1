"""The journal's file format: its tables, indexes, and the migrations from older versions.

Each version adds to the one before; `migrate` brings any older file up to date in one
transaction, so two kernels opening the same file at once both see a whole schema.
"""

from __future__ import annotations

import sqlite3

__all__: list[str] = []

SCHEMA_VERSION = 3
_IMAGES = """
CREATE TABLE IF NOT EXISTS images (
    local_id    TEXT NOT NULL,
    image_index INTEGER NOT NULL,
    local_path  TEXT NOT NULL,
    sha256      TEXT NOT NULL,
    saved_at    REAL NOT NULL,
    PRIMARY KEY (local_id, image_index)
)
"""
_SCHEMA = """
CREATE TABLE IF NOT EXISTS submissions (
    local_id        TEXT PRIMARY KEY,
    created_at      REAL NOT NULL,
    updated_at      REAL NOT NULL,
    base_url        TEXT NOT NULL,
    pid             INTEGER,
    request         TEXT,
    state           TEXT NOT NULL,
    task_id         TEXT,
    task            TEXT,
    error           TEXT,
    idempotency_key TEXT,
    request_id      TEXT,
    attempts        INTEGER NOT NULL DEFAULT 0,
    replayed        INTEGER NOT NULL DEFAULT 0,
    resend          INTEGER NOT NULL DEFAULT 0,
    local_refs      TEXT,
    UNIQUE (base_url, task_id)
);
CREATE TABLE IF NOT EXISTS uploads (
    sha256       TEXT NOT NULL,
    base_url     TEXT NOT NULL,
    url          TEXT NOT NULL,
    expires_at   REAL,
    filename     TEXT NOT NULL,
    content_type TEXT NOT NULL,
    bytes        INTEGER NOT NULL,
    local_path   TEXT,
    created_at   REAL NOT NULL,
    PRIMARY KEY (sha256, base_url)
);
"""+_IMAGES
# Version 2 added the idempotency key (docs/api-contract.md section 3) and what became of each attempt;
# version 3 the local files behind uploaded references (and the uploads table).
_ADDED_COLUMNS = (
    ("idempotency_key", "TEXT"), ("request_id", "TEXT"), ("attempts", "INTEGER NOT NULL DEFAULT 0"),
    ("replayed", "INTEGER NOT NULL DEFAULT 0"), ("resend", "INTEGER NOT NULL DEFAULT 0"),
    ("local_refs", "TEXT"),
)
_INDEXES = """
CREATE INDEX IF NOT EXISTS submissions_by_state ON submissions (base_url, state, created_at);
CREATE INDEX IF NOT EXISTS submissions_by_time ON submissions (created_at);
CREATE INDEX IF NOT EXISTS submissions_in_flight ON submissions (state)
"""
# Version 0 keyed kept images by task id, which a server may reissue: move each copy to the
# submission that now holds its task id.
_FROM_VERSION_0 = """
ALTER TABLE images RENAME TO images_v0;
"""+_IMAGES+""";
INSERT OR IGNORE INTO images
    SELECT s.local_id, i.image_index, i.local_path, i.sha256, i.saved_at
    FROM images_v0 i JOIN submissions s ON s.task_id = i.task_id;
DROP TABLE images_v0;
"""


class NewerSchema(Exception):
    """The file was written by a newer qwen_widgets: its format is not this version's to change."""

    def __init__(self, version: int):
        self.version = version
        super().__init__(f"journal format {version}, newer than {SCHEMA_VERSION}")


def file_version(path: str) -> int | None:
    """The format version in an SQLite file's header (`user_version`, bytes 60-63), read
    without SQLite: a newer version's schema may be one this SQLite cannot even parse. None
    for a missing, empty or non-SQLite file."""
    try:
        with open(path, "rb") as handle:
            header = handle.read(64)
    except OSError:
        return None
    if len(header) < 64 or not header.startswith(b"SQLite format 3\0"):
        return None
    return int.from_bytes(header[60:64], "big", signed=True)


def migrate(db: sqlite3.Connection) -> None:
    """Bring the file to SCHEMA_VERSION, in one transaction (another kernel may open it too).
    A file already up to date costs one read: opening a journal takes no write lock.
    NewerSchema when a newer qwen_widgets wrote it (nothing is changed)."""
    version = db.execute("PRAGMA user_version").fetchone()[0]
    if version == SCHEMA_VERSION:
        return
    if version > SCHEMA_VERSION:
        raise NewerSchema(version)
    db.execute("BEGIN IMMEDIATE")
    try:
        version = db.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:  # another kernel, newer, got there first
            raise NewerSchema(version)
        columns = [row[1] for row in db.execute("PRAGMA table_info(images)")]
        if version == 0 and "task_id" in columns:
            for statement in _FROM_VERSION_0.split(";"):
                if statement.strip():
                    db.execute(statement)
        for statement in _SCHEMA.split(";"):
            if statement.strip():
                db.execute(statement)
        present = {row[1] for row in db.execute("PRAGMA table_info(submissions)")}
        for name, declaration in _ADDED_COLUMNS:
            if name not in present:
                db.execute(f"ALTER TABLE submissions ADD COLUMN {name} {declaration}")
        for statement in _INDEXES.split(";"):
            db.execute(statement)
        if version < SCHEMA_VERSION:
            db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
    except BaseException:
        db.execute("ROLLBACK")
        raise
    db.execute("COMMIT")
