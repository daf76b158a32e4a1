"""AsyncQwenClient: the engine. Submits, watches and finishes tasks, journaling each step.

Everything the client does lives here as its methods: a submission (its journal row and
idempotency key written before any byte is sent, its attempts, what it became), watching a
task, finishing it (journaled, its images kept on disk before anyone sees it), resume()
(resending lost answers with their key, re-attaching unfinished tasks, keeping what was not
kept), uploads, the account and the images. Each API request goes through `call.Caller`.

It runs on any asyncio loop; the synchronous QwenClient (`sync`) and the widgets run it on
the package's private loop.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
import uuid
import warnings
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import quote

import httpx

from ..model.account import Balance, parse_balance, parse_price
from ..model.errors import (
    APIError,
    ImageFetchError,
    ImageUploadError,
    JournalError,
    QwenError,
    RequestValidationError,
    SubmitOutcomeUnknownError,
    TaskFailedError,
    TaskTimeoutError,
    stopped_watching,
)
from ..model.history import EVERYTHING, PAGE_SIZE, HistoryPage, HistoryQuery
from ..model.images import thumbnail
from ..model.limits import Usage
from ..model.lineage import Reference
from ..model.plan import DEFAULT_MAX_IMAGES, SweepPlan
from ..model.receipt import Receipt
from ..model.request import MAX_IMAGES, ImageRequest, ModelRules, make_request
from ..model.secret import Secret, as_secret
from ..model.task import GeneratedImage, Task, TaskStatus, UploadedImage, validate_task_id
from ..model.wire import parse_submit_response, parse_task_response
from ..store import images as disk
from ..model.submission import Entry, EntryState, OpenWork
from ..store.journal import Journal
from . import settings
from .agent import USER_AGENT
from .auth import BearerAuth
from .budget import DEFAULT_BUDGET, Chance, Priority, RequestBudget
from .call import (Caller, DeadlineReached, NotSent, OnRetry, Submission, call_limit, check_timeout, http_timeout,
                   maybe_await)
from .catalog import ModelCatalog
from .clock import SYSTEM_CLOCK, Clock, within
from .fetch import DEFAULT_MAX_IMAGE_BYTES, ImageFetcher
from .polling import DurationHistory, PollSchedule, PollTracker
from .retry import RetryPolicy
from .settings import NOT_GIVEN, NotGiven
from .uploads import LocalImage, as_sources, is_local, parse_upload, read_local

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
            18 requests/s for the whole process (the provider allows about 20).
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
        secret = api_key if api_key is not None else Secret(settings.api_key())
        if secret and not secret.usable():
            raise RequestValidationError(
                "api_key", "must be printable ASCII without spaces or line breaks "
                "(check for a stray character when pasting)", show_value=False,
            )
        check_timeout(timeout)
        self.demo = simulator is not None or not secret or settings.demo_forced()
        """True when requests go to the built-in simulator, not to the real API."""
        self.simulator = None
        """The demo simulator, in demo mode."""
        self.demo_reason = settings.demo_reason() if self.demo else None
        """Why requests go to the simulator (no key, QWEN_WIDGETS_DEMO=1, a simulator given),
        or None for the real API."""
        self.demo_forced = settings.demo_forced()
        """True when QWEN_WIDGETS_DEMO=1 forces the simulator, so a key would not be used."""
        self.key_source = None if self.demo else "api_key" if api_key is not None else settings.API_KEY
        """Where the key came from, to say where to fix it when the API refuses it: 'api_key'
        (given to the client) or the environment variable's name; None in demo mode."""
        if self.demo:
            transport, image_transport, base_url, secret = self._use_simulator(simulator)
        else:
            base_url = settings.base_url(base_url)
        self.base_url = base_url.rstrip("/")
        """The API's base URL."""
        self._schedule = poll_schedule or PollSchedule()
        self._clock = clock
        self._auth = BearerAuth(secret, httpx.URL(self.base_url))
        self._http = httpx.AsyncClient(
            base_url=self.base_url, auth=self._auth, transport=transport, follow_redirects=False,
            timeout=http_timeout(timeout, _API_TIMEOUT), headers={"User-Agent": USER_AGENT})
        self._budget = poll_budget or DEFAULT_BUDGET
        self._caller = Caller(self._http, self._auth, base_url=self.base_url,
                              budget=self._budget, retry=retry or RetryPolicy(),
                              clock=clock, call_limit=call_limit(timeout, _API_TIMEOUT))
        # demo tasks die with the in-process simulator: journal them in memory only
        self.journal = journal or (Journal(":memory:") if self.demo else Journal.default())
        """Where every submission is recorded before it is sent (see qwen_widgets.history)."""
        if keep_images is None:
            keep_images = not self.demo and settings.keep_images()
        self.keep_images = keep_images
        """Copy a completed task's images into the home folder before returning it."""
        self._resend = resend_with_key
        self._history: DurationHistory | None = None
        self.limits = settings.spending_limits(max_images_per_day, max_spend_per_day, price_per_image)
        """The daily limits checked before each POST (and the user's price per image)."""
        self._uploads: dict[str, UploadedImage] = {}
        self._prices: dict[str, float | None] = {}
        self._catalog = ModelCatalog(self._caller, clock)
        self._images = ImageFetcher(transport=image_transport, timeout=http_timeout(timeout, _IMAGE_TIMEOUT),
                                    call_limit=call_limit(timeout, _IMAGE_TIMEOUT),
                                    max_bytes=max_image_bytes, clock=clock)

    def _use_simulator(self, simulator: Any) -> tuple[httpx.AsyncBaseTransport, httpx.AsyncBaseTransport, str, Secret]:
        """Transports, base URL and key for demo mode (announced once per process)."""
        from ..simulator import SIMULATOR_BASE_URL, Simulator, SimulatorTransport

        self.simulator = simulator if simulator is not None else Simulator.for_demo()
        settings.announce_demo()
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
        if not isinstance(request, ImageRequest):
            raise RequestValidationError("request", "must be an ImageRequest", request)
        request = self._catalog.recheck(request)  # the service's rules, where it stated them
        abort = asyncio.Event()
        posting = asyncio.ensure_future(self._post(request, on_retry, abort, None, priority))
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
        history = await self._durations()
        tracker = PollTracker(self._schedule, timeout=timeout, history=history, request=request,
                              probe=history.probe(request))
        start = self._clock.monotonic()
        elapsed = 0.0
        try:
            while True:
                await self._until_due(tracker, history, start, elapsed)
                try:
                    last = await self._poll(task_id, request, on_retry, start + tracker.deadline(),
                                            tracker.outlook(start))
                except DeadlineReached as reached:
                    raise TaskTimeoutError(task_id, last, tracker.deadline(), server_wait=reached.server_wait,
                                           elapsed=self._clock.monotonic() - start,
                                           error=reached.error) from reached.error
                elapsed = self._clock.monotonic() - start
                tracker.observe(elapsed, last)
                if last.done:
                    self._learn(last, tracker.duration(last, elapsed), tracker.estimated_time)
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

        `fields` set or override request fields: generate("a fox", size="16:9", n=2). The
        request is checked against its model's rules as the service states them (see
        build_request).
        """
        if "image_urls" in fields:  # local images are uploaded first
            fields["image_urls"] = await self.references(fields["image_urls"])
        request = await self.build_request(request_or_prompt, **fields)
        task = await self.submit(request, on_retry=on_retry)
        if on_update is not None:
            await maybe_await(on_update(task))
        task = await self.wait(task, on_update=on_update, timeout=timeout, on_retry=on_retry)
        if task.status is not TaskStatus.COMPLETED:
            raise TaskFailedError(task)
        return task

    async def resume(self, *, on_update: OnUpdate | None = None) -> list[Task]:
        """Finish everything the journal left open (`open_work()`: the last 24 h), and wait for
        it all; returns the tasks that ended.

        Submissions whose answer was lost (a crash mid-POST, a dropped connection) are sent
        again with their idempotency key, so the server answers with the task they created
        (or creates it once), then watched; unfinished tasks are re-attached; images not yet
        kept are saved. Older tasks never seen to end are journaled `expired` (their ids are
        forgotten by then). Rows sent with `resend_with_key=False` are only reported (a
        warning), never resent.
        """
        journal = self.journal
        work = await self.open_work()
        await asyncio.to_thread(journal.expire_forgotten, self.base_url)
        _warn_about_unresendable(work.unresendable)
        results = await asyncio.gather(
            *(self._resend_and_wait(entry, on_update) for entry in work.lost),
            *(self.wait(entry.task, on_update=on_update) for entry in work.unfinished if entry.task),
            return_exceptions=True)
        if self.keep_images:  # finished earlier, but the images were not saved in time
            await asyncio.to_thread(disk.remove_stale_temporary_files, journal.images_folder())
            for entry in work.unkept:
                assert entry.task is not None
                await self._finish(entry.task)  # record() finds the entry's own row again
        tasks = []
        for result in results:
            if isinstance(result, Task):
                tasks.append(result)
            elif isinstance(result, Exception):
                _log.warning("could not resume a task: %s", result)
            elif result is not None:
                raise result
        return tasks

    async def open_work(self) -> OpenWork:
        """What the journal left open for this client's API in the last 24 h: submissions whose
        answer was lost, tasks not seen to end, images not yet kept. What resume() finishes,
        the panel's Resume offers and `%load_ext` counts."""
        return await asyncio.to_thread(self.journal.open_work, self.base_url)

    async def resend(self, lost: Entry, *, on_retry: OnRetry | None = None) -> Task:
        """Send a submission whose answer was lost again, with its original idempotency key;
        returns its task (the one the lost attempt created, if it did)."""
        if not (lost.idempotency_key and lost.request and lost.resend):
            raise RequestValidationError("lost", "must be a journal entry that may be resent with its key",
                                         show_value=False)
        return await self._post(lost.request, on_retry, asyncio.Event(), lost)

    async def upload(self, source: Any, *, field: str = "image") -> UploadedImage:
        """Upload a local image (a path, bytes or a PIL image) for use in `image_urls`.

        Checked locally first (JPEG, PNG, GIF or WebP by its bytes, not empty, at most 20 MB);
        the same bytes are uploaded once while their URL has an hour left (remembered in the
        journal, so across sessions too). An upload whose answer was lost is not sent again
        (uploads carry no idempotency key): ImageUploadError says so.
        """
        local = read_local(source, field)
        now = time.time()
        known = self._uploads.get(local.sha256) or await asyncio.to_thread(
            self.journal.uploaded, local.sha256, self.base_url, now)
        if known is not None and (known.expires_at is None or known.expires_at.timestamp() > now + 3600):
            self._uploads[local.sha256] = known
            return known

        def lost(reason: str) -> ImageUploadError:
            return ImageUploadError(local.filename, reason, outcome_unknown=True)

        try:
            with local.opened() as content:  # streamed from the file, a chunk at a time
                uploaded = await self._caller.call(
                    "POST", "/v1/uploads/images", lambda body, headers: parse_upload(body, local, now),
                    files={"file": (local.filename, content, local.content_type)}, unknown=lost,
                    priority=Priority.SUBMIT)
        except OSError as error:  # the file went away or became unreadable after its check
            raise ImageUploadError(local.filename, f"the file cannot be read ({error.strerror or error})") from None
        except APIError as error:
            raise ImageUploadError(local.filename, str(error)) from error
        self._uploads[local.sha256] = uploaded
        origin = await asyncio.to_thread(_origin, local)
        await self._journal_quietly(self.journal.add_upload, uploaded, self.base_url, origin)
        return uploaded

    def read_image(self, source: Any) -> LocalImage:
        """Read and check a local image (a path, bytes or a PIL image) as upload() would,
        without sending it; RequestValidationError says what is wrong with it."""
        return read_local(source)

    async def references(self, sources: Any) -> list[str]:
        """`image_urls` ready for a request: local images uploaded, URLs as they are (anything
        else is left for the request's own validation to refuse)."""
        return [(await self.upload(source, field=f"image_urls[{index}]")).url if is_local(source) else source
                for index, source in enumerate(as_sources(sources))]

    async def models(self) -> tuple[str, ...]:
        """The Qwen-Image models the service offers (`GET /v1/models`, asked once), in its
        order; qwen-image-2.0 and qwen-image-2.0-pro when its list cannot be had (logged)."""
        return await self._catalog.models()

    async def model_rules(self, model: str) -> ModelRules:
        """What `model` accepts (sizes, tiers, pixel sizes, prompt limits, how many images), as
        the service's `GET /v1/model-schema` states it (asked once per model); the documented
        rules when it cannot be read (logged). RequestValidationError for a model the service
        does not offer, or, when its list cannot be had, one this package does not know."""
        if not isinstance(model, str) or not model.strip():
            raise RequestValidationError("model", "must be a model id", model)
        return await self._catalog.rules(model)

    async def build_request(self, request_or_prompt: ImageRequest | str, **fields: Any) -> ImageRequest:
        """An ImageRequest from a prompt (or a request and overrides), checked against its
        model's rules: the service's where this client asked for them (models(),
        model_rules(), the panel), else the documented ones for qwen-image-2.0 and -pro (no
        round trip), else the service's, asked for then. So a model the service added, which
        this package never heard of, works: build_request("a fox", model="qwen-image-3.0")."""
        base = request_or_prompt.model if isinstance(request_or_prompt, ImageRequest) else ImageRequest.model
        return await self._catalog.checked(
            [fields.get("model", base)], lambda catalog: make_request(request_or_prompt, fields, catalog))

    async def plan(self, fields: dict[str, Any], *, max_images: int = DEFAULT_MAX_IMAGES,
                   slots: dict[str, Any] | None = None) -> SweepPlan:
        """A sweep's plan (SweepPlan.of) with every cell checked against its model's rules, as
        build_request checks one request; `slots` fill the prompt's template."""
        models = fields.get("model", ImageRequest.model)
        return await self._catalog.checked(
            models if isinstance(models, (list, tuple)) else [models],
            lambda catalog: SweepPlan.of(fields, max_images=max_images, catalog=catalog, slots=slots))

    async def balance(self, *, account: bool = False) -> Balance:
        """The balance of this key (`GET /v1/balance`), or with `account=True` of the whole
        account (`GET /v1/user/balance`), in the unit the service reports. Behind a class
        gateway, the key's balance is what is left of the student's budget (unit 'images').
        The simulator keeps one in demo mode."""
        path, scope = ("/v1/user/balance", "account") if account else ("/v1/balance", "key")
        return await self._caller.call("GET", path, lambda body, headers: parse_balance(body, scope))

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
        try:
            return await self._images.fetch(url)
        except ImageFetchError as error:
            gone = self._simulator_gone(error)
            if gone:
                raise ImageFetchError(url, f"{gone}: demo images exist only while the simulator that drew "
                                           "them runs (save or export them before switching)",
                                      status_code=error.status_code) from None
            raise

    def _simulator_gone(self, error: ImageFetchError) -> str:
        """Why a demo image cannot be had, when that is the reason (else ''): its URL names the
        simulator's host, which exists nowhere, and no simulator here drew it."""
        from ..simulator import SIMULATOR_BASE_URL

        if not error.url.startswith(SIMULATOR_BASE_URL + "/"):
            return ""
        if not self.demo:
            return "a simulated image, and this client talks to the real API, not a simulator"
        if error.status_code == 404:
            return ("HTTP 404: the simulator running now did not draw this image (a new client or a "
                    "restarted kernel replaced the one that did)")
        return ""

    async def thumbnail(self, image: GeneratedImage | str | bytes, edge: int) -> bytes:
        """A JPEG of at most `edge` pixels a side of an image (a result, a URL, or bytes in
        hand), made off the event loop; ValueError when the bytes are not an image."""
        if isinstance(image, GeneratedImage) and image.local_path is not None:
            try:  # made once from the kept copy, then read: old images show without decoding again
                return await asyncio.to_thread(disk.cached_thumbnail, image.local_path, edge)
            except OSError:
                pass  # removed or pruned: fall back to the URL
        data = image if isinstance(image, bytes) else await self.fetch_image(image)
        return await asyncio.to_thread(thumbnail, data, edge)

    async def save_image(self, task: Task, image: GeneratedImage, folder: str | Path) -> tuple[Path, bytes]:
        """Save one image (full resolution, the prompt and its record in the PNG's text) and
        its JSON sidecar in `folder`; returns the path and the bytes written."""
        data = await self.fetch_image(image)
        path = await asyncio.to_thread(disk.save_image, task, image, data, folder)
        return path, data

    async def save(self, tasks: Iterable[Task], folder: str | Path) -> list[Path]:
        """Save every image of `tasks` in `folder` (see save_image); returns the image paths."""
        return [(await self.save_image(task, image, folder))[0] for task in tasks for image in task.images]

    async def export(self, tasks: Iterable[Task], path: str | Path) -> Path:
        """One zip of `tasks` at `path` (a folder gets a dated name, see store.images.archive_path):
        images at full resolution with their sidecars, results.csv and README.txt; returns the
        file written. Each image is fetched and written before the next, so memory does not
        grow with the export. An image that cannot be had is listed in README.txt, not raised,
        so one expired URL does not cost the rest."""
        tasks = list(tasks)
        archive = await asyncio.to_thread(disk.Archive, path)
        try:
            for task in tasks:
                for image in task.images:
                    try:
                        data = await self.fetch_image(image)
                    except QwenError as error:
                        archive.missing(task, image, str(error))
                        continue
                    await asyncio.to_thread(archive.add, task, image, data)
                    del data  # before the next one arrives
            return await asyncio.to_thread(archive.finish, tasks)
        except BaseException:
            await asyncio.to_thread(archive.abort)
            raise

    # -- the library: this client's journal as a history to search, keep and reuse ------------

    async def history(self, query: HistoryQuery = EVERYTHING, offset: int = 0,
                      limit: int = PAGE_SIZE) -> HistoryPage:
        """One page of this client's journal, newest first, filtered by `query` (in demo mode
        the journal is in memory: this session's work)."""
        return await asyncio.to_thread(self.journal.page, query, offset, limit)

    async def find(self, task: Task | Entry | str) -> Entry:
        """The journal row of a task, an entry, a task id or a local id; RequestValidationError
        when this client's journal has none."""
        return await asyncio.to_thread(find_entry, self.journal, task, self.base_url)

    async def star(self, task: Task | Entry | str, starred: bool = True) -> Entry:
        """Star (or with starred=False unstar) a generation; returns its row as it is now."""
        entry = await self.find(task)
        await asyncio.to_thread(self.journal.set_flag, entry.local_id, "starred", starred)
        return dataclasses.replace(entry, starred=starred)

    async def hide(self, task: Task | Entry | str, hidden: bool = True) -> Entry:
        """Hide a generation from the history (or show it again); nothing is removed."""
        entry = await self.find(task)
        await asyncio.to_thread(self.journal.set_flag, entry.local_id, "hidden", hidden)
        return dataclasses.replace(entry, hidden=hidden)

    async def delete(self, task: Task | Entry | str) -> dict[str, int]:
        """Delete a generation from the library and its kept images from this machine; returns
        {'images': kept images deleted, 'bytes_freed': ...}. A task still running cannot be deleted (its images
        would be kept again when it ends): stop watching it, or wait."""
        entry = await self.find(task)
        return await asyncio.to_thread(disk.delete_generation, self.journal, entry.local_id)

    async def recent_prompts(self, limit: int = 20) -> list[tuple[str, bool]]:
        """(prompt, starred): the starred prompts, then the most recent others, each once."""
        return await asyncio.to_thread(self.journal.recent_prompts, limit)

    async def chain(self, task: Task | Entry | str) -> list[Entry]:
        """The generations this one grew from (image to image), nearest first."""
        entry = await self.find(task)
        return await asyncio.to_thread(self.journal.chain, entry.local_id)

    async def repeatable(self, request: ImageRequest) -> ImageRequest:
        """`request` with each reference whose URL has expired (or will within the hour)
        replaced by a fresh upload of the file it came from, when this machine has it (the
        file an upload was made from, or the kept copy of one of our results)."""
        files = await asyncio.to_thread(self.journal.reference_files, request.image_urls)
        if not files:
            return request
        urls = [(await self.upload(files[url])).url if url in files else url for url in request.image_urls]
        return request.replace(image_urls=urls)

    def read_receipt(self, source: str | Path | bytes) -> Receipt:
        """The receipt inside an image file (a path or its bytes); RequestValidationError when
        it cannot be read or carries none."""
        return read_receipt(source)

    async def rerun(self, source: Any, *, on_update: OnUpdate | None = None,
                    timeout: float | None = None) -> Task:
        """Send the request of an image file again (its receipt says what it was: see
        `qw.read_receipt`), or of a Task, a journal Entry or a Receipt; waits, and returns the
        new task. References whose URLs have expired are uploaded again from this machine's
        files when the journal knows them. The API takes no seed: the new images differ."""
        request = await asyncio.to_thread(request_of, source)
        return await self.generate(await self.repeatable(request), on_update=on_update, timeout=timeout)

    # -- plumbing ----------------------------------------------------------------------------

    async def _post(self, request: ImageRequest, on_retry: OnRetry | None, abort: asyncio.Event,
                    lost: Entry | None = None, priority: Priority = Priority.SUBMIT) -> Task:
        """The POST between its journal writes: the row, with the idempotency key every attempt
        carries, exists before any byte is sent; the task id is recorded the moment it arrives;
        only a clear refusal is journaled `refused`. `lost`: a submission whose answer was
        lost, sent again with its own row and key."""
        journal = self.journal
        try:
            if lost is None:
                key = str(uuid.uuid4())
                local_refs = {i.url: str(i.local_path) for i in self._uploads.values()
                              if i.local_path is not None and i.url in request.image_urls}
                local_id = await asyncio.to_thread(journal.begin, request, self.base_url, key,
                                                   self._resend, self.limits, local_refs)
            else:
                key, local_id = lost.idempotency_key, lost.local_id
                await asyncio.to_thread(journal.resending, local_id)
        except JournalError as error:  # no record, no send: a crash would lose it
            raise JournalError(error.path, error.error, outcome="nothing was sent",
                               damaged=error.damaged, newer=error.newer) from None
        replayed = False

        def parse(body: Any, headers: httpx.Headers) -> Task:
            nonlocal replayed
            replayed = headers.get("idempotency-replayed", "").strip().lower() == "true"
            return _as_many_as_asked(parse_submit_response(body, request))

        assert key is not None
        submission = Submission(request, key, resend=self._resend if lost is None else lost.resend,
                                on_attempt=lambda: self._journal_quietly(journal.attempted, local_id))
        if lost is not None:  # an earlier attempt may have created the task: no refusal proves otherwise
            submission.lost = QwenError(f"an earlier attempt's answer was lost: {lost.error or 'no answer'}")
        try:
            task = await self._caller.call("POST", "/v1/images/generations", parse,
                                           payload=request.to_payload(), submission=submission,
                                           on_retry=on_retry, abort=abort, priority=priority)
        except BaseException as error:
            # only a clear refusal proves nothing was created; anything odd counts as unknown
            refused = isinstance(error, QwenError) and not isinstance(error, SubmitOutcomeUnknownError)
            state = EntryState.REFUSED if refused and submission.lost is None else EntryState.UNKNOWN
            reason = getattr(error, "reason", None) or str(error) or type(error).__name__
            await self._journal_quietly(journal.failed_to_submit, local_id, state, reason)
            raise
        if replayed:
            _log.info("the server replayed task %s for a resent submission: no second task", task.task_id)
        await self._journal_quietly(journal.submitted, local_id, task, replayed)
        if task.done:  # a synchronous result: nothing to poll
            task = await self._finish(task)
        return task

    async def _until_due(self, tracker: PollTracker, history: DurationHistory, start: float,
                         elapsed: float) -> None:
        """Sleep until the tracker's next poll is due. A long sleep is cut into parts: when the
        account learned something meanwhile (other tasks finished), the poll is planned again
        from what is known now, and comes sooner if that plan says so (never later: under a
        steady stream of results, a poll moved back at every re-plan would never come)."""
        version = history.version
        delay = tracker.next_delay(elapsed, self._budget.backlog())
        while delay > 0:
            part = min(delay, self._schedule.max_interval)
            await self._clock.sleep(part)
            delay -= part
            if delay > 0 and history.version != version:
                version = history.version
                delay = min(delay, tracker.next_delay(self._clock.monotonic() - start, self._budget.backlog()))

    async def _poll(self, task_id: str, request: ImageRequest | None, on_retry: OnRetry | None,
                    deadline: float | None, chance: Chance | None = None) -> Task:
        def parse(body: Any, headers: httpx.Headers) -> Task:
            task = _as_many_as_asked(parse_task_response(body, task_id=task_id, request=request))
            # the server's words reach reprs, cards and the journal: never with the key in them
            return dataclasses.replace(task, error=self._auth.redact(task.error)) if task.error else task

        return await self._caller.call("GET", f"/v1/tasks/{task_id}", parse, task_id=task_id,
                                       on_retry=on_retry, deadline=deadline, chance=chance)

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

    def _learn(self, task: Task, duration: float, estimate: float | None) -> None:
        if task.status is TaskStatus.COMPLETED and self._history is not None:
            self._history.observe(task.request, duration, estimate)

    async def _journal_quietly(self, write: Callable[..., T], *args: Any) -> T | None:
        """A journal write after the POST: if it fails, the task must still reach the caller."""
        try:
            return await asyncio.to_thread(write, *args)
        except (JournalError, OSError) as error:
            _log.warning("qwen_widgets could not update the journal (%s): %s", self.journal.path, error)
            return None

    async def _finish(self, task: Task, deadline: float | None = None) -> Task:
        """A task just seen done: journal it, then keep its images (if asked, within the
        deadline) before anyone sees it: result URLs die after about a day, and the images
        were paid for. Images not kept in time keep their URL; resume() keeps them later."""
        local_id = await self._journal_quietly(self.journal.record, task, self.base_url)
        if local_id is not None:  # the library finds it by its row; receipts name its references
            references = await self._journal_quietly(self.journal.references, local_id)
            task = dataclasses.replace(task, local_id=local_id, references=references or ())
        if self.keep_images and local_id is not None and task.status is TaskStatus.COMPLETED:
            keeping = asyncio.gather(*(self._keep(local_id, task, image) for image in task.images))
            left = None if deadline is None else max(deadline - self._clock.monotonic(), 0.0)
            try:
                kept = await within(keeping, left)
                task = dataclasses.replace(task, images=tuple(kept))
            except asyncio.TimeoutError:
                _log.warning("the deadline came before the images of task %s were saved locally; "
                             "qwen_widgets.resume() saves them later", task.task_id)
        return task

    async def _keep(self, local_id: str, task: Task, image: GeneratedImage) -> GeneratedImage:
        if image.error is not None or (image.local_path is not None and image.local_path.exists()):
            return image
        try:
            data = await self._images.fetch(image.url)
            path = await asyncio.to_thread(disk.keep_copy, self.journal, local_id, task, image, data)
        except (QwenError, OSError) as error:
            _log.warning("image %d of task %s was not saved locally: %s", image.index, task.task_id, error)
            return image
        return dataclasses.replace(image, local_path=path)

    async def _resend_and_wait(self, lost: Entry, on_update: OnUpdate | None) -> Task:
        task = await self.resend(lost)
        if on_update is not None:
            await maybe_await(on_update(task))
        return await self.wait(task, on_update=on_update)


