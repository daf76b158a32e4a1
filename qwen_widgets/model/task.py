"""Task, TaskStatus and GeneratedImage: what the client knows about a generation. Pure values.

Parsing the API's JSON into them lives in `wire`; turning them into rows and records in
`record`, into DataFrames in `frame`. Values do no I/O: saving a task's images is the front
door's `qwen_widgets.save(task, folder)`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime, timezone
from enum import Enum
from pathlib import Path
from typing import Any

from .errors import RequestValidationError, shorten
from .lineage import Reference
from .request import ImageRequest

__all__ = ["TaskStatus", "GeneratedImage", "Task", "UploadedImage"]

_TASK_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,127}")


class TaskStatus(str, Enum):
    """Where a task is in its life. `submitted` is what the POST answers; `unknown` is a
    status string this version does not know (treated as still running)."""

    SUBMITTED = "submitted"
    PENDING = "pending"
    PROCESSING = "processing"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"
    UNKNOWN = "unknown"

    @property
    def is_terminal(self) -> bool:
        """True once the status can no longer change."""
        return self in (TaskStatus.COMPLETED, TaskStatus.FAILED, TaskStatus.CANCELLED)

    @classmethod
    def parse(cls, value: Any) -> TaskStatus:
        text = str(value).strip().lower()
        text = _STATUS_ALIASES.get(text, text)
        try:
            return cls(text)
        except ValueError:
            return cls.UNKNOWN


_STATUS_ALIASES = {
    "queued": "pending",
    "waiting": "pending",
    "running": "processing",
    "in_progress": "processing",
    "succeeded": "completed",
    "success": "completed",
    "error": "failed",
    "failure": "failed",
    "canceled": "cancelled",
}


@dataclass(frozen=True)
class GeneratedImage:
    """One result image. The URL is temporary: it stops working at `expires_at`."""

    url: str
    """Where the image can be downloaded (no credentials needed)."""
    index: int
    """Position in the task's results, from 0."""
    expires_at: datetime | None = None
    """When the URL stops working (aware, UTC); None when the server did not say."""
    width: int | None = None
    """Pixel width, from the request's size table; None when the request is unknown."""
    height: int | None = None
    """Pixel height, like `width`."""
    local_path: Path | None = None
    """A full-resolution copy on this machine, once one was saved; it outlives the URL."""
    error: str | None = None
    """Why this image cannot be had (the server sent a URL that cannot be fetched); the
    task's other images are unaffected."""

    def expiry_warning(self, now: datetime | None = None) -> str | None:
        """A warning when the URL dies within the hour (or died) and no local copy exists."""
        if self.local_path is not None or self.expires_at is None or self.error is not None:
            return None
        left = (self.expires_at - (now or datetime.now(timezone.utc))).total_seconds()
        if left <= 0:
            return "URL expired and no local copy was saved"
        if left < 3600:
            return f"URL expires in {max(1, round(left / 60))} min and the image is not saved locally"
        return None


@dataclass(frozen=True)
class Task:
    """The state of one generation task as last seen by the client."""

    task_id: str
    """The server's id; use it to re-attach with `client.wait(task_id)`."""
    status: TaskStatus
    """Where the task is in its life."""
    progress: int = 0
    """0..100 as reported by the server."""
    estimated_time: float | None = None
    """Seconds the server expects the task to take. Often an overestimate."""
    actual_time: float | None = None
    """Seconds it took, once completed."""
    created_at: datetime | None = None
    """Server-side creation time (aware, UTC)."""
    completed_at: datetime | None = None
    """Server-side completion time (aware, UTC)."""
    images: tuple[GeneratedImage, ...] = ()
    """What came back; may hold fewer than `request.n`."""
    error: str | None = None
    """The server's message when the task failed."""
    request: ImageRequest | None = None
    """The request that produced this task, when this client submitted it or was told."""
    request_id: str | None = None
    """The server's id for the answer that created the task; quote it to APIMart support."""
    cost: float | None = None
    """What the service reports it charged for the task (completed tasks), in its currency."""
    credits_cost: float | None = None
    """What the service reports it charged in credits, when it does."""
    local_id: str | None = field(default=None, compare=False)
    """The journal row of this task (set once the client journaled it as finished): what
    `qw.star`, `qw.delete` and the history find it by."""
    references: tuple[Reference, ...] = field(default=(), compare=False)
    """Where each reference image of the request came from, as far as the journal knows
    (lineage: one of our own results, an upload of a file, or an outside URL)."""

    @property
    def done(self) -> bool:
        """True once the task is completed, failed or cancelled."""
        return self.status.is_terminal

    @property
    def urls(self) -> list[str]:
        """The image URLs, in order."""
        return [image.url for image in self.images]

    def __repr__(self) -> str:
        parts = [f"task_id={self.task_id!r}", f"status={self.status.value}"]
        if not self.done:
            parts.append(f"progress={self.progress}")
        if self.images or self.status is TaskStatus.COMPLETED:
            parts.append(f"images={len(self.images)}")
        if self.error:
            parts.append(f"error={shorten(self.error)}")
        return f"Task({', '.join(parts)})"


def validate_task_id(task_id: Any) -> str:
    """Refuse anything that could change the URL path it is put into."""
    # also used in file names, so no '.', ':' or separators
    if not isinstance(task_id, str) or not _TASK_ID.fullmatch(task_id):
        raise RequestValidationError("task_id", "must be 1-128 letters, digits, '_' or '-'", task_id)
    return task_id


@dataclass(frozen=True)
class UploadedImage:
    """A local image, uploaded: its URL works in `image_urls` until `expires_at`."""

    url: str
    """Where the API (and anyone) can fetch it."""
    expires_at: datetime | None
    """When the URL stops working (72 h after the upload, by the contract)."""
    filename: str
    """The name it was uploaded under."""
    content_type: str
    """image/png, image/jpeg, image/gif or image/webp, from its bytes."""
    bytes: int
    """Its size."""
    sha256: str
    """Its content hash: the same image is uploaded once while its URL lives."""
    local_path: Path | None = None
    """The file it came from, when it came from one: a request can be repeated from it after
    the URL expired."""
