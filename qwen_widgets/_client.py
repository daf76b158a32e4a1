"""AsyncQwenClient (httpx) and QwenClient, its synchronous facade on the private loop."""

from __future__ import annotations

import asyncio
import dataclasses
import inspect
import json
import logging
import os
import re
import threading
import time
import warnings
from typing import Any, TypeVar
from collections.abc import Awaitable, Callable

import httpx

from . import _runner
from ._clock import SYSTEM_CLOCK, Clock
from ._download import DEFAULT_MAX_IMAGE_BYTES, ImageFetcher
from ._errors import (
    APIError,
    AuthenticationError,
    ImageFetchError,
    JournalError,
    MalformedResponseError,
    NotFoundError,
    PermissionDeniedError,
    QwenError,
    RateLimitError,
    RequestValidationError,
    ServerError,
    SubmitOutcomeUnknownError,
    TaskFailedError,
    TaskTimeoutError,
    TransportError,
    shorten,
)
from ._journal import URL_LIFETIME, EntryState, Journal
from ._models import (
    GeneratedImage,
    Task,
    TaskStatus,
    parse_error_envelope,
    parse_submit_response,
    parse_task_response,
    validate_task_id,
)
from ._polling import DEFAULT_POLL_BUDGET, PollBudget, PollSchedule, PollTracker
from ._request import ImageRequest
from ._urls import has_credentials, is_http_url
from ._save import keep_copy, remove_stale_temporary_files
from ._retry import RetryPolicy, Verdict, classify_exception, classify_status, parse_retry_after

__all__ = ["AsyncQwenClient", "QwenClient", "generate", "DemoModeWarning", "DEFAULT_BASE_URL"]

DEFAULT_BASE_URL = "https://api.apimart.ai"
OnUpdate = Callable[[Task], Any]
OnRetry = Callable[[QwenError, float], Any]
"""Called as on_retry(error, delay_seconds) before each automatic retry."""
T = TypeVar("T")
_KEY_CHARS = re.compile(r"[\x21-\x7e]+")
_log = logging.getLogger("qwen_widgets")


class DemoModeWarning(UserWarning):
    """Shown once per process when the clients fall back to the built-in simulator."""


_DEMO_NOTICE = (
    "Simulated images: no API key set, so qwen_widgets uses its built-in offline simulator. "
    "To generate real images set APIMART_API_KEY (or pass api_key=...)."
)
_demo_notice_shown = False


def demo_forced() -> bool:
    """True when QWEN_WIDGETS_DEMO asks for the simulator even if a key is set."""
    return os.environ.get("QWEN_WIDGETS_DEMO", "").strip().lower() in ("1", "true", "yes", "on")


class _Secret:
    """The API key in a box that shows `***` in reprs, str() and verbose tracebacks (which
    print every local variable): the plain text never sits in a variable of its own."""

    __slots__ = ("_value",)

    def __init__(self, value: str):
        self._value = value.strip()

    def reveal(self) -> str:
        return self._value

    def usable(self) -> bool:
        """Printable ASCII without spaces: anything else h11 would refuse (quoting it)."""
        return bool(_KEY_CHARS.fullmatch(self._value))

    def __bool__(self) -> bool:
        return bool(self._value)

    def __repr__(self) -> str:
        return "***"

    __str__ = __repr__


def _as_secret(value: str | _Secret | None) -> _Secret | None:
    return _Secret(value) if isinstance(value, str) else value


class _BearerAuth(httpx.Auth):
    """Adds the key only to requests for the API's own origin; never shows it in a repr."""

    def __init__(self, secret: _Secret, origin: httpx.URL):
        self._secret = secret
        self._origin = (origin.scheme, origin.host, origin.port)

    def auth_flow(self, request: httpx.Request):
        if (request.url.scheme, request.url.host, request.url.port) == self._origin:
            request.headers["Authorization"] = f"Bearer {self._secret.reveal()}"
        yield request

    def redact(self, text: str) -> str:
        """`text` with the key masked, for anything a server sends back."""
        # a key of a few characters would mangle every message; real keys are long
        if len(self._secret.reveal()) < 8:
            return text
        return text.replace(self._secret.reveal(), "***")

    def __repr__(self) -> str:
        return "_BearerAuth(***)"


