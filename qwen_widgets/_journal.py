"""The journal: a SQLite record of every submission, written before the network is touched.

One row per submission, keyed by a local id. The row is written (state `submitting`) before
the POST, updated the moment the task id arrives (`submitted`), and again when the task
ends (`finished`). A POST whose answer was lost is `unknown` and is never resent; one the
server refused is `refused`. A `submitting` row left by a process that died is `unknown` too.
Local copies of images live in a second table. The key is never written here.

WAL and synchronous=FULL, with one short IMMEDIATE transaction per write, so two kernels can
share the file without losing rows, and a row survives a crash the moment it is written.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
import time
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone
from enum import Enum
from pathlib import Path

from ._errors import RequestValidationError
from ._models import GeneratedImage, Task, TaskStatus
from ._request import ImageRequest

__all__ = ["Journal", "Entry", "EntryState", "home_dir", "task_to_json", "task_from_json"]

URL_LIFETIME = 86_400.0  # task ids and result URLs live about a day (API.md section 2)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS submissions (
    local_id   TEXT PRIMARY KEY,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL,
    base_url   TEXT NOT NULL,
    pid        INTEGER,
    request    TEXT,
    state      TEXT NOT NULL,
    task_id    TEXT,
    task       TEXT,
    error      TEXT,
    UNIQUE (base_url, task_id)
);
CREATE TABLE IF NOT EXISTS images (
    task_id     TEXT NOT NULL,
    image_index INTEGER NOT NULL,
    local_path  TEXT NOT NULL,
    sha256      TEXT NOT NULL,
    saved_at    REAL NOT NULL,
    PRIMARY KEY (task_id, image_index)
);
"""


