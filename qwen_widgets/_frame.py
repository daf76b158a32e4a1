"""Tasks as pandas DataFrames, one row per image. pandas is imported only here, on demand."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any
from collections.abc import Iterable

from ._models import Task

if TYPE_CHECKING:
    import pandas

    from ._journal import Journal

__all__ = ["to_frame", "history", "task_rows", "COLUMNS", "HISTORY_COLUMNS"]

COLUMNS = (
    "task_id", "model", "prompt", "negative_prompt", "size", "resolution", "n",
    "width", "height", "image_index", "url", "expires_at", "local_path", "warning",
    "status", "error", "created_at", "completed_at", "actual_time", "estimated_time",
)  # fmt: skip
HISTORY_COLUMNS = ("local_id", "journal_state", "submitted_at", *COLUMNS)
_TIMES = ("expires_at", "created_at", "completed_at", "submitted_at")
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
                 "url": None, "expires_at": None, "local_path": None, "warning": None}]
    return [
        {**common, "width": image.width, "height": image.height, "image_index": image.index,
         "url": image.url, "expires_at": image.expires_at,
         "local_path": str(image.local_path) if image.local_path else None,
         "warning": image.expiry_warning(), "error": image.error or task.error}
        for image in task.images
    ]


def to_frame(tasks: Task | Iterable[Task]) -> pandas.DataFrame:
    """One row per image (failed tasks: one row with status and error, no url).

    Times are tz-aware UTC; counts are nullable integers; durations are float seconds.
    """
    if isinstance(tasks, Task):
        tasks = [tasks]
    return _typed([row for task in tasks for row in task_rows(task)], COLUMNS)


def history(journal: Journal | None = None) -> pandas.DataFrame:
    """Every journaled submission: one row per image, one per failed, refused or unknown one.

    The columns of to_frame() plus local_id, journal_state and submitted_at. Defaults to the
    journal in the home folder, whatever the mode: demo submissions are never in it (their
    simulator dies with the process), so without a key this shows the earlier keyed runs.
    """
    if journal is None:
        from ._journal import Journal

        journal = Journal.existing()
        if journal is None:
            return _typed([], HISTORY_COLUMNS)
    journal.settle_orphans()
    rows = []
    for entry in journal.entries():
        extra = {"local_id": entry.local_id, "journal_state": entry.state.value,
                 "submitted_at": entry.created_at}
        if entry.task is not None:
            rows.extend({**extra, **row} for row in task_rows(entry.task))
        else:
            request = entry.request
            rows.append({**extra, "model": request and request.model,
                         "prompt": request and request.prompt, "size": request and request.size,
                         "resolution": request and request.resolution, "n": request and request.n,
                         "negative_prompt": request and request.negative_prompt,
                         "error": entry.error})
    return _typed(rows, HISTORY_COLUMNS)


def _typed(rows: list[dict[str, Any]], columns: tuple[str, ...]) -> pandas.DataFrame:
    import pandas as pd

    frame = pd.DataFrame(rows, columns=list(columns))
    for column in columns:
        if column in _TIMES:
            frame[column] = pd.to_datetime(frame[column], utc=True)
        elif column in _INTEGERS:
            frame[column] = frame[column].astype("Int64")
        elif column in _FLOATS:
            frame[column] = frame[column].astype("float64")
        else:
            frame[column] = frame[column].astype("string")
    return frame
