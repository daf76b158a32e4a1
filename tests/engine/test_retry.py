"""Layer 1: retry classification by outcome, Retry-After parsing, backoff (DESIGN.md section 2)."""

from __future__ import annotations

import email.utils
from datetime import datetime, timedelta, timezone

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from qwen_widgets.engine.retry import (
    RetryPolicy,
    Verdict,
    classify_exception,
    classify_status,
    parse_retry_after,
)

RETRY, FAIL, UNKNOWN = Verdict.RETRY, Verdict.FAIL, Verdict.OUTCOME_UNKNOWN
NOW = 1_700_000_000.0
NOW_DT = datetime.fromtimestamp(NOW, tz=timezone.utc)


# (exception, verdict for GET, verdict for POST)
EXCEPTIONS = [
    # never reached the server: safe to resend even a POST
    (httpx.ConnectError("refused"), RETRY, RETRY),
    (httpx.ConnectTimeout("connect timed out"), RETRY, RETRY),
    (httpx.PoolTimeout("no free connection"), RETRY, RETRY),
    # the body may have left the machine: a POST's outcome is unknown
    (httpx.ReadTimeout("read timed out"), RETRY, UNKNOWN),
    (httpx.ReadError("connection reset"), RETRY, UNKNOWN),
    (httpx.RemoteProtocolError("server disconnected"), RETRY, UNKNOWN),
    (httpx.WriteError("broken pipe"), RETRY, UNKNOWN),
    (httpx.WriteTimeout("write timed out"), RETRY, UNKNOWN),
    # not a transport failure at all
    (ValueError("bug"), FAIL, FAIL),
    (KeyError("x"), FAIL, FAIL),
]


@pytest.mark.parametrize(
    "exc, get_verdict, post_verdict", EXCEPTIONS, ids=[type(e[0]).__name__ for e in EXCEPTIONS]
)
def test_classify_exception(exc, get_verdict, post_verdict):
    assert classify_exception(exc, "GET") is get_verdict
    assert classify_exception(exc, "POST") is post_verdict


# (status, verdict for GET, verdict for POST)
STATUSES = [
    (400, FAIL, FAIL),
    (401, FAIL, FAIL),
    (402, FAIL, FAIL),
    (403, FAIL, FAIL),
    (404, FAIL, FAIL),
    (422, FAIL, FAIL),
    (408, RETRY, RETRY),  # the request never arrived whole: nothing was done
    (409, RETRY, RETRY),  # this idempotency key's first request is still being processed
    (429, RETRY, RETRY),  # refused outright: nothing was done
    (503, RETRY, RETRY),  # refused outright: nothing was done
    (500, RETRY, UNKNOWN),  # the server failed, perhaps after creating the task
    (301, FAIL, UNKNOWN),  # a redirect: the server processed the POST
    (303, FAIL, UNKNOWN),
    (502, RETRY, UNKNOWN),  # a gateway lost the upstream answer
    (504, RETRY, UNKNOWN),  # a gateway timed out waiting: upstream may have acted
]


@pytest.mark.parametrize("status, get_verdict, post_verdict", STATUSES)
def test_classify_status(status, get_verdict, post_verdict):
    assert classify_status(status, "GET") is get_verdict
    assert classify_status(status, "POST") is post_verdict


def test_post_is_never_retried_unless_refused_outright():
    for status in range(300, 600):
        verdict = classify_status(status, "POST")
        if status in (408, 409, 429, 503):
            assert verdict is RETRY, status
        else:
            assert verdict is not RETRY, status


def test_only_a_4xx_says_a_post_created_nothing():
    for status in range(300, 600):
        verdict = classify_status(status, "POST")
        if 400 <= status < 500 and status not in (408, 409, 429):
            assert verdict is FAIL, status
        elif status not in (503,):
            assert verdict in (UNKNOWN, RETRY), status


@pytest.mark.parametrize("code", [{"nested": "object"}, ["a", "list"], 503, None])
def test_an_error_code_of_any_json_shape_is_classified_by_its_status(code):
    assert classify_status(503, "POST", code) is RETRY  # an unhashable code must not raise
    assert classify_status(503, "POST", "model_not_found") is FAIL


def test_get_retries_rate_limits_and_server_errors():
    for status in range(300, 600):
        expected = RETRY if status in (408, 409, 429) or status >= 500 else FAIL
        assert classify_status(status, "GET") is expected, status


# --- Retry-After ----------------------------------------------------------------------------


def _http_date(offset: float) -> str:
    return email.utils.format_datetime(NOW_DT + timedelta(seconds=offset), usegmt=True)


@pytest.mark.parametrize(
    "header, expected",
    [
        ("0", 0.0),
        ("5", 5.0),
        ("1.5", 1.5),
        ("-3", 0.0),
        ("  7 ", 7.0),
        ("\t12\r\n", 12.0),
        ("86400", 86400.0),  # returned as is; the caller bounds it
        ("1e9", 1e9),
    ],
)
def test_retry_after_seconds(header, expected):
    assert parse_retry_after(header, NOW) == pytest.approx(expected)


@pytest.mark.parametrize("offset", [1, 30, 120, 3600])
def test_retry_after_http_date_in_the_future(offset):
    header = _http_date(offset)
    assert header.endswith("GMT")
    assert parse_retry_after(header, NOW) == pytest.approx(offset)