def _as_many_as_asked(task: Task) -> Task:
    """The task with at most the images asked for (n; at most 6 when the request is not
    known). More is not a gift but a broken or hostile answer: thousands of URLs would mean
    thousands of downloads. The rest is dropped, and said so in the log."""
    asked = task.request.n if task.request is not None else MAX_IMAGES
    if len(task.images) <= asked:
        return task
    _log.warning("task %s answered with %d images where %d were asked for: kept the first %d; the "
                 "rest look suspicious and were not downloaded", task.task_id, len(task.images), asked, asked)
    return dataclasses.replace(task, images=task.images[:asked])


async def _unstoppable(future: asyncio.Future[T]) -> T:
    """Await `future` to its end even if we are cancelled meanwhile (a POST on the wire)."""
    while True:
        try:
            return await asyncio.shield(future)
        except asyncio.CancelledError:
            if future.cancelled():
                raise


def _warn_about_unresendable(unknown: list[Entry]) -> None:
    if unknown:
        warnings.warn(
            f"{len(unknown)} submission(s) of the last 24 h may have reached the server, but their "
            "outcome is unknown and they were sent with resend_with_key=False, so they are not "
            "resent. Check your APIMart console; qwen_widgets.history() lists them "
            "(journal_state 'unknown').", UserWarning, stacklevel=4)


