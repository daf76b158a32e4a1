"""Layer 1: the error tree and the messages that tell the user what to do next."""

from __future__ import annotations

import re

import pytest

import qwen_widgets as qw
from qwen_widgets.model import errors as _errors
from qwen_widgets.model.errors import (
    APIError,
    AuthenticationError,
    ImageFetchError,
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
)
from qwen_widgets.model.task import Task, TaskStatus
from qwen_widgets.model.request import ImageRequest

# As drawn in the _errors module docstring.
PARENTS = {
    RequestValidationError: QwenError,
    APIError: QwenError,
    AuthenticationError: APIError,
    PermissionDeniedError: APIError,
    NotFoundError: APIError,
    RateLimitError: APIError,
    ServerError: APIError,
    MalformedResponseError: APIError,
    TransportError: QwenError,
    SubmitOutcomeUnknownError: QwenError,
    TaskFailedError: QwenError,
    TaskTimeoutError: QwenError,
    ImageFetchError: QwenError,
}
API_CHILDREN = [c for c, p in PARENTS.items() if p is APIError]
TOP_LEVEL = [c for c, p in PARENTS.items() if p is QwenError]


@pytest.mark.parametrize("child, parent", PARENTS.items(), ids=[c.__name__ for c in PARENTS])
def test_tree_relations(child, parent):
    assert issubclass(child, parent)
    assert issubclass(child, QwenError)
    assert issubclass(child, Exception)


@pytest.mark.parametrize("cls", TOP_LEVEL, ids=[c.__name__ for c in TOP_LEVEL])
def test_top_level_branches_are_siblings(cls):
    for other in TOP_LEVEL:
        if other is not cls:
            assert not issubclass(cls, other)


@pytest.mark.parametrize("cls", API_CHILDREN, ids=[c.__name__ for c in API_CHILDREN])
def test_api_children_are_siblings(cls):
    for other in API_CHILDREN:
        if other is not cls:
            assert not issubclass(cls, other)


def test_only_request_validation_is_a_value_error():
    assert issubclass(RequestValidationError, ValueError)
    for cls in PARENTS:
        if cls is not RequestValidationError:
            assert not issubclass(cls, ValueError), cls


def test_docstring_tree_matches_the_classes():
    """Read the drawing in the module docstring and check it against the real classes."""
    drawing = re.search(r"```\n(.*?)```", _errors.__doc__, re.S).group(1)
    stack: list[tuple[int, type]] = []
    drawn = set()
    for line in drawing.splitlines():
        match = re.match(r"^([│├└─\s]*)(\w+)", line)
        if not match:
            continue
        depth = len(match.group(1))
        cls = getattr(_errors, match.group(2))
        while stack and stack[-1][0] >= depth:
            stack.pop()
        if stack:
            assert cls.__bases__[0] is stack[-1][1], f"{cls.__name__} under {stack[-1][1].__name__}"
        stack.append((depth, cls))
        drawn.add(cls)
    exported = {getattr(_errors, n) for n in _errors.__all__ if isinstance(getattr(_errors, n), type)}
    assert drawn == exported


def test_request_validation_error_fields_and_message():
    exc = RequestValidationError("n", "must be from 1 to 6", 9)
    assert (exc.field, exc.rule, exc.value) == ("n", "must be from 1 to 6", 9)
    assert "n" in str(exc) and "must be from 1 to 6" in str(exc) and "9" in str(exc)
    hidden = RequestValidationError("image_urls[0]", "no credentials", "https://u:s3cr3t@x", show_value=False)
    assert "s3cr3t" not in str(hidden)


def test_request_validation_error_shortens_long_values():
    exc = RequestValidationError("prompt", "too long", "w" * 5000)
    assert len(str(exc)) < 200


def test_api_error_message_names_status_and_task():
    exc = NotFoundError("task not found", status_code=404, task_id="task_9")
    text = str(exc)
    assert "404" in text and "task not found" in text and "task_9" in text
    assert exc.status_code == 404 and exc.task_id == "task_9"
    assert str(APIError("plain")) == "plain"


