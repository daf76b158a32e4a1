"""Every error qwen_widgets raises, in one tree.

```
QwenError
├── RequestValidationError     bad input, caught before any network call (also a ValueError)
├── APIError                   the API answered with an error, or with something unreadable
│   ├── AuthenticationError    401: the key is missing or wrong
│   ├── PermissionDeniedError  402/403: no balance, or the key may not do this
│   ├── NotFoundError          404: e.g. an unknown or expired task id
│   ├── RateLimitError         429: too many requests; carries retry_after
│   ├── ServerError            5xx
│   └── MalformedResponseError a response that does not follow the contract
├── TransportError             the network failed (refused, reset, timed out)
├── SubmitOutcomeUnknownError  the POST may have reached the server: do not resubmit blindly
├── TaskFailedError            the task ended failed or cancelled; carries the task
├── TaskTimeoutError           we stopped watching at the deadline; the task may still finish
├── ImageFetchError            an image URL could not be downloaded as an image
├── JournalError               the journal file cannot be read or written; names the file
├── SpendingLimitError         a daily image or spend limit would be passed; nothing was sent
└── ImageUploadError           a reference image could not be uploaded (or its answer was lost)
```

Messages never contain the API key: the key never reaches this module.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from typing import Any, NamedTuple

__all__ = [
    "QwenError",
    "RequestValidationError",
    "APIError",
    "AuthenticationError",
    "PermissionDeniedError",
    "NotFoundError",
    "RateLimitError",
    "ServerError",
    "MalformedResponseError",
    "TransportError",
    "SubmitOutcomeUnknownError",
    "TaskFailedError",
    "TaskTimeoutError",
    "ImageFetchError",
    "JournalError",
    "SpendingLimitError",
    "ImageUploadError",
]


def shorten(value: Any, limit: int = 60) -> str:
    """A repr of `value` short enough to quote in an error message."""
    text = repr(value)
    if len(text) <= limit:
        return text
    return text[: limit - 5] + "…" + text[-4:]


def stopped_watching(task_id: str, *reattach: str) -> str:
    """The one sentence for a task no longer watched: it runs on, may bill, and can be
    re-attached with any of `reattach` (functions taking the id; client.wait by default)."""
    ways = " or ".join(f"{way}({task_id!r})" for way in reattach or ("client.wait",))
    return f"stopped watching task {task_id}; it may still complete and be billed. Re-attach with {ways}."


class QwenError(Exception):
    """Base class of every error raised by qwen_widgets."""


class RequestValidationError(QwenError, ValueError):
    """A request field breaks one of the API's rules; raised before anything is sent."""

    def __init__(self, field: str, rule: str, value: Any = None, *, show_value: bool = True):
        self.field = field
        self.rule = rule
        self.value = value
        message = f"{field}: {rule}"
        if show_value:
            message += f" (got {shorten(value)})"
        super().__init__(message)


