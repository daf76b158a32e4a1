"""Tasks as pandas DataFrames, one row per image. pandas is imported only here, on demand."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any
from collections.abc import Iterable

from ._models import Task

if TYPE_CHECKING:
    import pandas

__all__ = ["to_frame", "task_rows", "COLUMNS"]

COLUMNS = (
    "task_id", "model", "prompt", "negative_prompt", "size", "resolution", "n",
    "width", "height", "image_index", "url", "expires_at", "status", "error",
    "created_at", "completed_at", "actual_time", "estimated_time",
)  # fmt: skip
_TIMES = ("expires_at", "created_at", "completed_at")
_INTEGERS = ("n", "width", "height", "image_index")
_FLOATS = ("actual_time", "estimated_time")


def task_rows(task: Task) -> list[dict[str, Any]]:
    """Plain dict rows for one task: one per image, or one without a URL when it has none."""
    request = task.request
    common = {
        "task_id": task.task_id,
        "model": request.model if request else None,
        "prompt": request.prompt if request else None,
        "negative_prompt": request.negative_prompt if request else None,
        "size": request.size if request else None,
        "resolution": request.resolution if request else None,
        "n": request.n if request else None,
        "status": task.status.value,
        "error": task.error,
        "created_at": task.created_at,
        "completed_at": task.completed_at,
        "actual_time": task.actual_time,
        "estimated_time": task.estimated_time,
    }
    if not task.images:
        width, height = request.output_size if request else (None, None)
        return [{**common, "width": width, "height": height, "image_index": None,
                 "url": None, "expires_at": None}]
    return [
        {**common, "width": image.width, "height": image.height, "image_index": image.index,
         "url": image.url, "expires_at": image.expires_at}
        for image in task.images
    ]


def to_frame(tasks: Task | Iterable[Task]) -> pandas.DataFrame:
    """One row per image (failed tasks: one row with status and error, no url).

    Times are tz-aware UTC; counts are nullable integers; durations are float seconds.
    """
    import pandas as pd

    if isinstance(tasks, Task):
        tasks = [tasks]
    rows = [row for task in tasks for row in task_rows(task)]
    frame = pd.DataFrame(rows, columns=list(COLUMNS))
    for column in _TIMES:
        frame[column] = pd.to_datetime(frame[column], utc=True)
    for column in _INTEGERS:
        frame[column] = frame[column].astype("Int64")
    for column in _FLOATS:
        frame[column] = frame[column].astype("float64")
    for column in set(COLUMNS) - set(_TIMES) - set(_INTEGERS) - set(_FLOATS):
        frame[column] = frame[column].astype("string")
    return frame
