"""The journal: a SQLite record of every submission, written before the network is touched.

One row per submission, keyed by a local id, with the idempotency key every attempt carries.
The row is written (state `submitting`) before the POST, updated the moment the task id
arrives (`submitted`), and again when the task ends (`finished`). A POST whose answer was lost
is `unknown`: resume() sends it again with its key. One the server refused is `refused`. A
`submitting` row left by a process that died is `unknown` too.
Local copies of images live in a second table. The key is never written here.

WAL and synchronous=FULL, with one short IMMEDIATE transaction per write, so two kernels can
share the file without losing rows, and a row survives a crash the moment it is written.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import re
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import datetime, timezone
from pathlib import Path

from ..model.errors import JournalError, RequestValidationError
from ..model.history import EVERYTHING, PAGE_SIZE, HistoryPage, HistoryQuery
from ..model.limits import WINDOW, SpendingLimits, Usage
from ..model.lineage import Reference
from ..model.record import task_from_record, task_record
from ..model.request import ImageRequest
from ..model.submission import Entry, EntryState, ImageCopy, OpenWork
from ..model.task import Task, TaskStatus, UploadedImage
from .home import home_dir, home_path
from .schema import SCHEMA_VERSION, NewerSchema, file_version, migrate, search_available

__all__ = ["Journal"]

OPEN_WINDOW = 86_400.0
"""How far back "what is left open" looks: the day that task ids and result URLs live (as
observed; docs/api-contract.md section 2.6). Older work is not resumed: its task id is forgotten by then, and
how long the service remembers an idempotency key is not documented, so resending a lost
submission later could make a second, billed task."""

JOURNAL_NAME = "journal.sqlite"
UPLOAD_LIFETIME = 72 * 3600.0
"""How long an uploaded image's URL works, by the contract (when the journal did not note it)."""
RESULT_URL_DAYS = 4
"""How far back a reference URL is looked for among our results: result URLs live a day
(observed) to three (the contract), so an older one cannot be a working reference."""
_LOCAL_ID = re.compile(r"[0-9a-f]{32}")
_ENTRY_COLUMNS = ("s.local_id, s.created_at, s.base_url, s.state, s.request, s.task, s.error, s.idempotency_key,"
                  " s.request_id, s.attempts, s.replayed, s.resend, coalesce(l.starred, 0), coalesce(l.hidden, 0)")
_ENTRY_TABLES = "submissions s LEFT JOIN library l ON l.local_id = s.local_id"
_NOT_DELETED = "s.local_id NOT IN (SELECT local_id FROM library WHERE deleted_at IS NOT NULL)"


def _fold(text: object) -> object:
    """Text case-folded (Unicode's rules, "Öl" -> "öl"), for comparing search words."""
    return text.casefold() if isinstance(text, str) else text


