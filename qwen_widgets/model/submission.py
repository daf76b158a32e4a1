"""A submission as the journal records it, and what became of it: pure values.

The journal (`store.journal`) writes and reads them; the engine, the front door and the views
read them (resume, history, the panel's Resume).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import Enum
from pathlib import Path
from typing import NamedTuple

from .lineage import Reference
from .request import ImageRequest
from .task import Task

__all__: list[str] = []


class ImageCopy(NamedTuple):
    """One image kept on disk, and the submission it belongs to."""

    local_id: str
    task_id: str | None
    index: int
    path: Path
    sha256: str
    saved_at: float


class EntryState(str, Enum):
    SUBMITTING = "submitting"
    """Written before the POST; still so only while that POST is in flight."""
    SUBMITTED = "submitted"
    """The server gave a task id; the task is not known to have ended."""
    FINISHED = "finished"
    """The task was seen completed, failed or cancelled."""
    UNKNOWN = "unknown"
    """The POST may have reached the server but no answer came. With its idempotency key it is
    sent again by resume(); without (`resend` off) it is never resent."""
    REFUSED = "refused"
    """The server (or the network, before sending) refused it: nothing was created."""
    EXPIRED = "expired"
    """The task id is older than the service keeps it (a 404 on re-attaching)."""


STATUSES = ("completed", "failed", "cancelled", "running", "unknown", "refused", "expired")
"""What a history can be filtered by: Entry.status's words."""


def entry_status(state: str, task_status: str | None) -> str:
    """Entry.status from a journal row's state and its task's status (the journal's SQL
    says the same thing for its filters: keep the two in step)."""
    if state in ("refused", "expired", "unknown"):
        return state
    if task_status in ("completed", "failed", "cancelled"):
        return task_status
    return "running"


@dataclass(frozen=True)
class OpenWork:
    """What the journal left open (see Journal.open_work): what resume() finishes."""

    lost: list[Entry]
    """Submissions whose answer was lost, to send again with their idempotency key."""
    unfinished: list[Entry]
    """Submitted tasks not seen to end, to watch."""
    unkept: list[Entry]
    """Completed tasks with images not yet kept on disk."""
    unresendable: list[Entry]
    """Submissions whose answer was lost and that were sent with resend_with_key=False: they
    may have made a task, and are only reported, never resent."""

    @property
    def waiting(self) -> int:
        """Submissions and tasks someone is waiting for: lost ones to resend, unfinished ones."""
        return len(self.lost) + len(self.unfinished)

    def __bool__(self) -> bool:
        return bool(self.lost or self.unfinished or self.unkept or self.unresendable)


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
    idempotency_key: str | None = None
    """Sent with every attempt of this submission; resending with it never makes a second task."""
    request_id: str | None = None
    """The server's id for the answer that created the task (support asks for it)."""
    attempts: int = 0
    """POSTs sent for this submission."""
    replayed: bool = False
    """True when the server answered a resend with the task the first attempt had created."""
    resend: bool = False
    """True when the submission may be sent again with its key after a lost answer."""
    starred: bool = False
    """Starred by the user (`qw.star`, the star on a card or history item)."""
    hidden: bool = False
    """Hidden from the history by the user (`qw.hide`); nothing was removed."""
    references: tuple[Reference, ...] = ()
    """Where each reference image of the request came from (see model.lineage)."""

    @property
    def status(self) -> str:
        """One word for what became of it: the task's status once it has one (completed,
        failed, cancelled, or running while it is watched), else the journal's word for a
        submission without a task (running while it is being sent, unknown, refused, expired)."""
        return entry_status(self.state, self.task.status.value if self.task is not None else None)