class APIError(QwenError):
    """The API answered with an error envelope, or with a body that breaks the contract."""

    def __init__(
        self,
        message: str,
        *,
        status_code: int | None = None,
        code: Any = None,
        error_type: str | None = None,
        task_id: str | None = None,
        retry_after: float | None = None,
        param: str | None = None,
        request_id: str | None = None,
    ):
        self.message = message
        self.retry_after = retry_after
        """Seconds the server asked us to wait (Retry-After), when it said."""
        self.status_code = status_code
        self.code = code
        """The server's error code: a number or a word (e.g. 'model_not_found')."""
        self.error_type = error_type
        self.task_id = task_id
        self.param = param
        """The request field the server objected to, when it named one."""
        self.request_id = request_id
        """The server's id for this answer; quote it to APIMart support."""
        super().__init__(message)

    def __str__(self) -> str:
        prefix = f"HTTP {self.status_code}: " if self.status_code is not None else ""
        notes = [f"field {self.param}"] if self.param else []
        notes += [f"task {self.task_id}"] if self.task_id else []
        notes += [f"request {self.request_id}"] if self.request_id else []
        suffix = f" ({', '.join(notes)})" if notes else ""
        return f"{prefix}{self.message}{suffix}"

    @staticmethod
    def from_response(status: int, text: str, *, reason: str = "", content_type: str | None = None,
                      task_id: str | None = None, retry_after: float | None = None,
                      redact: Callable[[Any], Any] | None = None) -> APIError | SpendingLimitError:
        """The typed error for a non-2xx answer, with the server's message when it sent one; a
        class gateway's budget refusal is a SpendingLimitError.

        `text` is the body, already redacted: it may be quoted. `redact` masks the key again
        in what was decoded from it (a key echoed JSON-escaped decodes back into the key).
        """
        try:
            body = json.loads(text)
            if redact is not None:
                body = redact(body)
        except (ValueError, RecursionError):
            body = None
        fields = parse_error_envelope(body)
        if fields.type == "spending_limit_error" and isinstance(body, dict) and isinstance(body.get("error"), dict):
            # a class gateway's budget or window: words for the student, not a bare status
            return SpendingLimitError.from_gateway(body["error"])
        message = fields.message
        if message is None:
            text = text.strip()
            what = content_type or "no content type"
            message = f"{reason or 'error'}; body not JSON ({what}, {len(text)} chars)"
            # quote only a short one-line plain answer: never HTML, never a server traceback
            if text and "json" not in what and len(text) < 200 and "<" not in text and "\n" not in text:
                message += f": {text}"
        if status in _STATUS_HINTS:
            message = f"{message} ({_STATUS_HINTS[status]})"
        cls = _STATUS_ERRORS.get(status, ServerError if status >= 500 else APIError)
        return cls(message, status_code=status, code=fields.code, error_type=fields.type, task_id=task_id,
                   retry_after=retry_after, param=fields.param, request_id=fields.request_id)


class AuthenticationError(APIError):
    """401: the API key is missing or wrong."""


class PermissionDeniedError(APIError):
    """402/403: insufficient balance, or the key lacks permission."""


class NotFoundError(APIError):
    """404: the resource (usually a task id) does not exist or has expired."""


class RateLimitError(APIError):
    """429: slow down; `retry_after` is the server's wait in seconds, when it sent one."""


class ServerError(APIError):
    """5xx: the service failed; polling retries these, submitting mostly does not."""


class MalformedResponseError(APIError):
    """A response whose body does not follow the documented envelope."""

    @classmethod
    def from_body(cls, status: int, text: str, error: Exception, task_id: str | None) -> MalformedResponseError:
        """A fresh error for an unusable 2xx body (never the decoder's, which holds the whole body)."""
        if isinstance(error, MalformedResponseError):
            message = error.message
        else:
            message = f"the response is not valid JSON: {shorten(text, 80) if text else 'an empty body'}"
        return cls(message, status_code=status, task_id=task_id)


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


class ErrorFields(NamedTuple):
    """What an error body says; None for anything it does not."""

    code: Any
    message: str | None
    type: str | None
    param: str | None
    request_id: str | None


def parse_error_envelope(body: Any) -> ErrorFields:
    """The fields of `{"error": {"message", "type", "code", "param"}}`, `{"success": false,
    "message": ...}` or `{"error": "text"}`; a code may be a number or a string."""
    if not isinstance(body, dict):
        return ErrorFields(None, None, None, None, None)
    request_id = _text(body.get("request_id"))
    error = body.get("error", body)
    if isinstance(error, str):
        return ErrorFields(body.get("code"), error, None, None, request_id)
    if not isinstance(error, dict):
        return ErrorFields(None, None, None, None, request_id)
    return ErrorFields(error.get("code", body.get("code")), _text(error.get("message", body.get("message"))),
                       _text(error.get("type")), _text(error.get("param")), request_id)


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) else None


class TransportError(QwenError):
    """The network failed before a usable response arrived."""

    def __init__(self, message: str, *, plain: str | None = None):
        self.plain = plain
        """What failed, in words for a person ('could not connect to the server'), when known;
        the message itself is for logs and names the request and the library's error."""
        super().__init__(message)