class Journal:
    """The journal file (or `:memory:` for demo mode, whose simulator dies with the process)."""

    def __init__(self, path: str | Path):
        # absolute from the start: a relative path would name another file after os.chdir
        self.path = str(path) if str(path) == ":memory:" else os.path.abspath(path)
        self._lock = threading.Lock()
        self._folder: Path | None = None
        newer = file_version(self.path) if self.path != ":memory:" else None
        if newer is not None and newer > SCHEMA_VERSION:  # before SQLite, which may not parse its schema
            raise JournalError(self.path, NewerSchema(newer), newer=(newer, SCHEMA_VERSION))
        try:
            if self.path != ":memory:":
                # create it private before SQLite opens it: SQLite gives the -wal and -shm
                # files (which hold the same rows) the database file's mode
                os.close(os.open(self.path, os.O_CREAT | os.O_RDWR, 0o600))
                for suffix in ("", "-wal", "-shm"):
                    if os.path.exists(self.path + suffix):
                        os.chmod(self.path + suffix, 0o600)
            self._db = sqlite3.connect(self.path, timeout=30.0, isolation_level=None,
                                       check_same_thread=False)
        except (sqlite3.Error, OSError) as error:
            raise journal_error(self.path, error) from None
        try:
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            # SQLite's LIKE ignores case for ASCII only: a search's short words compare folded
            # text ("Öl" finds "öl painting"), as its index's trigrams do
            self._db.create_function("fold", 1, _fold, deterministic=True)
            found = migrate(self._db)
            self.search_mode = ("full-text index (SQLite FTS5, trigram: any part of a word)"
                                if search_available(self._db) else
                                "a scan of every prompt: this SQLite has no FTS5 trigram tokenizer "
                                f"(SQLite {sqlite3.sqlite_version}; 3.34 or newer with FTS5 has one)")
            """How the history searches prompts: SQLite's full-text index, or (say why) a scan."""
            if found < 4:  # rows written before lineage was kept: find their parents once
                self._transaction(_resolve_all_references)
        except NewerSchema as error:
            self._db.close()
            raise JournalError(self.path, error, newer=(error.version, SCHEMA_VERSION)) from None
        except (sqlite3.Error, JournalError) as error:
            self._db.close()
            raise journal_error(self.path, getattr(error, "error", error)) from None

    def images_folder(self) -> Path:
        """Where this journal's kept images live: `images/` beside the file (the home folder's
        for an in-memory journal); created readable by the user only."""
        if self._folder is None:  # resolved once: the home setting may be relative
            parent = home_dir() if self.path == ":memory:" else Path(self.path).parent
            self._folder = parent / "images"
        self._folder.mkdir(mode=0o700, exist_ok=True)
        return self._folder

    @classmethod
    def default(cls) -> Journal:
        """The journal in the home folder."""
        return cls(home_dir() / JOURNAL_NAME)

    @classmethod
    def existing(cls) -> Journal | None:
        """The journal in the home folder if one was ever written; creates nothing."""
        path = home_path() / JOURNAL_NAME
        return cls(path) if path.is_file() else None

    def __repr__(self) -> str:
        return f"Journal({self.path!r})"

    def close(self) -> None:
        with self._lock:
            self._db.close()

    # -- writes -------------------------------------------------------------------------------

    def begin(self, request: ImageRequest, base_url: str, idempotency_key: str | None = None,
              resend: bool = False, limits: SpendingLimits | None = None,
              local_refs: dict[str, str] | None = None) -> str:
        """Record a submission about to be sent, with the key every attempt will carry;
        returns its local id. With `limits`, the last 24 hours' usage is checked in the same
        transaction (SpendingLimitError, nothing written), so kernels sharing the file cannot
        both slip past a limit. `local_refs` maps uploaded reference URLs to their files."""
        local_id = uuid.uuid4().hex
        now = time.time()

        def write(db: sqlite3.Connection) -> None:
            if limits is not None and limits.active:
                rows = db.execute("SELECT created_at, state, request, task FROM submissions"
                                  " WHERE created_at > ? ORDER BY created_at", (now - WINDOW,)).fetchall()
                limits.check(limits.usage(rows), request.n, now)
            db.execute(
                "INSERT INTO submissions (local_id, created_at, updated_at, base_url, pid, request, state,"
                " idempotency_key, resend, local_refs) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (local_id, now, now, base_url, os.getpid(), json.dumps(request.to_payload()),
                 EntryState.SUBMITTING.value, idempotency_key, int(resend),
                 json.dumps(local_refs) if local_refs else None))
            for position, url in enumerate(request.image_urls):
                _write_reference(db, local_id, position, url, now, (local_refs or {}).get(url))

        self._transaction(write)
        return local_id

    def usage(self, limits: SpendingLimits, now: float | None = None) -> Usage:
        """The last 24 hours' images and spend, as `limits` count them."""
        now = time.time() if now is None else now
        return limits.usage(self._read("SELECT created_at, state, request, task FROM submissions"
                                       " WHERE created_at > ? ORDER BY created_at", (now - WINDOW,)))

    def uploaded(self, sha256: str, base_url: str, now: float) -> UploadedImage | None:
        """An earlier upload of these bytes whose URL still has an hour to live."""
        rows = self._read("SELECT url, expires_at, filename, content_type, bytes, local_path FROM uploads"
                          " WHERE sha256 = ? AND base_url = ? AND (expires_at IS NULL OR expires_at > ?)",
                          (sha256, base_url, now + 3600))
        if not rows:
            return None
        url, expires_at, filename, content_type, size, path = rows[0]
        return UploadedImage(url, _when(expires_at), filename, content_type, size, sha256,
                             Path(path) if path else None)

    def add_upload(self, image: UploadedImage, base_url: str, origin: Reference | None = None) -> None:
        """An upload and its URL; `origin`: the result its bytes are, by the receipt they carry."""
        self._write("INSERT OR REPLACE INTO uploads (sha256, base_url, url, expires_at, filename, content_type,"
                    " bytes, local_path, created_at, origin) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (image.sha256, base_url, image.url,
                     image.expires_at.timestamp() if image.expires_at else None, image.filename,
                     image.content_type, image.bytes, str(image.local_path) if image.local_path else None,
                     time.time(), json.dumps(origin.to_json()) if origin is not None else None))

    def resending(self, local_id: str) -> None:
        """A submission whose answer was lost is about to be sent again, by this process."""
        self._write("UPDATE submissions SET state = ?, pid = ?, updated_at = ? WHERE local_id = ?",
                    (EntryState.SUBMITTING.value, os.getpid(), time.time(), local_id))

    def attempted(self, local_id: str) -> None:
        """One more POST of this submission is about to leave."""
        self._write("UPDATE submissions SET attempts = attempts + 1, updated_at = ? WHERE local_id = ?",
                    (time.time(), local_id))

    def expired(self, local_id: str, reason: str) -> None:
        """The service no longer knows the task (its id outlived the service's memory)."""
        self._write("UPDATE submissions SET state = ?, error = ?, updated_at = ? WHERE local_id = ?",
                    (EntryState.EXPIRED.value, reason, time.time(), local_id))

    def submitted(self, local_id: str, task: Task, replayed: bool = False) -> None:
        """The server answered with a task id (a replay: the task an earlier attempt created)."""
        state = EntryState.FINISHED if task.done else EntryState.SUBMITTED
        self._write(
            "UPDATE submissions SET state = ?, task_id = ?, task = ?, updated_at = ?, request_id = ?,"
            " replayed = ? WHERE local_id = ?",
            (state.value, task.task_id, json.dumps(task_record(task)), time.time(), task.request_id,
             int(replayed), local_id),
            # a server that reissues ids (a restarted simulator) makes an older row stale
            before=("UPDATE submissions SET task_id = NULL WHERE base_url ="
                    " (SELECT base_url FROM submissions WHERE local_id = ?) AND task_id = ?"
                    " AND local_id != ?", (local_id, task.task_id, local_id)),
        )

    def failed_to_submit(self, local_id: str, state: EntryState, reason: str) -> None:
        """The POST ended without a task id: `unknown` (maybe created) or `refused`."""
        self._write(
            "UPDATE submissions SET state = ?, error = ?, updated_at = ? WHERE local_id = ?",
            (state.value, reason, time.time(), local_id),
        )

    def record(self, task: Task, base_url: str) -> str:
        """The latest state of a task; adds a row for a task submitted elsewhere. Returns the
        row's local id."""
        state = EntryState.FINISHED if task.done else EntryState.SUBMITTED
        now = time.time()
        request = json.dumps(task.request.to_payload()) if task.request else None
        self._write(
            "INSERT INTO submissions (local_id, created_at, updated_at, base_url, request, state,"
            " task_id, task) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
            " ON CONFLICT(base_url, task_id) DO UPDATE SET state = excluded.state, task = excluded.task,"
            " updated_at = excluded.updated_at, request = coalesce(submissions.request, excluded.request)",
            (uuid.uuid4().hex, now, now, base_url, request, state.value, task.task_id,
             json.dumps(task_record(task))),
        )
        (local_id,), = self._read("SELECT local_id FROM submissions WHERE base_url = ? AND task_id = ?",
                                  (base_url, task.task_id))
        return local_id

    def add_image_copy(self, local_id: str, index: int, path: Path, sha256: str) -> None:
        """Image `index` of submission `local_id` is kept at `path` (stored absolute)."""
        self._write(
            "INSERT OR REPLACE INTO images VALUES (?, ?, ?, ?, ?)",
            (local_id, index, str(Path(path).absolute()), sha256, time.time()),
        )

    def forget_image_copy(self, local_id: str, index: int) -> None:
        self._write("DELETE FROM images WHERE local_id = ? AND image_index = ?", (local_id, index))

    def settle_orphans(self) -> int:
        """Mark `submitting` rows of processes that died as `unknown`; returns how many."""
        rows = self._read("SELECT local_id, pid FROM submissions WHERE state = ?",
                          (EntryState.SUBMITTING.value,))
        orphans = [local_id for local_id, pid in rows if not _alive(pid)]
        for local_id in orphans:
            self.failed_to_submit(local_id, EntryState.UNKNOWN,
                                  "the process died while the submission was in flight")
        return len(orphans)

    # -- reads --------------------------------------------------------------------------------

    def entries(self, *, base_url: str | None = None, states: tuple[EntryState, ...] = (),
                newer_than: float | None = None) -> list[Entry]:
        """Rows, oldest first, with local image paths filled in; deleted ones (`delete`) are gone."""
        where, args = [_NOT_DELETED], []
        if base_url is not None:
            where.append("s.base_url = ?")
            args.append(base_url)
        if states:
            where.append(f"s.state IN ({', '.join('?' * len(states))})")
            args.extend(s.value for s in states)
        if newer_than is not None:
            where.append("s.created_at > ?")
            args.append(newer_than)
        return self._select(f"SELECT s.local_id FROM submissions s WHERE {' AND '.join(where)}", tuple(args))

    def _select(self, chosen: str, args: tuple) -> list[Entry]:
        """Entries of the submissions whose local ids the SQL `chosen` (with `args`) selects,
        oldest first."""
        rows = self._read(f"SELECT {_ENTRY_COLUMNS} FROM {_ENTRY_TABLES} WHERE s.local_id IN ({chosen})"
                          " ORDER BY s.created_at", args)
        return self._entries(rows, chosen, args)

    def _entries(self, rows: list[tuple], subset: str, args: tuple) -> list[Entry]:
        """Entries of `rows` (selected as _ENTRY_COLUMNS), with the kept copies and references
        of the rows that the SQL `subset` (with `args`) selects."""
        copies: dict[str, dict[int, str]] = {}
        for local_id, index, path in self._read(
                f"SELECT local_id, image_index, local_path FROM images WHERE local_id IN ({subset})", args):
            copies.setdefault(local_id, {})[index] = path
        references: dict[str, list[Reference]] = {}
        for local_id, *fields in self._read(
                "SELECT local_id, url, sha256, local_path, parent_task_id, parent_index, parent_local_id"
                f" FROM refs WHERE local_id IN ({subset}) ORDER BY local_id, position", args):
            references.setdefault(local_id, []).append(Reference(*fields))
        return [_entry(row, copies.get(row[0], {}), tuple(references.get(row[0], ()))) for row in rows]

    def open_work(self, base_url: str, now: float | None = None) -> OpenWork:
        """What is left open for `base_url` within OPEN_WINDOW, in one read: submissions whose
        answer was lost (to resend with their key, or only to report when sent without
        resending), tasks not seen to end (to watch), and completed tasks whose images are not
        kept yet (to keep). Rows of processes that died mid-POST are settled first."""
        self.settle_orphans()
        now = time.time() if now is None else now
        # a finished row is read only when the library's copy of it shows an image of a
        # completed task neither kept nor failed: the walk starts from the index of those
        # images (CROSS JOIN keeps SQLite to that order), so of 10,000 recent rows only the few
        # with work left are read and made into Tasks
        since = now - OPEN_WINDOW
        rows = self._select(
            f"SELECT s.local_id FROM submissions s WHERE s.base_url = ? AND s.state IN (?, ?) AND s.created_at > ?"
            f" AND {_NOT_DELETED} UNION ALL SELECT s.local_id FROM results r CROSS JOIN library l CROSS JOIN"
            " submissions s WHERE r.local_path IS NULL AND r.error IS NULL AND l.id = r.library_id"
            " AND l.status = 'completed' AND l.deleted_at IS NULL AND s.local_id = l.local_id AND s.base_url = ?"
            " AND s.state = ? AND s.created_at > ?",
            (base_url, EntryState.UNKNOWN.value, EntryState.SUBMITTED.value, since,
             base_url, EntryState.FINISHED.value, since))
        lost, unresendable, unfinished, unkept = [], [], [], []
        for entry in rows:
            if entry.state is EntryState.UNKNOWN:
                resendable = entry.resend and entry.idempotency_key and entry.request
                (lost if resendable else unresendable).append(entry)
            elif entry.state is EntryState.SUBMITTED and entry.task is not None:
                unfinished.append(entry)
            elif (entry.state is EntryState.FINISHED and entry.task is not None
                  and entry.task.status is TaskStatus.COMPLETED
                  and any(image.local_path is None and image.error is None for image in entry.task.images)):
                unkept.append(entry)
        return OpenWork(lost, unfinished, unkept, unresendable)

    def expire_forgotten(self, base_url: str, now: float | None = None) -> None:
        """Tasks submitted before OPEN_WINDOW and never seen to end are journaled `expired`:
        the service has forgotten their ids, so nothing can tell how they ended."""
        now = time.time() if now is None else now
        self._write("UPDATE submissions SET state = ?, error = ?, updated_at = ? WHERE base_url = ?"
                    " AND state = ? AND created_at <= ?",
                    (EntryState.EXPIRED.value, "not seen to end within the day that task ids live",
                     now, base_url, EntryState.SUBMITTED.value, now - OPEN_WINDOW))

    def recent_durations(self, base_url: str,
                         limit: int = 300) -> list[tuple[ImageRequest | None, float, float | None]]:
        """(request, seconds it took, the server's estimate) of the latest completed tasks: what
        the poll schedule learns this account's durations from."""
        rows = self._read("SELECT request, task FROM submissions WHERE base_url = ? AND state = ?"
                          " AND task IS NOT NULL ORDER BY created_at DESC LIMIT ?",
                          (base_url, EntryState.FINISHED.value, limit))
        return [sample for sample in (duration_sample(request, task) for request, task in rows) if sample]

    def image_copies(self) -> list[ImageCopy]:
        """Every image kept on disk, with the submission it belongs to."""
        rows = self._read("SELECT i.local_id, s.task_id, i.image_index, i.local_path, i.sha256,"
                          " i.saved_at FROM images i LEFT JOIN submissions s USING (local_id)", ())
        return [ImageCopy(lid, tid, index, Path(path), sha, at) for lid, tid, index, path, sha, at in rows]

    # -- the library: finding, keeping and tracing what was made ------------------------------

    def page(self, query: HistoryQuery = EVERYTHING, offset: int = 0, limit: int = PAGE_SIZE) -> HistoryPage:
        """One page of the generations that match `query`, newest first, and how many match
        in all. Memory and time follow the page, not the journal: the filters and the
        search run in SQLite (the prompt index, the time index), only the page is read."""
        where, args, found = self._where(query)
        # the search index's matches (`found`) are read once for both the page and its count:
        # one statement, in which SQLite keeps a table that is used twice
        # the page is chosen in the narrow table; only its rows are joined to the wide journal
        rows = self._read(f"{found}SELECT {_ENTRY_COLUMNS}, (SELECT count(*) FROM library l WHERE {where})"
                          f" FROM (SELECT l.id FROM library l WHERE {where} ORDER BY l.created_at DESC, l.id DESC"
                          " LIMIT ? OFFSET ?) AS page JOIN library l ON l.id = page.id"
                          " JOIN submissions s ON s.local_id = l.local_id ORDER BY l.created_at DESC, l.id DESC",
                          (*args, *args[1 if found else 0:], limit, offset))
        if rows:
            total = rows[0][-1]
            rows = [row[:-1] for row in rows]
        else:
            (total,), = self._read(f"{found}SELECT count(*) FROM library l WHERE {where}", args)
        ids = tuple(row[0] for row in rows)
        subset = f"VALUES {', '.join('(?)' for _ in ids)}" if ids else "SELECT NULL WHERE 0"
        entries = self._entries(rows, subset, ids)
        return HistoryPage(entries, total, offset, limit, query, self.search_mode)

    def history_rows(self, query: HistoryQuery = EVERYTHING) -> list[tuple]:
        """Every image of the generations that match `query`, oldest first, as flat rows in
        the order of model.frame.HISTORY_ROW (one row for a generation without images): read
        in one statement that SQLite answers on its own, so a frame of 100,000 rows costs what
        pandas takes to build it."""
        where, args, found = self._where(query)
        columns = ("l.local_id, l.state, l.created_at, l.task_id, l.model, l.prompt, l.negative_prompt, l.size,"
                   " l.resolution, l.n, r.image_index, r.url, r.expires_at, r.local_path,"
                   " l.task_status, CASE WHEN l.task_status IS NULL THEN l.error ELSE coalesce(r.error, l.task_error)"
                   " END, l.task_created_at, l.task_completed_at, l.actual_time, l.estimated_time, l.cost,"
                   " l.request_id, l.starred, l.hidden")
        return self._read(
            f"{found}SELECT {columns} FROM library l LEFT JOIN results r ON r.library_id = l.id"
            f" WHERE {where} ORDER BY l.created_at, l.id, r.image_index", args)

    def _where(self, query: HistoryQuery) -> tuple[str, tuple, str]:
        """The SQL condition (on `library l`) of a history query, its arguments, and the
        `WITH found(id) ...` clause to put before a statement using it when words are looked up
        in the search index (its MATCH text is then the first argument), else ''."""
        conditions: list[str] = ["l.deleted_at IS NULL"]
        args: list[object] = []
        for name, value in (("starred", query.starred), ("hidden", query.hidden)):
            if value is not None:
                conditions.append(f"l.{name} = ?")
                args.append(int(value))
        for sign, moment in ((">=", query.since), ("<", query.until)):
            if moment is not None:
                conditions.append(f"l.created_at {sign} ?")
                args.append(moment.timestamp())
        for name in ("model", "size", "resolution"):
            values = getattr(query, name)
            if values:
                conditions.append(f"l.{name} IN ({', '.join('?' * len(values))})")
                args.extend(values)
        if query.status:
            conditions.append(f"l.status IN ({', '.join('?' * len(query.status))})")
            args.extend(query.status)
        indexed = self.search_mode.startswith("full-text")
        terms = query.terms()
        long_terms = [term for term in terms if indexed and len(term) >= 3]
        found = ""
        if long_terms:  # the trigram index finds words of three characters or more
            found = "WITH found(id) AS (SELECT rowid FROM prompts WHERE prompts MATCH ?) "
            conditions.append("l.id IN found")
            args.insert(0, " ".join('"' + term.replace('"', '""') + '"' for term in long_terms))
        for term in terms:
            if term not in long_terms:
                pattern = "%" + re.sub(r"([\\%_])", r"\\\1", term.casefold()) + "%"
                conditions.append("(fold(l.prompt) LIKE ? ESCAPE '\\' OR fold(l.negative_prompt) LIKE ? ESCAPE '\\')")
                args.extend((pattern, pattern))
        return " AND ".join(conditions), tuple(args), found

    def find(self, ref: str, base_url: str | None = None) -> Entry | None:
        """The row of a task id or a local id (this base URL's first, then the newest); None
        when the journal has no such row (or it was deleted)."""
        by = "s.local_id = ?" if _LOCAL_ID.fullmatch(ref) else "s.task_id = ?"
        rows = self._read(f"SELECT {_ENTRY_COLUMNS} FROM {_ENTRY_TABLES} WHERE {by} AND l.deleted_at IS NULL"
                          " ORDER BY s.base_url = ? DESC, s.created_at DESC LIMIT 1", (ref, base_url or ""))
        if not rows:
            return None
        entry, = self._entries(rows, "VALUES (?)", (rows[0][0],))
        return entry

    def set_flag(self, local_id: str, name: str, value: bool) -> None:
        """Star or unstar (`starred`), hide or show again (`hidden`) one row."""
        if name not in ("starred", "hidden"):
            raise ValueError(name)
        self._write(f"UPDATE library SET {name} = ? WHERE local_id = ?", (int(value), local_id))

    def delete(self, local_id: str) -> list[Path]:
        """Take a row out of the library: it no longer shows in the history or a search, and
        its kept images are no longer listed (returned, for the caller to remove); a generation
        still running is refused (RequestValidationError). The row itself stays, without a star,
        for what must still count it: the daily spending limits look at the last 24 hours. It
        is no longer open work: a lost submission deleted is never resent (and billed), nor are
        its images kept again."""
        paths: list[Path] = []

        def write(db: sqlite3.Connection) -> None:
            status = db.execute("SELECT status FROM library WHERE local_id = ?", (local_id,)).fetchone()
            if status == ("running",):  # its images would be kept again when it ends
                raise RequestValidationError("task", "is still running: delete it once it has ended "
                                             "(or stop watching it first)", show_value=False)
            paths.extend(Path(path) for path, in db.execute(
                "SELECT local_path FROM images WHERE local_id = ?", (local_id,)))
            db.execute("DELETE FROM images WHERE local_id = ?", (local_id,))
            db.execute("UPDATE library SET deleted_at = ?, starred = 0 WHERE local_id = ?",
                       (time.time(), local_id))

        self._transaction(write)
        return paths

    def recent_prompts(self, limit: int = 20, recent_rows: int = 300) -> list[tuple[str, bool]]:
        """(prompt, starred) of the starred prompts, then the most recent others, each once:
        what the panel offers beside its prompt (hidden and deleted ones left out). Looks at the
        starred rows and the newest `recent_rows`, so it costs the same with any size of journal."""
        rows = self._read(
            "SELECT prompt, max(starred), max(created_at) FROM library"
            " WHERE prompt IS NOT NULL AND deleted_at IS NULL AND hidden = 0"
            " AND (starred = 1 OR created_at >= coalesce("
            " (SELECT created_at FROM library ORDER BY created_at DESC LIMIT 1 OFFSET ?), 0))"
            " GROUP BY prompt ORDER BY max(starred) DESC, max(created_at) DESC LIMIT ?", (recent_rows - 1, limit))
        return [(prompt, bool(starred)) for prompt, starred, _ in rows if isinstance(prompt, str)]

    def chain(self, local_id: str, depth: int = 12) -> list[Entry]:
        """The rows an image grew from, nearest first: the row whose result was this one's
        first reference with a known parent, then its own, and so on (at most `depth`)."""
        chain, seen = [], {local_id}
        current = local_id
        for _ in range(depth):
            parent = self._read("SELECT parent_local_id FROM refs WHERE local_id = ? AND parent_local_id"
                                " IS NOT NULL ORDER BY position LIMIT 1", (current,))
            if not parent or parent[0][0] in seen:
                break
            current = parent[0][0]
            seen.add(current)
            rows = self._read(f"SELECT {_ENTRY_COLUMNS} FROM {_ENTRY_TABLES} WHERE s.local_id = ?"
                              " AND l.deleted_at IS NULL", (current,))
            if not rows:  # gone from the journal, or deleted: the chain ends there
                break
            chain.extend(self._entries(rows, "VALUES (?)", (current,)))
        return chain

    def references(self, local_id: str) -> tuple[Reference, ...]:
        """Where each reference image of row `local_id` came from, in request order."""
        return tuple(Reference(*row) for row in self._read(
            "SELECT url, sha256, local_path, parent_task_id, parent_index, parent_local_id FROM refs"
            " WHERE local_id = ? ORDER BY position", (local_id,)))

    def reference_files(self, urls: tuple[str, ...] | list[str], now: float | None = None) -> dict[str, Path]:
        """The file on this machine behind each URL whose life ends within the hour (or has
        ended): the file an upload came from, or the kept copy of one of our results. What a
        request is repeated from once its URLs have expired."""
        now = time.time() if now is None else now
        found: dict[str, Path] = {}
        for url in urls:
            rows = self._read(
                "SELECT local_path, expires_at FROM uploads WHERE url = ? AND local_path IS NOT NULL"
                " UNION ALL SELECT c.local_path, (SELECT x.expires_at FROM results x JOIN library p ON p.id ="
                " x.library_id WHERE p.local_id = r.parent_local_id AND x.image_index = r.parent_index)"
                " FROM refs r JOIN images c"
                " ON c.local_id = r.parent_local_id AND c.image_index = r.parent_index WHERE r.url = ?"
                " UNION ALL SELECT r.local_path, s.created_at + ? FROM refs r JOIN submissions s USING (local_id)"
                " WHERE r.url = ? AND r.local_path IS NOT NULL", (url, url, UPLOAD_LIFETIME, url))
            for path, expires_at in rows:
                if (expires_at is None or expires_at < now + 3600) and Path(path).is_file():
                    found[url] = Path(path)
                    break
        return found

    # -- plumbing -----------------------------------------------------------------------------

    def _write(self, sql: str, args: tuple, before: tuple[str, tuple] | None = None) -> None:
        def write(db: sqlite3.Connection) -> None:
            if before is not None:
                db.execute(*before)
            db.execute(sql, args)

        self._transaction(write)

    def _transaction(self, work: Callable[[sqlite3.Connection], None]) -> None:
        """One short IMMEDIATE transaction: other kernels wait, nothing is half written."""
        with self._lock, self._errors_named():
            self._db.execute("BEGIN IMMEDIATE")
            try:
                work(self._db)
                self._db.execute("COMMIT")
            except BaseException:
                if self._db.in_transaction:  # a failed COMMIT too: never leave it open
                    self._db.execute("ROLLBACK")
                raise

    def _read(self, sql: str, args: tuple) -> list[tuple]:
        with self._lock, self._errors_named():
            return self._db.execute(sql, args).fetchall()

    @contextlib.contextmanager
    def _errors_named(self) -> Iterator[None]:
        """SQLite's errors name no file: say which one, and what to do."""
        try:
            yield
        except sqlite3.Error as error:
            raise journal_error(self.path, error) from None


