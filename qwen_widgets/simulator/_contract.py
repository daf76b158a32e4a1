"""The API contract as the simulator states it, written from the vendor's page and docs/api-contract.md.

The simulator must not borrow the client's rules: a client rule that misreads the API would
then be agreed with by every loopback test. So the contract is written here a second time,
from the sources (the generation page, docs/api-contract.md sections 1, 3-5 and 7), and a test elsewhere
compares the two statements. Pure values and checks: nothing here imports the rest of the
package.

What a contract-comparison test reads:

- `FIELDS`: the request body's fields, each a `FieldRule` (name, JSON type, rule, required,
  default). `model` is one of them: the body is the model's input plus a top-level `model`.
- `MODEL_IDS`, `SIZES`, `RESOLUTIONS`, `OUTPUT_SIZES` ((size, resolution) -> (width, height)),
  `DEFAULT_SIZE`, `DEFAULT_RESOLUTION`, `DEFAULT_N`, `MIN_IMAGES`, `MAX_IMAGES`,
  `MAX_PROMPT_CHARS` (800), `MAX_NEGATIVE_PROMPT_CHARS` (500): the documented pair's rules.
- `IMAGE_URL_SCHEMES`: what a reference URL may start with; `data:` URIs and base64 are refused.
- `MAX_UPLOAD_BYTES` (20 MB) and `UPLOAD_CONTENT_TYPES` (JPEG, PNG, GIF, WebP, told apart by
  their leading bytes, not by name or header): the upload endpoint's rules.
- `PRICES`: the simulated price per image by model (a reseller's quote, not a published fact).
- `CONTRACT`: all of the above in one read-only mapping.

The simulator offers models as `SimModel`s (`DEFAULT_MODELS` is the documented pair), so a test
can offer a model the package has never heard of with rules of its own. `check_submission`
turns a submit body into a `SimRequest` or raises a `Refusal`, whose `body()` is the API's
error envelope naming the offending `param`. Fields the contract does not know are not refused:
`ignored_fields` names them (real clients send `quality` and `output_format` with every request,
docs/api-contract.md section 5).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any
from urllib.parse import urlsplit

__all__ = [
    "CONTRACT",
    "FIELDS",
    "FieldRule",
    "MODEL_IDS",
    "SIZES",
    "RESOLUTIONS",
    "OUTPUT_SIZES",
    "DEFAULT_SIZE",
    "DEFAULT_RESOLUTION",
    "DEFAULT_N",
    "MIN_IMAGES",
    "MAX_IMAGES",
    "MAX_PROMPT_CHARS",
    "MAX_NEGATIVE_PROMPT_CHARS",
    "IMAGE_URL_SCHEMES",
    "MAX_UPLOAD_BYTES",
    "UPLOAD_CONTENT_TYPES",
    "PRICES",
    "CODE_STYLES",
    "SimModel",
    "DEFAULT_MODELS",
    "SimRequest",
    "Refusal",
    "check_submission",
    "ignored_fields",
    "check_upload",
    "image_format",
    "error_body",
]

# -- the documented pair's rules (the generation page) ------------------------------------------

MODEL_IDS = ("qwen-image-2.0", "qwen-image-2.0-pro")
OUTPUT_SIZES: Mapping[tuple[str, str], tuple[int, int]] = MappingProxyType({
    ("1:1", "1K"): (1024, 1024), ("1:1", "2K"): (2048, 2048),
    ("4:3", "1K"): (1152, 864), ("4:3", "2K"): (2048, 1536),
    ("3:4", "1K"): (864, 1152), ("3:4", "2K"): (1536, 2048),
    ("16:9", "1K"): (1280, 720), ("16:9", "2K"): (2048, 1152),
    ("9:16", "1K"): (720, 1280), ("9:16", "2K"): (1152, 2048),
    ("3:2", "1K"): (1248, 832), ("3:2", "2K"): (2048, 1360),
    ("2:3", "1K"): (832, 1248), ("2:3", "2K"): (1360, 2048),
})  # fmt: skip
"""The page's resolution reference table: the pixels each (aspect ratio, tier) produces."""
SIZES = tuple(dict.fromkeys(size for size, _ in OUTPUT_SIZES))
RESOLUTIONS = tuple(dict.fromkeys(resolution for _, resolution in OUTPUT_SIZES))
DEFAULT_SIZE = "1:1"
DEFAULT_RESOLUTION = "1K"
DEFAULT_N = 1
MIN_IMAGES = 1
MAX_IMAGES = 6
MAX_PROMPT_CHARS = 800
MAX_NEGATIVE_PROMPT_CHARS = 500
IMAGE_URL_SCHEMES = ("http", "https")
"""Reference images must be publicly reachable URLs; base64 and `data:` URIs are refused."""