def home_dir() -> Path:
    """QWEN_WIDGETS_HOME, or a per-user data folder; created readable by the user only."""
    configured = os.environ.get("QWEN_WIDGETS_HOME")
    if configured:
        path = Path(configured).expanduser()
    elif os.name == "nt":
        path = Path(os.environ.get("LOCALAPPDATA", Path.home())) / "qwen_widgets"
    else:
        path = Path(os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share") / "qwen_widgets"
    if not path.is_dir():
        path.mkdir(parents=True, exist_ok=True)
        path.chmod(0o700)
    return path


class EntryState(str, Enum):
    SUBMITTING = "submitting"
    """Written before the POST; still so only while that POST is in flight."""
    SUBMITTED = "submitted"
    """The server gave a task id; the task is not known to have ended."""
    FINISHED = "finished"
    """The task was seen completed, failed or cancelled."""
    UNKNOWN = "unknown"
    """The POST may have reached the server but no answer came: never resent."""
    REFUSED = "refused"
    """The server (or the network, before sending) refused it: nothing was created."""


@dataclass(frozen=True)
class Entry:
    """One journal row: a submission and what became of it."""

    local_id: str
    created_at: datetime
    base_url: str
    state: EntryState
    request: ImageRequest | None
    task: Task | None
    error: str | None


class Journal:
    """The journal file (or `:memory:` for demo mode, whose simulator dies with the process)."""

    def __init__(self, path: str | Path):
        self.path = str(path)
        self._lock = threading.Lock()
        if self.path != ":memory:":
            # create it private before SQLite opens it: SQLite gives the -wal and -shm files
            # (which hold the same rows) the database file's mode
            os.close(os.open(self.path, os.O_CREAT | os.O_RDWR, 0o600))
            for suffix in ("", "-wal", "-shm"):
                if os.path.exists(self.path + suffix):
                    os.chmod(self.path + suffix, 0o600)
        self._db = sqlite3.connect(self.path, timeout=30.0, isolation_level=None,
                                   check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.executescript(_SCHEMA)

    @classmethod
    def default(cls) -> Journal:
        """The journal in the home folder."""
        return cls(home_dir() / "journal.sqlite")

    def __repr__(self) -> str:
        return f"Journal({self.path!r})"

    def close(self) -> None:
        with self._lock:
            self._db.close()

    # -- writes -------------------------------------------------------------------------------

    def begin(self, request: ImageRequest, base_url: str) -> str:
        """Record a submission about to be sent; returns its local id."""
        local_id = uuid.uuid4().hex
        now = time.time()
        self._write(
            "INSERT INTO submissions (local_id, created_at, updated_at, base_url, pid, request, state)"
            " VALUES (?, ?, ?, ?, ?, ?, ?)",
            (local_id, now, now, base_url, os.getpid(), json.dumps(request.to_payload()),
             EntryState.SUBMITTING.value),
        )
        return local_id

    def submitted(self, local_id: str, task: Task) -> None:
        """The server answered with a task id."""
        self._write(
            "UPDATE submissions SET state = ?, task_id = ?, task = ?, updated_at = ? WHERE local_id = ?",
            (EntryState.SUBMITTED.value, task.task_id, task_to_json(task), time.time(), local_id),
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

    def record(self, task: Task, base_url: str) -> None:
        """The latest state of a task; adds a row for a task submitted elsewhere."""
        state = EntryState.FINISHED if task.done else EntryState.SUBMITTED
        now = time.time()
        request = json.dumps(task.request.to_payload()) if task.request else None
        self._write(
            "INSERT INTO submissions (local_id, created_at, updated_at, base_url, request, state,"
            " task_id, task) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
            " ON CONFLICT(base_url, task_id) DO UPDATE SET state = excluded.state, task = excluded.task,"
            " updated_at = excluded.updated_at, request = coalesce(submissions.request, excluded.request)",
            (uuid.uuid4().hex, now, now, base_url, request, state.value, task.task_id,
             task_to_json(task)),
        )

    def add_image_copy(self, task_id: str, index: int, path: Path, sha256: str) -> None:
        self._write(
            "INSERT OR REPLACE INTO images VALUES (?, ?, ?, ?, ?)",
            (task_id, index, str(path), sha256, time.time()),
        )

    def forget_image_copy(self, task_id: str, index: int) -> None:
        self._write("DELETE FROM images WHERE task_id = ? AND image_index = ?", (task_id, index))

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
        sql, args = "SELECT local_id, created_at, base_url, state, request, task, error FROM submissions", []
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
        if where:
            sql += " WHERE " + " AND ".join(where)
        rows = self._read(sql + " ORDER BY created_at", tuple(args))
        copies = {(t, i): p for t, i, p in self._read("SELECT task_id, image_index, local_path FROM images", ())}
        return [_entry(row, copies) for row in rows]

    def unfinished(self, base_url: str) -> list[Entry]:
        """Submitted tasks not seen to end, younger than the 24 h that task ids live."""
        return self.entries(base_url=base_url, states=(EntryState.SUBMITTED,),
                            newer_than=time.time() - URL_LIFETIME)

    def unsaved(self, base_url: str) -> list[Entry]:
        """Completed tasks of the last day with images that have no local copy yet."""
        finished = self.entries(base_url=base_url, states=(EntryState.FINISHED,),
                                newer_than=time.time() - URL_LIFETIME)
        return [e for e in finished if e.task is not None and e.task.status is TaskStatus.COMPLETED
                and any(image.local_path is None for image in e.task.images)]

    def image_copies(self) -> list[tuple[str, int, Path, str, float]]:
        """(task_id, index, path, sha256, saved_at) of every local copy."""
        return [(t, i, Path(p), s, at) for t, i, p, s, at in self._read("SELECT * FROM images", ())]

    # -- plumbing -----------------------------------------------------------------------------

    def _write(self, sql: str, args: tuple, before: tuple[str, tuple] | None = None) -> None:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                if before is not None:
                    self._db.execute(*before)
                self._db.execute(sql, args)
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def _read(self, sql: str, args: tuple) -> list[tuple]:
        with self._lock:
            return self._db.execute(sql, args).fetchall()


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


def _entry(row: tuple, copies: dict[tuple[str, int], str]) -> Entry:
    local_id, created_at, base_url, state, request, task, error = row
    try:
        request_obj = ImageRequest.from_payload(json.loads(request)) if request else None
    except (ValueError, RequestValidationError):
        request_obj = None
    task_obj = task_from_json(task, request_obj, copies) if task else None
    return Entry(local_id, datetime.fromtimestamp(created_at, timezone.utc), base_url,
                 EntryState(state), request_obj, task_obj, error)


def task_to_json(task: Task) -> str:
    """The wire-level facts of a task (its request is stored in its own column)."""

    def stamp(value: datetime | None) -> float | None:
        return value.timestamp() if value is not None else None

    return json.dumps({
        "task_id": task.task_id,
        "status": task.status.value,
        "progress": task.progress,
        "estimated_time": task.estimated_time,
        "actual_time": task.actual_time,
        "created_at": stamp(task.created_at),
        "completed_at": stamp(task.completed_at),
        "error": task.error,
        "images": [{"url": i.url, "index": i.index, "expires_at": stamp(i.expires_at),
                    "width": i.width, "height": i.height} for i in task.images],
    })


def task_from_json(text: str, request: ImageRequest | None,
                   copies: dict[tuple[str, int], str] | None = None) -> Task:
    data = json.loads(text)
    copies = copies or {}

    def when(value: float | None) -> datetime | None:
        return datetime.fromtimestamp(value, timezone.utc) if value is not None else None

    images = tuple(
        GeneratedImage(i["url"], i["index"], when(i["expires_at"]), i["width"], i["height"],
                       _path(copies.get((data["task_id"], i["index"]))))
        for i in data["images"]
    )
    return Task(data["task_id"], TaskStatus(data["status"]), data["progress"],
                data["estimated_time"], data["actual_time"], when(data["created_at"]),
                when(data["completed_at"]), images, data["error"], request)


def _path(text: str | None) -> Path | None:
    return Path(text) if text else None
