"""The journal's file format: its tables, indexes, and the migrations from older versions.

Each version adds to the one before; `migrate` brings any older file up to date in one
transaction, so two kernels opening the same file at once both see a whole schema.

Version 4 makes the journal a library: a narrow copy of what the history shows (`library`,
with the user's stars, hidden and deleted marks, and `results`, one row per image), where each
reference image came from (`refs`), and a full-text index of prompts and negative prompts
(`prompts`, SQLite's FTS5 with its trigram tokenizer, so any part of a word matches, in any
script). Triggers keep the copies and the index, so every writer keeps them whole, older
versions of this package too.
An SQLite without FTS5 (or without the trigram tokenizer, before 3.34) cannot run those
triggers, so there the triggers are dropped and searches scan the prompts instead (see
`search_mode`); the first process with FTS5 to open the file again rebuilds the index.
"""

from __future__ import annotations

import json
import sqlite3

__all__: list[str] = []

SCHEMA_VERSION = 4
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
    origin       TEXT,
    PRIMARY KEY (sha256, base_url)
);
CREATE TABLE IF NOT EXISTS refs (
    local_id        TEXT NOT NULL,
    position        INTEGER NOT NULL,
    url             TEXT NOT NULL,
    sha256          TEXT,
    local_path      TEXT,
    parent_task_id  TEXT,
    parent_index    INTEGER,
    parent_local_id TEXT,
    PRIMARY KEY (local_id, position)
);
CREATE TABLE IF NOT EXISTS library (
    id                INTEGER PRIMARY KEY,
    local_id          TEXT NOT NULL UNIQUE,
    created_at        REAL NOT NULL,
    state             TEXT,
    status            TEXT,
    task_id           TEXT,
    error             TEXT,
    prompt            TEXT,
    negative_prompt   TEXT,
    model             TEXT,
    size              TEXT,
    resolution        TEXT,
    n                 INTEGER,
    task_status       TEXT,
    task_error        TEXT,
    task_created_at   REAL,
    task_completed_at REAL,
    actual_time       REAL,
    estimated_time    REAL,
    cost              REAL,
    request_id        TEXT,
    starred           INTEGER NOT NULL DEFAULT 0,
    hidden            INTEGER NOT NULL DEFAULT 0,
    deleted_at        REAL
);
CREATE TABLE IF NOT EXISTS results (
    library_id  INTEGER NOT NULL,
    image_index INTEGER NOT NULL,
    url         TEXT,
    expires_at  REAL,
    width       INTEGER,
    height      INTEGER,
    error       TEXT,
    local_path  TEXT,
    PRIMARY KEY (library_id, image_index)
) WITHOUT ROWID;
"""+_IMAGES
# Version 2 added the idempotency key (docs/api-contract.md section 3) and what became of each attempt;
# version 3 the local files behind uploaded references (and the uploads table); version 4 the
# library (stars, hidden and deleted rows, the origin of an uploaded file that carried a receipt).
_ADDED_COLUMNS = (
    ("idempotency_key", "TEXT"), ("request_id", "TEXT"), ("attempts", "INTEGER NOT NULL DEFAULT 0"),
    ("replayed", "INTEGER NOT NULL DEFAULT 0"), ("resend", "INTEGER NOT NULL DEFAULT 0"),
    ("local_refs", "TEXT"),
)
_ADDED_UPLOAD_COLUMNS = (("origin", "TEXT"),)
# What the library reads at scale is copied out of each submission's request and task JSON
# into the narrow `library` table (one row per submission, with the user's star, hidden and
# deleted marks) and `results` (one row per image) by triggers: a history of 100,000
# generations is read and filtered without parsing any JSON or reading the wide journal rows,
# and every writer keeps the copies right, older versions of this package included.
_STATUS = ("CASE WHEN {row}.state IN ('refused', 'expired', 'unknown') THEN {row}.state"
           " WHEN json_extract({row}.task, '$.status') IN ('completed', 'failed', 'cancelled')"
           " THEN json_extract({row}.task, '$.status') ELSE 'running' END")  # model.submission.entry_status
_DERIVED = (
    ("created_at", "{row}.created_at"), ("state", "{row}.state"), ("status", _STATUS),
    ("task_id", "{row}.task_id"), ("error", "{row}.error"),
    ("prompt", "json_extract({row}.request, '$.prompt')"),
    ("negative_prompt", "json_extract({row}.request, '$.negative_prompt')"),
    ("model", "json_extract({row}.request, '$.model')"),
    ("size", "json_extract({row}.request, '$.size')"),
    ("resolution", "json_extract({row}.request, '$.resolution')"),
    ("n", "json_extract({row}.request, '$.n')"),
    ("task_status", "json_extract({row}.task, '$.status')"),
    ("task_error", "json_extract({row}.task, '$.error')"),
    ("task_created_at", "json_extract({row}.task, '$.created_at')"),
    ("task_completed_at", "json_extract({row}.task, '$.completed_at')"),
    ("actual_time", "json_extract({row}.task, '$.actual_time')"),
    ("estimated_time", "json_extract({row}.task, '$.estimated_time')"),
    ("cost", "json_extract({row}.task, '$.cost')"),
    ("request_id", "coalesce(json_extract({row}.task, '$.request_id'), {row}.request_id)"),
)


def _copy(row: str) -> str:
    """Statements copying submission `row` (`new` in a trigger, `s` over the table) into
    `library` (its marks kept) and `results` (with the kept copy of each image)."""
    names = ", ".join(name for name, _ in _DERIVED)
    values = ", ".join(value.format(row=row) for _, value in _DERIVED)
    updates = ", ".join(f"{name} = excluded.{name}" for name, _ in _DERIVED)
    source = "FROM submissions s " if row == "s" else ""
    image = "json_extract(i.value, '$.{}')".format
    return (f"INSERT INTO library (local_id, {names}) SELECT {row}.local_id, {values} {source}"
            f"WHERE true ON CONFLICT (local_id) DO UPDATE SET {updates};\n"
            "INSERT OR REPLACE INTO results (library_id, image_index, url, expires_at, width, height, error,"
            f" local_path) SELECT l.id, {image('index')}, {image('url')}, {image('expires_at')}, {image('width')},"
            f" {image('height')}, {image('error')}, (SELECT c.local_path FROM images c WHERE c.local_id = l.local_id"
            f" AND c.image_index = {image('index')}) FROM {'submissions s, ' if row == 's' else ''}library l,"
            f" json_each({row}.task, '$.images') i WHERE l.local_id = {row}.local_id AND {image('index')} IS NOT NULL")


_COPY_TRIGGERS = (
    ("library_on_insert", "AFTER INSERT ON submissions BEGIN " + _copy("new") + "; END"),
    ("library_on_update", "AFTER UPDATE OF request, task, state, error, request_id, task_id ON submissions"
                          " BEGIN DELETE FROM results WHERE library_id = (SELECT id FROM library WHERE local_id ="
                          " new.local_id); " + _copy("new") + "; END"),
    # the kept copy of an image, where the history reads it
    ("library_image_kept", "AFTER INSERT ON images BEGIN UPDATE results SET local_path = new.local_path"
                           " WHERE library_id = (SELECT id FROM library WHERE local_id = new.local_id)"
                           " AND image_index = new.image_index; END"),
    ("library_image_gone", "AFTER DELETE ON images BEGIN UPDATE results SET local_path = NULL"
                           " WHERE library_id = (SELECT id FROM library WHERE local_id = old.local_id)"
                           " AND image_index = old.image_index; END"),
)
_INDEXES = """
CREATE INDEX IF NOT EXISTS submissions_by_state ON submissions (base_url, state, created_at);
CREATE INDEX IF NOT EXISTS submissions_by_time ON submissions (created_at);
CREATE INDEX IF NOT EXISTS submissions_in_flight ON submissions (state);
CREATE INDEX IF NOT EXISTS library_by_time ON library (created_at);
CREATE INDEX IF NOT EXISTS library_starred ON library (starred, created_at);
CREATE INDEX IF NOT EXISTS images_by_sha256 ON images (sha256);
CREATE INDEX IF NOT EXISTS refs_by_parent ON refs (parent_local_id);
CREATE INDEX IF NOT EXISTS results_unkept ON results (library_id) WHERE local_path IS NULL AND error IS NULL;
CREATE INDEX IF NOT EXISTS library_deleted ON library (local_id) WHERE deleted_at IS NOT NULL;
CREATE INDEX IF NOT EXISTS uploads_by_url ON uploads (url)
"""
# The search index reads its text from `library` (an external-content FTS5 table keyed by the
# library's integer id, which VACUUM never renumbers) and is kept by triggers on it.
PROMPT_INDEX = "prompts"
_PROMPT_TABLE = ("CREATE VIRTUAL TABLE IF NOT EXISTS prompts USING fts5(prompt, negative_prompt,"
                 " content = 'library', content_rowid = 'id', tokenize = 'trigram')")
_PROMPT_TRIGGERS = (
    ("prompts_on_insert", "AFTER INSERT ON library BEGIN INSERT INTO prompts (rowid, prompt, negative_prompt)"
     " VALUES (new.id, new.prompt, new.negative_prompt); END"),
    ("prompts_on_update", "AFTER UPDATE OF prompt, negative_prompt ON library WHEN old.prompt IS NOT new.prompt"
     " OR old.negative_prompt IS NOT new.negative_prompt BEGIN"
     " INSERT INTO prompts (prompts, rowid, prompt, negative_prompt) VALUES ('delete', old.id, old.prompt,"
     " old.negative_prompt); INSERT INTO prompts (rowid, prompt, negative_prompt) VALUES (new.id, new.prompt,"
     " new.negative_prompt); END"),
)
# Filled from the JSON once, when a file reaches version 4 (the triggers keep them after).
_BACKFILL = _copy("s")
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


def migrate(db: sqlite3.Connection) -> int:
    """Bring the file to SCHEMA_VERSION, in one transaction (another kernel may open it too);
    returns the version it found. A file already up to date costs two reads: opening a journal
    takes no write lock unless the search index needs mending (see `_mend_search_index`).
    NewerSchema when a newer qwen_widgets wrote it (nothing is changed)."""
    version = db.execute("PRAGMA user_version").fetchone()[0]
    if version == SCHEMA_VERSION:
        _mend_search_index(db)
        return SCHEMA_VERSION
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
        present = {row[1] for row in db.execute("PRAGMA table_info(uploads)")}
        for name, declaration in _ADDED_UPLOAD_COLUMNS:
            if name not in present:
                db.execute(f"ALTER TABLE uploads ADD COLUMN {name} {declaration}")
        for statement in _INDEXES.split(";"):
            db.execute(statement)
        for name, body in _COPY_TRIGGERS:
            db.execute(f"CREATE TRIGGER IF NOT EXISTS {name} {body}")
        if version < 4:
            for statement in _BACKFILL.split(";\n"):
                db.execute(statement)
            _references_from_version_3(db)
        _build_search_index(db)
        if version < SCHEMA_VERSION:
            db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
    except BaseException:
        db.execute("ROLLBACK")
        raise
    db.execute("COMMIT")
    return version


def search_available(db: sqlite3.Connection) -> bool:
    """True when this SQLite can use the prompt index (FTS5 with the trigram tokenizer)."""
    try:
        db.execute("SELECT count(*) FROM prompts WHERE prompts MATCH '\"abc\"' AND 0").fetchone()
    except sqlite3.Error:
        return False
    return True


def _build_search_index(db: sqlite3.Connection) -> None:
    """Inside a write transaction: the prompt index and its triggers where FTS5 works (filled
    from every row when they were missing), no triggers where it does not."""
    try:
        db.execute(_PROMPT_TABLE)
    except sqlite3.Error:  # no FTS5, or no trigram tokenizer (SQLite < 3.34)
        pass
    if not search_available(db):
        for name, _ in _PROMPT_TRIGGERS:  # a trigger that cannot run would fail every write
            db.execute(f"DROP TRIGGER IF EXISTS {name}")
        return
    present = {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type = 'trigger'")}
    if all(name in present for name, _ in _PROMPT_TRIGGERS):
        return
    db.execute("INSERT INTO prompts (prompts) VALUES ('rebuild')")  # rows written while they were gone
    for name, body in _PROMPT_TRIGGERS:
        db.execute(f"CREATE TRIGGER IF NOT EXISTS {name} {body}")


def _mend_search_index(db: sqlite3.Connection) -> None:
    """An up-to-date file whose index triggers are missing (dropped by an SQLite without FTS5)
    or that still has them where they cannot run: mend it, in a write transaction."""
    present = {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type = 'trigger'")}
    triggers = all(name in present for name, _ in _PROMPT_TRIGGERS)
    if triggers == search_available(db):
        return
    db.execute("BEGIN IMMEDIATE")
    try:
        _build_search_index(db)
    except BaseException:
        db.execute("ROLLBACK")
        raise
    db.execute("COMMIT")


def _references_from_version_3(db: sqlite3.Connection) -> None:
    """Rows written before version 4 get their references listed, with the file each upload
    came from (version 3's `local_refs`); which of them were our own results is looked up
    like a new submission's (see Journal.begin)."""
    rows = db.execute("SELECT local_id, json_extract(request, '$.image_urls'), local_refs FROM submissions"
                      " WHERE json_extract(request, '$.image_urls') IS NOT NULL").fetchall()
    for local_id, urls, local_refs in rows:
        try:
            files = json.loads(local_refs) if local_refs else {}
            urls = json.loads(urls)
        except ValueError:
            continue
        for position, url in enumerate(urls if isinstance(urls, list) else []):
            if isinstance(url, str):
                db.execute("INSERT OR IGNORE INTO refs (local_id, position, url, local_path) VALUES (?, ?, ?, ?)",
                           (local_id, position, url, files.get(url) if isinstance(files, dict) else None))
