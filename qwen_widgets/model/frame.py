"""Tasks and journal entries as pandas DataFrames, one row per image. pandas loads only here."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .record import image_rows
from .task import Task

if TYPE_CHECKING:
    import pandas

    from .submission import Entry

__all__ = ["to_frame"]

COLUMNS = (
    "task_id", "model", "prompt", "negative_prompt", "size", "resolution", "n",
    "width", "height", "image_index", "url", "expires_at", "local_path", "warning",
    "status", "error", "created_at", "completed_at", "actual_time", "estimated_time",
    "cost", "request_id",
)  # fmt: skip
HISTORY_COLUMNS = ("local_id", "journal_state", "submitted_at", *COLUMNS)
_TIMES = ("expires_at", "created_at", "completed_at", "submitted_at")
_INTEGERS = ("n", "width", "height", "image_index")
_FLOATS = ("actual_time", "estimated_time", "cost")


def to_frame(tasks: Task | Iterable[Task]) -> pandas.DataFrame:
    """One row per image (failed tasks: one row with status and error, no url).

    Times are tz-aware UTC; counts are nullable integers; durations are float seconds.
    """
    if isinstance(tasks, Task):
        tasks = [tasks]
    return _typed([row for task in tasks for row in image_rows(task)], COLUMNS)


def history_frame(entries: Iterable[Entry]) -> pandas.DataFrame:
    """Journal entries as to_frame() rows plus local_id, journal_state and submitted_at; a
    submission without a task (refused, unknown) is one row with its request and error."""
    rows = []
    for entry in entries:
        extra = {"local_id": entry.local_id, "journal_state": entry.state.value,
                 "submitted_at": entry.created_at}
        if entry.task is not None:
            rows.extend({**extra, **row} for row in image_rows(entry.task))
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
            frame[column] = frame[column].map(lambda v: str(v) if isinstance(v, Path) else v).astype("string")
    return frame
