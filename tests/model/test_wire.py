"""Layer 1: tolerant parsing of the API's JSON into Task / GeneratedImage (docs/api-contract.md sections 2 and 7)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from qwen_widgets.model.errors import APIError, MalformedResponseError, RequestValidationError, parse_error_envelope
from qwen_widgets.model.task import Task, TaskStatus, validate_task_id
from qwen_widgets.model.wire import parse_submit_response, parse_task_response
from qwen_widgets.model.request import ImageRequest

TID = "task_01J9ZQ4ABCDEF"
REQUEST = ImageRequest(prompt="a red fox", size="16:9", resolution="2K", n=3)
REQUEST_PIXELS = (2048, 1152)  # docs/api-contract.md section 1.3: 16:9 at 2K
T0 = 1_700_000_000  # 2023-11-14T22:13:20Z
T0_DT = datetime(2023, 11, 14, 22, 13, 20, tzinfo=timezone.utc)
URL_A = "https://cdn.example.com/a.png"
URL_B = "https://cdn.example.com/b.png"
URL_C = "https://cdn.example.com/c.png"


def _task(data: dict, request: ImageRequest | None = REQUEST, task_id: str = TID) -> Task:
    return parse_task_response({"code": 200, "data": data}, task_id=task_id, request=request)


def _completed(images: list, **extra) -> Task:
    return _task({"id": TID, "status": "completed", "result": {"images": images}, **extra})


# --- submit ---------------------------------------------------------------------------------


def test_submit_documented_envelope():
    body = {"code": 200, "data": [{"status": "submitted", "task_id": TID}]}
    task = parse_submit_response(body, REQUEST)
    assert task.task_id == TID
    assert task.status is TaskStatus.SUBMITTED
    assert not task.done
    assert task.request is REQUEST
    assert task.images == ()


@pytest.mark.parametrize(
    "body",
    [
        {"data": {"task_id": TID}},  # a bare object instead of a one-element list
        {"data": [{"task_id": TID}]},  # status missing
        {"code": "200", "data": [{"task_id": TID, "status": "submitted", "extra": 1}], "x": []},
    ],
)
def test_submit_tolerated_shapes(body):
    task = parse_submit_response(body, REQUEST)
    assert task.task_id == TID
    assert task.status is TaskStatus.SUBMITTED


@pytest.mark.parametrize(
    "body",
    [
        None,
        [],
        "<html>502 Bad Gateway</html>",
        {},
        {"code": 200},
        {"data": []},
        {"data": None},
        {"data": ["task_1"]},
        {"data": [{"status": "submitted"}]},
        {"data": [{"task_id": ""}]},
        {"data": [{"task_id": None}]},
        {"data": [{"task_id": 12345}]},
        {"data": [{"task_id": "a/b"}]},
        {"data": [{"task_id": "../admin"}]},
        {"data": [{"task_id": ".."}]},
        {"data": [{"task_id": "task..1"}]},
        {"data": [{"task_id": "t?x=1"}]},
        {"data": [{"task_id": "t#frag"}]},
        {"data": [{"task_id": "t 1"}]},
    ],
)
def test_submit_malformed(body):
    with pytest.raises(MalformedResponseError):
        parse_submit_response(body, REQUEST)


# --- task ids -------------------------------------------------------------------------------


@pytest.mark.parametrize("task_id", ["a", "task_01J9ZQ4ABCDEF", "abc-DEF_1-2_3", "x" * 128, "7"])
def test_validate_task_id_accepts(task_id):
    assert validate_task_id(task_id) == task_id


@pytest.mark.parametrize(
    "task_id",
    [
        "", " ", "a/b", "/abs", "..", "a..b", "../x", ".", ".hidden", "?", "a?b=1", "#", "a#b",
        "a b", " a", "a ", "a\n", "a\tb", "a%2fb", "a\\b", "x" * 129, "täsk", "a:b", "a.png",
        None, 5, 1.5, b"abc", ["a"], {"id": "a"},
    ],
)  # fmt: skip
def test_validate_task_id_refuses(task_id):
    with pytest.raises(RequestValidationError) as info:
        validate_task_id(task_id)
    assert info.value.field == "task_id"


# --- task: urls and images ------------------------------------------------------------------


@pytest.mark.parametrize(
    "images, urls",
    [
        ([{"url": URL_A}], [URL_A]),
        ([{"url": [URL_A]}], [URL_A]),
        ([{"url": [URL_A, URL_B, URL_C]}], [URL_A, URL_B, URL_C]),
        ([{"url": [URL_A, URL_B]}, {"url": URL_C}], [URL_A, URL_B, URL_C]),
        ([{"url": URL_A}, {"url": [URL_B, URL_C]}], [URL_A, URL_B, URL_C]),
        ([URL_A, URL_B], [URL_A, URL_B]),
        ([URL_A, {"url": [URL_B]}], [URL_A, URL_B]),
        ([{"url": "  " + URL_A + "\n"}], [URL_A]),
        ([{"url": ""}, {"url": URL_A}, {"url": None}, {}, 5, None, {"url": [3, URL_B]}], [URL_A, URL_B]),
        ([], []),
    ],
)  # fmt: skip
def test_image_urls_flattened_in_order(images, urls):
    task = _completed(images)
    assert task.urls == urls
    assert [image.index for image in task.images] == list(range(len(urls)))
    assert all((image.width, image.height) == REQUEST_PIXELS for image in task.images)


@pytest.mark.parametrize("result", [None, {}, {"images": None}, {"images": "x"}, "done", [URL_A]])
def test_completed_without_usable_result_has_no_images(result):
    task = _task({"status": "completed", "result": result})
    assert task.status is TaskStatus.COMPLETED
    assert task.images == ()
    assert task.done


def test_fewer_images_than_requested_are_reported_as_they_came():
    task = _completed([{"url": URL_A}])  # REQUEST.n == 3
    assert len(task.images) == 1


def test_expires_at_is_aware_utc_and_shared_by_flattened_urls():
    task = _completed([{"url": [URL_A, URL_B], "expires_at": T0 + 86_400}, {"url": URL_C}])
    first, second, third = task.images
    assert first.expires_at == T0_DT + timedelta(days=1)
    assert first.expires_at.utcoffset() == timedelta(0)
    assert second.expires_at == first.expires_at
    assert third.expires_at is None


def test_width_height_unknown_without_request():
    task = _task({"status": "completed", "result": {"images": [{"url": URL_A}]}}, request=None)
    image = task.images[0]
    assert (image.width, image.height) == (None, None)
    assert task.request is None


@pytest.mark.parametrize(
    "size, resolution, pixels",
    [("1:1", "1K", (1024, 1024)), ("3:4", "1K", (864, 1152)), ("2:3", "2K", (1360, 2048))],
)
def test_width_height_follow_request_output_size(size, resolution, pixels):
    request = ImageRequest(prompt="p", size=size, resolution=resolution)
    task = _task({"status": "completed", "result": {"images": [URL_A, URL_B]}}, request=request)
    assert [(i.width, i.height) for i in task.images] == [pixels, pixels]


# --- task: fields ---------------------------------------------------------------------------


def test_documented_completed_task():
    task = _task(
        {
            "id": TID,
            "status": "completed",
            "progress": 100,
            "estimated_time": 60,
            "actual_time": 19,
            "created": T0,
            "completed": T0 + 19,
            "result": {"images": [{"url": [URL_A], "expires_at": T0 + 86_400}]},
        }
    )
    assert task.status is TaskStatus.COMPLETED and task.done
    assert task.progress == 100
    assert task.estimated_time == 60.0
    assert task.actual_time == 19.0
    assert task.created_at == T0_DT
    assert task.completed_at == T0_DT + timedelta(seconds=19)
    assert task.error is None
    assert task.request is REQUEST
    assert task.urls == [URL_A]


def test_missing_optional_fields():
    task = _task({"status": "processing"})
    assert task.task_id == TID
    assert task.status is TaskStatus.PROCESSING
    assert task.progress == 0
    assert task.estimated_time is None
    assert task.actual_time is None
    assert task.created_at is None
    assert task.completed_at is None
    assert task.images == ()
    assert task.error is None
    assert not task.done


def test_unknown_fields_are_ignored():
    task = _task(
        {
            "id": TID,
            "status": "completed",
            "model": "qwen-image-2.0",
            "cost": {"credits": 3},
            "result": {"images": [{"url": URL_A, "revised_prompt": "x", "w": 9}], "seed": 4},
            "nested": [[{}]],
        }
    )
    assert task.urls == [URL_A]


@pytest.mark.parametrize(
    "raw, expected",
    [(50, 50), ("50", 50), (" 50 ", 50), (0, 0), (100, 100), (150, 100), (-5, 0), ("-5", 0),
     ("1e3", 100), (None, 0), ("", 0), ("half", 0), (True, 0), ([50], 0), ("nan", 0), ("inf", 0)],
)  # fmt: skip
def test_progress_parsed_and_clamped(raw, expected):
    task = _task({"status": "processing", "progress": raw})
    assert task.progress == expected
    assert isinstance(task.progress, int)


def test_fractional_progress_string_becomes_an_int_between_its_neighbours():
    task = _task({"status": "processing", "progress": "60.5"})
    assert isinstance(task.progress, int)
    assert 60 <= task.progress <= 61


@pytest.mark.parametrize("raw", [0, 37, None, "12", "junk"])
def test_completed_progress_is_100(raw):
    assert _task({"status": "completed", "progress": raw}).progress == 100


@pytest.mark.parametrize(
    "raw, expected",
    [(60, 60.0), ("60", 60.0), ("60.5", 60.5), (19.25, 19.25), (None, None), ("soon", None),
     (True, None), ({"s": 1}, None), ("nan", None), ("inf", None), (float("inf"), None)],
)  # fmt: skip
def test_estimated_and_actual_time_numbers(raw, expected):
    task = _task({"status": "completed", "estimated_time": raw, "actual_time": raw})
    assert task.estimated_time == expected
    assert task.actual_time == expected


@pytest.mark.parametrize(
    "raw",
    [
        T0,
        float(T0),
        str(T0),
        T0 * 1000,
        str(T0 * 1000),
        "2023-11-14T22:13:20Z",
        "2023-11-14T22:13:20+00:00",
        "2023-11-14T23:13:20+01:00",
        "2023-11-14T17:13:20-05:00",
        "2023-11-14T22:13:20",  # naive: read as UTC
        " 2023-11-14T22:13:20Z ",
    ],
)
def test_timestamps_in_seconds_milliseconds_and_iso(raw):
    task = _task({"status": "completed", "created": raw, "completed": raw})
    assert task.created_at == T0_DT
    assert task.created_at.utcoffset() == timedelta(0)
    assert task.completed_at == T0_DT


@pytest.mark.parametrize(
    "raw",
    [None, "", "yesterday", "nan", "inf", "-inf", True, [], {}, [T0], 1e30, -1e30, "1e400",
     "2023-13-45T99:00:00Z"],
)  # fmt: skip
def test_garbage_timestamps_become_none(raw):
    task = _task({"status": "completed", "created": raw, "result": {"images": [{"url": URL_A, "expires_at": raw}]}})
    assert task.created_at is None
    assert task.images[0].expires_at is None


@pytest.mark.parametrize("raw", ["0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-01:00"])
def test_out_of_range_iso_timestamp_becomes_none(raw):
    assert _task({"status": "processing", "created": raw}).created_at is None


@pytest.mark.parametrize("key", ["progress", "estimated_time", "created"])
def test_integer_too_large_for_float_is_ignored(key):
    task = _task({"status": "processing", key: 10**400})
    assert task.status is TaskStatus.PROCESSING


# --- status ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "raw, status",
    [
        ("pending", TaskStatus.PENDING),
        ("processing", TaskStatus.PROCESSING),
        ("completed", TaskStatus.COMPLETED),
        ("failed", TaskStatus.FAILED),
        ("cancelled", TaskStatus.CANCELLED),
        ("submitted", TaskStatus.SUBMITTED),
        ("COMPLETED", TaskStatus.COMPLETED),
        (" Processing ", TaskStatus.PROCESSING),
        ("queued", TaskStatus.PENDING),
        ("running", TaskStatus.PROCESSING),
        ("in_progress", TaskStatus.PROCESSING),
        ("succeeded", TaskStatus.COMPLETED),
        ("success", TaskStatus.COMPLETED),
        ("error", TaskStatus.FAILED),
        ("canceled", TaskStatus.CANCELLED),
    ],
)
def test_status_names_and_aliases(raw, status):
    assert _task({"status": raw}).status is status


@pytest.mark.parametrize("raw", [None, 3, ["completed"], {"s": "completed"}])
def test_a_status_that_is_not_text_is_malformed(raw):
    # an unknown word may be a new state; a number or a list is a broken answer
    with pytest.raises(MalformedResponseError):
        _task({"status": raw, "progress": 40})


@pytest.mark.parametrize("raw", ["paused", "", "done?"])
def test_unknown_status_is_unknown_and_still_running(raw):
    task = _task({"status": raw, "progress": 40})
    assert task.status is TaskStatus.UNKNOWN
    assert not task.done
    assert not task.status.is_terminal


def test_terminal_statuses():
    terminal = {s for s in TaskStatus if s.is_terminal}
    assert terminal == {TaskStatus.COMPLETED, TaskStatus.FAILED, TaskStatus.CANCELLED}


# --- failures -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "error, expected",
    [
        ({"message": "content policy violation", "code": "E1"}, "content policy violation"),
        ("upstream timeout", "upstream timeout"),
    ],
)
def test_failed_task_error_message(error, expected):
    task = _task({"status": "failed", "error": error})
    assert task.status is TaskStatus.FAILED and task.done
    assert task.error == expected


@pytest.mark.parametrize("error", [None, {}, "", {"message": ""}])
def test_failed_task_without_message_still_has_an_error_text(error):
    data = {"status": "failed"} if error is None else {"status": "failed", "error": error}
    task = _task(data)
    assert isinstance(task.error, str) and task.error.strip()


def test_error_is_only_read_for_failed_tasks():
    assert _task({"status": "completed", "error": {"message": "ignored"}}).error is None


# --- envelope problems ----------------------------------------------------------------------


def test_data_id_mismatch_is_malformed():
    with pytest.raises(MalformedResponseError) as info:
        _task({"id": "task_OTHER", "status": "completed"})
    assert "task_OTHER" in str(info.value)


@pytest.mark.parametrize(
    "body",
    [None, [], "<html>", {}, {"code": 200}, {"data": None}, {"data": []}, {"data": "x"},
     {"data": {}}, {"data": {"id": TID}}, {"data": {"status": "completed", "id": 5}}],
)  # fmt: skip
def test_task_malformed(body):
    with pytest.raises(MalformedResponseError):
        parse_task_response(body, task_id=TID, request=None)


# --- error envelope -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "body, expected",
    [
        ({"error": {"code": 400, "message": "bad size", "type": "invalid_request"}},
         (400, "bad size", "invalid_request")),
        ({"error": {"message": "no key"}, "code": 401}, (401, "no key", None)),
        ({"error": "rate limited", "code": 429}, (429, "rate limited", None)),
        ({"code": 500, "message": "internal"}, (500, "internal", None)),
        ({"error": {"code": 402, "message": 7, "type": 8}}, (402, None, None)),
        ({"error": {"code": 403}, "message": "forbidden"}, (403, "forbidden", None)),
        ({"error": 5}, (None, None, None)),
        ({"error": ["x"]}, (None, None, None)),
        ({}, (None, None, None)),
        (None, (None, None, None)),
        ("<html>Bad Gateway</html>", (None, None, None)),
        ([{"error": "x"}], (None, None, None)),
    ],
)  # fmt: skip
def test_error_envelope(body, expected):
    assert parse_error_envelope(body)[:3] == expected


@pytest.mark.parametrize(
    "body, expected",
    [
        ({"error": {"message": "bad model", "type": "invalid_request_error", "code": "model_not_found",
                    "param": "model"}, "request_id": "req_1"},
         ("model_not_found", "bad model", "invalid_request_error", "model", "req_1")),
        ({"success": False, "message": "insufficient balance", "code": 402},
         (402, "insufficient balance", None, None, None)),
        ({"error": {"message": "m", "param": 5}}, (None, "m", None, None, None)),
    ],
)  # fmt: skip
def test_error_envelope_keeps_param_request_id_and_word_codes(body, expected):
    assert tuple(parse_error_envelope(body)) == expected


# --- repr -----------------------------------------------------------------------------------


def test_task_repr_is_short_and_hides_the_prompt():
    prompt = "an extremely detailed watercolour fox " * 20
    request = ImageRequest(prompt=prompt[:800], n=6)
    task = parse_task_response(
        {"data": {"status": "failed", "error": "e" * 2000 + "TAIL_MARKER_NOT_SHOWN" + "e" * 50}},
        task_id=TID,
        request=request,
    )
    text = repr(task)
    assert len(text) < 200
    assert TID in text
    assert "watercolour" not in text
    assert "e" * 100 not in text
    running = parse_submit_response({"data": [{"task_id": TID}]}, request)
    assert len(repr(running)) < 120 and "watercolour" not in repr(running)


# --- properties -----------------------------------------------------------------------------

JSON_LEAF = st.one_of(
    st.none(),
    st.booleans(),
    # bounded: integers beyond float range are covered by test_integer_too_large_for_float_is_ignored
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=20),
    st.sampled_from(["completed", "failed", "processing", TID, "60.5", "2023-11-14T22:13:20Z"]),
)
JSON = st.recursive(
    JSON_LEAF,
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=20,
)
TASK_DATA = st.fixed_dictionaries(
    {},
    optional={
        "id": st.one_of(st.just(TID), JSON),
        "status": st.one_of(st.sampled_from([s.value for s in TaskStatus]), JSON),
        "progress": JSON,
        "estimated_time": JSON,
        "actual_time": JSON,
        "created": JSON,
        "completed": JSON,
        "error": JSON,
        "result": st.one_of(
            JSON,
            st.fixed_dictionaries(
                {"images": st.lists(st.one_of(JSON, st.fixed_dictionaries(
                    {}, optional={"url": JSON, "expires_at": JSON})), max_size=4)}
            ),
        ),
    },
)  # fmt: skip
TASK_BODY = st.one_of(JSON, st.fixed_dictionaries({"data": st.one_of(JSON, TASK_DATA)}))
SUBMIT_BODY = st.one_of(
    JSON,
    st.fixed_dictionaries(
        {"data": st.one_of(JSON, st.lists(st.dictionaries(
            st.sampled_from(["task_id", "status", "x"]), JSON | st.just(TID)), max_size=2))}
    ),
)  # fmt: skip


@settings(max_examples=150, deadline=None)
@given(body=TASK_BODY, with_request=st.booleans())
def test_task_parsing_returns_a_task_or_malformed(body, with_request):
    try:
        task = parse_task_response(body, task_id=TID, request=REQUEST if with_request else None)
    except MalformedResponseError as exc:
        assert isinstance(exc, APIError)
        return
    assert isinstance(task, Task)
    assert task.task_id == TID
    assert isinstance(task.status, TaskStatus)
    assert isinstance(task.progress, int) and 0 <= task.progress <= 100
    assert [image.index for image in task.images] == list(range(len(task.images)))
    for moment in [task.created_at, task.completed_at] + [i.expires_at for i in task.images]:
        assert moment is None or moment.utcoffset() == timedelta(0)
    assert task.error is None or task.status is TaskStatus.FAILED
    assert len(repr(task)) < 300


@settings(max_examples=200, deadline=None)
@given(body=SUBMIT_BODY)
def test_submit_parsing_returns_a_task_or_malformed(body):
    try:
        task = parse_submit_response(body, REQUEST)
    except MalformedResponseError as exc:
        assert isinstance(exc, APIError)
        return
    assert isinstance(task, Task)
    assert validate_task_id(task.task_id) == task.task_id
    assert task.request is REQUEST


@settings(max_examples=100, deadline=None)
@given(body=JSON)
def test_error_envelope_never_raises(body):
    code, message, kind, param, request_id = parse_error_envelope(body)
    assert message is None or isinstance(message, str)
    assert kind is None or isinstance(kind, str)
