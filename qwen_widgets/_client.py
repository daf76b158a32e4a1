"""AsyncQwenClient: the engine. Submits, watches and finishes tasks, journaling each step.

It runs on any asyncio loop; the synchronous QwenClient (`_sync`) and the widgets run it on
the package's private loop. Each API request goes through `_call.Caller`.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import Callable
from typing import Any, TypeVar
from urllib.parse import quote

import httpx

from . import _config
from ._account import Balance, parse_balance, parse_price
from ._auth import BearerAuth, Secret, as_secret
from ._budget import DEFAULT_BUDGET, Priority, RequestBudget
from ._call import (
    Caller,
    DeadlineReached,
    OnRetry,
    call_limit,
    check_timeout,
    http_timeout,
    maybe_await,
)
from ._clock import SYSTEM_CLOCK, Clock
from ._config import NOT_GIVEN, NotGiven
from ._download import DEFAULT_MAX_IMAGE_BYTES, ImageFetcher
from ._errors import (
    ImageFetchError,
    JournalError,
    QwenError,
    RequestValidationError,
    TaskFailedError,
    TaskTimeoutError,
    stopped_watching,
)
from ._journal import Entry, Journal
from ._keeper import finish, journal_quietly
from ._limits import Usage
from ._polling import DurationHistory, PollSchedule, PollTracker
from ._request import ImageRequest, make_request
from ._retry import RetryPolicy
from ._submit import post, submit_once
from ._task import GeneratedImage, Task, TaskStatus, UploadedImage, validate_task_id
from ._upload import resolve, upload
from ._wire import parse_task_response

__all__ = ["AsyncQwenClient"]

OnUpdate = Callable[[Task], Any]
"""Called as on_update(task) after every poll (a coroutine function is awaited)."""
T = TypeVar("T")
_log = logging.getLogger("qwen_widgets")
REQUESTS_PER_TASK = 9  # a submit and the median 7-11 polls of the adaptive schedule
_API_TIMEOUT = 30.0
_IMAGE_TIMEOUT = 60.0  # a 2K PNG is several MB


class AsyncQwenClient:
    """Talks to the Qwen-Image 2.0 API on APIMart, or to the built-in simulator in demo mode.

    Args:
        api_key: the APIMart key; by default APIMART_API_KEY. Without one (or with
            QWEN_WIDGETS_DEMO=1) the client runs against an in-process simulator (`demo`).
        base_url: the API's base URL; by default APIMART_BASE_URL, else https://api.apimart.ai.
        timeout: seconds per HTTP read, and half the cap on a whole call; by default 30 s for
            API calls and 60 s for images. None: no limit.
        transport: an httpx transport for API calls (tests use it to watch the wire).
        image_transport: an httpx transport for image downloads.
        simulator: a `qwen_widgets.simulator.Simulator` to run against instead of the API.
        poll_schedule: when to poll (PollSchedule); scale it for time-scaled simulators.
        poll_budget: the RequestBudget shared by polls and submits; by default one budget of
            10 requests/s for the whole process.
        retry: RetryPolicy for transient failures.
        max_image_bytes: the largest image download accepted (40 MB by default).
        journal: where submissions are recorded; by default the home folder's journal (demo
            mode: in memory, since its simulator dies with the process).
        keep_images: copy completed images into the home folder; by default yes with a key
            unless QWEN_WIDGETS_KEEP_IMAGES=0, never in demo mode.
        resend_with_key: when a submission's answer is lost, send it again with its idempotency
            key (the contract's way: the server answers with the task the first attempt made).
            Turn off only for a gateway that ignores keys: then a lost answer is never resent.
        max_images_per_day, max_spend_per_day: spending limits over a rolling 24 hours, checked
            against the journal before every POST; by default QWEN_WIDGETS_MAX_IMAGES_PER_DAY
            and QWEN_WIDGETS_MAX_SPEND_PER_DAY.
        price_per_image: what one image costs, for plans and the spend limit; by default
            QWEN_WIDGETS_PRICE_PER_IMAGE, else APIMart's public pricing when it answers.
        clock: time, sleep and randomness (tests pass a fake one).
    """

    def __init__(
        self,
        api_key: str | None = None,
        *,
        base_url: str | None = None,
        timeout: float | None | NotGiven = NOT_GIVEN,
        transport: httpx.AsyncBaseTransport | None = None,
        image_transport: httpx.AsyncBaseTransport | None = None,
        simulator: Any = None,
        poll_schedule: PollSchedule | None = None,
        poll_budget: RequestBudget | None = None,
        retry: RetryPolicy | None = None,
        max_image_bytes: int = DEFAULT_MAX_IMAGE_BYTES,
        journal: Journal | None = None,
        keep_images: bool | None = None,
        resend_with_key: bool = True,
        max_images_per_day: int | None | NotGiven = NOT_GIVEN,
        max_spend_per_day: float | None | NotGiven = NOT_GIVEN,
        price_per_image: float | None | NotGiven = NOT_GIVEN,
        clock: Clock = SYSTEM_CLOCK,
    ):
        api_key = as_secret(api_key)  # rebinding: even this frame's locals show ***
        secret = api_key if api_key is not None else Secret(_config.api_key())
        if secret and not secret.usable():
            raise RequestValidationError(
                "api_key", "must be printable ASCII without spaces or line breaks "
                "(check for a stray character when pasting)", show_value=False,
            )
        check_timeout(timeout)
        self.demo = simulator is not None or not secret or _config.demo_forced()
        """True when requests go to the built-in simulator, not to the real API."""
        self.simulator = None
        """The demo simulator, in demo mode."""
        if self.demo:
            transport, image_transport, base_url, secret = self._use_simulator(simulator)
        else:
            base_url = _config.base_url(base_url)
        self.base_url = base_url.rstrip("/")
        """The API's base URL."""
        self._schedule = poll_schedule or PollSchedule()
        self._clock = clock
        self._auth = BearerAuth(secret, httpx.URL(self.base_url))
        self._http = httpx.AsyncClient(
            base_url=self.base_url, auth=self._auth, transport=transport, follow_redirects=False,
            timeout=http_timeout(timeout, _API_TIMEOUT))
        self._budget = poll_budget or DEFAULT_BUDGET
        self._caller = Caller(self._http, self._auth, base_url=self.base_url,
                              budget=self._budget, retry=retry or RetryPolicy(),
                              clock=clock, call_limit=call_limit(timeout, _API_TIMEOUT))
        # demo tasks die with the in-process simulator: journal them in memory only
        self.journal = journal or (Journal(":memory:") if self.demo else Journal.default())
        """Where every submission is recorded before it is sent (see qwen_widgets.history)."""
        if keep_images is None:
            keep_images = not self.demo and _config.keep_images()
        self.keep_images = keep_images
        """Copy a completed task's images into the home folder before returning it."""
        self._resend = resend_with_key
        self._history: DurationHistory | None = None
        self.limits = _config.spending_limits(max_images_per_day, max_spend_per_day, price_per_image)
        """The daily limits checked before each POST (and the user's price per image)."""
        self._uploads: dict[str, UploadedImage] = {}
        self._prices: dict[str, float | None] = {}
        self._images = ImageFetcher(transport=image_transport, timeout=http_timeout(timeout, _IMAGE_TIMEOUT),
                                    call_limit=call_limit(timeout, _IMAGE_TIMEOUT),
                                    max_bytes=max_image_bytes, clock=clock)

    def _use_simulator(self, simulator: Any) -> tuple[httpx.AsyncBaseTransport, httpx.AsyncBaseTransport, str, Secret]:
        """Transports, base URL and key for demo mode (announced once per process)."""
        from .simulator import SIMULATOR_BASE_URL, Simulator, SimulatorTransport

        self.simulator = simulator if simulator is not None else Simulator.for_demo()
        _config.announce_demo()
        return (SimulatorTransport(self.simulator), SimulatorTransport(self.simulator, passthrough=True),
                SIMULATOR_BASE_URL, Secret("demo"))

    def __repr__(self) -> str:
        if not hasattr(self, "base_url"):  # half-built: an error in __init__
            return f"{type(self).__name__}(not ready)"
        mode = "demo (simulated)" if self.demo else "live"
        return f"{type(self).__name__}(base_url={self.base_url!r}, mode={mode})"

    async def __aenter__(self) -> AsyncQwenClient:
        return self

    async def __aexit__(self, *exc_info: Any) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close both HTTP clients."""
        await self._http.aclose()
        await self._images.aclose()

    # -- the API -----------------------------------------------------------------------------

    async def submit(self, request: ImageRequest, *, on_retry: OnRetry | None = None,
                     priority: Priority = Priority.SUBMIT) -> Task:
        """Send one generation request; returns the new task (status `submitted`).

        Every attempt carries the submission's idempotency key; an answer that was lost is
        sent again with it (the server answers with the task the first attempt created).
        When every attempt lost its answer, SubmitOutcomeUnknownError carries the key and
        resume() finishes the job. Cancelling (Ctrl-C) while the request is on the wire waits
        for its answer first, so the task id is never lost.
        `priority` is the submission's turn at the shared request budget (sweeps send theirs
        as Priority.BACKGROUND, behind interactive work).
        """
        return await submit_once(self, request, on_retry, priority)

    async def get_task(self, task_id: str, *, request: ImageRequest | None = None,
                       on_retry: OnRetry | None = None) -> Task:
        """The task's current state (one poll, retried on transient failures)."""
        return await self._poll(validate_task_id(task_id), request, on_retry, None)

    async def wait(self, task_or_id: Task | str, *, on_update: OnUpdate | None = None,
                   timeout: float | None = None, on_retry: OnRetry | None = None) -> Task:
        """Poll until the task is completed, failed or cancelled, and return it.

        A failed task is returned, not raised (generate() raises). `on_update(task)` runs
        after every poll. Transient failures are retried until the deadline: `timeout`
        seconds, by default the larger of 10 minutes and 3x the server's estimate. Then
        TaskTimeoutError; the task may still finish.
        """
        if isinstance(task_or_id, Task) and task_or_id.done:  # e.g. a synchronous result
            return task_or_id
        if isinstance(task_or_id, Task):  # a Task may be hand-built or read from a journal
            task_id, request, last = validate_task_id(task_or_id.task_id), task_or_id.request, task_or_id
        else:
            task_id, request, last = validate_task_id(task_or_id), None, None
        tracker = PollTracker(self._schedule, timeout=timeout, history=await self._durations(),
                              request=request)
        start = self._clock.monotonic()
        elapsed = 0.0
        try:
            while True:
                await self._clock.sleep(tracker.next_delay(elapsed, self._budget.backlog()))
                try:
                    last = await self._poll(task_id, request, on_retry, start + tracker.deadline())
                except DeadlineReached as reached:
                    raise TaskTimeoutError(task_id, last, tracker.deadline()) from reached.error
                elapsed = self._clock.monotonic() - start
                tracker.observe(elapsed, last)
                if last.done:
                    self._learn(last, elapsed, tracker.estimated_time)
                    last = await self._finish(last, start + tracker.deadline())
                if on_update is not None:
                    await maybe_await(on_update(last))
                if last.done:
                    return last
                if elapsed >= tracker.deadline():
                    raise TaskTimeoutError(task_id, last, tracker.deadline())
        except asyncio.CancelledError:
            raise asyncio.CancelledError(stopped_watching(task_id, "wait")) from None

    async def generate(self, request_or_prompt: ImageRequest | str, *, on_update: OnUpdate | None = None,
                       timeout: float | None = None, on_retry: OnRetry | None = None,
                       **fields: Any) -> Task:
        """Submit and wait; returns the completed task, raises TaskFailedError otherwise.

        `fields` set or override request fields: generate("a fox", size="16:9", n=2).
        """
        if "image_urls" in fields:  # local images are uploaded first
            fields["image_urls"] = await resolve(self, fields["image_urls"])
        request = make_request(request_or_prompt, fields)
        task = await self.submit(request, on_retry=on_retry)
        if on_update is not None:
            await maybe_await(on_update(task))
        task = await self.wait(task, on_update=on_update, timeout=timeout, on_retry=on_retry)
        if task.status is not TaskStatus.COMPLETED:
            raise TaskFailedError(task)
        return task

    async def resume(self, *, on_update: OnUpdate | None = None) -> list[Task]:
        """Finish everything the journal left open in the last 72 h, and wait for it all.

        Submissions whose answer was lost (a crash mid-POST, a dropped connection) are sent
        again with their idempotency key, so the server answers with the task they created
        (or creates it once), then watched; unfinished tasks are re-attached; images not yet
        kept are saved. A task id the service has forgotten (404 after a day) is journaled
        `expired`. Rows sent with `resend_with_key=False` are only reported, never resent.
        """
        from ._reconcile import reconcile

        return await reconcile(self, on_update)

    async def resend(self, lost: Entry, *, on_retry: OnRetry | None = None) -> Task:
        """Send a submission whose answer was lost again, with its original idempotency key;
        returns its task (the one the lost attempt created, if it did)."""
        if not (lost.idempotency_key and lost.request and lost.resend):
            raise RequestValidationError("lost", "must be a journal entry that may be resent with its key",
                                         show_value=False)
        return await self._post(lost.request, on_retry, asyncio.Event(), lost)

    async def upload(self, source: Any) -> UploadedImage:
        """Upload a local image (a path, bytes or a PIL image) for use in `image_urls`.

        Checked locally first (JPEG, PNG, GIF or WebP by its bytes, not empty, at most 20 MB);
        the same bytes are uploaded once while their URL lives. An upload whose answer was lost
        is not sent again (uploads carry no idempotency key): ImageUploadError says so.
        """
        return await upload(self, source)

    async def references(self, sources: Any) -> list[str]:
        """`image_urls` ready for a request: local images uploaded, URLs as they are."""
        return await resolve(self, sources)

    async def balance(self) -> Balance:
        """The account's balance (`GET /v1/balance`); the simulator keeps one in demo mode."""
        return await self._caller.call("GET", "/v1/balance", lambda body, headers: parse_balance(body))

    async def price_per_image(self, model: str = "qwen-image-2.0") -> tuple[float | None, str]:
        """(price, source): the user's price, else APIMart's public pricing (asked once per
        model), else (None, "unknown")."""
        if self.limits.price_per_image is not None:
            return self.limits.price_per_image, "user"
        if model not in self._prices:
            try:
                self._prices[model] = await self._caller.call(  # public: the key stays home
                    "GET", f"/api/pricing/model?model={quote(model)}", lambda body, headers: parse_price(body),
                    keyless=True)
            except QwenError as error:
                _log.info("no public price for %s: %s", model, error)
                self._prices[model] = None
        price = self._prices[model]
        return price, "pricing" if price is not None else "unknown"

    def usage(self) -> Usage | None:
        """The last 24 hours' images and spend as the limits count them; None with no limit."""
        return self.journal.usage(self.limits) if self.limits.active else None

    def check_limits(self, images: int) -> None:
        """SpendingLimitError when `images` more would pass a daily limit now (a sweep asks for
        its whole plan before its first POST)."""
        usage = self.usage()
        if usage is not None:
            self.limits.check(usage, images, time.time())

    async def fetch_image(self, url_or_image: str | GeneratedImage) -> bytes:
        """The image's bytes: the local copy when there is one, else a download (without
        credentials)."""
        if isinstance(url_or_image, GeneratedImage) and url_or_image.local_path is not None:
            try:
                return await asyncio.to_thread(url_or_image.local_path.read_bytes)
            except OSError:
                pass  # removed or pruned: fall back to the URL
        if isinstance(url_or_image, GeneratedImage) and url_or_image.error is not None:
            raise ImageFetchError(url_or_image.url, url_or_image.error)
        url = url_or_image.url if isinstance(url_or_image, GeneratedImage) else url_or_image
        if not isinstance(url, str):
            raise RequestValidationError("url", "must be a string URL", url)
        return await self._images.fetch(url)

    # -- plumbing ----------------------------------------------------------------------------

    async def _post(self, request: ImageRequest, on_retry: OnRetry | None, abort: asyncio.Event,
                    lost: Entry | None = None, priority: Priority = Priority.SUBMIT) -> Task:
        return await post(self, request, on_retry, abort, lost, priority)

    async def _poll(self, task_id: str, request: ImageRequest | None, on_retry: OnRetry | None,
                    deadline: float | None) -> Task:
        def parse(body: Any, headers: httpx.Headers) -> Task:
            task = parse_task_response(body, task_id=task_id, request=request)
            # the server's words reach reprs, cards and the journal: never with the key in them
            return dataclasses.replace(task, error=self._auth.redact(task.error)) if task.error else task

        return await self._caller.call("GET", f"/v1/tasks/{task_id}", parse, task_id=task_id,
                                       on_retry=on_retry, deadline=deadline)

    async def _durations(self) -> DurationHistory:
        """This account's past durations, read from the journal once (off the loop's thread)."""
        if self._history is None:
            history = DurationHistory()
            try:
                seen = await asyncio.to_thread(self.journal.recent_durations, self.base_url)
            except JournalError as error:
                _log.warning("could not read past durations from the journal: %s", error)
                seen = []
            for request, taken, estimate in reversed(seen):
                history.observe(request, taken, estimate)
            self._history = self._history or history  # another wait may have loaded it meanwhile
        return self._history

    def sustainable_tasks(self) -> int:
        """How many tasks the request budget keeps in flight without queueing their polls: a
        task takes a submit and about REQUESTS_PER_TASK polls over its duration (the
        benchmark's measure), which this account's history tells, or the schedule assumes."""
        typical = self._history.typical() if self._history is not None else None
        duration = typical or self._schedule.default_estimate
        return int(min(max(self._budget.max_rate * duration / REQUESTS_PER_TASK, 4), 64))

    def _learn(self, task: Task, elapsed: float, estimate: float | None) -> None:
        if task.status is TaskStatus.COMPLETED and self._history is not None:
            self._history.observe(task.request, task.actual_time or elapsed, estimate)

    async def _journal_quietly(self, write: Callable[..., T], *args: Any) -> T | None:
        return await journal_quietly(self.journal, write, *args)

    async def _finish(self, task: Task, deadline: float | None = None) -> Task:
        """A task just seen done: journal it and keep its images (see _keeper)."""
        return await finish(self.journal, self._images, self._clock, self.base_url, task,
                            keep=self.keep_images, deadline=deadline)
