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

from .errors import APIError, MalformedResponseError

__all__ = ["Balance"]

PRICE_SOURCES = {"user": "your price", "pricing": "APIMart's pricing endpoint", "unknown": "price unknown"}


@dataclass(frozen=True)
class Balance:
    """What `GET /v1/balance` (the key's) or `GET /v1/user/balance` (the account's) says is
    left and used, in the unit the service reports."""

    remaining: float | None
    """What is left, in `unit`; None when the service did not say."""
    remaining_credits: float | None
    used: float | None
    used_credits: float | None
    unlimited: bool
    """True for a key or account without a quota."""
    unit: str | None = None
    """What the amounts count, as the service says: a currency ('USD', 'CNY'), tokens, or
    'images' (a class gateway's budget); None when it did not say. APIMart's unit "depends on
    system configuration", so amounts are never assumed to be dollars."""
    scope: str = "key"
    """'key': the key making the call (`/v1/balance`); 'account': the whole account's."""

    def __str__(self) -> str:
        if self.unlimited:
            return f"{self.scope} balance: unlimited"
        left = "unknown" if self.remaining is None else amount(self.remaining, self.unit)
        used = "" if self.used is None else f" ({amount(self.used, self.unit)} used)"
        return f"{self.scope} balance: {left}{used}"


def amount(value: float, unit: str | None) -> str:
    """'$9.87' for USD, '9.87 CNY', '12 images', or a bare '9.87' when the unit is unknown."""
    if unit is not None and unit.upper() == "USD":
        return f"${value:.2f}"
    if unit is not None and unit.lower() in ("images", "image", "tokens", "token", "credits", "credit"):
        word = unit.lower().rstrip("s")
        return f"{value:g} {word}{'s' * (value != 1)}"
    return f"{value:.2f} {unit}" if unit else f"{value:.2f}"


def parse_balance(body: Any, scope: str = "key") -> Balance:
    """The balance from its answer, tolerant of a `data` wrapper and numbers as strings. A 200
    with `success: false` ("Token Not Found") is an APIError with the service's words."""
    if isinstance(body, dict) and body.get("success") is False:
        message = body.get("message") if isinstance(body.get("message"), str) else None
        raise APIError(message or "the service answered success: false", code=body.get("code"))
    data = body.get("data", body) if isinstance(body, dict) else None
    if not isinstance(data, dict) or not any(key in data for key in ("remain_balance", "remain_credits")):
        raise MalformedResponseError("the balance answer has no remain_balance or remain_credits")
    unlimited = data.get("unlimited_quota") is True
    remaining = _number(data.get("remain_balance"))
    unit = data.get("unit") if isinstance(data.get("unit"), str) and data.get("unit").strip() else None
    return Balance(None if unlimited else remaining, _number(data.get("remain_credits")),
                   _number(data.get("used_balance")), _number(data.get("used_credits")), unlimited,
                   unit, scope)


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
