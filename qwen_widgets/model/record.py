"""A Task as plain records, one way for everyone: the journal, sidecars and DataFrames.

`image_rows` flattens a task into one dict per image (its request, its timings, the image);
the journal stores `task_record`, and reads it back with `task_from_record`. Values stay
Python objects here (datetimes, Paths); each writer converts them for its medium.
"""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from .request import ImageRequest
from .task import GeneratedImage, Task, TaskStatus

__all__: list[str] = []

REQUEST_FIELDS = ("model", "prompt", "negative_prompt", "size", "resolution", "n")
TASK_FIELDS = ("task_id", "status", "error", "created_at", "completed_at", "actual_time", "estimated_time",
               "cost", "request_id")
IMAGE_FIELDS = ("width", "height", "image_index", "url", "expires_at", "local_path", "warning")


def image_rows(task: Task) -> list[dict[str, Any]]:
    """One row per image (request, task and image fields), or one row without an image when
    the task has none. An image's own error, when it has one, is the row's error."""
    request = task.request
    common: dict[str, Any] = {name: getattr(request, name) if request else None for name in REQUEST_FIELDS}
    common.update(task_id=task.task_id, status=task.status.value, error=task.error,
                  created_at=task.created_at, completed_at=task.completed_at,
                  actual_time=task.actual_time, estimated_time=task.estimated_time,
                  cost=task.cost, request_id=task.request_id)
    if not task.images:
        width, height = request.output_size if request else (None, None)
        return [{**common, "width": width, "height": height, "image_index": None, "url": None,
                 "expires_at": None, "local_path": None, "warning": None}]
    return [{**common, **_image_fields(image), "error": image.error or task.error} for image in task.images]


def _image_fields(image: GeneratedImage) -> dict[str, Any]:
    return {"width": image.width, "height": image.height, "image_index": image.index, "url": image.url,
            "expires_at": image.expires_at, "local_path": image.local_path,
            "warning": image.expiry_warning()}


def task_record(task: Task) -> dict[str, Any]:
    """The wire-level facts of a task, JSON-ready (unix seconds), for the journal. Its
    request is stored apart, and local copies in a table of their own."""
    return {
        "task_id": task.task_id,
        "status": task.status.value,
        "progress": task.progress,
        "estimated_time": task.estimated_time,
        "actual_time": task.actual_time,
        "created_at": _stamp(task.created_at),
        "completed_at": _stamp(task.completed_at),
        "error": task.error,
        "request_id": task.request_id,
        "cost": task.cost,
        "credits_cost": task.credits_cost,
        "images": [{"url": i.url, "index": i.index, "expires_at": _stamp(i.expires_at),
                    "width": i.width, "height": i.height, "error": i.error} for i in task.images],
    }


def task_from_record(data: dict[str, Any], request: ImageRequest | None,
                     copies: dict[int, str] | None = None) -> Task:
    """A Task back from task_record(); `copies` maps image indexes to kept files."""
    copies = copies or {}
    images = tuple(
        GeneratedImage(i["url"], i["index"], _when(i["expires_at"]), i["width"], i["height"],
                       Path(copies[i["index"]]) if i["index"] in copies else None, i.get("error"))
        for i in data["images"]
    )
    return Task(data["task_id"], TaskStatus(data["status"]), data["progress"], data["estimated_time"],
                data["actual_time"], _when(data["created_at"]), _when(data["completed_at"]), images,
                data["error"], request, data.get("request_id"), data.get("cost"), data.get("credits_cost"))


def _stamp(value: datetime | None) -> float | None:
    return value.timestamp() if value is not None else None


def _when(value: float | None) -> datetime | None:
    return datetime.fromtimestamp(value, timezone.utc) if value is not None else None
