"""The receipt inside every image file the package writes or hands to the browser. Pure.

A receipt says what made the image: the request as it was sent, the model, the task id and
the server's request id, what it cost, how long it took, the sha256 of the image as the server
sent it, and each reference image (its URL, its sha256 and the task it came from, when known).
It travels inside the file (PNG text chunks, or XMP in a JPEG or WebP: see model.images), so
a file that was mailed, downloaded or renamed still says where it came from;
`qw.read_receipt(path)` reads it back and `qw.rerun(path)` sends the same request again.

The API takes no seed, so no receipt can make the same pixels twice: the receipt says so in
its own words (`seed` is null and `seed_note` explains), and a re-run makes new images from
the same request.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from .errors import RequestValidationError
from .images import read_text, with_text
from .lineage import Reference
from .request import ImageRequest
from .task import GeneratedImage, Task

__all__ = ["Receipt"]

RECEIPT_KEY = "qwen_widgets"
"""The text key (PNG chunk, XMP field) that holds the receipt's JSON."""
RECEIPT_VERSION = 1
SEED_NOTE = ("Qwen-Image 2.0 on APIMart takes no seed: sending this request again (qw.rerun) "
             "makes new images, not these pixels. The request, model and references are what "
             "can be repeated.")


def receipt_record(task: Task, image: GeneratedImage, data: bytes) -> dict[str, Any]:
    """The receipt of image `image` of `task`, whose bytes (as the server sent them) are
    `data`, as JSON-ready values. Its first keys are those of the JSON sidecar (task id,
    index, status, request, size, URL, times, sha256), so the sidecar can be the receipt."""
    request = task.request
    return {
        "task_id": task.task_id,
        "image_index": image.index,
        "status": task.status.value,
        "request": request.to_payload() if request is not None else None,
        "width": image.width,
        "height": image.height,
        "url": image.url,
        "expires_at": _iso(image.expires_at),
        "created_at": _iso(task.created_at),
        "completed_at": _iso(task.completed_at),
        "actual_time": task.actual_time,
        "estimated_time": task.estimated_time,
        "sha256": hashlib.sha256(data).hexdigest(),
        "model": request.model if request is not None else None,
        "request_id": task.request_id,
        "cost": task.cost,
        "credits_cost": task.credits_cost,
        "time_unit": "seconds (actual_time: the server's; estimated_time: its estimate)",
        "references": [_reference_json(url, task.references) for url in (request.image_urls if request else ())],
        "seed": None,
        "seed_note": SEED_NOTE,
        "software": "qwen_widgets",
        "receipt": RECEIPT_VERSION,
    }


def labelled(task: Task, image: GeneratedImage, data: bytes) -> tuple[dict[str, Any], bytes]:
    """(receipt, the image with it inside): the prompt and the receipt's JSON as PNG text, or
    as XMP in a JPEG or WebP; other formats are returned as they are (their receipt is the
    JSON sidecar alone)."""
    record = receipt_record(task, image, data)
    text = {RECEIPT_KEY: json.dumps(record, ensure_ascii=False)}
    if task.request is not None:
        text = {"prompt": task.request.prompt, **text}
    return record, with_text(data, text)


@dataclass(frozen=True)
class Receipt:
    """What an image file says about how it was made (see `qw.read_receipt`)."""

    request: ImageRequest | None
    """The request as it was sent; None if the receipt's request no longer validates."""
    task_id: str | None
    image_index: int | None
    """Which image of the task (from 0)."""
    model: str | None
    request_id: str | None
    """The server's id for the answer that created the task (APIMart support asks for it)."""
    cost: float | None
    """What the service reported it charged for the whole task, in its currency."""
    created_at: str | None
    """When the server created the task (ISO 8601, UTC)."""
    completed_at: str | None
    actual_time: float | None
    """Seconds the server took."""
    estimated_time: float | None
    """Seconds the server estimated."""
    sha256: str | None
    """The sha256 of the image as the server sent it (before the receipt was added)."""
    references: tuple[Reference, ...] = ()
    """Each reference image: its URL, sha256 and the task it came from, when known."""
    seed: None = None
    """Always None: the API takes no seed (see `seed_note`)."""
    seed_note: str = SEED_NOTE
    record: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)
    """The whole receipt as stored, including fields this version does not name."""

    @classmethod
    def from_record(cls, record: Any) -> Receipt:
        if not isinstance(record, dict) or not isinstance(record.get("task_id", ""), (str, type(None))):
            raise RequestValidationError("receipt", "must be a qwen_widgets receipt (a JSON object)",
                                         show_value=False)
        try:
            request = ImageRequest.from_payload(record.get("request"))
        except RequestValidationError:
            request = None
        text = lambda key: record[key] if isinstance(record.get(key), str) else None  # noqa: E731

        def number(key: str) -> float | None:
            value = record.get(key)
            return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None

        index = record.get("image_index")
        references = tuple(filter(None, (Reference.from_json(item) for item in record.get("references") or ())))
        return cls(request, text("task_id"), index if isinstance(index, int) else None, text("model"),
                   text("request_id"), number("cost"), text("created_at"), text("completed_at"),
                   number("actual_time"), number("estimated_time"), text("sha256"), references,
                   record=record)

    @classmethod
    def from_bytes(cls, data: bytes) -> Receipt | None:
        """The receipt inside image bytes, or None when they carry none."""
        raw = read_text(data).get(RECEIPT_KEY)
        if raw is None:
            return None
        try:
            return cls.from_record(json.loads(raw))
        except (ValueError, RequestValidationError):
            return None

    def __repr__(self) -> str:
        prompt = self.request.prompt if self.request else "?"
        prompt = prompt if len(prompt) <= 40 else prompt[:39] + "…"
        return f"Receipt(task_id={self.task_id!r}, image_index={self.image_index}, prompt={prompt!r})"


def _reference_json(url: str, known: tuple[Reference, ...]) -> dict[str, Any]:
    """A reference as the receipt keeps it: URL, sha256 and parent task, never a local path
    (a receipt travels with the file; where it lay on this machine is nobody else's business)."""
    reference = next((ref for ref in known if ref.url == url), Reference(url))
    return {"url": url, "sha256": reference.sha256, "task_id": reference.parent_task_id,
            "image_index": reference.parent_index}


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None
