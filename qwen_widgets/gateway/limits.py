"""What a class may do: its lesson window, its daily and lifetime budgets, and request rates.

Pure rules over numbers the store counts, so they can be read and tested without a server or
a database. A refusal is a value that carries its own words and the error envelope the student
receives: the client turns `spending_limit_error` into its SpendingLimitError, so the student
reads *which* budget is used, how much of it, and when it comes back, not a bare 403.

Days are UTC days (budgets reset at 00:00 UTC for everyone in the class, whatever their time
zone), and the window is written in UTC too, so the rule reads the same on every machine.
"""

from __future__ import annotations

import math
import re
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

__all__ = ["Policy", "Usage", "Window", "Refusal", "RequestRate", "check", "balance", "day_of", "next_midnight"]

DAY = 86_400
_WINDOW_TEXT = re.compile(r"^\s*(\d{1,2}):(\d{2})\s*-\s*(\d{1,2}):(\d{2})\s*$")


def day_of(now: float) -> int:
    """The UTC day number of unix time `now` (budgets are counted per UTC day)."""
    return int(now // DAY)


def next_midnight(now: float) -> int:
    """Unix time of the next 00:00 UTC: when daily budgets reset."""
    return (day_of(now) + 1) * DAY


def _clock_text(minutes: int) -> str:
    return f"{minutes // 60:02d}:{minutes % 60:02d}"


@dataclass(frozen=True)
class Window:
    """The daily span, in UTC, in which a class may generate; it may cross midnight (22:00-02:00)."""

    start: int
    """Minutes after 00:00 UTC when generating opens."""
    end: int
    """Minutes after 00:00 UTC when it closes (exclusive)."""

    @classmethod
    def parse(cls, text: str) -> Window:
        """'10:00-11:00' -> Window; ValueError names the rule that the text breaks."""
        found = _WINDOW_TEXT.match(text or "")
        if not found:
            raise ValueError(f"expected HH:MM-HH:MM in UTC, like 10:00-11:00 (got {text!r})")
        h1, m1, h2, m2 = (int(part) for part in found.groups())
        if h1 > 23 or h2 > 24 or m1 > 59 or m2 > 59 or (h2 == 24 and m2):
            raise ValueError(f"not a time of day: {text!r}")
        start, end = h1 * 60 + m1, (h2 * 60 + m2) % (24 * 60)
        if start == end:
            raise ValueError(f"the window opens and closes at the same minute: {text!r}")
        return cls(start, end)

    def __str__(self) -> str:
        return f"{_clock_text(self.start)}-{_clock_text(self.end)}"

    def _minute(self, now: float) -> int:
        return int(now % DAY) // 60

    def is_open(self, now: float) -> bool:
        minute = self._minute(now)
        if self.start < self.end:
            return self.start <= minute < self.end
        return minute >= self.start or minute < self.end

    def next_start(self, now: float) -> int:
        """Unix time at which the window next opens (after `now`)."""
        midnight = day_of(now) * DAY
        opens = midnight + self.start * 60
        return opens if opens > now else opens + DAY


@dataclass(frozen=True)
class Policy:
    """A class's budgets, as the teacher set them."""

    images_per_day: int
    """Images each student may make per UTC day."""
    class_images_per_day: int
    """Images the whole class may make per UTC day (default: students x images_per_day)."""
    spend_per_day: float | None = None
    """What the whole class may spend per UTC day, in the account's unit (None: no cap)."""
    total_images: int | None = None
    """Images the class may make over its whole life (None: no cap)."""
    window: Window | None = None
    """When the class may generate (None: at any time)."""


@dataclass(frozen=True)
class Usage:
    """What is counted so far: settled tasks at what they made, open ones at what they reserved."""

    student_images_today: float = 0
    class_images_today: float = 0
    class_spend_today: float = 0.0
    class_images_total: float = 0


@dataclass(frozen=True)
class Refusal:
    """Why a request is not forwarded, in words and in the API's error envelope."""

    code: str
    """'limit_reached' or 'outside_window'."""
    limit: str
    """'images per day', 'spend per day', 'total images' or 'window'."""
    scope: str
    """'student' or 'class'."""
    used: float | None
    allowed: float | None
    needed: float | None
    resets_at: int | None
    """Unix time when the budget resets or the window opens; None when it never does."""
    message: str

    def envelope(self) -> dict[str, Any]:
        """The body of the HTTP 403 answer."""
        return {"error": {"code": self.code, "type": "spending_limit_error", "message": self.message,
                          "limit": self.limit, "scope": self.scope, "used": self.used,
                          "allowed": self.allowed, "needed": self.needed, "resets_at": self.resets_at}}


def _amount(value: float, money: bool) -> str:
    if not money:
        return f"{value:g}"
    return f"{value:.4f}".rstrip("0").rstrip(".") or "0"


def _whose(scope: str, limit: str) -> str:
    if limit == "total images":
        return "your class's images"
    if limit == "spend per day":
        return "your class's spending for today"
    return "your budget for today" if scope == "student" else "your class budget for today"


def _refuse(limit: str, scope: str, used: float, allowed: float, needed: float, now: float) -> Refusal:
    money = limit == "spend per day"
    unit = "" if money else " images"
    daily = limit != "total images"
    resets_at = next_midnight(now) if daily else None
    when = "it resets at 00:00 UTC" if daily else "it does not reset; ask your teacher"
    whose = _whose(scope, limit)
    total = " in total" if not daily else ""
    left = max(0.0, allowed - used)
    if left <= 1e-9 or (money and needed <= 0):
        message = f"{whose} is used: {_amount(used, money)} of {_amount(allowed, money)}{unit}{total}; {when}"
    else:
        asks = f"{needed:g} images" if not money else f"about {_amount(needed, True)}"
        message = (f"this request needs {asks} but {whose} has {_amount(left, money)} of "
                   f"{_amount(allowed, money)}{unit} left{total}; ask for fewer, or wait: {when}")
    return Refusal("limit_reached", limit, scope, round(used, 6), allowed, round(needed, 6), resets_at, message)


def check(policy: Policy, usage: Usage, n: int, price: float | None, now: float) -> Refusal | None:
    """The first rule a request for `n` images at `price` each breaks, or None to let it through.

    With no known price the spend cap can only refuse once it is already used up (the cost is
    then learnt when the task completes).
    """
    window = policy.window
    if window is not None and not window.is_open(now):
        minute = int(now % DAY) // 60
        return Refusal("outside_window", "window", "class", None, None, None, window.next_start(now),
                       f"this class generates between {_clock_text(window.start)} and "
                       f"{_clock_text(window.end)} UTC; it is {_clock_text(minute)} UTC now")
    image_rules = [("student", policy.images_per_day, usage.student_images_today),
                   ("class", policy.class_images_per_day, usage.class_images_today)]
    for scope, allowed, used in image_rules:
        if used + n > allowed:
            return _refuse("images per day", scope, used, allowed, n, now)
    if policy.spend_per_day is not None:
        needed = n * price if price is not None else 0.0
        used = usage.class_spend_today
        if used >= policy.spend_per_day - 1e-9 or used + needed > policy.spend_per_day + 1e-9:
            return _refuse("spend per day", "class", used, policy.spend_per_day, needed, now)
    if policy.total_images is not None and usage.class_images_total + n > policy.total_images:
        return _refuse("total images", "class", usage.class_images_total, policy.total_images, n, now)
    return None


def balance(policy: Policy, usage: Usage, now: float) -> dict[str, Any]:
    """What `GET /v1/balance` answers for one student: images left today, and every limit."""
    midnight = next_midnight(now)
    limits: list[dict[str, Any]] = [
        {"limit": "images per day", "scope": "student", "used": usage.student_images_today,
         "allowed": policy.images_per_day, "resets_at": midnight},
        {"limit": "images per day", "scope": "class", "used": usage.class_images_today,
         "allowed": policy.class_images_per_day, "resets_at": midnight},
    ]
    if policy.spend_per_day is not None:
        limits.append({"limit": "spend per day", "scope": "class", "used": round(usage.class_spend_today, 6),
                       "allowed": policy.spend_per_day, "resets_at": midnight})
    if policy.total_images is not None:
        limits.append({"limit": "total images", "scope": "class", "used": usage.class_images_total,
                       "allowed": policy.total_images, "resets_at": None})
    for item in limits:
        item["left"] = round(max(0, item["allowed"] - item["used"]), 6)
    images_left = min(item["left"] for item in limits if item["limit"] != "spend per day")
    return {
        "success": True,
        "remain_balance": images_left,
        "used_balance": usage.student_images_today,
        "unlimited_quota": False,
        "unit": "images",
        "limits": limits,
        "window": None if policy.window is None else str(policy.window),
        "open_now": policy.window is None or policy.window.is_open(now),
        "opens_at": None if policy.window is None or policy.window.is_open(now) else policy.window.next_start(now),
    }


class RequestRate:
    """At most `per_minute` requests per identity over a sliding minute, so one student's
    polling loop cannot use up the class's share of the provider's rate limit."""

    def __init__(self, clock: Callable[[], float] = time.time):
        self._clock = clock
        self._seen: dict[object, deque[float]] = {}

    def wait(self, who: object, per_minute: int) -> int | None:
        """Seconds to wait before `who` may send again, or None (and the request is counted)."""
        now = self._clock()
        seen = self._seen.setdefault(who, deque())
        while seen and seen[0] <= now - 60.0:
            seen.popleft()
        if len(seen) >= per_minute:
            return max(1, math.ceil(seen[0] + 60.0 - now))
        seen.append(now)
        return None
