"""The gateway's data folder: its lock, its teacher token, and where the database lives.

One gateway process serves a folder at a time. Two would each keep their own per-code request
counters and their own in-flight reservations, so the budgets would hold only per process;
rather than make that safe, the second one is refused at start with the folder and the PID of
the one holding it. The lock is `fcntl.flock` on `DIR/gateway.lock`: the kernel drops it when
the holder dies, so a crashed gateway never leaves a stale lock behind. The command-line tools
(add-class, revoke, ...) do not take the lock: they write through SQLite's own locking while
the gateway runs, and the gateway reads classes and codes afresh on every request.
"""

from __future__ import annotations

import fcntl
import os
import secrets
from pathlib import Path

__all__ = ["DataFolder", "FolderInUse"]

TOKEN_FILE = "teacher-token"
LOCK_FILE = "gateway.lock"
DATABASE_FILE = "gateway.sqlite3"


class FolderInUse(RuntimeError):
    """Another gateway process holds this data folder."""

    def __init__(self, folder: Path, pid: str):
        self.folder = folder
        self.pid = pid
        holder = f"PID {pid}" if pid else "a process whose PID is not recorded"
        super().__init__(f"the data folder {folder} is already served by another gateway ({holder}); "
                         "stop that one, or give this one another --data folder")


class DataFolder:
    """`DIR`: created on first use, private to the user who made it (mode 0700)."""

    def __init__(self, path: str | os.PathLike[str]):
        self.path = Path(path).expanduser().resolve()
        self._lock: int | None = None

    @property
    def database(self) -> Path:
        return self.path / DATABASE_FILE

    def create(self) -> DataFolder:
        self.path.mkdir(mode=0o700, parents=True, exist_ok=True)
        return self

    def teacher_token(self) -> tuple[str, bool]:
        """(the teacher's token, whether it was made just now). Made once, kept mode 0600."""
        path = self.path / TOKEN_FILE
        try:
            token = path.read_text(encoding="ascii").strip()
        except FileNotFoundError:
            token = ""
        if token:
            return token, False
        token = secrets.token_urlsafe(32)
        # O_EXCL: two first starts at once cannot each write a different token
        try:
            descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            return self.teacher_token()[0], False
        with os.fdopen(descriptor, "w", encoding="ascii") as handle:
            handle.write(token + "\n")
        return token, True

    def lock(self) -> None:
        """Take the folder for this process, or raise FolderInUse naming the holder."""
        path = self.path / LOCK_FILE
        descriptor = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(descriptor, 32).decode("ascii", "replace").strip()
            os.close(descriptor)
            raise FolderInUse(self.path, holder) from None
        os.ftruncate(descriptor, 0)
        os.pwrite(descriptor, f"{os.getpid()}\n".encode(), 0)
        self._lock = descriptor

    def unlock(self) -> None:
        if self._lock is not None:
            os.close(self._lock)  # closing drops the flock
            self._lock = None
