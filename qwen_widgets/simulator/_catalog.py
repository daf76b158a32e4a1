"""What the simulated catalogue and account answer: models, their input schema, documentation,
prices, the marketplace and the balances.

Pure functions of the models the simulator offers (`SimModel`s) and of its spending, so the
discovery endpoints, the pricing and the submit validation can never disagree about a model.
Shapes come from docs/api-contract.md section 5 (the official client's contract and the fields
martianzhang/apimart-cli decodes); where the vendor leaves a value open, the docstring says
which value is the simulator's own choice.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ._contract import IMAGE_URL_SCHEMES, MIN_IMAGES, SimModel

__all__: list[str] = []

OPERATION = "image_generation"
DOCS_ROUTE = "/sim-docs/"
DOCS_TTL_SECONDS = 3600
BILLING_TYPE = "per_image"
"""The simulator's word for a fixed price per image: APIMart's own values are not published."""


def models(offered: Mapping[str, SimModel]) -> dict[str, Any]:
    """`GET /v1/models`."""
    return {"object": "list", "data": [model_card(name, model) for name, model in offered.items()]}


def model_card(name: str, model: SimModel) -> dict[str, Any]:
    """`GET /v1/models/{id}`: `{id, object, created, owned_by}`."""
    return {"id": name, "object": "model", "created": model.created, "owned_by": model.owned_by}


def input_schema(model: SimModel) -> dict[str, Any]:
    """The JSON schema of a model's input. The request body is this input plus a top-level
    `model`, so `model` is neither a property nor required (the official client refuses an
    input that holds it). Other fields are allowed: the service ignores what it does not model."""
    return {
        "type": "object",
        "required": ["prompt"],
        "properties": {
            "prompt": {"type": "string", "minLength": 1, "maxLength": model.max_prompt_chars,
                       "description": "what to draw"},
            "size": {"type": "string", "enum": list(model.sizes), "default": model.default_size,
                     "description": "aspect ratio"},
            "resolution": {"type": "string", "enum": list(model.resolutions),
                           "default": model.default_resolution, "description": "resolution tier"},
            "n": {"type": "integer", "minimum": MIN_IMAGES, "maximum": model.max_images, "default": 1,
                  "description": "how many images"},
            "negative_prompt": {"type": "string", "maxLength": model.max_negative_prompt_chars,
                                "description": "what to avoid"},
            "image_urls": {"type": "array", "description": "reference images: public http(s) URLs, "
                           "never base64 or data: URIs",
                           "items": {"type": "string", "format": "uri",
                                     "pattern": f"^({'|'.join(IMAGE_URL_SCHEMES)})://"}},
        },
    }


def model_schema(name: str, model: SimModel) -> dict[str, Any]:
    """`GET /v1/model-schema?model=...&operation=image_generation`."""
    return {"model": name, "operation": OPERATION, "input_schema": input_schema(model)}


def model_docs(name: str, model: SimModel, base: str, now: float) -> dict[str, Any]:
    """`GET /v1/model-docs?model=...`: the documentation object the official client checks.
    Its URLs point at this simulator, which serves the same Markdown there."""
    return {"object": "model.documentation", "model": name, "doc_url": f"{base}{DOCS_ROUTE}{name}",
            "markdown_url": f"{base}{DOCS_ROUTE}{name}.md", "markdown": markdown(name, model),
            "fetched_at": max(1, int(now)), "cache_ttl_seconds": DOCS_TTL_SECONDS, "stale": False}


def markdown(name: str, model: SimModel) -> str:
    """A short page about one model, written from its rules."""
    sizes = "\n".join(f"| {size} | {resolution} | {width}x{height} |"
                      for (size, resolution), (width, height) in model.output_sizes.items())
    return f"""# {name} (simulated)

{model.description or "An image generation model."} Asynchronous: `POST /v1/images/generations`
answers a task id; poll `GET /v1/tasks/{{task_id}}` for the result. Billed per generated image
({model.price:g} each here); failed images are not billed.

## Input

| field | type | rule | default |
|---|---|---|---|
| model | string | `{name}` (top level, beside the input) | required |
| prompt | string | at most {model.max_prompt_chars} characters | required |
| size | string | one of {", ".join(model.sizes)} | {model.default_size} |
| resolution | string | one of {", ".join(model.resolutions)} | {model.default_resolution} |
| n | integer | {MIN_IMAGES} to {model.max_images} | 1 |
| negative_prompt | string | at most {model.max_negative_prompt_chars} characters | absent |
| image_urls | array of strings | public http(s) URLs; base64 and data: URIs are refused | absent |

Fields not listed here are ignored.

## Output size

| size | resolution | pixels |
|---|---|---|
{sizes}
"""


def pricing(name: str, model: SimModel | None) -> dict[str, Any]:
    """`GET /api/pricing/model?model=...` (public), in the shape apimart-cli decodes. An unknown
    model answers zero values, not 404 (docs/api-contract.md section 5). `discount_rate` 1 (the factor the
    price is multiplied by) and `supported_qualities` empty are the simulator's choices."""
    if model is None:
        data: dict[str, Any] = {"model_name": name, "billing_type": "", "model_price": 0, "discount_rate": 0,
                                "resolution_enabled": False, "supported_sizes": [], "supported_qualities": [],
                                "size_quality_prices": {}, "resolution_prices": {}}
    else:
        data = {"model_name": name, "billing_type": BILLING_TYPE, "model_price": model.price, "discount_rate": 1,
                "resolution_enabled": True, "supported_sizes": list(model.sizes), "supported_qualities": [],
                "size_quality_prices": {}, "resolution_prices": {tier: model.price for tier in model.resolutions}}
    return {"success": True, "data": data}


def marketplace(offered: Mapping[str, SimModel], kind: str, page: int, page_size: int, base: str) -> dict[str, Any]:
    """`GET /api/marketplace/models?type=image&page=1&page_size=50` (public). The simulator only
    offers image models, so another `type` lists none."""
    listed = list(offered.items()) if kind in ("", "image") else []
    start = (page - 1) * page_size
    entries = [_marketplace_entry(number, name, model, base)
               for number, (name, model) in enumerate(listed[start:start + page_size], start + 1)]
    return {"success": True, "data": {"total": len(listed), "page": page, "page_size": page_size, "models": entries}}


def _marketplace_entry(number: int, name: str, model: SimModel, base: str) -> dict[str, Any]:
    return {"id": number, "model_name": name, "display_name": name, "description": model.description,
            "media_type": "image", "detail_url": f"{base}{DOCS_ROUTE}{name}", "tags": ["image"],
            "vendor": {"id": 1, "name": model.owned_by, "icon": ""},
            "pricing": {"starting_price": model.price, "discount_rate": 1, "credits_per_generation": 0,
                        "billing_type": BILLING_TYPE, "price_unit": "/image", "has_price": True},
            "call_count": 0, "discount_percent": 0}


def balance(remaining: float, used: float, unit: str) -> dict[str, Any]:
    """`GET /v1/balance` (the key's) and `GET /v1/user/balance` (the account's). `unit` is
    what the simulator is configured with: APIMart's unit "depends on system configuration"
    (USD, CNY or tokens)."""
    return {"success": True, "remain_balance": round(remaining, 6), "remain_credits": 0,
            "used_balance": round(used, 6), "used_credits": 0, "unlimited_quota": False, "unit": unit}


def balance_failure(message: str) -> dict[str, Any]:
    """A balance answer that failed although its status is 200 (e.g. "Token Not Found")."""
    return {"success": False, "message": message}
