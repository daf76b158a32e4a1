"""resume(): bring the journal and the service back into agreement after a restart.

Everything left open in the last 72 h (the contract's media lifetime) is finished: lost
answers are sent again with their idempotency key, unfinished tasks are watched, images not
yet kept are saved, and task ids the service has forgotten are marked expired.
"""

from __future__ import annotations

import asyncio
import logging
import time
import warnings
from typing import TYPE_CHECKING

from ._call import maybe_await
from ._errors import NotFoundError
from ._journal import MEDIA_LIFETIME, URL_LIFETIME, Entry, EntryState
from ._store import remove_stale_temporary_files
from ._task import Task

if TYPE_CHECKING:
    from ._client import AsyncQwenClient, OnUpdate

__all__: list[str] = []

_log = logging.getLogger("qwen_widgets")


async def reconcile(client: AsyncQwenClient, on_update: OnUpdate | None) -> list[Task]:
    """What AsyncQwenClient.resume() does; returns the tasks that ended."""
    journal = client.journal
    await asyncio.to_thread(journal.settle_orphans)
    _warn_about_unresendable(await asyncio.to_thread(
        journal.entries, base_url=client.base_url, states=(EntryState.UNKNOWN,),
        newer_than=time.time() - MEDIA_LIFETIME))
    lost = await asyncio.to_thread(journal.lost, client.base_url)
    entries = await asyncio.to_thread(journal.unfinished, client.base_url)
    results = await asyncio.gather(
        *(_resend_and_wait(client, entry, on_update) for entry in lost),
        *(_reattach(client, entry, on_update) for entry in entries if entry.task),
        return_exceptions=True)
    if client.keep_images:  # finished earlier, but the images were not saved in time
        await asyncio.to_thread(remove_stale_temporary_files, journal.images_folder())
        for entry in await asyncio.to_thread(journal.unsaved, client.base_url):
            await client._finish(entry.task)  # record() finds the entry's own row again
    tasks = []
    for result in results:
        if isinstance(result, Task):
            tasks.append(result)
        elif isinstance(result, Exception):
            _log.warning("could not resume a task: %s", result)
        elif result is not None:
            raise result
    return tasks


async def _resend_and_wait(client: AsyncQwenClient, lost: Entry, on_update: OnUpdate | None) -> Task:
    task = await client.resend(lost)
    if on_update is not None:
        await maybe_await(on_update(task))
    return await client.wait(task, on_update=on_update)


async def _reattach(client: AsyncQwenClient, entry: Entry, on_update: OnUpdate | None) -> Task | None:
    assert entry.task is not None
    try:
        return await client.wait(entry.task, on_update=on_update)
    except NotFoundError:
        if time.time() - entry.created_at.timestamp() < URL_LIFETIME:
            raise
        await client._journal_quietly(client.journal.expired, entry.local_id,
                                      "the service no longer knows this task id (ids live about a day)")
        _log.info("task %s has expired at the service", entry.task.task_id)
        return None


def _warn_about_unresendable(unknown: list[Entry]) -> None:
    never = [entry for entry in unknown if not entry.resend]
    if never:
        warnings.warn(
            f"{len(never)} submission(s) of the last 72 h may have reached the server, but their "
            "outcome is unknown and they were sent with resend_with_key=False, so they are not "
            "resent. Check your APIMart console; qwen_widgets.history() lists them "
            "(journal_state 'unknown').", UserWarning, stacklevel=4)