# -- uploads (docs/api-contract.md section 4) -----------------------------------------------------------------

MAX_UPLOAD_BYTES = 20 * 2**20
"""The docs page's 20 MB, read as binary megabytes (the generous reading)."""
UPLOAD_CONTENT_TYPES: Mapping[str, str] = MappingProxyType(
    {"jpeg": "image/jpeg", "png": "image/png", "gif": "image/gif", "webp": "image/webp"})
"""The formats the upload endpoint accepts, by the name `image_format` gives them."""

PRICES: Mapping[str, float] = MappingProxyType({"qwen-image-2.0": 0.021, "qwen-image-2.0-pro": 0.053})
"""Simulated price per generated image. APIMart does not publish one; these are a reseller's
quote (docs/api-contract.md section 1.6), so a client must treat any price as a setting."""

CODE_STYLES = ("recorded", "string", "numeric")
"""How error envelopes spell `code`: "recorded" as live answers and the vendor's examples do (a
word where one was recorded, such as `model_not_found`, else the HTTP status, as in the page's
400 example); "string" always a word; "numeric" always the HTTP status."""


@dataclass(frozen=True)
class FieldRule:
    """One field of the generation request body."""

    name: str
    type: str
    """Its JSON type."""
    rule: str
    """What the API accepts, in words (for the documented pair; a SimModel may differ)."""
    required: bool = False
    default: Any = None
    """What the API assumes when the field is absent; None: nothing (the feature is off)."""


FIELDS: tuple[FieldRule, ...] = (
    FieldRule("model", "string", f"the id of a model the service offers ({', '.join(MODEL_IDS)}); "
              "an unknown id is answered 503 model_not_found", required=True),
    FieldRule("prompt", "string", f"not blank, at most {MAX_PROMPT_CHARS} characters", required=True),
    FieldRule("size", "string", f"an aspect ratio, one of {' '.join(SIZES)}", default=DEFAULT_SIZE),
    FieldRule("resolution", "string", f"a tier, one of {' '.join(RESOLUTIONS)}", default=DEFAULT_RESOLUTION),
    FieldRule("n", "integer", f"how many images, {MIN_IMAGES} to {MAX_IMAGES}", default=DEFAULT_N),
    FieldRule("negative_prompt", "string", f"what to avoid, at most {MAX_NEGATIVE_PROMPT_CHARS} characters"),
    FieldRule("image_urls", "array of strings", "reference images (image-to-image): publicly reachable "
              "http(s) URLs; base64 and data: URIs are refused"),
)


@dataclass(frozen=True)
class SimModel:
    """One model the simulator offers, with its own rules and price. The defaults are
    qwen-image-2.0's rules, so a new model only states where it differs."""

    price: float
    """Price per generated image, in the balance's unit."""
    description: str = ""
    output_sizes: Mapping[tuple[str, str], tuple[int, int]] = field(default_factory=lambda: OUTPUT_SIZES)
    """(size, resolution) -> (width, height): every combination the model accepts."""
    default_size: str = DEFAULT_SIZE
    default_resolution: str = DEFAULT_RESOLUTION
    max_images: int = MAX_IMAGES
    max_prompt_chars: int = MAX_PROMPT_CHARS
    max_negative_prompt_chars: int = MAX_NEGATIVE_PROMPT_CHARS
    created: int = 1_767_225_600
    """Unix time `GET /v1/models/{id}` reports (the simulator's choice: 2026-01-01)."""
    owned_by: str = "alibaba"

    def __post_init__(self) -> None:
        if (self.default_size, self.default_resolution) not in self.output_sizes:
            raise ValueError("the default size and resolution must be one of output_sizes")
        if self.max_images < MIN_IMAGES or self.price < 0:
            raise ValueError("a model makes at least one image, at a price of zero or more")

    @property
    def sizes(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(size for size, _ in self.output_sizes))

    @property
    def resolutions(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(resolution for _, resolution in self.output_sizes))


DEFAULT_MODELS: Mapping[str, SimModel] = MappingProxyType({
    "qwen-image-2.0": SimModel(PRICES["qwen-image-2.0"], "Standard version, balanced quality and performance"),
    "qwen-image-2.0-pro": SimModel(PRICES["qwen-image-2.0-pro"],
                                   "Pro version, stronger text rendering, more refined realistic textures"),
})
"""The two models the generation page documents."""

