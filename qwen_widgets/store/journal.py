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
import json
import os
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import datetime, timezone
from pathlib import Path

from ..model.errors import JournalError, RequestValidationError
from ..model.limits import WINDOW, SpendingLimits, Usage
from ..model.record import task_from_record, task_record
from ..model.request import ImageRequest
from ..model.submission import Entry, EntryState, ImageCopy, OpenWork
from ..model.task import Task, TaskStatus, UploadedImage
from .home import home_dir, home_path
from .schema import SCHEMA_VERSION, NewerSchema, file_version, migrate

__all__ = ["Journal"]

OPEN_WINDOW = 86_400.0
"""How far back "what is left open" looks: the day that task ids and result URLs live (as
observed; docs/api-contract.md section 2.6). Older work is not resumed: its task id is forgotten by then, and
how long the service remembers an idempotency key is not documented, so resending a lost
submission later could make a second, billed task."""

JOURNAL_NAME = "journal.sqlite"
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
            migrate(self._db)
        except NewerSchema as error:
            self._db.close()
            raise JournalError(self.path, error, newer=(error.version, SCHEMA_VERSION)) from None
        except sqlite3.Error as error:
            self._db.close()
            raise journal_error(self.path, error) from None

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

    def add_upload(self, image: UploadedImage, base_url: str) -> None:
        self._write("INSERT OR REPLACE INTO uploads VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (image.sha256, base_url, image.url,
                     image.expires_at.timestamp() if image.expires_at else None, image.filename,
                     image.content_type, image.bytes, str(image.local_path) if image.local_path else None,
                     time.time()))

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
        """Rows, oldest first, with local image paths filled in."""
        sql, args = ("SELECT local_id, created_at, base_url, state, request, task, error, idempotency_key,"
                     " request_id, attempts, replayed, resend FROM submissions", [])
        where = []
        if base_url is not None:
            where.append("base_url = ?")
            args.append(base_url)
        if states:
            where.append(f"state IN ({', '.join('?' * len(states))})")
            args.extend(s.value for s in states)
        if newer_than is not None:
            where.append("created_at > ?")
            args.append(newer_than)
        condition = " WHERE " + " AND ".join(where) if where else ""
        rows = self._read(sql + condition + " ORDER BY created_at", tuple(args))
        copies: dict[str, dict[int, str]] = {}
        for local_id, index, path in self._read(
                "SELECT local_id, image_index, local_path FROM images WHERE local_id IN"
                f" (SELECT local_id FROM submissions{condition})", tuple(args)):
            copies.setdefault(local_id, {})[index] = path
        return [_entry(row, copies.get(row[0], {})) for row in rows]

    def open_work(self, base_url: str, now: float | None = None) -> OpenWork:
        """What is left open for `base_url` within OPEN_WINDOW, in one read: submissions whose
        answer was lost (to resend with their key, or only to report when sent without
        resending), tasks not seen to end (to watch), and completed tasks whose images are not
        kept yet (to keep). Rows of processes that died mid-POST are settled first."""
        self.settle_orphans()
        now = time.time() if now is None else now
        rows = self.entries(base_url=base_url, states=(EntryState.UNKNOWN, EntryState.SUBMITTED,
                                                       EntryState.FINISHED), newer_than=now - OPEN_WINDOW)
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


def _entry(row: tuple, copies: dict[int, str]) -> Entry:
    local_id, created_at, base_url, state, request, task, error, key, request_id, attempts, replayed, resend = row
    try:
        request_obj = ImageRequest.from_payload(json.loads(request)) if request else None
    except (ValueError, RequestValidationError):
        request_obj = None
    task_obj = task_from_record(json.loads(task), request_obj, copies) if task else None
    return Entry(local_id, datetime.fromtimestamp(created_at, timezone.utc), base_url,
                 EntryState(state), request_obj, task_obj, error, key, request_id, attempts,
                 bool(replayed), bool(resend))


def _when(value: float | None) -> datetime | None:
    return datetime.fromtimestamp(value, timezone.utc) if value is not None else None
