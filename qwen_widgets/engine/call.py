"""One API call: a slot of the shared request budget, a time cap, and retries by verdict.

Every request to the API (submits and polls alike) goes through `Caller.call`: it waits for
a budget slot, sends, cuts the attempt off at the call's time cap or the caller's deadline,
reads the answer into a result or a typed error, and asks `_retry` what to do next.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import math
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import httpx

from .auth import BearerAuth
from .budget import Chance, Priority, RequestBudget
from .clock import Clock, within
from .settings import NOT_GIVEN, NotGiven
from ..model.errors import (
    APIError,
    MalformedResponseError,
    QwenError,
    RequestValidationError,
    SpendingLimitError,
    SubmitOutcomeUnknownError,
    TransportError,
)
from ..model.request import ImageRequest
from .retry import RetryPolicy, Verdict, classify_exception, classify_status, parse_retry_after

__all__: list[str] = []

T = TypeVar("T")
_CONNECT_TIMEOUT = 10.0
MAX_ANSWER_BYTES = 4 * 1024 * 1024
"""The largest API answer read: a task's JSON is a few KB, and an endless one must end in an
error, not in all the memory there is."""
_UNUSABLE = (httpx.HTTPError, httpx.InvalidURL, httpx.StreamError, httpx.CookieConflict)
"""httpx's errors outside its transport layer (RequestError is handled apart): with these,
every exception httpx raises maps into the package's tree."""
OnRetry = Callable[[QwenError, float], Any]
"""Called as on_retry(error, delay_seconds) before each automatic retry."""


class NotSent(QwenError):
    """A submission cancelled while it waited for its turn, before any byte left."""

    def __init__(self) -> None:
        super().__init__("cancelled before it was sent; nothing was created")


class DeadlineReached(Exception):
    """A call stopped because the caller's deadline came; carries the last error, and the wait
    the server asked for (Retry-After) when that is what crossed the deadline."""

    def __init__(self, error: QwenError, server_wait: float | None = None):
        self.error = error
        self.server_wait = server_wait
        super().__init__(str(error))


@dataclass
class _Failed:
    verdict: Verdict
    error: QwenError
    cause: BaseException
    retry_after: float | None = None


@dataclass
class _Answered(Generic[T]):
    value: T


RESPONSE_VERSION = "2026-07-27"
"""The answer shape asked for with X-APIMart-Response-Version (docs/api-contract.md section 1.5)."""


@dataclass
class Submission:
    """One logical generation request across all its attempts: every attempt carries the same
    idempotency key, so the server answers a resend with the task the first one created."""

    request: ImageRequest
    idempotency_key: str
    resend: bool
    """Send again (same key) when an answer is lost; off for gateways that ignore the key."""
    on_attempt: Callable[[], Awaitable[Any]]
    """Called before each attempt leaves (the journal counts them)."""
    attempts: int = 0
    lost: QwenError | None = None
    """Why the last attempt whose answer was lost failed; None while every answer arrived."""

    def headers(self) -> dict[str, str]:
        return {"Idempotency-Key": self.idempotency_key, "X-APIMart-Response-Version": RESPONSE_VERSION}

    def judge(self, failed: _Failed) -> Verdict:
        """What to do after a failed attempt. A refusal that follows a lost answer proves
        nothing: the lost attempt may have created the task, so the outcome stays unknown."""
        if failed.verdict is Verdict.OUTCOME_UNKNOWN:
            self.lost = failed.error
            return Verdict.RETRY if self.resend else Verdict.OUTCOME_UNKNOWN
        if failed.verdict is Verdict.FAIL and self.lost is not None:
            return Verdict.OUTCOME_UNKNOWN
        return failed.verdict

    def unknown(self, last: str) -> SubmitOutcomeUnknownError:
        """The error for a submission whose outcome stays unknown; `last` says what ended it."""
        reason = last if self.lost is None or str(self.lost) == last else f"{self.lost}; then {last}"
        return SubmitOutcomeUnknownError(self.request, reason, idempotency_key=self.idempotency_key,
                                         attempts=self.attempts, resent=self.resend)