class SubmitOutcomeUnknownError(QwenError):
    """The generation request may have reached the server, but no answer came back.

    Every attempt carried the same idempotency key (`idempotency_key`), so sending it again
    with that key never creates a second task: `qwen_widgets.resume()` does so safely. With
    `resend_with_key=False` (for gateways that ignore keys) it was sent once and is never
    resent; the task may exist, so check the APIMart console before submitting it again.
    """

    def __init__(self, request: Any, reason: str, *, idempotency_key: str | None = None,
                 attempts: int = 1, resent: bool = False):
        self.request = request
        """The ImageRequest that was sent."""
        self.reason = reason
        self.idempotency_key = idempotency_key
        """The key every attempt carried; resume() sends the request again with it."""
        self.attempts = attempts
        self.resent = resent
        """True when every attempt went with the same key (resend_with_key), so sending it
        again with that key is safe."""
        if resent:
            advice = (f"it was sent {attempts} time(s), always with idempotency key {idempotency_key}, so "
                      "no second task can come of it. qwen_widgets.resume() sends it again with that "
                      "key and picks up the task.")
        else:
            advice = ("it was NOT resent (resend_with_key is off), because a gateway that ignores the "
                      "key could bill twice. Check your APIMart console for a new task before "
                      "submitting again.")
        super().__init__(f"the submission may have reached the server but no answer arrived ({reason}); {advice}")


class TaskFailedError(QwenError):
    """The task ended as failed or cancelled; `task` holds its last state."""

    def __init__(self, task: Any):
        self.task = task
        """The Task as last seen."""
        detail = f": {task.error}" if task.error else ""
        super().__init__(f"task {task.task_id} {task.status.value}{detail}")


class TaskTimeoutError(QwenError):
    """The deadline passed while the task was still running. It may still complete."""

    def __init__(self, task_id: str, last: Any, timeout: float, *, server_wait: float | None = None,
                 elapsed: float | None = None, error: Exception | None = None):
        self.task_id = task_id
        self.task = last
        """The Task as last seen, or None when it never was."""
        self.timeout = timeout
        self.server_wait = server_wait
        """Seconds the server asked to wait before the next poll (Retry-After), when that wait
        went past the deadline and so ended the watching early; else None."""
        state = f"last seen {last.status.value} at {last.progress}%" if last else "never seen"
        if server_wait is None:
            super().__init__(f"after {timeout:.0f} s ({state}): {stopped_watching(task_id)}")
            return
        answer = f" ({error})" if error is not None else ""
        super().__init__(
            f"the server asked to wait {server_wait:.0f} s before the next poll{answer}, past the end of the "
            f"{timeout:.0f} s deadline, so watching ended after {elapsed or 0:.0f} s ({state}): "
            f"{stopped_watching(task_id)}")


class ImageFetchError(QwenError):
    """An image URL could not be downloaded, or what came back is not an image."""

    def __init__(self, url: str, reason: str, *, status_code: int | None = None, plain: str | None = None):
        self.url = url
        self.reason = reason
        self.status_code = status_code
        """The image host's HTTP status, when it answered with one."""
        self.plain = plain
        """The reason in words for a person, when `reason` holds a library's error."""
        super().__init__(f"could not fetch image {shorten(url, 100)}: {reason}")