def test_rate_limit_error_carries_retry_after():
    exc = RateLimitError("slow down", status_code=429, retry_after=7.5)
    assert exc.retry_after == 7.5
    assert isinstance(exc, APIError)


def test_submit_outcome_unknown_says_it_was_not_resent():
    request = ImageRequest(prompt="a fox", n=2)
    exc = SubmitOutcomeUnknownError(request, "read timed out")
    text = str(exc)
    assert exc.request is request
    assert exc.reason == "read timed out"
    assert "read timed out" in text
    assert re.search(r"not\s+(been\s+)?re-?sent", text, re.I)
    assert "billed twice" in text or "bill" in text.lower()


def test_task_timeout_names_task_and_how_to_reattach():
    last = Task("task_01XYZ", TaskStatus.PROCESSING, progress=42)
    exc = TaskTimeoutError("task_01XYZ", last, 600.0)
    text = str(exc)
    assert exc.task_id == "task_01XYZ"
    assert exc.task is last
    assert exc.timeout == 600.0
    assert "task_01XYZ" in text
    assert "600" in text
    assert "wait('task_01XYZ')" in text  # the exact call that re-attaches
    assert "42" in text and "processing" in text
    assert "may still" in text


def test_task_timeout_without_a_last_state():
    exc = TaskTimeoutError("task_Q", None, 30.0)
    assert exc.task is None
    assert "task_Q" in str(exc)


@pytest.mark.parametrize(
    "status, error", [(TaskStatus.FAILED, "content policy"), (TaskStatus.CANCELLED, None)]
)
def test_task_failed_carries_the_task(status, error):
    task = Task("task_F1", status, error=error)
    exc = TaskFailedError(task)
    assert exc.task is task
    text = str(exc)
    assert "task_F1" in text
    assert status.value in text
    if error:
        assert error in text


def test_image_fetch_error_shortens_the_url():
    url = "https://cdn.example.com/" + "x" * 3000 + ".png"
    exc = ImageFetchError(url, "not an image")
    assert exc.url == url
    assert "not an image" in str(exc)
    assert len(str(exc)) < 300


def test_every_error_is_catchable_as_qwen_error():
    request = ImageRequest(prompt="p")
    task = Task("t1", TaskStatus.FAILED)
    instances = [
        RequestValidationError("n", "bad", 0),
        APIError("x"),
        MalformedResponseError("x"),
        TransportError("x"),
        SubmitOutcomeUnknownError(request, "reset"),
        TaskFailedError(task),
        TaskTimeoutError("t1", task, 1.0),
        ImageFetchError("https://e.com/a", "404"),
    ]
    for exc in instances:
        with pytest.raises(QwenError):
            raise exc


# -- the public surface reads like one package --------------------------------------------------


def test_public_names_report_a_public_module():
    """`qwen_widgets.TaskFailedError`, not `qwen_widgets._errors.TaskFailedError` (the widgets
    live in the public `qwen_widgets.widgets`, loaded on first use)."""
    private = [f"{name}: {getattr(qw, name).__module__}" for name in qw.__all__
               if isinstance(getattr(qw, name), type)
               and any(part.startswith("_") for part in getattr(qw, name).__module__.split("."))]
    assert not private, private
    assert qw.TaskFailedError.__module__ == qw.QwenClient.__module__ == "qwen_widgets"


def test_help_on_the_sync_client_shows_every_parameter():
    import inspect
    import pydoc

    for method, expected in [(qw.QwenClient.generate, ["request_or_prompt", "on_update", "timeout", "on_retry"]),
                             (qw.QwenClient.__init__, ["api_key", "base_url", "resend_with_key",
                                                       "max_images_per_day", "price_per_image"]),
                             (qw.QwenClient.wait, ["timeout"])]:
        shown = pydoc.render_doc(method, renderer=pydoc.plaintext)
        assert all(name in inspect.signature(method).parameters for name in expected), method
        assert all(name in shown for name in expected), shown
        assert "See AsyncQwenClient" not in shown