class AsyncQwenClient:
    """Talks to the Qwen-Image 2.0 API on APIMart, or to the built-in simulator in demo mode.

    The key comes from `api_key` or APIMART_API_KEY; without one (or with
    QWEN_WIDGETS_DEMO=1) the client runs against an in-process simulator and `demo` is True.
    """

    def __init__(
        self,
        api_key: str | _Secret | None = None,
        *,
        base_url: str | None = None,
        timeout: float | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        image_transport: httpx.AsyncBaseTransport | None = None,
        simulator: Any = None,
        poll_schedule: PollSchedule | None = None,
        poll_budget: PollBudget | None = None,
        retry: RetryPolicy | None = None,
        max_image_bytes: int = DEFAULT_MAX_IMAGE_BYTES,
        journal: Journal | None = None,
        keep_images: bool | None = None,
        clock: Clock = SYSTEM_CLOCK,
    ):
        api_key = _as_secret(api_key)  # rebinding: even this frame's locals show ***
        secret = api_key if api_key is not None else _Secret(os.environ.get("APIMART_API_KEY", ""))
        if secret and not secret.usable():
            raise RequestValidationError(
                "api_key", "must be printable ASCII without spaces or line breaks "
                "(check for a stray character when pasting)", show_value=False,
            )
        self.demo = simulator is not None or not secret or demo_forced()
        """True when requests go to the built-in simulator, not to the real API."""
        if self.demo:
            from .simulator import SIMULATOR_BASE_URL, Simulator, SimulatorTransport

            self.simulator = simulator if simulator is not None else Simulator.for_demo()
            transport = SimulatorTransport(self.simulator)
            image_transport = SimulatorTransport(self.simulator, passthrough=True)
            base_url, secret = SIMULATOR_BASE_URL, _Secret("demo")
            _announce_demo()
        else:
            self.simulator = None
            base_url = base_url or os.environ.get("APIMART_BASE_URL") or DEFAULT_BASE_URL
            if not is_http_url(base_url):
                raise RequestValidationError(
                    "base_url", "must be an http(s) URL with a host, a valid port and no credentials",
                    show_value=not has_credentials(base_url))
        self.base_url = base_url.rstrip("/")
        self._schedule = poll_schedule or PollSchedule()
        self._budget = poll_budget or DEFAULT_POLL_BUDGET
        self._retry = retry or RetryPolicy()
        self._clock = clock
        # an overall cap per HTTP call: httpx's timeouts are per read, so a server that drips
        # its answer a byte at a time would otherwise hold a call open indefinitely
        self._call_limit = 2 * (timeout or 30.0)
        self._auth = _BearerAuth(secret, httpx.URL(self.base_url))
        self._http = httpx.AsyncClient(
            base_url=self.base_url,
            auth=self._auth,
            transport=transport,
            timeout=httpx.Timeout(timeout or 30.0, connect=min(timeout or 10.0, 10.0)),
            follow_redirects=False,
        )
        # demo tasks die with the in-process simulator: journal them in memory only
        self.journal = journal or (Journal(":memory:") if self.demo else Journal.default())
        """Where every submission is recorded before it is sent (see qwen_widgets.history)."""
        if keep_images is None:
            keep_images = not self.demo and os.environ.get("QWEN_WIDGETS_KEEP_IMAGES", "1") != "0"
        self.keep_images = keep_images
        """Copy a completed task's images into the home folder before returning it."""
        self._images = ImageFetcher(
            transport=image_transport,
            timeout=timeout or 60.0,
            max_bytes=max_image_bytes,
            clock=clock,
        )

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

    async def submit(self, request: ImageRequest, *, on_retry: OnRetry | None = None) -> Task:
        """Send one generation request; returns the new task (status `submitted`).

        Raises SubmitOutcomeUnknownError, without resending, when the request may have
        reached the server but no usable answer came back. Cancelling (Ctrl-C) while the
        request is on the wire waits for its answer first, so the task id is never lost.
        """
        if not isinstance(request, ImageRequest):
            raise RequestValidationError("request", "must be an ImageRequest", request)
        abort = asyncio.Event()
        posting = asyncio.ensure_future(self._post(request, on_retry, abort))
        try:
            return await asyncio.shield(posting)
        except asyncio.CancelledError:
            if posting.cancelled():
                raise
            abort.set()  # honoured only while the request has not left
            try:
                task = await _unstoppable(posting)  # its QwenError, if any, says more than a cancel
            except _NotSent:
                raise asyncio.CancelledError("cancelled before the submission was sent; "
                                             "nothing was created") from None
            raise asyncio.CancelledError(
                f"interrupted after the server accepted task {task.task_id}; it will run and "
                f"be billed. Re-attach with wait({task.task_id!r})."
            ) from None

    async def _post(self, request: ImageRequest, on_retry: OnRetry | None, abort: asyncio.Event) -> Task:
        """The POST between its two journal writes: the row exists before any byte is sent."""
        try:
            local_id = await asyncio.to_thread(self.journal.begin, request, self.base_url)
        except JournalError as error:  # no record, no send: a crash would lose it
            raise JournalError(error.path, error.error, outcome="nothing was sent") from None
        try:
            task = await self._call(
                "POST",
                "/v1/images/generations",
                lambda body: parse_submit_response(body, request),
                payload=request.to_payload(),
                submitted=request,
                on_retry=on_retry,
                abort=abort,
            )
        except BaseException as error:
            # only a clear refusal proves nothing was created; anything odd counts as unknown
            refused = isinstance(error, QwenError) and not isinstance(error, SubmitOutcomeUnknownError)
            state = EntryState.REFUSED if refused else EntryState.UNKNOWN
            reason = getattr(error, "reason", None) or str(error) or type(error).__name__
            await self._journal_quietly(self.journal.failed_to_submit, local_id, state, reason)
            raise
        await self._journal_quietly(self.journal.submitted, local_id, task)
        return task

    async def _journal_quietly(self, write: Callable[..., T], *args: Any) -> T | None:
        """A journal write after the POST: if it fails, the task must still reach the caller."""
        try:
            return await asyncio.to_thread(write, *args)
        except (JournalError, OSError) as error:
            _log.warning("qwen_widgets could not update the journal (%s): %s", self.journal.path, error)
            return None

    async def get_task(
        self,
        task_id: str,
        *,
        request: ImageRequest | None = None,
        on_retry: OnRetry | None = None,
    ) -> Task:
        """The task's current state (one poll, retried on transient failures)."""
        return await self._poll(validate_task_id(task_id), request, on_retry, None)

    async def wait(
        self,
        task_or_id: Task | str,
        *,
        on_update: OnUpdate | None = None,
        timeout: float | None = None,
        on_retry: OnRetry | None = None,
    ) -> Task:
        """Poll until the task is completed, failed or cancelled, and return it.

        A failed task is returned, not raised (generate() raises). `on_update(task)` runs
        after every poll. Transient failures are retried until the deadline: `timeout`
        seconds, by default the larger of 10 minutes and 3x the server's estimate. Then
        TaskTimeoutError; the task may still finish.
        """
        if isinstance(task_or_id, Task):  # a Task may be hand-built or read from a journal
            task_id, request, last = validate_task_id(task_or_id.task_id), task_or_id.request, task_or_id
        else:
            task_id, request, last = validate_task_id(task_or_id), None, None
        tracker = PollTracker(self._schedule, timeout=timeout)
        start = self._clock.monotonic()
        elapsed = 0.0
        try:
            while True:
                await self._clock.sleep(tracker.next_delay(elapsed))
                try:
                    last = await self._poll(task_id, request, on_retry, start + tracker.deadline())
                except _DeadlineReached as reached:
                    raise TaskTimeoutError(task_id, last, tracker.deadline()) from reached.error
                elapsed = self._clock.monotonic() - start
                tracker.observe(elapsed, last)
                if last.done:
                    last = await self._finish(last, start + tracker.deadline())
                if on_update is not None:
                    await _maybe_await(on_update(last))
                if last.done:
                    return last
                if elapsed >= tracker.deadline():
                    raise TaskTimeoutError(task_id, last, tracker.deadline())
        except asyncio.CancelledError:
            raise asyncio.CancelledError(
                f"stopped watching task {task_id}; it may still complete and be billed. "
                f"Re-attach with wait({task_id!r})."
            ) from None

    async def generate(
        self,
        request_or_prompt: ImageRequest | str,
        *,
        on_update: OnUpdate | None = None,
        timeout: float | None = None,
        on_retry: OnRetry | None = None,
        **fields: Any,
    ) -> Task:
        """Submit and wait; returns the completed task, raises TaskFailedError otherwise.

        `fields` set or override request fields: generate("a fox", size="16:9", n=2).
        """
        request = as_request(request_or_prompt, fields)
        task = await self.submit(request, on_retry=on_retry)
        if on_update is not None:
            await _maybe_await(on_update(task))
        task = await self.wait(task, on_update=on_update, timeout=timeout, on_retry=on_retry)
        if task.status is not TaskStatus.COMPLETED:
            raise TaskFailedError(task)
        return task

    async def resume(self, *, on_update: OnUpdate | None = None) -> list[Task]:
        """Re-attach to every unfinished task of the journal younger than 24 h; wait for all.

        Submissions whose outcome is unknown (including those cut off by a crash mid-POST)
        are reported with a warning and never resent. Results are journaled (and their images
        kept) as if the original session had finished them.
        """
        await asyncio.to_thread(self.journal.settle_orphans)
        unknown = await asyncio.to_thread(
            self.journal.entries, base_url=self.base_url, states=(EntryState.UNKNOWN,),
            newer_than=time.time() - URL_LIFETIME)
        if unknown:
            warnings.warn(
                f"{len(unknown)} submission(s) of the last 24 h may have reached the server, but "
                "their outcome is unknown; they were not resent, to avoid paying twice. Check your "
                "APIMart console; qwen_widgets.history() lists them (journal_state 'unknown').",
                UserWarning, stacklevel=2)
        entries = await asyncio.to_thread(self.journal.unfinished, self.base_url)
        results = await asyncio.gather(
            *(self.wait(entry.task, on_update=on_update) for entry in entries if entry.task),
            return_exceptions=True)
        if self.keep_images:  # finished earlier, but the images were not saved in time
            await asyncio.to_thread(remove_stale_temporary_files, self.journal.images_folder())
            for entry in await asyncio.to_thread(self.journal.unsaved, self.base_url):
                await self._finish(entry.task)  # record() finds the entry's own row again
        tasks = []
        for result in results:
            if isinstance(result, Task):
                tasks.append(result)
            elif isinstance(result, Exception):
                _log.warning("could not resume a task: %s", result)
            else:
                raise result
        return tasks

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

    async def _finish(self, task: Task, deadline: float | None = None) -> Task:
        """A task just seen done: journal it, then keep its images (if asked, within the
        deadline). Images not kept in time keep their URL; resume() keeps them later."""
        local_id = await self._journal_quietly(self.journal.record, task, self.base_url)
        if self.keep_images and local_id is not None and task.status is TaskStatus.COMPLETED:
            keeping = asyncio.gather(*(self._keep(local_id, task, image) for image in task.images))
            left = None if deadline is None else max(deadline - self._clock.monotonic(), 0.0)
            try:
                kept = await asyncio.wait_for(keeping, left)
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
            path, digest = await asyncio.to_thread(keep_copy, self.journal, local_id, task, image, data)
        except (QwenError, OSError) as error:
            _log.warning("image %d of task %s was not saved locally: %s", image.index, task.task_id, error)
            return image
        await self._journal_quietly(self.journal.add_image_copy, local_id, image.index, path, digest)
        return dataclasses.replace(image, local_path=path)

    async def _poll(
        self,
        task_id: str,
        request: ImageRequest | None,
        on_retry: OnRetry | None,
        deadline: float | None,
    ) -> Task:
        def parse(body: Any) -> Task:
            task = parse_task_response(body, task_id=task_id, request=request)
            # the server's words reach reprs, cards and the journal: never with the key in them
            return dataclasses.replace(task, error=self._auth.redact(task.error)) if task.error else task

        return await self._call(
            "GET",
            f"/v1/tasks/{task_id}",
            parse,
            task_id=task_id,
            on_retry=on_retry,
            deadline=deadline,
        )

    async def _call(
        self,
        method: str,
        path: str,
        parse: Callable[[Any], T],
        *,
        payload: Any = None,
        submitted: ImageRequest | None = None,
        task_id: str | None = None,
        on_retry: OnRetry | None = None,
        deadline: float | None = None,
        abort: asyncio.Event | None = None,
    ) -> T:
        """One API call with retries decided by _retry; parse() turns the body into a result.

        With a `deadline` (clock.monotonic() seconds) attempts continue until it, each one cut
        off there, and _DeadlineReached ends the call; without, RetryPolicy bounds attempts.
        """
        attempt = 0
        error: QwenError | None = None
        while True:
            attempt += 1
            await self._budget.take(self._clock)
            if abort is not None and abort.is_set():
                raise _NotSent()
            limit = self._call_limit
            cut_by_deadline = False
            if deadline is not None and deadline - self._clock.monotonic() < limit:
                limit, cut_by_deadline = deadline - self._clock.monotonic(), True
                if limit <= 0:
                    raise _DeadlineReached(error or TransportError("no time left before the deadline"))
            retry_after = None
            try:
                response = await asyncio.wait_for(self._http.request(method, path, json=payload), limit)
            except (httpx.RequestError, asyncio.TimeoutError) as exc:
                if isinstance(exc, httpx.RequestError):
                    verdict, reason = classify_exception(exc, method), _describe(exc)
                else:  # the request may have been answered in part: as unknown as a reset
                    if cut_by_deadline and error is not None:  # the deadline, not this server
                        raise _DeadlineReached(error) from exc
                    verdict = Verdict.RETRY if method == "GET" else Verdict.OUTCOME_UNKNOWN
                    reason = f"no complete answer within {limit:.1f} s"
                error = TransportError(self._auth.redact(f"{method} {self.base_url}{path} failed: {reason}"))
                cause: BaseException = exc
            else:
                # masked before anything reads it: messages quote bodies, shortened, and a
                # shortened key would slip past a later redaction
                text = self._auth.redact(response.text)
                if response.is_success:
                    try:
                        return parse(json.loads(text))
                    except (ValueError, RecursionError, MalformedResponseError) as exc:
                        verdict = Verdict.OUTCOME_UNKNOWN if method == "POST" else Verdict.RETRY
                        error = _malformed(response.status_code, text, exc, task_id)
                        cause = error  # not the decoder's error: it holds the whole body
                else:
                    verdict = classify_status(response.status_code, method)
                    error = _api_error(response, text, task_id, self._clock.time())
                    retry_after = error.retry_after
                    cause = error
            if verdict is Verdict.OUTCOME_UNKNOWN:
                assert submitted is not None
                raise SubmitOutcomeUnknownError(submitted, str(error)) from cause
            delay = None
            if verdict is Verdict.RETRY:
                delay = self._retry.delay(attempt, retry_after, self._clock.random(),
                                          bounded=deadline is None)
                if delay is not None and deadline is not None:
                    if self._clock.monotonic() + delay >= deadline:
                        raise _DeadlineReached(error)
            if delay is None:
                raise error from (cause if cause is not error else None)
            if on_retry is not None:
                await _maybe_await(on_retry(error, delay))
            await self._clock.sleep(delay)