class JournalError(QwenError):
    """The journal file cannot be read or written. Nothing is sent without a journal row, so
    this stops a submission before the network; the file is never deleted for you."""

    def __init__(self, path: str, error: Exception, *, outcome: str = "", damaged: bool = False,
                 newer: tuple[int, int] | None = None):
        self.path = path
        self.reason = str(error) or type(error).__name__
        self.error = error
        self.damaged = damaged
        """True when the file is not a journal SQLite can read (the store decides)."""
        self.newer = newer
        """(the file's format version, the newest this version reads) when a newer
        qwen_widgets wrote the journal; else None."""
        if newer is not None:
            outcome = f"; {outcome}" if outcome else ""
            super().__init__(
                f"the journal {path} was written by a newer qwen_widgets (journal format {newer[0]}; this "
                f"version reads formats up to {newer[1]}){outcome}. Upgrade qwen_widgets (pip install -U "
                "qwen_widgets) to use it. Do not move it aside: it holds what resume() picks up and "
                "the spending-limit history.")
            return
        if damaged:
            advice = (f"The file is damaged. Move it aside (for example rename it to "
                      f"{os.path.basename(path)}.damaged) and qwen_widgets starts a new journal; "
                      "it never deletes your data.")
        else:
            advice = "Check that the folder is writable and has free space (QWEN_WIDGETS_HOME)."
        outcome = f"; {outcome}" if outcome else ""
        super().__init__(f"the journal {path} cannot be used ({self.reason}){outcome}. {advice}")


class SpendingLimitError(QwenError):
    """A daily limit (QWEN_WIDGETS_MAX_IMAGES_PER_DAY / _MAX_SPEND_PER_DAY, or a class
    gateway's budget or time window) would be passed. Raised before anything is sent (a
    gateway refuses before forwarding); names the limit, what was used, what the request needs,
    and when the rolling 24-hour window (or the gateway's day or window) frees enough."""

    def __init__(self, limit: str, used: float | None, needed: float | None, allowed: float | None,
                 frees_at: float | None, *, scope: str | None = None, message: str | None = None):
        from datetime import datetime, timezone

        self.limit = limit
        """'images per day', 'spend per day', 'total images' or 'window' (a gateway's lesson time)."""
        self.used = used
        self.needed = needed
        self.allowed = allowed
        self.frees_at = frees_at
        """Unix time when enough of the usage ages out (or the window opens); None if it never
        will (the request alone is over the limit)."""
        self.scope = scope
        """None for this machine's own limits; 'student' or 'class' for a class gateway's."""
        if message is not None:  # a gateway's own words, written for the student
            super().__init__(message)
            return
        money = limit.startswith("spend")

        def amount(value: float | None) -> str:
            return "?" if value is None else f"{value:.2f}" if money else f"{value:g}"

        when = ("it is larger than the whole limit" if frees_at is None else
                f"room frees up at {datetime.fromtimestamp(frees_at, timezone.utc):%Y-%m-%d %H:%M} UTC")
        super().__init__(f"the limit of {amount(allowed)} {limit} would be passed: {amount(used)} used in the "
                         f"last 24 hours, this needs {amount(needed)}; nothing was sent ({when})")

    @classmethod
    def from_gateway(cls, error: dict[str, Any]) -> SpendingLimitError:
        """A class gateway's refusal (`{"error": {"type": "spending_limit_error", "limit",
        "scope", "used", "allowed", "needed", "resets_at", "message"}}`), in its own words."""

        def number(name: str) -> float | None:
            value = error.get(name)
            return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None

        limit = error.get("limit") if isinstance(error.get("limit"), str) else "limit"
        scope = error.get("scope") if isinstance(error.get("scope"), str) else "class"
        message = _text(error.get("message")) or f"the class gateway refused: its {limit} is used"
        return cls(limit, number("used"), number("needed"), number("allowed"), number("resets_at"),
                   scope=scope, message=message)


class ImageUploadError(QwenError):
    """A reference image could not be uploaded. When its answer was lost after the bytes may
    have arrived, it was not sent again (uploads carry no idempotency key)."""

    def __init__(self, filename: str, reason: str, *, outcome_unknown: bool = False):
        self.filename = filename
        self.reason = reason
        self.outcome_unknown = outcome_unknown
        advice = (" The bytes may have arrived; it was not uploaded again automatically (uploads "
                  "have no idempotency key). Uploading again is safe: it costs storage, not money."
                  if outcome_unknown else "")
        super().__init__(f"could not upload {filename}: {reason}.{advice}")
