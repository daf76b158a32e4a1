"""The budget rules as pure functions: windows, caps, refusal words, the balance, request rates."""

from __future__ import annotations

import pytest

from qwen_widgets.gateway.limits import (
    Policy,
    RequestRate,
    Usage,
    Window,
    balance,
    check,
    next_midnight,
)

from .conftest import FakeClock, utc


def test_window_parses_and_opens_in_utc():
    window = Window.parse("10:00-11:00")
    assert str(window) == "10:00-11:00"
    assert window.is_open(utc("2026-03-02 10:00"))
    assert window.is_open(utc("2026-03-02 10:59"))
    assert not window.is_open(utc("2026-03-02 11:00"))
    assert not window.is_open(utc("2026-03-02 09:59"))
    assert window.next_start(utc("2026-03-02 09:00")) == utc("2026-03-02 10:00")
    assert window.next_start(utc("2026-03-02 12:14")) == utc("2026-03-03 10:00")


def test_window_across_midnight():
    window = Window.parse("22:30-01:00")
    assert window.is_open(utc("2026-03-02 23:59"))
    assert window.is_open(utc("2026-03-03 00:30"))
    assert not window.is_open(utc("2026-03-03 01:00"))
    assert not window.is_open(utc("2026-03-02 22:29"))


@pytest.mark.parametrize("text", ["", "10-11", "25:00-26:00", "10:00-10:00", "10:61-11:00", "24:30-10:00"])
def test_window_refuses_what_is_not_a_span(text):
    with pytest.raises(ValueError):
        Window.parse(text)


def test_the_class_message_of_the_issue_word_for_word():
    now = utc("2026-03-02 10:30")
    refusal = check(Policy(images_per_day=5, class_images_per_day=10), Usage(3, 10, 0, 10), 1, None, now)
    assert refusal.message == "your class budget for today is used: 10 of 10 images; it resets at 00:00 UTC"
    assert refusal.envelope() == {"error": {
        "code": "limit_reached", "type": "spending_limit_error", "message": refusal.message,
        "limit": "images per day", "scope": "class", "used": 10, "allowed": 10, "needed": 1,
        "resets_at": next_midnight(now)}}
    assert next_midnight(now) == utc("2026-03-03 00:00")


def test_a_request_larger_than_what_is_left_says_how_much_is_left():
    refusal = check(Policy(images_per_day=5, class_images_per_day=50), Usage(3, 3, 0, 3), 4, None, 0)
    assert (refusal.scope, refusal.used, refusal.allowed, refusal.needed) == ("student", 3, 5, 4)
    assert "needs 4 images" in refusal.message and "has 2 of 5 images left" in refusal.message


def test_spend_cap_reserves_at_the_known_price_and_refuses_once_used_without_one():
    policy = Policy(images_per_day=10, class_images_per_day=100, spend_per_day=0.1)
    assert check(policy, Usage(0, 0, 0.05, 0), 2, 0.021, 0) is None
    refused = check(policy, Usage(0, 0, 0.084, 0), 1, 0.021, 0)
    assert refused.limit == "spend per day" and refused.needed == 0.021
    assert check(policy, Usage(0, 0, 0.09, 0), 1, None, 0) is None  # unknown price: not yet used up
    assert check(policy, Usage(0, 0, 0.1, 0), 1, None, 0).message.startswith(
        "your class's spending for today is used: 0.1 of 0.1")


def test_total_images_never_resets():
    refusal = check(Policy(images_per_day=10, class_images_per_day=100, total_images=20), Usage(0, 0, 0, 20), 1,
                    None, 0)
    assert refusal.limit == "total images" and refusal.resets_at is None
    assert "does not reset" in refusal.message


def test_outside_the_window_names_the_window_and_the_time():
    now = utc("2026-03-02 12:14")
    refusal = check(Policy(images_per_day=5, class_images_per_day=10, window=Window.parse("10:00-11:00")),
                    Usage(), 1, None, now)
    assert refusal.code == "outside_window" and refusal.limit == "window"
    assert refusal.message == "this class generates between 10:00 and 11:00 UTC; it is 12:14 UTC now"
    assert refusal.resets_at == utc("2026-03-03 10:00")


def test_balance_is_the_smallest_image_budget_left():
    policy = Policy(images_per_day=5, class_images_per_day=6, spend_per_day=1.0, total_images=100)
    answer = balance(policy, Usage(1, 5, 0.2, 40), utc("2026-03-02 10:30"))
    assert answer["remain_balance"] == 1  # the class has 1 left, the student 4
    assert answer["used_balance"] == 1 and answer["unit"] == "images" and answer["success"] is True
    assert [(item["limit"], item["scope"], item["left"]) for item in answer["limits"]] == [
        ("images per day", "student", 4), ("images per day", "class", 1), ("spend per day", "class", 0.8),
        ("total images", "class", 60)]


def test_request_rate_is_a_sliding_minute_per_identity():
    clock = FakeClock(1000.0)
    rate = RequestRate(clock)
    assert [rate.wait("a", 3) for _ in range(3)] == [None, None, None]
    assert rate.wait("a", 3) == 60
    assert rate.wait("b", 3) is None  # another student is not slowed
    clock.advance(59.5)
    assert rate.wait("a", 3) == 1
    clock.advance(0.5)
    assert rate.wait("a", 3) is None