class _NotSent(QwenError):
    """Internal: a submission cancelled while it waited for its turn, before any byte left."""

    def __init__(self) -> None:
        super().__init__("cancelled before it was sent; nothing was created")


class _DeadlineReached(Exception):
    """Internal: a call stopped because the caller's deadline came; carries the last error."""

    def __init__(self, error: QwenError):
        self.error = error
        super().__init__(str(error))


async def _unstoppable(future: asyncio.Future[T]) -> T:
    """Await `future` to its end even if we are cancelled meanwhile (a POST on the wire)."""
    while True:
        try:
            return await asyncio.shield(future)
        except asyncio.CancelledError:
            if future.cancelled():
                raise


class QwenClient:
    """The synchronous client: AsyncQwenClient's methods, run on the package's private loop.

    Works in scripts and inside a running notebook cell alike. Callbacks (`on_update`,
    `on_retry`) run on the loop's thread.
    """

    def __init__(self, api_key: str | None = None, **options: Any):
        api_key = _as_secret(api_key)  # rebinding: even this frame's locals show ***
        self.aio = AsyncQwenClient(api_key, **options)
        """The underlying async client. It belongs to the package's private loop: use it in
        coroutines run there (as the widgets do). To `await` in a notebook cell, create an
        AsyncQwenClient of your own."""

    demo = property(lambda self: self.aio.demo, doc="True when running against the simulator.")
    base_url = property(lambda self: self.aio.base_url, doc="The API's base URL.")
    simulator = property(lambda self: self.aio.simulator, doc="The demo simulator, if any.")

    def __repr__(self) -> str:
        if not hasattr(self, "aio"):
            return "QwenClient(not ready)"
        return repr(self.aio).replace("AsyncQwenClient", "QwenClient", 1)

    def __enter__(self) -> QwenClient:
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()

    def close(self) -> None:
        """Close the HTTP clients."""
        _runner.run(self.aio.aclose())

    def submit(self, request: ImageRequest, **kwargs: Any) -> Task:
        """See AsyncQwenClient.submit."""
        return _runner.run(self.aio.submit(request, **kwargs))

    def get_task(self, task_id: str, **kwargs: Any) -> Task:
        """See AsyncQwenClient.get_task."""
        return _runner.run(self.aio.get_task(task_id, **kwargs))

    def wait(self, task_or_id: Task | str, **kwargs: Any) -> Task:
        """See AsyncQwenClient.wait."""
        return _runner.run(self.aio.wait(task_or_id, **kwargs))

    def generate(self, request_or_prompt: ImageRequest | str, **kwargs: Any) -> Task:
        """See AsyncQwenClient.generate."""
        return _runner.run(self.aio.generate(request_or_prompt, **kwargs))

    def fetch_image(self, url_or_image: str | GeneratedImage) -> bytes:
        """See AsyncQwenClient.fetch_image."""
        return _runner.run(self.aio.fetch_image(url_or_image))

    def resume(self, **kwargs: Any) -> list[Task]:
        """See AsyncQwenClient.resume."""
        return _runner.run(self.aio.resume(**kwargs))



