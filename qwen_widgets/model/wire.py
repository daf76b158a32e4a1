"""Reading the API's JSON into Tasks: tolerant of every quirk the contract documents.

The wire format has quirks (docs/api-contract.md section 7): `url` is a string or a list of strings, numbers
arrive as strings, optional fields go missing, unknown fields appear. Parsing accepts all of
that; a body it cannot use raises MalformedResponseError, never KeyError or TypeError.
"""

from __future__ import annotations

import math
from datetime import datetime, timedelta, timezone
from typing import Any

from .errors import APIError, MalformedResponseError, RequestValidationError, parse_error_envelope, shorten
from .request import ImageRequest
from .task import GeneratedImage, Task, TaskStatus, validate_task_id
from .urls import is_http_url

__all__: list[str] = []

ASSUMED_URL_LIFETIME = timedelta(hours=24)
UNUSABLE_URL = "the server sent a URL that cannot be fetched (not a public http(s) URL)"


def parse_submit_response(body: Any, request: ImageRequest) -> Task:
    """Read the answer to a generation POST, in either shape the contract knows (docs/api-contract.md
    sections 1.4, 1.5).

    Legacy: `{"code": 200, "data": [{"status": "submitted", "task_id": ...}]}`. Versioned:
    `{"code": 200, "request_id": ..., "data": {"id": ..., "status": "pending", "object":
    "generation.task"}}`, or `"object": "generation.result"` with the finished task inline.
    A task id found under any known name is used; none at all is a malformed answer.
    """
    _refuse_unsuccessful(body)
    data = _field(body, "data", "submit response")
    if isinstance(data, list):  # documented as a one-element list
        if not data:
            raise MalformedResponseError("submit response has an empty 'data' list")
        data = data[0]
    if not isinstance(data, dict):
        raise MalformedResponseError(f"submit response 'data' is not an object: {shorten(data)}")
    task_id = _task_id_of(data)
    request_id = _text(body.get("request_id")) or _text(data.get("request_id"))
    if data.get("object") == "generation.result":
        try:
            finished = _task_from_data({"status": "completed", **data}, task_id, request, request_id)
        except MalformedResponseError:
            finished = None
        if finished is not None and finished.done and (finished.images or finished.status is not TaskStatus.COMPLETED):
            return finished
    # accepted: polling tells the rest, whatever this answer says of the status (an answer
    # that said "completed" without its images would otherwise lose them)
    return Task(task_id=task_id, status=TaskStatus.SUBMITTED, request=request, request_id=request_id)


def parse_task_response(body: Any, *, task_id: str, request: ImageRequest | None,
                        request_id: str | None = None) -> Task:
    """Read the envelope of `GET /v1/tasks/{id}` into a Task."""
    _refuse_unsuccessful(body)
    data = _field(body, "data", "task response")
    if not isinstance(data, dict):
        raise MalformedResponseError(f"task response 'data' is not an object: {shorten(data)}")
    seen_id = data.get("id", task_id)
    if seen_id != task_id:
        raise MalformedResponseError(
            f"asked for task {task_id} but the answer is about {shorten(seen_id)}"
        )
    return _task_from_data(data, task_id, request, request_id)


def _task_from_data(data: dict[str, Any], task_id: str, request: ImageRequest | None, request_id: str | None) -> Task:
    if not isinstance(data.get("status"), str):
        # an unknown *word* is tolerated (still running); a missing or non-text status is not
        raise MalformedResponseError(
            f"task response has no usable 'status': {shorten(data.get('status'))}", task_id=task_id)
    status = TaskStatus.parse(data["status"])
    progress = 100 if status is TaskStatus.COMPLETED else _number(data.get("progress"))
    width, height = request.output_size if request is not None else (None, None)
    created, completed = _timestamp(data.get("created")), _timestamp(data.get("completed"))
    result = data["result"] if isinstance(data.get("result"), dict) else data
    # where the server says no expiry, assume the shorter lifetime seen (24 h) for warnings
    seen = completed or created
    assumed_expiry = seen + ASSUMED_URL_LIFETIME if seen else None
    return Task(
        task_id=task_id,
        status=status,
        progress=int(min(max(progress or 0, 0), 100)),
        estimated_time=_number(data.get("estimated_time")),
        actual_time=_number(data.get("actual_time")),
        created_at=created,
        completed_at=completed,
        images=_parse_images(result, width, height, assumed_expiry),
        error=_error_text(data.get("error")) if status is TaskStatus.FAILED else None,
        request=request,
        request_id=request_id,
        cost=_number(data.get("cost")),
        credits_cost=_number(data.get("credits_cost")),
    )