class Caller:
    """Sends API requests for one client: its HTTP connection, key, budget and retry policy."""

    def __init__(self, http: httpx.AsyncClient, auth: BearerAuth, *, base_url: str,
                 budget: RequestBudget, retry: RetryPolicy, clock: Clock, call_limit: float | None):
        self._http = http
        self._base_url = base_url
        self._auth = auth
        self._budget = budget
        self._retry = retry
        self._clock = clock
        # an overall cap per HTTP call: httpx's timeouts are per read, so a server that drips
        # its answer a byte at a time would otherwise hold a call open indefinitely
        self._call_limit = call_limit

    async def call(
        self,
        method: str,
        path: str,
        parse: Callable[[Any, httpx.Headers], T],
        *,
        payload: Any = None,
        files: dict[str, tuple[str, Any, str]] | None = None,
        submission: Submission | None = None,
        unknown: Callable[[str], QwenError] | None = None,
        keyless: bool = False,
        task_id: str | None = None,
        on_retry: OnRetry | None = None,
        deadline: float | None = None,
        abort: asyncio.Event | None = None,
        priority: Priority = Priority.POLL,
        chance: Chance | None = None,
    ) -> T:
        """One API call with retries decided by _retry; parse(body, headers) turns the answer
        into a result.

        With a `deadline` (clock.monotonic() seconds) attempts continue until it, each one cut
        off there, and DeadlineReached ends the call; without, RetryPolicy bounds attempts.
        A `submission` (a POST) sends its key with every attempt and is sent again, with the
        same key, when an answer is lost; any other POST whose answer is lost ends with
        `unknown(reason)` and is never sent again (`files`: a multipart upload). A `keyless`
        call (a public endpoint) carries no key. `abort`, once set, stops a call not yet sent (NotSent).
        `priority` orders this call's turns at the shared budget, and a poll's `chance` (how
        likely it finds its task done, see RequestBudget.take) its turn among due polls.
        """
        attempt = 0
        last: QwenError | None = None
        while True:
            attempt += 1
            go = await self._take_slot(priority, abort, chance)
            try:
                if abort is not None and abort.is_set():
                    if submission is not None and submission.lost is not None:
                        raise submission.unknown("stopped before sending it again")
                    raise NotSent()
                if submission is not None:
                    submission.attempts += 1
                    await submission.on_attempt()
            except BaseException:
                go()  # the slot is given up: the budget moves on
                raise
            headers = submission.headers() if submission is not None else None
            outcome = await self._attempt(method, path, parse, (payload, files, keyless), headers, task_id,
                                          deadline, last, go)
            if isinstance(outcome, _Answered):
                return outcome.value
            last = outcome.error
            verdict = submission.judge(outcome) if submission is not None else outcome.verdict
            if verdict is Verdict.OUTCOME_UNKNOWN:
                lost = submission.unknown if submission is not None else unknown
                assert lost is not None, "a POST needs a submission or an unknown() error"
                raise lost(str(outcome.error)) from outcome.cause
            delay = self._delay(outcome, verdict, attempt, deadline)
            if delay is None:
                if submission is not None and submission.lost is not None:
                    raise submission.unknown(str(outcome.error)) from outcome.cause
                cause = outcome.cause if outcome.cause is not outcome.error else None
                raise outcome.error from cause
            if on_retry is not None:
                await maybe_await(on_retry(outcome.error, delay))
            await self._clock.sleep(delay)

    async def _take_slot(self, priority: Priority, abort: asyncio.Event | None,
                         chance: Chance | None = None) -> Callable[[], None]:
        """A slot of the shared budget, and the function to call the moment the request goes;
        an abort ends the wait at once (the caller then sends nothing), rather than after the
        queue ahead of it."""
        if abort is None:
            return await self._budget.take(self._clock, priority, deferred=True, chance=chance)
        taking = asyncio.ensure_future(self._budget.take(self._clock, priority, deferred=True, chance=chance))
        aborting = asyncio.ensure_future(abort.wait())
        try:
            await asyncio.wait({taking, aborting}, return_when=asyncio.FIRST_COMPLETED)
        except BaseException:
            if taking.done() and not taking.cancelled() and taking.exception() is None:
                taking.result()()  # granted in the very turn we were cancelled: give it back
            raise
        finally:
            aborting.cancel()
            if not taking.done():
                taking.cancel()
        if taking.done() and not taking.cancelled():
            return taking.result()
        return lambda: None  # aborted before a slot came: nothing to report

    async def _attempt(self, method: str, path: str, parse: Callable[[Any, httpx.Headers], T],
                       body: tuple[Any, Any, bool], headers: dict[str, str] | None, task_id: str | None,
                       deadline: float | None, last: QwenError | None,
                       go: Callable[[], None]) -> _Answered[T] | _Failed:
        """Send once, within the time cap; the answer read into a result or a failure. `go`
        tells the budget the request is leaving now."""
        limit, cut_by_deadline = self._call_limit, False
        if deadline is not None and (limit is None or deadline - self._clock.monotonic() < limit):
            limit, cut_by_deadline = deadline - self._clock.monotonic(), True
            if limit <= 0:
                go()
                raise DeadlineReached(last or TransportError("no time left before the deadline",
                                                             plain="the time allowed ran out"))
        go()
        try:
            response, raw = await within(self._send(method, path, body, headers), limit)
        except httpx.RequestError as exc:
            error = self._transport_error(method, path, _describe(exc), in_plain_words(exc))
            return _Failed(classify_exception(exc, method), error, exc)
        except _UNUSABLE as exc:
            # raised after an answer came, e.g. while httpx prepares the redirect to a `data:`
            # or `javascript:` URL that a 3xx named (it does even when not following): the
            # answer is unusable, like a malformed one
            error = self._transport_error(method, path, f"the answer could not be used ({_describe(exc)})",
                                          in_plain_words(exc))
            return _Failed(Verdict.RETRY if method == "GET" else Verdict.OUTCOME_UNKNOWN, error, exc)
        except asyncio.TimeoutError as exc:
            if cut_by_deadline and last is not None:  # the deadline, not this server
                raise DeadlineReached(last) from exc
            # the request may have been answered in part: as unknown as a reset
            verdict = Verdict.RETRY if method == "GET" else Verdict.OUTCOME_UNKNOWN
            reason = f"no complete answer within {limit:.1f} s"
            return _Failed(verdict, self._transport_error(method, path, reason, "the server did not answer in time"),
                           exc)
        if raw is None:
            error = MalformedResponseError(
                f"the answer is over {MAX_ANSWER_BYTES // 2**20} MB, far more than any answer of this API; "
                "it was not read further", status_code=response.status_code, task_id=task_id)
            return _Failed(Verdict.RETRY if method == "GET" else Verdict.OUTCOME_UNKNOWN, error, error)
        # masked before anything reads it: messages quote bodies, shortened, and a shortened
        # key would slip past a later redaction
        text = self._auth.redact(_decode(raw, response))
        if response.is_success:
            try:
                # masked again once decoded: a spelling the pattern missed comes out as the key
                return _Answered(parse(self._auth.redact_decoded(json.loads(text)), response.headers))
            except (ValueError, RecursionError, MalformedResponseError) as exc:
                error = MalformedResponseError.from_body(response.status_code, text, exc, task_id)
                # not the decoder's error as the cause: it holds the whole body
                return _Failed(Verdict.OUTCOME_UNKNOWN if method == "POST" else Verdict.RETRY, error, error)
            except APIError as refused:  # `{"success": false}` on a 2xx: an error like any other
                refused.status_code, refused.task_id = response.status_code, task_id
                return _Failed(Verdict.RETRY if method == "GET" else Verdict.FAIL, refused, refused)
        retry_after = parse_retry_after(response.headers.get("retry-after"), self._clock.time())
        if response.status_code == 429:
            self._budget.throttled(self._clock.monotonic())
        error = APIError.from_response(
            response.status_code, text, reason=response.reason_phrase, redact=self._auth.redact_decoded,
            content_type=response.headers.get("content-type"), task_id=task_id, retry_after=retry_after)
        if isinstance(error, SpendingLimitError):  # a class gateway's budget: asking again cannot help
            return _Failed(Verdict.FAIL, error, error)
        return _Failed(classify_status(response.status_code, method, error.code), error, error, retry_after)

    async def _send(self, method: str, path: str, body: tuple[Any, Any, bool], headers: dict[str, str] | None
                    ) -> tuple[httpx.Response, bytes | None]:
        """Send, and read the answer up to MAX_ANSWER_BYTES (None beyond: an endless or
        enormous answer is never buffered whole)."""
        payload, files, keyless = body
        auth = {"auth": None} if keyless else {}  # None: no auth at all for this request
        request = self._http.build_request(method, path, json=payload, files=files, headers=headers)
        response = await self._http.send(request, stream=True, **auth)
        try:
            declared = response.headers.get("content-length", "")
            if declared.isdigit() and int(declared) > MAX_ANSWER_BYTES:
                return response, None
            chunks, total = [], 0
            async for chunk in response.aiter_bytes():  # decompressed: a gzip bomb counts in full
                total += len(chunk)
                if total > MAX_ANSWER_BYTES:
                    return response, None
                chunks.append(chunk)
        finally:
            await response.aclose()
        return response, b"".join(chunks)

    def _delay(self, failed: _Failed, verdict: Verdict, attempt: int, deadline: float | None) -> float | None:
        """Seconds to wait before trying again, or None to give up."""
        if verdict is not Verdict.RETRY:
            return None
        delay = self._retry.delay(attempt, failed.retry_after, self._clock.random(), bounded=deadline is None)
        if delay is not None and deadline is not None and self._clock.monotonic() + delay >= deadline:
            raise DeadlineReached(failed.error, failed.retry_after)
        return delay

    def _transport_error(self, method: str, path: str, reason: str, plain: str) -> TransportError:
        return TransportError(self._auth.redact(f"{method} {self._base_url}{path} failed: {reason}"), plain=plain)


