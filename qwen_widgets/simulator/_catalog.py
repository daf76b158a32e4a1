"""What the simulated account and model catalogue answer: models, the request's JSON schema,
prices and the balance. Pure functions of the simulator's state."""

from __future__ import annotations

from typing import Any

from ..model.request import MAX_IMAGES, MAX_NEGATIVE_PROMPT_CHARS, MAX_PROMPT_CHARS, MODELS, RESOLUTIONS, SIZES
from ..model.urls import MAX_URL_CHARS

__all__: list[str] = []

PRICES = {"qwen-image-2.0": 0.021, "qwen-image-2.0-pro": 0.053}
"""Simulated price per generated image, by model (one reseller's quote; API.md section 1)."""


def models() -> dict[str, Any]:
    """`GET /v1/models`."""
    return {"object": "list", "data": [{"id": model, "object": "model"} for model in MODELS]}


def input_schema() -> dict[str, Any]:
    """The JSON schema of a generation request body, with ImageRequest's rules."""
    return {
        "type": "object",
        "required": ["model", "prompt"],
        "additionalProperties": False,
        "properties": {
            "model": {"type": "string", "enum": list(MODELS)},
            "prompt": {"type": "string", "minLength": 1, "maxLength": MAX_PROMPT_CHARS},
            "size": {"type": "string", "enum": list(SIZES), "default": "1:1"},
            "resolution": {"type": "string", "enum": list(RESOLUTIONS), "default": "1K"},
            "n": {"type": "integer", "minimum": 1, "maximum": MAX_IMAGES, "default": 1},
            "negative_prompt": {"type": "string", "maxLength": MAX_NEGATIVE_PROMPT_CHARS},
            "image_urls": {"type": "array", "items": {"type": "string", "format": "uri",
                                                      "pattern": "^https?://", "maxLength": MAX_URL_CHARS}},
        },
    }


def model_schema(model: str, operation: str) -> dict[str, Any] | None:
    """`GET /v1/model-schema?model=...&operation=image_generation`; None for an unknown pair."""
    if model not in MODELS or operation != "image_generation":
        return None
    return {"model": model, "operation": operation, "input_schema": input_schema()}


def balance(starting: float, spent: float) -> dict[str, Any]:
    """`GET /v1/balance`, after `spent` of a `starting` balance."""
    return {"success": True, "remain_balance": round(starting - spent, 6), "remain_credits": 0,
            "used_balance": round(spent, 6), "used_credits": 0, "unlimited_quota": False}
