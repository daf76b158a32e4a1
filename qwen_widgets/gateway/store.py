"""Classes, codes and what each student used, in one SQLite file (WAL) in the data folder.

Why SQLite: a class of hundreds polling at the provider's rate limit (about 20 task queries a
second for the whole account) is a few dozen small reads and a handful of writes per second,
well inside one file's reach, and the command-line tools can add a class or revoke a code
while the gateway runs, through SQLite's own locking. Writes that count money use
synchronous=FULL, as the client's journal does.

What is stored:
- `classes`: each class's budgets, window, price and request rate; `rules` its prompt rules.
- `students`: one row per student: a code's sha256 (never the code), or a JupyterHub user
  name; revoking sets `revoked`; a new code for the same student keeps their usage.
- `tasks`: every submission that got past the checks: its reservation (n images at a price),
  then its task id, then what it really made and cost. A submission is counted at what it
  reserved until it settles; a failed one counts nothing. (student, Idempotency-Key) is
  unique, so a resend finds the first submission instead of reserving again.
- `media`: URLs of uploads and results, with the student they belong to.
- `events`: the teacher's log (refusals, prompt rules that matched, revocations).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import math
import re
import secrets
import sqlite3
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .limits import Policy, Usage, Window, day_of
from .rules import compile_rule

__all__ = ["Store", "FieldError", "ClassInfo", "Student", "Submission", "CODE_PREFIX"]

CODE_PREFIX = "qwg_"
"""Student codes start with this, so the gateway tells a code from a JupyterHub token at a glance."""
CLASS_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
MAX_STUDENTS = 1000
DEFAULT_REQUESTS_PER_MINUTE = 120

SCHEMA = """
CREATE TABLE IF NOT EXISTS classes (
    name TEXT PRIMARY KEY,
    images_per_day INTEGER NOT NULL,
    class_images_per_day INTEGER NOT NULL,
    spend_per_day REAL,
    total_images INTEGER,
    window TEXT,
    price_per_image REAL,
    requests_per_minute INTEGER NOT NULL,
    created REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS rules (
    class TEXT NOT NULL REFERENCES classes(name),
    rule TEXT NOT NULL,
    PRIMARY KEY (class, rule)
);
CREATE TABLE IF NOT EXISTS students (
    id INTEGER PRIMARY KEY,
    class TEXT NOT NULL REFERENCES classes(name),
    name TEXT NOT NULL,
    code_hash TEXT UNIQUE,
    hub_user INTEGER NOT NULL DEFAULT 0,
    revoked REAL,
    created REAL NOT NULL,
    UNIQUE (class, name)
);
CREATE TABLE IF NOT EXISTS tasks (
    id INTEGER PRIMARY KEY,
    student INTEGER NOT NULL REFERENCES students(id),
    class TEXT NOT NULL,
    idempotency_key TEXT,
    digest TEXT NOT NULL,
    state TEXT NOT NULL,
    task_id TEXT UNIQUE,
    n INTEGER NOT NULL,
    price REAL,
    images INTEGER,
    cost REAL,
    model TEXT,
    prompt TEXT NOT NULL,
    size TEXT,
    resolution TEXT,
    answer TEXT,
    result TEXT,
    day INTEGER NOT NULL,
    created REAL NOT NULL,
    settled REAL,
    UNIQUE (student, idempotency_key)
);
CREATE INDEX IF NOT EXISTS tasks_by_class_day ON tasks (class, day);
CREATE INDEX IF NOT EXISTS tasks_by_student_day ON tasks (student, day);
CREATE TABLE IF NOT EXISTS media (
    url TEXT PRIMARY KEY,
    student INTEGER NOT NULL REFERENCES students(id),
    created REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY,
    time REAL NOT NULL,
    class TEXT NOT NULL,
    student TEXT,
    kind TEXT NOT NULL,
    detail TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS events_by_class ON events (class, id);
PRAGMA user_version = 1;
"""

# A submission counts at what it reserved until it settles; then at what it made and cost.
_IMAGES = "CASE state WHEN 'completed' THEN images WHEN 'reserved' THEN n WHEN 'running' THEN n ELSE 0 END"
_SPEND = ("CASE state WHEN 'completed' THEN COALESCE(cost, images * price, 0) "
          "WHEN 'reserved' THEN n * COALESCE(price, 0) WHEN 'running' THEN n * COALESCE(price, 0) ELSE 0 END")


class FieldError(ValueError):
    """A class setting or name breaks a rule; `field` names it (as the command-line option)."""

    def __init__(self, field: str, rule: str):
        self.field = field
        self.rule = rule
        super().__init__(f"{field}: {rule}")


def hash_code(code: str) -> str:
    # a plain sha256 is enough: codes are 192 random bits, nothing to brute-force
    return hashlib.sha256(code.encode("utf-8", "replace")).hexdigest()


def new_code() -> str:
    return CODE_PREFIX + secrets.token_urlsafe(24)


@dataclass(frozen=True)
class ClassInfo:
    """One class as the teacher set it up."""

    name: str
    policy: Policy
    price_per_image: float | None
    """The teacher's price per image; None: ask the provider's pricing endpoint."""
    requests_per_minute: int
    rules: tuple[str, ...]
    created: float


@dataclass(frozen=True)
class Student:
    """One student of a class: a code holder, or a JupyterHub user."""

    id: int
    class_name: str
    name: str
    revoked: bool
    hub_user: bool


@dataclass(frozen=True)
class Submission:
    """One submission that got past the checks, as the ledger holds it."""

    id: int
    student: int
    digest: str
    state: str
    """'reserved' (sent, no task id yet), 'refused' (the provider said no: counts nothing),
    'running', 'completed' or 'failed'."""
    task_id: str | None
    n: int
    price: float | None
    answer: str | None
    """The provider's answer to the submit, replayed to a resend of the same request."""


def _whole(field: str, value: Any, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise FieldError(field, f"must be a whole number from {low} to {high} (got {value!r})")
    return value


def _positive(field: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
        raise FieldError(field, f"must be a number above 0 (got {value!r})")
    return float(value)


class Store:
    """The gateway's database. One instance per thread (sqlite3 connections are not shared)."""

    def __init__(self, path: str | Path, *, clock: Callable[[], float] = time.time):
        self.path = Path(path)
        self.clock = clock
        self._db = sqlite3.connect(self.path, timeout=10.0, isolation_level=None)
        self._db.row_factory = sqlite3.Row
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.execute("PRAGMA foreign_keys=ON")
        self._db.executescript(SCHEMA)

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield self._db
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    # -- classes ----------------------------------------------------------------------------------

    def add_class(self, name: str, *, students: int, images_per_day: int,
                  class_images_per_day: int | None = None, spend_per_day: float | None = None,
                  total_images: int | None = None, window: str | None = None,
                  price_per_image: float | None = None,
                  requests_per_minute: int = DEFAULT_REQUESTS_PER_MINUTE,
                  rules: Iterable[str] = ()) -> list[tuple[str, str]]:
        """Create a class and one code per student; returns [(student name, code)]: the only
        time the codes exist outside the students' hands."""
        if not isinstance(name, str) or not CLASS_NAME.match(name):
            raise FieldError("name", "a class name has 1-64 letters, digits, '.', '_' or '-', "
                             f"starting with a letter or digit (got {name!r})")
        _whole("students", students, 0, MAX_STUDENTS)
        _whole("images-per-day", images_per_day, 1, 10_000)
        if class_images_per_day is None:
            if students == 0:
                raise FieldError("class-images-per-day", "is needed when --students is 0 (a JupyterHub class)")
            class_images_per_day = students * images_per_day
        _whole("class-images-per-day", class_images_per_day, 1, 10_000_000)
        if spend_per_day is not None:
            _positive("spend-per-day", spend_per_day)
        if total_images is not None:
            _whole("total-images", total_images, 1, 10_000_000)
        if window is not None:
            try:
                window = str(Window.parse(window))
            except ValueError as exc:
                raise FieldError("window", str(exc)) from None
        if price_per_image is not None:
            _positive("price-per-image", price_per_image)
        _whole("requests-per-minute", requests_per_minute, 1, 6000)
        rules = self._checked_rules(rules)
        codes = [(f"student-{number}", new_code()) for number in range(1, students + 1)]
        now = self.clock()
        with self._transaction() as db:
            if db.execute("SELECT 1 FROM classes WHERE name = ?", (name,)).fetchone():
                raise FieldError("name", f"a class named {name!r} already exists")
            db.execute("INSERT INTO classes VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                       (name, images_per_day, class_images_per_day, spend_per_day, total_images, window,
                        price_per_image, requests_per_minute, now))
            db.executemany("INSERT INTO students (class, name, code_hash, created) VALUES (?, ?, ?, ?)",
                           [(name, student, hash_code(code), now) for student, code in codes])
            db.executemany("INSERT INTO rules VALUES (?, ?)", [(name, rule) for rule in rules])
        return codes

    @staticmethod
    def _checked_rules(rules: Iterable[str]) -> list[str]:
        checked: list[str] = []
        for rule in rules:
            rule = rule.strip()
            if not rule or rule in checked:
                continue
            try:
                compile_rule(rule)
            except ValueError as exc:
                raise FieldError("rule", str(exc)) from None
            checked.append(rule)
        return checked

    def set_rules(self, class_name: str, rules: Iterable[str]) -> list[str]:
        """Replace a class's prompt rules; returns them as stored."""
        self._class_row(class_name)
        checked = self._checked_rules(rules)
        with self._transaction() as db:
            db.execute("DELETE FROM rules WHERE class = ?", (class_name,))
            db.executemany("INSERT INTO rules VALUES (?, ?)", [(class_name, rule) for rule in checked])
        return checked

    def _class_row(self, name: str) -> sqlite3.Row:
        row = self._db.execute("SELECT * FROM classes WHERE name = ?", (name,)).fetchone()
        if row is None:
            raise FieldError("class", f"no class named {name!r}")
        return row

    def class_info(self, name: str) -> ClassInfo:
        row = self._class_row(name)
        rules = tuple(r["rule"] for r in self._db.execute(
            "SELECT rule FROM rules WHERE class = ? ORDER BY rowid", (name,)))
        policy = Policy(images_per_day=row["images_per_day"], class_images_per_day=row["class_images_per_day"],
                        spend_per_day=row["spend_per_day"], total_images=row["total_images"],
                        window=Window.parse(row["window"]) if row["window"] else None)
        return ClassInfo(row["name"], policy, row["price_per_image"], row["requests_per_minute"], rules,
                         row["created"])

    def class_names(self) -> list[str]:
        return [row["name"] for row in self._db.execute("SELECT name FROM classes ORDER BY created, name")]

    # -- students ---------------------------------------------------------------------------------

    @staticmethod
    def _student(row: sqlite3.Row) -> Student:
        return Student(row["id"], row["class"], row["name"], row["revoked"] is not None, bool(row["hub_user"]))

    def student_for_code(self, code: str) -> Student | None:
        """The student whose code this is (revoked or not), or None."""
        digest = hash_code(code)
        row = self._db.execute("SELECT * FROM students WHERE code_hash = ?", (digest,)).fetchone()
        # the index found the row by hash; compare again in constant time all the same
        if row is None or not hmac.compare_digest(row["code_hash"], digest):
            return None
        return self._student(row)

    def hub_student(self, class_name: str, user: str) -> Student:
        """The student row of JupyterHub user `user` in `class_name`, made on their first request."""
        self._class_row(class_name)
        self._db.execute("INSERT OR IGNORE INTO students (class, name, hub_user, created) VALUES (?, ?, 1, ?)",
                         (class_name, user, self.clock()))
        row = self._db.execute("SELECT * FROM students WHERE class = ? AND name = ?", (class_name, user)).fetchone()
        return self._student(row)

    def _student_row(self, class_name: str, name: str) -> sqlite3.Row:
        self._class_row(class_name)
        row = self._db.execute("SELECT * FROM students WHERE class = ? AND name = ?", (class_name, name)).fetchone()
        if row is None:
            raise FieldError("student", f"class {class_name!r} has no student named {name!r}")
        return row

    def revoke(self, class_name: str, name: str) -> bool:
        """Revoke a student's code (or a Hub user's access); False if it already was."""
        row = self._student_row(class_name, name)
        if row["revoked"] is not None:
            return False
        self._db.execute("UPDATE students SET revoked = ? WHERE id = ?", (self.clock(), row["id"]))
        self.log_event(class_name, name, "revoked", "access revoked by the teacher")
        return True

    def reissue(self, class_name: str, name: str) -> str:
        """A new code for a student (the old one stops working); their usage stays theirs."""
        row = self._student_row(class_name, name)
        if row["hub_user"]:
            raise FieldError("student", f"{name!r} signs in through JupyterHub and has no code")
        code = new_code()
        self._db.execute("UPDATE students SET code_hash = ?, revoked = NULL WHERE id = ?", (hash_code(code), row["id"]))
        self.log_event(class_name, name, "new code", "a new code was made; the old one no longer works")
        return code

    def students(self, class_name: str) -> list[dict[str, Any]]:
        """Each student with today's and all-time use, in the order they were made."""
        today = day_of(self.clock())
        rows = self._db.execute(
            f"""SELECT s.id, s.name, s.revoked, s.hub_user,
                   COALESCE(SUM(CASE WHEN t.day = ? THEN {_IMAGES} END), 0) AS images_today,
                   COALESCE(SUM(CASE WHEN t.day = ? THEN {_SPEND} END), 0) AS spend_today,
                   COALESCE(SUM({_IMAGES}), 0) AS images_total,
                   COALESCE(SUM({_SPEND}), 0) AS spend_total
                FROM students s LEFT JOIN tasks t ON t.student = s.id
                WHERE s.class = ? GROUP BY s.id ORDER BY s.id""",
            (today, today, class_name))
        return [dict(row) | {"revoked": row["revoked"] is not None, "hub_user": bool(row["hub_user"])}
                for row in rows]

    # -- the ledger -------------------------------------------------------------------------------

    def usage(self, student: Student, now: float) -> Usage:
        """What counts against `student`'s and their class's budgets at `now`."""
        today = day_of(now)
        mine = self._db.execute(f"SELECT COALESCE(SUM({_IMAGES}), 0) FROM tasks WHERE student = ? AND day = ?",
                                (student.id, today)).fetchone()[0]
        class_today = self._db.execute(
            f"SELECT COALESCE(SUM({_IMAGES}), 0), COALESCE(SUM({_SPEND}), 0) FROM tasks WHERE class = ? AND day = ?",
            (student.class_name, today)).fetchone()
        class_total = self._db.execute(f"SELECT COALESCE(SUM({_IMAGES}), 0) FROM tasks WHERE class = ?",
                                       (student.class_name,)).fetchone()[0]
        return Usage(mine, class_today[0], class_today[1], class_total)

    @staticmethod
    def _submission(row: sqlite3.Row | None) -> Submission | None:
        if row is None:
            return None
        return Submission(row["id"], row["student"], row["digest"], row["state"], row["task_id"], row["n"],
                          row["price"], row["answer"])

    def submission_for_key(self, student: Student, key: str) -> Submission | None:
        return self._submission(self._db.execute(
            "SELECT * FROM tasks WHERE student = ? AND idempotency_key = ?", (student.id, key)).fetchone())

    def submission_for_task(self, student: Student, task_id: str) -> Submission | None:
        """The submission behind `task_id`, only if `student` made it."""
        return self._submission(self._db.execute(
            "SELECT * FROM tasks WHERE student = ? AND task_id = ?", (student.id, task_id)).fetchone())

    def reserve(self, student: Student, *, key: str | None, digest: str, n: int, price: float | None,
                request: dict[str, Any], now: float) -> int:
        """Count a submission at `n` images before it is sent; returns its row id."""
        cursor = self._db.execute(
            """INSERT INTO tasks (student, class, idempotency_key, digest, state, n, price, model, prompt,
                                  size, resolution, day, created)
               VALUES (?, ?, ?, ?, 'reserved', ?, ?, ?, ?, ?, ?, ?, ?)""",
            (student.id, student.class_name, key, digest, n, price, _text(request.get("model")),
             _text(request.get("prompt")) or "", _text(request.get("size")), _text(request.get("resolution")),
             day_of(now), now))
        row_id = cursor.lastrowid
        assert row_id is not None  # set by every INSERT
        return row_id

    def release(self, submission_id: int) -> None:
        """The provider refused the submission: nothing was made, nothing counts. The row stays
        (marked 'refused') so that an answer to a concurrent resend can still attach to it."""
        self._db.execute("UPDATE tasks SET state = 'refused' WHERE id = ? AND state = 'reserved'", (submission_id,))

    def forget(self, submission_id: int) -> None:
        """Drop a refused submission, so the same Idempotency-Key can be checked and sent afresh."""
        self._db.execute("DELETE FROM tasks WHERE id = ? AND state = 'refused'", (submission_id,))

    def attach(self, submission_id: int, task_id: str, answer: str) -> None:
        """The provider made task `task_id` for this submission."""
        self._db.execute("UPDATE tasks SET task_id = ?, answer = ?, state = 'running' "
                         "WHERE id = ? AND state IN ('reserved', 'refused')", (task_id, answer, submission_id))

    def settle(self, submission_id: int, *, completed: bool, images: int, cost: float | None,
               result: list[dict[str, Any]]) -> None:
        """Count a finished task at what it made and cost (a failed one at nothing). Once."""
        self._db.execute(
            "UPDATE tasks SET state = ?, images = ?, cost = ?, result = ?, settled = ? "
            "WHERE id = ? AND state IN ('reserved', 'running')",
            ("completed" if completed else "failed", images if completed else 0,
             cost if completed else 0.0, json.dumps(result), self.clock(), submission_id))

    # -- media ------------------------------------------------------------------------------------

    def add_media(self, student: Student, urls: Iterable[str]) -> None:
        self._db.executemany("INSERT OR IGNORE INTO media VALUES (?, ?, ?)",
                             [(url, student.id, self.clock()) for url in urls])

    def media_owner(self, url: str) -> int | None:
        """The student id an upload or result URL belongs to, or None if the gateway never gave it out."""
        row = self._db.execute("SELECT student FROM media WHERE url = ?", (url,)).fetchone()
        return None if row is None else row[0]

    # -- what the teacher sees --------------------------------------------------------------------

    def log_event(self, class_name: str, student: str | None, kind: str, detail: str) -> None:
        self._db.execute("INSERT INTO events (time, class, student, kind, detail) VALUES (?, ?, ?, ?, ?)",
                         (self.clock(), class_name, student, kind, detail))

    def events(self, class_name: str, limit: int = 50) -> list[dict[str, Any]]:
        return [dict(row) for row in self._db.execute(
            "SELECT time, student, kind, detail FROM events WHERE class = ? ORDER BY id DESC LIMIT ?",
            (class_name, limit))]

    def gallery(self, class_name: str, limit: int = 200) -> list[dict[str, Any]]:
        """Completed tasks of the class with their images, newest first."""
        rows = self._db.execute(
            """SELECT t.task_id, t.prompt, t.model, t.size, t.resolution, t.images, t.cost, t.created,
                      t.result, s.name AS student
               FROM tasks t JOIN students s ON s.id = t.student
               WHERE t.class = ? AND t.state = 'completed' ORDER BY t.created DESC, t.id DESC LIMIT ?""",
            (class_name, limit))
        return [dict(row) | {"result": json.loads(row["result"] or "[]")} for row in rows]

    def totals(self, class_name: str | None = None) -> dict[str, float]:
        """Images and cost today and over all time, for one class or for every class."""
        where, args = ("WHERE class = ?", (class_name,)) if class_name is not None else ("", ())
        today = day_of(self.clock())
        row = self._db.execute(
            f"""SELECT COALESCE(SUM(CASE WHEN day = ? THEN {_IMAGES} END), 0) AS images_today,
                       COALESCE(SUM(CASE WHEN day = ? THEN {_SPEND} END), 0) AS spend_today,
                       COALESCE(SUM({_IMAGES}), 0) AS images_total,
                       COALESCE(SUM({_SPEND}), 0) AS spend_total
                FROM tasks {where}""", (today, today, *args)).fetchone()
        return dict(row)


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) else None