def check_timeout(timeout: float | None | NotGiven) -> None:
    """A client's `timeout` option: left out, None (no limit) or a positive number of seconds."""
    if timeout is NOT_GIVEN or timeout is None:
        return
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not timeout > 0 \
            or math.isinf(timeout):
        raise RequestValidationError("timeout", "must be a positive number of seconds, or None for no limit",
                                     timeout)


def http_timeout(timeout: float | None | NotGiven, default: float) -> httpx.Timeout:
    """httpx's per-read timeout for the option (`default` when it was left out)."""
    seconds = default if timeout is NOT_GIVEN else timeout
    return httpx.Timeout(seconds, connect=_CONNECT_TIMEOUT if seconds is None else min(seconds, _CONNECT_TIMEOUT))


def call_limit(timeout: float | None | NotGiven, default: float) -> float | None:
    """The cap on a whole HTTP call: twice the per-read timeout (None: no cap)."""
    seconds = default if timeout is NOT_GIVEN else timeout
    return None if seconds is None else 2 * seconds


async def maybe_await(value: Awaitable[Any] | Any) -> None:
    """Await a callback's result when it is awaitable (callbacks may be sync or async)."""
    if inspect.isawaitable(value):
        await value


def _decode(raw: bytes, response: httpx.Response) -> str:
    """The answer's text in its declared charset (UTF-8 when none or an unknown one)."""
    try:
        return raw.decode(response.charset_encoding or "utf-8", errors="replace")
    except LookupError:
        return raw.decode("utf-8", errors="replace")


def in_plain_words(exc: BaseException) -> str:
    """What an httpx failure means, for a person: no library's names or words."""
    for kinds, words in _PLAIN:
        if isinstance(exc, kinds):
            return words
    return "the network failed"


_PLAIN: tuple[tuple[type[BaseException] | tuple[type[BaseException], ...], str], ...] = (
    (httpx.ConnectTimeout, "the server did not accept a connection in time"),
    (httpx.ConnectError, "could not connect to the server (is it down, or the network off?)"),
    ((httpx.ReadTimeout, httpx.WriteTimeout), "the server stopped answering"),
    (httpx.PoolTimeout, "too many requests were waiting for a connection"),
    (httpx.RemoteProtocolError, "the connection broke off in the middle of the answer"),
    (httpx.NetworkError, "the connection broke"),
    (httpx.DecodingError, "the answer could not be decoded"),
    ((httpx.InvalidURL, httpx.UnsupportedProtocol, httpx.TooManyRedirects),
     "the server redirected to an address that cannot be used"),
)


def _describe(exc: BaseException) -> str:
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
