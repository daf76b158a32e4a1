"""Spending limits for a shared key: images and spend per rolling 24 hours, checked before a POST.

A teacher running a class on one key sets QWEN_WIDGETS_MAX_IMAGES_PER_DAY and/or
QWEN_WIDGETS_MAX_SPEND_PER_DAY (or the client options). Usage comes from the journal, so every
kernel sharing the home folder counts against the same limit; the check and the journal row
of the new submission are written in one SQLite transaction, so two kernels submitting at
once cannot both slip past it. Pure rules here; the journal runs them.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass

from .errors import RequestValidationError, SpendingLimitError

__all__: list[str] = []

WINDOW = 86_400.0
"""The rolling window: the last 24 hours."""


@dataclass(frozen=True)
class Usage:
    """What the journal's last 24 hours hold."""

    images: int
    """Images of submissions that were not refused and did not fail."""
    spend: float
    """Reported cost, or price x images where no cost is known yet."""
    counted: tuple[tuple[float, int, float], ...] = ()
    """(created_at, images, spend) of each counted submission, oldest first."""


@dataclass(frozen=True)
class SpendingLimits:
    """The caps; None for none. `price_per_image` prices submissions whose cost is not known."""

    max_images_per_day: int | None = None
    max_spend_per_day: float | None = None
    price_per_image: float | None = None

    def __post_init__(self) -> None:
        if self.max_images_per_day is not None and (
                isinstance(self.max_images_per_day, bool) or not isinstance(self.max_images_per_day, int)
                or self.max_images_per_day < 0):
            raise RequestValidationError("max_images_per_day", "must be a whole number of images, 0 or more",
                                         self.max_images_per_day)
        for name in ("max_spend_per_day", "price_per_image"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))
                                      or not math.isfinite(value) or value < 0):
                raise RequestValidationError(name, "must be a number, 0 or more", value)
        if self.max_spend_per_day is not None and self.price_per_image is None:
            raise RequestValidationError(
                "price_per_image", "is needed with a spend limit, to price images whose cost the "
                "service has not reported yet", show_value=False)

    @property
    def active(self) -> bool:
        return self.max_images_per_day is not None or self.max_spend_per_day is not None

    def usage(self, rows: list[tuple[float, str, str | None, str | None]]) -> Usage:
        """Usage from journal rows (created_at, state, request JSON, task JSON), oldest first."""
        counted = []
        for created_at, state, request, task in rows:
            images, spend = self._cost_of(state, request, task)
            if images or spend:
                counted.append((created_at, images, spend))
        return Usage(sum(c[1] for c in counted), sum(c[2] for c in counted), tuple(counted))

    def _cost_of(self, state: str, request: str | None, task: str | None) -> tuple[int, float]:
        if state in ("refused", "expired"):
            return 0, 0.0
        wanted = _requested_images(request)
        try:
            record = json.loads(task) if task else None
        except ValueError:  # an unreadable row counts what it asked for
            record = None
        if not isinstance(record, dict):
            record = None
        if record is not None and record.get("status") in ("failed", "cancelled"):
            return 0, 0.0  # failed images are not billed
        if record is not None and record.get("status") == "completed":
            images = len(record.get("images") or [])
            cost = record.get("cost")
            return images, float(cost) if cost is not None else images * (self.price_per_image or 0.0)
        return wanted, wanted * (self.price_per_image or 0.0)

    def check(self, usage: Usage, images: int, now: float) -> None:
        """SpendingLimitError when `images` more would pass a limit; says when room comes back."""
        if self.max_images_per_day is not None and usage.images + images > self.max_images_per_day:
            raise SpendingLimitError("images per day", usage.images, images, self.max_images_per_day,
                                     self._frees_at(usage, images - (self.max_images_per_day - usage.images), 1))
        spend = images * (self.price_per_image or 0.0)
        if self.max_spend_per_day is not None and usage.spend + spend > self.max_spend_per_day + 1e-9:
            over = spend - (self.max_spend_per_day - usage.spend)
            raise SpendingLimitError("spend per day", usage.spend, spend, self.max_spend_per_day,
                                     self._frees_at(usage, over, 2))

    @staticmethod
    def _frees_at(usage: Usage, needed: float, column: int) -> float | None:
        """When enough of the window's usage has aged out to make room for `needed` more."""
        freed = 0.0
        for entry in usage.counted:
            freed += entry[column]
            if freed >= needed - 1e-9:
                return entry[0] + WINDOW
        return None


def _requested_images(request: str | None) -> int:
    try:
        n = json.loads(request).get("n", 1) if request else 1
    except (ValueError, AttributeError):
        return 1
    return n if isinstance(n, int) and not isinstance(n, bool) else 1