CONTRACT: Mapping[str, Any] = MappingProxyType({
    "fields": MappingProxyType({rule.name: rule for rule in FIELDS}),
    "models": MODEL_IDS,
    "sizes": SIZES,
    "resolutions": RESOLUTIONS,
    "output_sizes": OUTPUT_SIZES,
    "default_size": DEFAULT_SIZE,
    "default_resolution": DEFAULT_RESOLUTION,
    "default_n": DEFAULT_N,
    "min_images": MIN_IMAGES,
    "max_images": MAX_IMAGES,
    "max_prompt_chars": MAX_PROMPT_CHARS,
    "max_negative_prompt_chars": MAX_NEGATIVE_PROMPT_CHARS,
    "image_url_schemes": IMAGE_URL_SCHEMES,
    "max_upload_bytes": MAX_UPLOAD_BYTES,
    "upload_content_types": UPLOAD_CONTENT_TYPES,
    "prices": PRICES,
})
"""The whole statement in one mapping, for a test that compares it with the client's rules."""


@dataclass(frozen=True)
class SimRequest:
    """A generation request as the simulated server understood it: defaults filled in."""

    model: str
    prompt: str
    size: str
    resolution: str
    n: int
    negative_prompt: str | None
    image_urls: tuple[str, ...]
    output_size: tuple[int, int]
    """(width, height) of each image, from the model's size x resolution table."""

    def to_payload(self) -> dict[str, Any]:
        """The body in the shape a client sends it (optional fields only when given), so a
        test can compare what the server understood with what the client meant."""
        payload: dict[str, Any] = {"model": self.model, "prompt": self.prompt, "size": self.size,
                                   "resolution": self.resolution, "n": self.n}
        if self.negative_prompt is not None:
            payload["negative_prompt"] = self.negative_prompt
        if self.image_urls:
            payload["image_urls"] = list(self.image_urls)
        return payload


