"""The account: its balance, and what an image costs before it is made.

`GET /v1/balance` (docs/api-contract.md section 5.1) answers the balance. What an image will cost is known
first from the user (`price_per_image`), else from APIMart's public pricing endpoint (its
shape is not documented, so it is read tolerantly and believed only when it holds one clear
number), else it is unknown, and every cost line says which of the three it used.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from .errors import MalformedResponseError

__all__ = ["Balance"]

PRICE_SOURCES = {"user": "your price", "pricing": "APIMart's pricing endpoint", "unknown": "price unknown"}


@dataclass(frozen=True)
class Balance:
    """What `GET /v1/balance` says is left and used."""

    remaining: float | None
    """Money left on the account, in its currency; None when the service did not say."""
    remaining_credits: float | None
    used: float | None
    used_credits: float | None
    unlimited: bool
    """True for an account without a quota."""

    def __str__(self) -> str:
        if self.unlimited:
            return "balance: unlimited"
        left = "unknown" if self.remaining is None else f"{self.remaining:.2f}"
        used = "" if self.used is None else f" ({self.used:.2f} used)"
        return f"balance: {left}{used}"


def parse_balance(body: Any) -> Balance:
    """The balance from its answer, tolerant of a `data` wrapper and numbers as strings."""
    data = body.get("data", body) if isinstance(body, dict) else None
    if not isinstance(data, dict) or not any(key in data for key in ("remain_balance", "remain_credits")):
        raise MalformedResponseError("the balance answer has no remain_balance or remain_credits")
    return Balance(_number(data.get("remain_balance")), _number(data.get("remain_credits")),
                   _number(data.get("used_balance")), _number(data.get("used_credits")),
                   data.get("unlimited_quota") is True)


def parse_price(body: Any) -> float | None:
    """The price of one image from the public pricing endpoint, or None when its answer does
    not hold exactly one clear candidate.

    The shape APIMart's clients decode is `{success, data: {model_name, billing_type,
    model_price, ...}}`, where an unknown model answers zeros: `model_price` is the price when
    it is above zero. Other shapes are searched for one clear price-like number."""
    data = body.get("data") if isinstance(body, dict) else None
    if isinstance(data, dict) and "model_price" in data:
        price = _number(data.get("model_price"))
        return price if price is not None and price > 0 else None
    found: list[float] = []

    def look(value: Any, depth: int) -> None:
        if depth > 4:
            return
        if isinstance(value, dict):
            for key, item in value.items():
                number = _number(item)
                if number is not None and key.lower() in ("price_per_image", "unit_price", "price", "per_image"):
                    found.append(number)
                else:
                    look(item, depth + 1)
        elif isinstance(value, list):
            for item in value[:20]:
                look(item, depth + 1)

    look(body, 0)
    distinct = {round(value, 9) for value in found if value > 0}
    return distinct.pop() if len(distinct) == 1 else None


def describe_price(price: float | None, source: str) -> str:
    """'at $0.021 per image (your price)' or 'price unknown'."""
    if price is None:
        return PRICE_SOURCES["unknown"]
    return f"at ${price:g} per image ({PRICE_SOURCES[source]})"


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        return None
    try:
        number = float(value)
    except ValueError:
        return None
    return number if math.isfinite(number) else None