@pytest.mark.parametrize("offset", [-1, -3600, -10**6])
def test_retry_after_http_date_in_the_past_is_zero(offset):
    assert parse_retry_after(_http_date(offset), NOW) == 0.0


def test_retry_after_date_depends_on_now():
    header = _http_date(60)
    assert parse_retry_after(header, NOW + 20) == pytest.approx(40)


@pytest.mark.parametrize(
    "header",
    [None, "", "   ", "soon", "five", "nan", "NaN", "5 seconds", "Wed, 99 Foo 2023", "1,5", "0x10"],
)
def test_retry_after_unreadable_is_none(header):
    assert parse_retry_after(header, NOW) is None


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=40))
def test_retry_after_any_text_is_none_or_non_negative(header):
    result = parse_retry_after(header, NOW)
    assert result is None or result >= 0


# --- RetryPolicy.delay ----------------------------------------------------------------------


def test_gives_up_at_max_attempts():
    policy = RetryPolicy(max_attempts=4)
    for attempt in (1, 2, 3):
        assert policy.delay(attempt, None, 0.5) is not None
        assert policy.delay(attempt, 1.0, 0.5) is not None
    for attempt in (4, 5, 50):
        assert policy.delay(attempt, None, 0.5) is None
        assert policy.delay(attempt, 1.0, 0.5) is None


def test_single_attempt_policy_never_retries():
    assert RetryPolicy(max_attempts=1).delay(1, None, 0.0) is None


@pytest.mark.parametrize("retry_after", [0.0, 0.5, 3.0, 59.0, 60.0])
@pytest.mark.parametrize("random", [0.0, 0.3, 0.999999])
def test_honours_retry_after_plus_at_most_ten_percent(retry_after, random):
    delay = RetryPolicy().delay(1, retry_after, random)
    assert retry_after <= delay <= retry_after * 1.1 + 1e-12


def test_retry_after_overrides_backoff_even_when_shorter():
    policy = RetryPolicy(backoff_base=10.0)
    assert policy.delay(3, 0.2, 0.0) == pytest.approx(0.2)


@pytest.mark.parametrize("retry_after", [60.001, 61.0, 3600.0, float("inf")])
def test_retry_after_above_limit_gives_up(retry_after):
    assert RetryPolicy(max_retry_after=60.0).delay(1, retry_after, 0.5) is None


def test_max_retry_after_is_configurable():
    assert RetryPolicy(max_retry_after=5.0).delay(1, 6.0, 0.0) is None
    assert RetryPolicy(max_retry_after=500.0).delay(1, 300.0, 0.0) == pytest.approx(300.0)


def _ceiling(policy: RetryPolicy, attempt: int) -> float:
    # The docstring: base before the second attempt, doubling after each further failure, capped.
    return min(policy.backoff_cap, policy.backoff_base * 2 ** (attempt - 1))


@pytest.mark.parametrize("attempt", range(1, 12))
def test_backoff_equal_jitter_bounds(attempt):
    policy = RetryPolicy(max_attempts=100)
    ceiling = _ceiling(policy, attempt)
    low = policy.delay(attempt, None, 0.0)
    high = policy.delay(attempt, None, 0.9999999)
    mid = policy.delay(attempt, None, 0.5)
    assert low == pytest.approx(ceiling / 2)
    assert high == pytest.approx(ceiling, rel=1e-6)
    assert low <= mid <= high


def test_backoff_values_double_then_cap():
    policy = RetryPolicy(max_attempts=100, backoff_base=0.5, backoff_cap=20.0)
    top = [policy.delay(a, None, 0.9999999999) for a in range(1, 10)]
    assert top == pytest.approx([0.5, 1, 2, 4, 8, 16, 20, 20, 20], rel=1e-6)
    floor = [policy.delay(a, None, 0.0) for a in range(1, 10)]
    assert floor == pytest.approx([0.25, 0.5, 1, 2, 4, 8, 10, 10, 10])


@settings(max_examples=200, deadline=None)
@given(
    attempt=st.integers(min_value=1, max_value=60),
    random=st.floats(min_value=0.0, max_value=1.0, exclude_max=True),
)
def test_backoff_never_exceeds_cap_or_goes_below_half_ceiling(attempt, random):
    policy = RetryPolicy(max_attempts=1000)
    delay = policy.delay(attempt, None, random)
    ceiling = _ceiling(policy, attempt)
    assert ceiling / 2 <= delay <= ceiling <= policy.backoff_cap


def test_default_total_wait_is_bounded():
    # Every attempt fails with the worst jitter: the whole call still gives up in bounded time.
    policy = RetryPolicy()
    waits = []
    attempt = 1
    while (delay := policy.delay(attempt, None, 0.9999999)) is not None:
        waits.append(delay)
        attempt += 1
    assert len(waits) == policy.max_attempts - 1
    assert sum(waits) <= policy.backoff_cap * (policy.max_attempts - 1)


@pytest.mark.parametrize("method", ["GET", "POST"])
def test_unsupported_protocol_fails_at_once(method):
    # never sent, but retrying cannot fix an unknown URL scheme
    assert classify_exception(httpx.UnsupportedProtocol("ftp"), method) is Verdict.FAIL