def duration_sample(request: str | None, task: str) -> tuple[ImageRequest | None, float, float | None] | None:
    """(request, seconds it took, the server's estimate) from a journal row's stored request
    and task record, when the task completed; None otherwise or when the row is unreadable."""
    try:
        record = json.loads(task)
        request_obj = ImageRequest.from_payload(json.loads(request)) if request else None
    except (ValueError, RequestValidationError):
        return None
    taken = record.get("actual_time")
    if taken is None and record.get("completed_at") and record.get("created_at"):
        taken = record["completed_at"] - record["created_at"]
    if record.get("status") != TaskStatus.COMPLETED.value or not taken:
        return None
    return request_obj, float(taken), record.get("estimated_time")


def journal_error(path: str, error: Exception, outcome: str = "") -> JournalError:
    """The JournalError for an SQLite or OS error on `path`: a file SQLite cannot read as a
    database is damaged (the error says what to do); a locked or full one is not."""
    damaged = isinstance(error, sqlite3.DatabaseError) and not isinstance(error, sqlite3.OperationalError)
    return JournalError(path, error, outcome=outcome, damaged=damaged)


def _alive(pid: int | None) -> bool:
    if not pid:
        return False
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def _entry(row: tuple, copies: dict[int, str], references: tuple[Reference, ...] = ()) -> Entry:
    (local_id, created_at, base_url, state, request, task, error, key, request_id, attempts, replayed,
     resend, starred, hidden) = row
    try:
        request_obj = ImageRequest.from_payload(json.loads(request)) if request else None
    except (ValueError, RequestValidationError):
        request_obj = None
    task_obj = task_from_record(json.loads(task), request_obj, copies) if task else None
    if task_obj is not None:
        task_obj = dataclasses.replace(task_obj, local_id=local_id, references=references)
    return Entry(local_id, datetime.fromtimestamp(created_at, timezone.utc), base_url,
                 EntryState(state), request_obj, task_obj, error, key, request_id, attempts,
                 bool(replayed), bool(resend), bool(starred), bool(hidden), references)