def find_entry(journal: Journal, task: Task | Entry | str, base_url: str | None = None) -> Entry:
    """The journal row of a task, an entry, a task id or a local id (see AsyncQwenClient.find)."""
    if isinstance(task, Entry):
        ref = task.local_id
    elif isinstance(task, Task):
        ref = task.local_id or task.task_id
    elif isinstance(task, str):
        ref = task
    else:
        raise RequestValidationError("task", "must be a Task, a task id or a journal entry", task)
    entry = journal.find(ref, base_url)
    if entry is None:
        raise RequestValidationError("task", f"is not in this journal ({journal.path}); a demo session's "
                                     "journal lives in memory and ends with its kernel", ref)
    return entry


def request_of(source: Any) -> ImageRequest:
    """The request behind an image file's receipt (a path or bytes), a Receipt, a Task, a journal
    Entry or a request; RequestValidationError says which cannot be had."""
    if isinstance(source, ImageRequest):
        return source
    if isinstance(source, (Task, Entry)):
        request = source.request
    else:
        receipt = source if isinstance(source, Receipt) else read_receipt(source)
        request = receipt.request
    if request is None:
        raise RequestValidationError("source", "has no request to send again (its receipt's request "
                                     "no longer validates, or the task was attached by id)", show_value=False)
    return request


