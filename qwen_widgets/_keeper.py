"""Finishing a task: journal its end, then keep its images on disk before anyone sees it.

Result URLs die after about a day, and the images were paid for, so a completed task's images
are copied into the home folder before `wait()` returns. A journal write that fails after the
POST must never cost the caller the task: it is logged and the task is returned anyway.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Callable
from typing import Any, TypeVar

from ._clock import Clock, within
from ._download import ImageFetcher
from ._errors import JournalError, QwenError
from ._journal import Journal
from ._store import keep_copy
from ._task import GeneratedImage, Task, TaskStatus

__all__: list[str] = []

T = TypeVar("T")
_log = logging.getLogger("qwen_widgets")


async def journal_quietly(journal: Journal, write: Callable[..., T], *args: Any) -> T | None:
    """A journal write after the POST: if it fails, the task must still reach the caller."""
    try:
        return await asyncio.to_thread(write, *args)
    except (JournalError, OSError) as error:
        _log.warning("qwen_widgets could not update the journal (%s): %s", journal.path, error)
        return None


async def finish(journal: Journal, images: ImageFetcher, clock: Clock, base_url: str, task: Task, *,
                 keep: bool, deadline: float | None = None) -> Task:
    """A task just seen done: journal it, then keep its images (if asked, within the
    deadline). Images not kept in time keep their URL; resume() keeps them later."""
    local_id = await journal_quietly(journal, journal.record, task, base_url)
    if keep and local_id is not None and task.status is TaskStatus.COMPLETED:
        keeping = asyncio.gather(*(_keep(journal, images, local_id, task, image) for image in task.images))
        left = None if deadline is None else max(deadline - clock.monotonic(), 0.0)
        try:
            kept = await within(keeping, left)
            task = dataclasses.replace(task, images=tuple(kept))
        except asyncio.TimeoutError:
            _log.warning("the deadline came before the images of task %s were saved locally; "
                         "qwen_widgets.resume() saves them later", task.task_id)
    return task


async def _keep(journal: Journal, images: ImageFetcher, local_id: str, task: Task,
                image: GeneratedImage) -> GeneratedImage:
    if image.error is not None or (image.local_path is not None and image.local_path.exists()):
        return image
    try:
        data = await images.fetch(image.url)
        path, digest = await asyncio.to_thread(keep_copy, journal, local_id, task, image, data)
    except (QwenError, OSError) as error:
        _log.warning("image %d of task %s was not saved locally: %s", image.index, task.task_id, error)
        return image
    await journal_quietly(journal, journal.add_image_copy, local_id, image.index, path, digest)
    return dataclasses.replace(image, local_path=path)