def _when(value: float | None) -> datetime | None:
    return datetime.fromtimestamp(value, timezone.utc) if value is not None else None


def _write_reference(db: sqlite3.Connection, local_id: str, position: int, url: str, created_at: float,
                     local_path: str | None) -> None:
    """Inside a write transaction: reference `position` of row `local_id`, with what is known
    of where it came from (see _where_from)."""
    reference = _where_from(db, url, created_at, local_path)
    db.execute("INSERT OR REPLACE INTO refs (local_id, position, url, sha256, local_path, parent_task_id,"
               " parent_index, parent_local_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
               (local_id, position, url, reference.sha256, reference.local_path, reference.parent_task_id,
                reference.parent_index, reference.parent_local_id))


def _where_from(db: sqlite3.Connection, url: str, created_at: float, local_path: str | None) -> Reference:
    """What a reference URL is: one of our results (a result URL of the last few days), or an
    upload (its sha256 and file) that is a kept copy of one of our results, or a file that
    carried our receipt (its origin), or an outside image."""
    result = db.execute(
        "SELECT l.local_id, l.task_id, r.image_index FROM library l JOIN results r ON r.library_id = l.id"
        " WHERE l.created_at BETWEEN ? AND ? AND r.url = ? ORDER BY l.created_at DESC LIMIT 1",
        (created_at - RESULT_URL_DAYS * 86_400, created_at, url)).fetchone()
    if result is not None:
        parent_local_id, task_id, index = result
        kept = db.execute("SELECT sha256, local_path FROM images WHERE local_id = ? AND image_index = ?",
                          (parent_local_id, index)).fetchone()
        return Reference(url, kept[0] if kept else None, local_path or (kept[1] if kept else None),
                         task_id, index, parent_local_id)
    upload = db.execute("SELECT sha256, local_path, origin FROM uploads WHERE url = ? LIMIT 1", (url,)).fetchone()
    if upload is None:
        return Reference(url, local_path=local_path)
    sha256, upload_path, origin_json = upload
    try:
        origin = Reference.from_json(json.loads(origin_json)) if origin_json else None
    except ValueError:
        origin = None
    for candidate in filter(None, (sha256, origin.sha256 if origin else None)):
        kept = db.execute("SELECT c.local_id, s.task_id, c.image_index FROM images c JOIN submissions s"
                          " USING (local_id) WHERE c.sha256 = ? LIMIT 1", (candidate,)).fetchone()
        if kept is not None:
            return Reference(url, sha256, local_path or upload_path, kept[1], kept[2], kept[0])
    if origin is not None and origin.parent_task_id is not None:  # made elsewhere: its receipt says by what
        return Reference(url, sha256, local_path or upload_path, origin.parent_task_id, origin.parent_index)
    return Reference(url, sha256, local_path or upload_path)


def _resolve_all_references(db: sqlite3.Connection) -> None:
    """Where each reference of a row written before lineage was kept came from."""
    rows = db.execute("SELECT r.local_id, r.position, r.url, s.created_at, r.local_path FROM refs r"
                      " JOIN submissions s USING (local_id) WHERE r.sha256 IS NULL AND r.parent_task_id IS NULL"
                      ).fetchall()
    for local_id, position, url, created_at, local_path in rows:
        _write_reference(db, local_id, position, url, created_at, local_path)
