"""qwen_widgets.to_frame and Task.to_frame: one row per image, typed columns, lazy pandas."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import warnings
from datetime import datetime, timedelta, timezone

import pandas as pd

import qwen_widgets as qw
from qwen_widgets import GeneratedImage, ImageRequest, Task, TaskStatus
from qwen_widgets.simulator import Simulator

from ..conftest import TIME_SCALE, fast_options

REQUIRED = (
    "task_id", "model", "prompt", "negative_prompt", "size", "resolution", "width", "height",
    "image_index", "url", "expires_at", "status", "created_at", "completed_at", "actual_time",
    "estimated_time", "error",
)
CREATED = datetime(2026, 3, 1, 12, 0, 0, tzinfo=timezone.utc)
COMPLETED = CREATED + timedelta(seconds=21)
EXPIRES = COMPLETED + timedelta(hours=24)


def completed_task(task_id="task_A", n=3, returned=None, **request_fields) -> Task:
    request = ImageRequest("a red fox in snow", n=n, **request_fields)
    width, height = request.output_size
    images = tuple(
        GeneratedImage(f"https://img.example/{task_id}/{i}.png", i, EXPIRES, width, height)
        for i in range(n if returned is None else returned)
    )
    return Task(task_id, TaskStatus.COMPLETED, progress=100, estimated_time=60.0,
                actual_time=21.5, created_at=CREATED, completed_at=COMPLETED, images=images,
                request=request)


def failed_task(task_id="task_F") -> Task:
    return Task(task_id, TaskStatus.FAILED, progress=40, estimated_time=45.0,
                created_at=CREATED, error="content moderation rejected the prompt",
                request=ImageRequest("a forbidden fox", size="4:3", n=2))


def is_utc(series: pd.Series) -> bool:
    return pd.api.types.is_datetime64_any_dtype(series) and str(series.dt.tz) == "UTC"


def test_columns_include_everything_documented():
    frame = qw.to_frame(completed_task())
    assert set(REQUIRED) <= set(frame.columns)
    assert frame.columns.is_unique


def test_one_row_per_image_with_its_own_url_and_index():
    task = completed_task(n=3, size="16:9", resolution="2K", model="qwen-image-2.0-pro",
                          negative_prompt="blurry")
    frame = qw.to_frame(task)
    assert len(frame) == 3
    assert list(frame["image_index"]) == [0, 1, 2]
    assert list(frame["url"]) == task.urls
    assert set(frame["task_id"]) == {"task_A"}
    assert set(frame["model"]) == {"qwen-image-2.0-pro"}
    assert set(frame["prompt"]) == {"a red fox in snow"}
    assert set(frame["negative_prompt"]) == {"blurry"}
    assert set(frame["size"]) == {"16:9"} and set(frame["resolution"]) == {"2K"}
    assert list(frame["width"]) == [2048] * 3 and list(frame["height"]) == [1152] * 3
    assert set(frame["status"]) == {"completed"}
    assert frame["error"].isna().all()
    assert list(frame["actual_time"]) == [21.5] * 3
    assert list(frame["estimated_time"]) == [60.0] * 3


def test_dtypes_times_are_utc_counts_nullable_durations_float():
    frame = qw.to_frame([completed_task(), failed_task()])
    for column in ("expires_at", "created_at", "completed_at"):
        assert is_utc(frame[column]), (column, frame[column].dtype)
    for column in ("width", "height", "image_index"):
        assert isinstance(frame[column].dtype, pd.Int64Dtype), (column, frame[column].dtype)
    for column in ("actual_time", "estimated_time"):
        assert pd.api.types.is_float_dtype(frame[column]), (column, frame[column].dtype)
    assert frame["expires_at"].iloc[0] == pd.Timestamp(EXPIRES)
    assert frame["created_at"].iloc[0] == pd.Timestamp(CREATED)
    assert frame["completed_at"].iloc[0] == pd.Timestamp(COMPLETED)


def test_times_in_other_zones_become_utc_at_the_same_instant():
    plus_two = timezone(timedelta(hours=2))
    task = Task("task_Z", TaskStatus.COMPLETED, created_at=CREATED.astimezone(plus_two),
                completed_at=COMPLETED.astimezone(plus_two),
                images=(GeneratedImage("https://x.example/0.png", 0, EXPIRES.astimezone(plus_two)),))
    frame = qw.to_frame(task)
    assert is_utc(frame["created_at"])
    assert frame["created_at"].iloc[0] == pd.Timestamp(CREATED)
    assert frame["created_at"].iloc[0].hour == 12  # 14:00+02:00 shown as 12:00 UTC
    assert frame["expires_at"].iloc[0] == pd.Timestamp(EXPIRES)


def test_failed_task_is_one_row_with_status_error_and_no_url():
    frame = qw.to_frame(failed_task())
    assert len(frame) == 1
    row = frame.iloc[0]
    assert row["status"] == "failed"
    assert row["error"] == "content moderation rejected the prompt"
    assert pd.isna(row["url"])
    assert pd.isna(row["image_index"])
    assert pd.isna(row["expires_at"]) and pd.isna(row["completed_at"])
    assert pd.isna(row["actual_time"])
    assert row["estimated_time"] == 45.0
    assert row["prompt"] == "a forbidden fox"
    assert row["task_id"] == "task_F"


def test_mixed_tasks_keep_order_and_dtypes():
    frame = qw.to_frame([completed_task("task_A", n=2), failed_task("task_F"),
                         completed_task("task_B", n=1)])
    assert list(frame["task_id"]) == ["task_A", "task_A", "task_F", "task_B"]
    assert list(frame["status"]) == ["completed", "completed", "failed", "completed"]
    assert frame["url"].isna().tolist() == [False, False, True, False]
    assert frame["image_index"].isna().tolist() == [False, False, True, False]
    assert isinstance(frame["image_index"].dtype, pd.Int64Dtype)  # NA did not turn it float
    assert is_utc(frame["expires_at"])


def test_fewer_images_than_requested_gives_fewer_rows():
    frame = qw.to_frame(completed_task(n=4, returned=2))
    assert len(frame) == 2
    assert list(frame["image_index"]) == [0, 1]


def test_reattached_task_without_request_has_missing_request_columns():
    task = Task("task_R", TaskStatus.COMPLETED, progress=100, created_at=CREATED,
                completed_at=COMPLETED, actual_time=3.0,
                images=(GeneratedImage("https://img.example/r/0.png", 0, EXPIRES),
                        GeneratedImage("https://img.example/r/1.png", 1, None)))
    frame = qw.to_frame(task)
    assert len(frame) == 2
    for column in ("model", "prompt", "negative_prompt", "size", "resolution", "width", "height"):
        assert frame[column].isna().all(), column
    assert list(frame["url"]) == task.urls
    assert frame["expires_at"].isna().tolist() == [False, True]
    assert is_utc(frame["expires_at"])


def test_failed_task_without_request_is_still_one_row():
    task = Task("task_X", TaskStatus.FAILED, error="boom")
    frame = qw.to_frame(task)
    assert len(frame) == 1
    assert frame["status"].iloc[0] == "failed" and frame["error"].iloc[0] == "boom"
    assert pd.isna(frame["prompt"].iloc[0]) and pd.isna(frame["url"].iloc[0])


def test_empty_list_gives_an_empty_frame_with_the_columns():
    frame = qw.to_frame([])
    assert len(frame) == 0
    assert set(REQUIRED) <= set(frame.columns)
    assert is_utc(frame["created_at"]) and is_utc(frame["expires_at"])
    assert isinstance(frame["width"].dtype, pd.Int64Dtype)
    assert pd.api.types.is_float_dtype(frame["actual_time"])


def test_any_iterable_of_tasks_and_a_single_task():
    tasks = [completed_task("task_A", n=1), completed_task("task_B", n=2)]
    from_generator = qw.to_frame(task for task in tasks)
    assert list(from_generator["task_id"]) == ["task_A", "task_B", "task_B"]
    single = qw.to_frame(tasks[1])
    pd.testing.assert_frame_equal(single, qw.to_frame(tasks[1]))
    assert len(single) == 2


def test_frame_from_a_real_simulator_run():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", qw.DemoModeWarning)
        client = qw.QwenClient(simulator=Simulator(seed=3, time_scale=TIME_SCALE), **fast_options())
    task = client.generate("a lighthouse at dusk", size="3:2", resolution="2K", n=2,
                           negative_prompt="fog")
    frame = qw.to_frame(task)
    assert len(frame) == 2
    assert list(frame["url"]) == task.urls
    assert list(frame["width"]) == [2048, 2048] and list(frame["height"]) == [1360, 1360]
    assert set(frame["negative_prompt"]) == {"fog"}
    assert set(frame["status"]) == {"completed"}
    for column in ("expires_at", "created_at", "completed_at"):
        assert is_utc(frame[column]) and frame[column].notna().all(), column
    assert (frame["expires_at"] > frame["completed_at"]).all()
    assert frame["completed_at"].iloc[0] >= frame["created_at"].iloc[0]
    assert frame["actual_time"].notna().all() and frame["estimated_time"].notna().all()


# -- lazy imports ---------------------------------------------------------------------------------


def run_python(code: str) -> str:
    completed = subprocess.run([sys.executable, "-c", textwrap.dedent(code)],
                               capture_output=True, text=True, timeout=60)
    assert completed.returncode == 0, completed.stderr
    return completed.stdout.strip()


def test_import_does_not_load_pandas_pillow_or_ipywidgets():
    out = run_python("""
        import sys
        import qwen_widgets
        print(sorted(m for m in ("pandas", "PIL", "ipywidgets") if m in sys.modules))
    """)
    assert out == "[]"


def test_pandas_is_imported_only_when_to_frame_is_called():
    out = run_python("""
        import sys
        import qwen_widgets as qw
        task = qw.Task("task_1", qw.TaskStatus.COMPLETED,
                       images=(qw.GeneratedImage("https://x.example/0.png", 0),))
        before = "pandas" in sys.modules
        frame = qw.to_frame(task)
        print(before, "pandas" in sys.modules, len(frame))
    """)
    assert out == "False True 1"