_default: QwenClient | None = None
_default_lock = threading.Lock()


def default_client() -> QwenClient:
    """The process-wide client behind `qwen_widgets.generate`, created on first use."""
    global _default
    with _default_lock:
        if _default is None:
            _default = QwenClient()
        return _default


def set_default_client(client: QwenClient) -> None:
    """Make `client` the one behind `qwen_widgets.generate` (e.g. after a key is entered)."""
    global _default
    with _default_lock:
        _default = client


def generate(prompt: ImageRequest | str, **fields: Any) -> Task:
    """Generate images and wait for them: `qw.generate("a red fox in snow", n=2)`."""
    return default_client().generate(prompt, **fields)


def resume() -> list[Task]:
    """Pick up every unfinished task of the last 24 h (e.g. after a kernel restart)."""
    return default_client().resume()


def as_request(request_or_prompt: ImageRequest | str, fields: dict[str, Any]) -> ImageRequest:
    """An ImageRequest from a prompt or a request plus field overrides."""
    allowed = ImageRequest.__dataclass_fields__
    for name in fields:
        if name not in allowed:
            raise RequestValidationError(
                name, f"is not a request field; allowed: {', '.join(allowed)}", show_value=False
            )
    if isinstance(request_or_prompt, ImageRequest):
        return request_or_prompt.replace(**fields) if fields else request_or_prompt
    if isinstance(request_or_prompt, str):
        if "prompt" in fields:
            raise RequestValidationError("prompt", "given twice", show_value=False)
        return ImageRequest(prompt=request_or_prompt, **fields)
    raise RequestValidationError("prompt", "must be a string or an ImageRequest", request_or_prompt)


