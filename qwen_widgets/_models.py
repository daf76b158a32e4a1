"""Task, TaskStatus and GeneratedImage, and the tolerant parsing of the API's JSON into them.

The wire format has quirks (API.md section 2): `url` is a string or a list of strings, numbers
arrive as strings, optional fields go missing, unknown fields appear. Parsing accepts all of
that; a body it cannot use raises MalformedResponseError, never KeyError or TypeError.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from datetime import datetime, timezone
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ._errors import MalformedResponseError, RequestValidationError, shorten
from ._request import ImageRequest
from ._urls import is_http_url

if TYPE_CHECKING:
    import pandas

__all__ = [
    "TaskStatus",
    "GeneratedImage",
    "Task",
    "parse_submit_response",
    "parse_task_response",
    "parse_error_envelope",
    "validate_task_id",
]

UNUSABLE_URL = "the server sent a URL that cannot be fetched (not a public http(s) URL)"
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

    @property
    def done(self) -> bool:
        """True once the task is completed, failed or cancelled."""
        return self.status.is_terminal

    @property
    def urls(self) -> list[str]:
        """The image URLs, in order."""
        return [image.url for image in self.images]

    def to_frame(self) -> pandas.DataFrame:
        """This task as a DataFrame, one row per image (see `qwen_widgets.to_frame`)."""
        from ._frame import to_frame

        return to_frame([self])

    def save(self, folder: str | Path) -> list[Path]:
        """Export the images to `folder`, each with a JSON sidecar (see `qwen_widgets.save`)."""
        from ._save import save

        return save([self], folder)

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


def parse_submit_response(body: Any, request: ImageRequest) -> Task:
    """Read `{"code": 200, "data": [{"status": "submitted", "task_id": ...}]}`."""
    data = _field(body, "data", "submit response")
    if isinstance(data, list):  # documented as a one-element list; accept a bare object too
        if not data:
            raise MalformedResponseError("submit response has an empty 'data' list")
        data = data[0]
    task_id = _field(data, "task_id", "submit response data")
    try:
        validate_task_id(task_id)
    except RequestValidationError:
        raise MalformedResponseError(
            f"submit response carries an unusable task id {shorten(task_id)}"
        ) from None
    status = TaskStatus.parse(data.get("status", "submitted"))
    return Task(task_id=task_id, status=status, request=request)


def parse_task_response(body: Any, *, task_id: str, request: ImageRequest | None) -> Task:
    """Read the envelope of `GET /v1/tasks/{id}` into a Task."""
    data = _field(body, "data", "task response")
    if not isinstance(data, dict):
        raise MalformedResponseError(f"task response 'data' is not an object: {shorten(data)}")
    if not isinstance(data.get("status"), str):
        # an unknown *word* is tolerated (still running); a missing or non-text status is not
        raise MalformedResponseError(
            f"task response has no usable 'status': {shorten(data.get('status'))}", task_id=task_id)
    status = TaskStatus.parse(data["status"])
    seen_id = data.get("id", task_id)
    if seen_id != task_id:
        raise MalformedResponseError(
            f"asked for task {task_id} but the answer is about {shorten(seen_id)}"
        )
    progress = _number(data.get("progress"))
    if status is TaskStatus.COMPLETED:
        progress = 100
    width, height = request.output_size if request is not None else (None, None)
    result = data.get("result")
    images = _parse_images(result, width, height) if isinstance(result, dict) else ()
    return Task(
        task_id=task_id,
        status=status,
        progress=int(min(max(progress or 0, 0), 100)),
        estimated_time=_number(data.get("estimated_time")),
        actual_time=_number(data.get("actual_time")),
        created_at=_timestamp(data.get("created")),
        completed_at=_timestamp(data.get("completed")),
        images=images,
        error=_error_text(data.get("error")) if status is TaskStatus.FAILED else None,
        request=request,
    )


def parse_error_envelope(body: Any) -> tuple[Any, str | None, str | None]:
    """(code, message, type) from `{"error": {...}}` or other common shapes; Nones if absent."""
    if not isinstance(body, dict):
        return None, None, None
    error = body.get("error", body)
    if isinstance(error, str):
        return body.get("code"), error, None
    if not isinstance(error, dict):
        return None, None, None
    message = error.get("message", body.get("message"))
    kind = error.get("type")
    return (
        error.get("code", body.get("code")),
        message if isinstance(message, str) else None,
        kind if isinstance(kind, str) else None,
    )


def _field(container: Any, name: str, what: str) -> Any:
    if not isinstance(container, dict):
        raise MalformedResponseError(f"{what} is not a JSON object: {shorten(container)}")
    if name not in container:
        raise MalformedResponseError(f"{what} has no {name!r} field: {shorten(container)}")
    return container[name]


def _parse_images(result: dict, width: int | None, height: int | None) -> tuple[GeneratedImage, ...]:
    entries = result.get("images")
    if not isinstance(entries, list):
        return ()
    images: list[GeneratedImage] = []
    for entry in entries:
        if isinstance(entry, str):
            entry = {"url": entry}
        if not isinstance(entry, dict):
            continue
        urls = entry.get("url")
        expires = _timestamp(entry.get("expires_at"))
        for url in urls if isinstance(urls, list) else [urls]:
            if isinstance(url, str) and url.strip():
                url = url.strip()
                # kept, not dropped: the image was paid for, and the others must survive it
                error = None if is_http_url(url) else UNUSABLE_URL
                images.append(GeneratedImage(url, len(images), expires, width, height, error=error))
    return tuple(images)


def _number(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if not isinstance(value, (str, int, float)):
        return None
    try:
        number = float(value.strip() if isinstance(value, str) else value)
    except (ValueError, OverflowError):  # OverflowError: an int beyond float range
        return None
    return number if math.isfinite(number) else None


def _timestamp(value: Any) -> datetime | None:
    number = _number(value)
    if number is None:
        if isinstance(value, str):
            return _iso_timestamp(value)
        return None
    if number > 1e11:  # milliseconds
        number /= 1000
    try:
        return datetime.fromtimestamp(number, tz=timezone.utc)
    except (OverflowError, OSError, ValueError):
        return None


def _iso_timestamp(text: str) -> datetime | None:
    try:
        parsed = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=timezone.utc)
    try:
        return parsed.astimezone(timezone.utc)
    except OverflowError:  # e.g. year 1 with a positive offset
        return None


def _error_text(error: Any) -> str:
    if isinstance(error, dict):
        message = error.get("message") or error.get("msg") or error.get("code")
        if message is not None:
            return str(message)
    elif error:
        return str(error)
    return "the task failed without a message"