def read_receipt(source: str | Path | bytes) -> Receipt:
    """The receipt inside an image file (a path, or its bytes); RequestValidationError when
    the file cannot be read or carries none."""
    if isinstance(source, (bytes, bytearray, memoryview)):
        data = bytes(source)
    elif isinstance(source, (str, Path)):
        try:
            data = Path(source).expanduser().read_bytes()
        except OSError as error:
            raise RequestValidationError("path", f"cannot be read ({error.strerror or error})", str(source)) from None
    else:
        raise RequestValidationError("path", "must be the path of an image file, or its bytes", source)
    receipt = Receipt.from_bytes(data)
    if receipt is None:
        raise RequestValidationError("path", "carries no qwen_widgets receipt (only images that Save, "
                                     "Download, qw.save or qw.export wrote do)", show_value=False)
    return receipt


RECEIPT_HEAD = 256 * 1024
"""How much of an uploaded file is read for a receipt: ours is written at its start (after a
PNG's header, or a JPEG's SOI), so a large file is never read whole for it."""


def _origin(local: LocalImage) -> Reference | None:
    """What an uploaded image is, by the receipt it carries: the result it came from."""
    if local.held is not None:
        head = local.held[:RECEIPT_HEAD]
    else:
        assert local.local_path is not None
        try:
            with local.local_path.open("rb") as handle:
                head = handle.read(RECEIPT_HEAD)
        except OSError:
            return None
    receipt = Receipt.from_bytes(head)
    if receipt is None or receipt.task_id is None:
        return None
    return Reference("", receipt.sha256, None, receipt.task_id, receipt.image_index)