def _refuse_unsuccessful(body: Any) -> None:
    """`{"success": false, "message": ...}` is an error whatever the HTTP status said."""
    if isinstance(body, dict) and body.get("success") is False:
        fields = parse_error_envelope(body)
        raise APIError(fields.message or "the service answered success: false", code=fields.code,
                       error_type=fields.type, param=fields.param, request_id=fields.request_id)


def _task_id_of(data: dict[str, Any]) -> str:
    info = data["task_info"] if isinstance(data.get("task_info"), dict) else {}
    candidates = [data.get("id"), data.get("task_id"), info.get("id"), info.get("task_id")]
    for candidate in candidates:
        if isinstance(candidate, str):
            try:
                return validate_task_id(candidate)
            except RequestValidationError:
                continue
    shown = next((c for c in candidates if c is not None), None)
    if shown is None:
        raise MalformedResponseError(f"submit response has no task id: {shorten(data)}")
    raise MalformedResponseError(f"submit response carries an unusable task id {shorten(shown)}")


def _text(value: Any) -> str | None:
    return value.strip() if isinstance(value, str) and value.strip() else None


def _field(container: Any, name: str, what: str) -> Any:
    if not isinstance(container, dict):
        raise MalformedResponseError(f"{what} is not a JSON object: {shorten(container)}")
    if name not in container:
        raise MalformedResponseError(f"{what} has no {name!r} field: {shorten(container)}")
    return container[name]


def _parse_images(result: dict[str, Any], width: int | None, height: int | None,
                  assumed_expiry: datetime | None) -> tuple[GeneratedImage, ...]:
    entries = result.get("images")
    if not isinstance(entries, list):
        return ()
    images: list[GeneratedImage] = []
    for entry in entries:
        if isinstance(entry, str):
            entry = {"url": entry}
        if not isinstance(entry, dict):
            continue
        urls = entry.get("url")
        expires = _timestamp(entry.get("expires_at")) or assumed_expiry
        for url in urls if isinstance(urls, list) else [urls]:
            if isinstance(url, str) and url.strip():
                url = url.strip()
                # kept, not dropped: the image was paid for, and the others must survive it
                error = None if is_http_url(url) else UNUSABLE_URL
                images.append(GeneratedImage(url, len(images), expires, width, height, error=error))
    return tuple(images)


def _number(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if not isinstance(value, (str, int, float)):
        return None
    try:
        number = float(value.strip() if isinstance(value, str) else value)
    except (ValueError, OverflowError):  # OverflowError: an int beyond float range
        return None
    return number if math.isfinite(number) else None


def _timestamp(value: Any) -> datetime | None:
    number = _number(value)
    if number is None:
        if isinstance(value, str):
            return _iso_timestamp(value)
        return None
    if number > 1e11:  # milliseconds
        number /= 1000
    try:
        return datetime.fromtimestamp(number, tz=timezone.utc)
    except (OverflowError, OSError, ValueError):
        return None


def _iso_timestamp(text: str) -> datetime | None:
    try:
        parsed = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=timezone.utc)
    try:
        return parsed.astimezone(timezone.utc)
    except OverflowError:  # e.g. year 1 with a positive offset
        return None


def _error_text(error: Any) -> str:
    if isinstance(error, dict):
        message = error.get("message") or error.get("msg") or error.get("code")
        if message is not None:
            return str(message)
    elif error:
        return str(error)
    return "the task failed without a message"