class Refusal(Exception):
    """The API's refusal of a request: its status, message, type, code and param."""

    def __init__(self, status: int, message: str, kind: str = "invalid_request_error", *,
                 code: str | None = None, param: str | None = None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.kind = kind
        self.code = code
        """The recorded word for this refusal, if there is one (e.g. 'model_not_found')."""
        self.param = param

    def body(self, style: str = "recorded") -> dict[str, Any]:
        """The error envelope, its `code` spelled in `style` (one of CODE_STYLES)."""
        return error_body(self.status, self.message, self.kind, code=self.code, param=self.param, style=style)


def error_body(status: int, message: str, kind: str, *, code: str | None = None, param: str | None = None,
               style: str = "recorded") -> dict[str, Any]:
    """`{"error": {"code", "message", "type"[, "param"]}}` (docs/api-contract.md section 6.1)."""
    if style == "numeric" or (style == "recorded" and code is None):
        spelled: int | str = status
    else:
        spelled = code or kind
    error: dict[str, Any] = {"code": spelled, "message": message, "type": kind}
    if param is not None:
        error["param"] = param
    return {"error": error}


def ignored_fields(payload: Any) -> tuple[str, ...]:
    """The body's fields that the contract does not model, in the order they came."""
    if not isinstance(payload, dict):
        return ()
    known = {rule.name for rule in FIELDS}
    return tuple(str(name) for name in payload if name not in known)


def check_submission(payload: Any, models: Mapping[str, SimModel]) -> SimRequest:
    """The request a submit body asks for, under the rules of the model it names.

    Raises Refusal: 400 naming the field (`param`) whose type or value is wrong, or 503
    `model_not_found` for a model the service does not offer (what the live service answers).
    Unknown fields are not looked at.
    """
    if not isinstance(payload, dict):
        raise Refusal(400, "body: must be a JSON object", param="body")
    name = _required_text(payload, "model")
    model = models.get(name)
    if model is None:
        raise Refusal(503, f"model {name[:64]!r} not found: this service offers {', '.join(models)}",
                      code="model_not_found", param="model")
    prompt = _required_text(payload, "prompt")
    if not prompt.strip():
        raise Refusal(400, "prompt: must not be blank", param="prompt")
    _at_most(prompt, "prompt", model.max_prompt_chars)
    size = _choice(payload, "size", model.sizes, model.default_size)
    resolution = _choice(payload, "resolution", model.resolutions, model.default_resolution)
    if (size, resolution) not in model.output_sizes:
        allowed = [r for s, r in model.output_sizes if s == size]
        raise Refusal(400, f"resolution: must be one of {', '.join(allowed)} for size {size}", param="resolution")
    negative = _optional_text(payload, "negative_prompt")
    if negative is not None:
        _at_most(negative, "negative_prompt", model.max_negative_prompt_chars)
    return SimRequest(model=name, prompt=prompt, size=size, resolution=resolution,
                      n=_count(payload, model.max_images), negative_prompt=negative,
                      image_urls=_image_urls(payload), output_size=model.output_sizes[(size, resolution)])


def _required_text(payload: dict, name: str) -> str:
    if payload.get(name) is None:
        raise Refusal(400, f"{name}: is required", param=name)
    return _text(payload[name], name)


def _optional_text(payload: dict, name: str) -> str | None:
    value = payload.get(name)  # a JSON null is the field left out
    return None if value is None else _text(value, name)


def _text(value: Any, name: str) -> str:
    if not isinstance(value, str):
        raise Refusal(400, f"{name}: must be a string", param=name)
    try:
        value.encode("utf-8")  # a lone surrogate escaped in JSON ("\ud800") cannot be stored
    except UnicodeEncodeError:
        raise Refusal(400, f"{name}: must be valid Unicode text", param=name) from None
    return value


def _at_most(value: str, name: str, limit: int) -> None:
    if len(value) > limit:
        raise Refusal(400, f"{name}: must be at most {limit} characters, this one has {len(value)}", param=name)


def _choice(payload: dict, name: str, allowed: tuple[str, ...], default: str) -> str:
    value = payload.get(name)
    if value is None:
        return default
    if not isinstance(value, str) or value not in allowed:
        raise Refusal(400, f"{name}: must be one of {', '.join(allowed)}", param=name)
    return value


def _count(payload: dict, most: int) -> int:
    value = payload.get("n")
    if value is None:
        return DEFAULT_N
    # JSON true is not a count, and 2.0 is not an integer in the API's schema
    if isinstance(value, bool) or not isinstance(value, int) or not MIN_IMAGES <= value <= most:
        raise Refusal(400, f"n: must be an integer from {MIN_IMAGES} to {most}", param="n")
    return value


_BASE64 = re.compile(r"[A-Za-z0-9+/=_-]{64,}")


def _image_urls(payload: dict) -> tuple[str, ...]:
    value = payload.get("image_urls")
    if value is None:
        return ()
    if not isinstance(value, list):
        raise Refusal(400, "image_urls: must be an array of URLs", param="image_urls")
    return tuple(_image_url(index, url) for index, url in enumerate(value))


def _image_url(index: int, url: Any) -> str:
    name = f"image_urls[{index}]"
    url = _text(url, name)
    if url.lower().startswith("data:") or _BASE64.fullmatch("".join(url.split())):
        raise Refusal(400, f"{name}: base64 and data: URIs are not supported; upload the image "
                           "(POST /v1/uploads/images) and pass its URL", param=name)
    try:
        parts = urlsplit(url)
        host = parts.hostname
    except ValueError:
        host = None
    if host is None or parts.scheme.lower() not in IMAGE_URL_SCHEMES or any(ch.isspace() for ch in url):
        raise Refusal(400, f"{name}: must be a publicly reachable http(s) URL", param=name)
    return url


# -- uploads ------------------------------------------------------------------------------------

_SIGNATURES = ((b"\xff\xd8\xff", "jpeg"), (b"\x89PNG\r\n\x1a\n", "png"), (b"GIF87a", "gif"), (b"GIF89a", "gif"))


def image_format(data: bytes) -> str | None:
    """'jpeg', 'png', 'gif' or 'webp' from the leading bytes; None for anything else."""
    for signature, name in _SIGNATURES:
        if data.startswith(signature):
            return name
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "webp"
    return None


def check_upload(data: bytes) -> str:
    """The content type of an uploaded file, or a Refusal: 413 over the limit, 400 when the
    bytes are not one of the accepted formats (the file's name and header are not believed)."""
    if len(data) > MAX_UPLOAD_BYTES:
        raise Refusal(413, f"file: is over the {MAX_UPLOAD_BYTES // 2**20} MB upload limit", param="file")
    kind = image_format(data)
    if kind is None:
        raise Refusal(400, "file: unsupported image format: send JPEG, PNG, GIF or WebP", param="file")
    return UPLOAD_CONTENT_TYPES[kind]