def _announce_demo() -> None:
    global _demo_notice_shown
    if not _demo_notice_shown:
        _demo_notice_shown = True
        # warn_explicit: one clean line, without echoing whichever source line created the client
        warnings.warn_explicit(_DEMO_NOTICE, DemoModeWarning, "qwen_widgets", 0)


async def _maybe_await(value: Awaitable[Any] | Any) -> None:
    if inspect.isawaitable(value):
        await value


def _describe(exc: BaseException) -> str:
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


_STATUS_ERRORS: dict[int, type[APIError]] = {
    401: AuthenticationError,
    402: PermissionDeniedError,
    403: PermissionDeniedError,
    404: NotFoundError,
    429: RateLimitError,
}
_STATUS_HINTS = {
    401: "check your API key (APIMART_API_KEY)",
    402: "check your APIMart balance",
    429: "rate limited",
}


def _api_error(response: httpx.Response, text: str, task_id: str | None, now: float) -> APIError:
    """The typed error for a non-2xx response (its body `text` already redacted), with the
    server's message when it sent one."""
    status = response.status_code
    try:
        code, message, kind = parse_error_envelope(json.loads(text))
    except (ValueError, RecursionError):
        code, message, kind = None, None, None
    if message is None:
        text = text.strip()
        what = response.headers.get("content-type", "no content type")
        message = f"{response.reason_phrase or 'error'}; body not JSON ({what}, {len(text)} chars)"
        # quote only a short one-line plain answer: never HTML, never a server traceback
        if text and "json" not in what and len(text) < 200 and "<" not in text and "\n" not in text:
            message += f": {text}"
    if status in _STATUS_HINTS:
        message = f"{message} ({_STATUS_HINTS[status]})"
    cls = _STATUS_ERRORS.get(status, ServerError if status >= 500 else APIError)
    return cls(
        message,
        status_code=status,
        code=code,
        error_type=kind,
        task_id=task_id,
        retry_after=parse_retry_after(response.headers.get("retry-after"), now),
    )


def _malformed(status: int, text: str, exc: Exception, task_id: str | None) -> MalformedResponseError:
    """A fresh error (never the decoder's, which holds the whole body) for an unusable 2xx."""
    if isinstance(exc, MalformedResponseError):
        message = exc.message
    else:
        message = f"the response is not valid JSON: {shorten(text, 80) if text else 'an empty body'}"
    return MalformedResponseError(message, status_code=status, task_id=task_id)
