"""One submission: its journal row and idempotency key, its attempts, and what it became.

The row, with the key every attempt carries, is written before any byte is sent; the task id
is recorded the moment it arrives; a lost answer is sent again with the same key (`_call`);
only a clear refusal is journaled `refused`. Cancelling while the POST is on the wire waits
for its answer, so a task id is never lost.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from typing import TYPE_CHECKING, Any, TypeVar

import httpx

from ._budget import Priority
from ._call import NotSent, OnRetry, Submission
from ._errors import JournalError, QwenError, RequestValidationError, SubmitOutcomeUnknownError
from ._journal import Entry, EntryState
from ._request import ImageRequest
from ._task import Task
from ._wire import parse_submit_response

if TYPE_CHECKING:
    from ._client import AsyncQwenClient

__all__: list[str] = []

T = TypeVar("T")
_log = logging.getLogger("qwen_widgets")


async def submit_once(client: AsyncQwenClient, request: ImageRequest, on_retry: OnRetry | None,
                      priority: Priority) -> Task:
    """What AsyncQwenClient.submit does."""
    if not isinstance(request, ImageRequest):
        raise RequestValidationError("request", "must be an ImageRequest", request)
    abort = asyncio.Event()
    posting = asyncio.ensure_future(post(client, request, on_retry, abort, None, priority))
    try:
        return await asyncio.shield(posting)
    except asyncio.CancelledError:
        if posting.cancelled():
            raise
        abort.set()  # honoured only while the request has not left
        try:
            task = await _unstoppable(posting)  # its QwenError, if any, says more than a cancel
        except NotSent:
            raise asyncio.CancelledError("cancelled before the submission was sent; "
                                         "nothing was created") from None
        raise asyncio.CancelledError(
            f"interrupted after the server accepted task {task.task_id}; it will run and "
            f"be billed. Re-attach with wait({task.task_id!r})."
        ) from None


async def post(client: AsyncQwenClient, request: ImageRequest, on_retry: OnRetry | None, abort: asyncio.Event,
               lost: Entry | None, priority: Priority) -> Task:
    """The POST between its journal writes: the row, with the idempotency key every attempt
    carries, exists before any byte is sent. `lost`: a submission whose answer was lost,
    sent again with its own row and key."""
    try:
        if lost is None:
            key = str(uuid.uuid4())
            local_refs = {i.url: str(i.local_path) for i in client._uploads.values()
                          if i.local_path is not None and i.url in request.image_urls}
            local_id = await asyncio.to_thread(client.journal.begin, request, client.base_url, key,
                                               client._resend, client.limits, local_refs)
        else:
            key, local_id = lost.idempotency_key, lost.local_id
            await asyncio.to_thread(client.journal.resending, local_id)
    except JournalError as error:  # no record, no send: a crash would lose it
        raise JournalError(error.path, error.error, outcome="nothing was sent") from None
    replayed = False

    def parse(body: Any, headers: httpx.Headers) -> Task:
        nonlocal replayed
        replayed = headers.get("idempotency-replayed", "").strip().lower() == "true"
        return parse_submit_response(body, request)

    submission = Submission(request, key, resend=client._resend if lost is None else lost.resend,
                            on_attempt=lambda: client._journal_quietly(client.journal.attempted, local_id))
    if lost is not None:  # an earlier attempt may have created the task: no refusal proves otherwise
        submission.lost = QwenError(f"an earlier attempt's answer was lost: {lost.error or 'no answer'}")
    try:
        task = await client._caller.call("POST", "/v1/images/generations", parse,
                                       payload=request.to_payload(), submission=submission,
                                       on_retry=on_retry, abort=abort, priority=priority)
    except BaseException as error:
        # only a clear refusal proves nothing was created; anything odd counts as unknown
        refused = isinstance(error, QwenError) and not isinstance(error, SubmitOutcomeUnknownError)
        state = EntryState.REFUSED if refused and submission.lost is None else EntryState.UNKNOWN
        reason = getattr(error, "reason", None) or str(error) or type(error).__name__
        await client._journal_quietly(client.journal.failed_to_submit, local_id, state, reason)
        raise
    if replayed:
        _log.info("the server replayed task %s for a resent submission: no second task", task.task_id)
    await client._journal_quietly(client.journal.submitted, local_id, task, replayed)
    if task.done:  # a synchronous result: nothing to poll
        task = await client._finish(task)
    return task


async def _unstoppable(future: asyncio.Future[T]) -> T:
    """Await `future` to its end even if we are cancelled meanwhile (a POST on the wire)."""
    while True:
        try:
            return await asyncio.shield(future)
        except asyncio.CancelledError:
            if future.cancelled():
                raise
