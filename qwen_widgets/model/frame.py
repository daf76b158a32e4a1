"""Tasks and journal entries as pandas DataFrames, one row per image. pandas loads only here."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .record import image_rows
from .request import OUTPUT_SIZES
from .task import GeneratedImage, Task

if TYPE_CHECKING:
    import pandas

__all__ = ["to_frame"]

COLUMNS = (
    "task_id", "model", "prompt", "negative_prompt", "size", "resolution", "n",
    "width", "height", "image_index", "url", "expires_at", "local_path", "warning",
    "status", "error", "created_at", "completed_at", "actual_time", "estimated_time",
    "cost", "request_id",
)  # fmt: skip
HISTORY_COLUMNS = ("local_id", "journal_state", "submitted_at", *COLUMNS, "starred", "hidden")
HISTORY_ROW = ("local_id", "journal_state", "submitted_at", "task_id", "model", "prompt", "negative_prompt",
               "size", "resolution", "n", "image_index", "url", "expires_at", "local_path", "status", "error",
               "created_at", "completed_at", "actual_time", "estimated_time", "cost", "request_id", "starred",
               "hidden")
"""The order of the journal's flat history rows (store.journal.Journal.history_rows). Width and
height are not among them: they follow from the size and resolution (as the wire sets them)."""
_TIMES = ("expires_at", "created_at", "completed_at", "submitted_at")
_INTEGERS = ("n", "width", "height", "image_index")
_FLOATS = ("actual_time", "estimated_time", "cost")
_FLAGS = ("starred", "hidden")


def to_frame(tasks: Task | Iterable[Task]) -> pandas.DataFrame:
    """One row per image (failed tasks: one row with status and error, no url).

    Times are tz-aware UTC; counts are nullable integers; durations (`actual_time`: what the
    server took; `estimated_time`: what it expected) are float seconds; `cost` is in the
    service's currency.
    """
    if isinstance(tasks, Task):
        tasks = [tasks]
    return _typed([row for task in tasks for row in image_rows(task)], COLUMNS)


def history_frame(rows: list[tuple], now: datetime | None = None) -> pandas.DataFrame:
    """The journal's flat rows (HISTORY_ROW order) as to_frame() columns plus local_id,
    journal_state, submitted_at, starred and hidden; a submission without a task (refused,
    unknown) is one row with its request and error. Built column by column with the dtypes of
    to_frame(), never row by row: 100,000 rows take a fraction of a second."""
    import numpy as np
    import pandas as pd

    # one object table in a single step, then each column once into its dtype
    table = pd.DataFrame(rows, columns=list(HISTORY_ROW), dtype=object) if rows \
        else pd.DataFrame(columns=list(HISTORY_ROW), dtype=object)
    raw = {name: table[name].to_numpy() for name in HISTORY_ROW}
    columns: dict[str, Any] = {}
    for name in HISTORY_ROW:
        if name in _TIMES:  # unix seconds, to the microsecond as datetime.fromtimestamp gives them
            seconds = raw[name].astype("float64")
            columns[name] = pd.to_datetime(np.round(seconds * 1e6), unit="us", utc=True)
        elif name in _FLAGS:
            columns[name] = raw[name].astype(bool)
        elif name in _INTEGERS:
            columns[name] = pd.array(raw[name], dtype="Int64")
        elif name in _FLOATS:
            columns[name] = raw[name].astype("float64")
        else:
            columns[name] = pd.array(raw[name], dtype="string")
    # as the wire gives them: the request's output size, for a task (with images or not)
    table = pd.DataFrame([(*key, *size) for key, size in OUTPUT_SIZES.items()],
                         columns=["size", "resolution", "width", "height"])
    sizes = pd.DataFrame({"size": raw["size"], "resolution": raw["resolution"]}).merge(
        table, how="left", on=["size", "resolution"])
    no_task = pd.Series(columns["task_id"]).isna().to_numpy()
    for name in ("width", "height"):
        columns[name] = pd.array(sizes[name].to_numpy(), dtype="Int64")
        columns[name][no_task] = pd.NA
    columns["warning"] = pd.array(_warnings(columns, now or datetime.now(timezone.utc)), dtype="string")
    return pd.DataFrame({name: columns[name] for name in HISTORY_COLUMNS})


def _warnings(columns: dict[str, Any], now: datetime) -> Any:
    """GeneratedImage.expiry_warning for every row at once: an expired URL without a kept copy
    (most of a long history kept without copies) has one fixed text; only those ending within
    the hour are worded one by one."""
    import numpy as np
    import pandas as pd

    expires = pd.Series(columns["expires_at"])
    at_risk = (pd.Series(columns["local_path"]).isna() & pd.Series(columns["error"]).isna()
               & expires.notna() & pd.Series(columns["url"]).notna()).to_numpy()
    left = (expires - pd.Timestamp(now)).dt.total_seconds().to_numpy()
    warning = np.full(len(expires), None, dtype=object)
    warning[at_risk & (left <= 0)] = GeneratedImage("", 0, now).expiry_warning(now)
    for position in np.flatnonzero(at_risk & (left > 0) & (left < 3600)):
        warning[position] = GeneratedImage("", 0, expires.iat[position].to_pydatetime()).expiry_warning(now)
    return warning


def _typed(rows: list[dict[str, Any]], columns: tuple[str, ...]) -> pandas.DataFrame:
    import pandas as pd

    frame = pd.DataFrame(rows, columns=list(columns))
    for column in columns:
        if column in _TIMES:
            frame[column] = pd.to_datetime(frame[column], utc=True)
        elif column in _INTEGERS:
            frame[column] = pd.to_numeric(frame[column]).astype("Int64")
        elif column in _FLOATS:
            frame[column] = frame[column].astype("float64")
        elif column == "local_path":
            frame[column] = frame[column].map(lambda v: str(v) if isinstance(v, Path) else v).astype("string")
        else:
            frame[column] = frame[column].astype("string")
    return frame
