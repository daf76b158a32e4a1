"""ImageRequest: the body of a generation request, validated against the API's rules."""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field
from typing import Any

from .errors import RequestValidationError
from .urls import MAX_URL_CHARS, has_credentials, is_http_url

__all__ = ["ImageRequest", "MODELS", "SIZES", "RESOLUTIONS"]

MODELS = ("qwen-image-2.0", "qwen-image-2.0-pro")
SIZES = ("1:1", "4:3", "3:4", "16:9", "9:16", "3:2", "2:3")
RESOLUTIONS = ("1K", "2K")
MAX_PROMPT_CHARS = 800
MAX_NEGATIVE_PROMPT_CHARS = 500
MAX_IMAGES = 6

# Output pixel size is fixed by size x resolution (docs/api-contract.md section 1.3).
OUTPUT_SIZES: dict[tuple[str, str], tuple[int, int]] = {
    ("1:1", "1K"): (1024, 1024), ("1:1", "2K"): (2048, 2048),
    ("4:3", "1K"): (1152, 864), ("4:3", "2K"): (2048, 1536),
    ("3:4", "1K"): (864, 1152), ("3:4", "2K"): (1536, 2048),
    ("16:9", "1K"): (1280, 720), ("16:9", "2K"): (2048, 1152),
    ("9:16", "1K"): (720, 1280), ("9:16", "2K"): (1152, 2048),
    ("3:2", "1K"): (1248, 832), ("3:2", "2K"): (2048, 1360),
    ("2:3", "1K"): (832, 1248), ("2:3", "2K"): (1360, 2048),
}  # fmt: skip

_BASE64_BLOB = re.compile(r"[A-Za-z0-9+/=_-]{64,}")


def output_size(size: str, resolution: str) -> tuple[int, int]:
    """Width and height in pixels that the API returns for an aspect ratio and tier."""
    return OUTPUT_SIZES[(size, resolution)]


@dataclass(frozen=True)
class ImageRequest:
    """One generation request. Immutable; every field is checked when it is built."""

    prompt: str
    """What to draw; 1 to 800 characters, not only whitespace."""
    model: str = "qwen-image-2.0"
    """One of MODELS."""
    size: str = "1:1"
    """Aspect ratio, one of SIZES."""
    resolution: str = "1K"
    """Tier, one of RESOLUTIONS; with `size` it fixes the pixel size."""
    n: int = 1
    """How many images, 1..6. The server may return fewer: count what comes back."""
    negative_prompt: str | None = None
    """What to avoid, at most 500 characters; empty text means none."""
    image_urls: tuple[str, ...] = field(default=())
    """Reference images for image-to-image: public http(s) URLs, never base64."""

    def __post_init__(self) -> None:
        for name, check in _CHECKS.items():
            # frozen: normalise in place, once, at construction
            object.__setattr__(self, name, check(getattr(self, name)))

    @property
    def output_size(self) -> tuple[int, int]:
        """(width, height) in pixels of each image this request produces."""
        return output_size(self.size, self.resolution)

    def to_payload(self) -> dict[str, Any]:
        """The JSON body for `POST /v1/images/generations`."""
        payload: dict[str, Any] = {
            "model": self.model,
            "prompt": self.prompt,
            "size": self.size,
            "resolution": self.resolution,
            "n": self.n,
        }
        if self.negative_prompt is not None:
            payload["negative_prompt"] = self.negative_prompt
        if self.image_urls:
            payload["image_urls"] = list(self.image_urls)
        return payload

    @classmethod
    def from_payload(cls, payload: Any) -> ImageRequest:
        """Rebuild a request from a JSON body; unknown keys are a validation error."""
        if not isinstance(payload, dict):
            raise RequestValidationError("body", "must be a JSON object", payload)
        known = {f.name for f in dataclasses.fields(cls)}
        for key in payload:
            if key not in known:
                raise RequestValidationError(
                    str(key), f"is not a field of the API; allowed: {', '.join(sorted(known))}",
                    show_value=False,
                )
        if "prompt" not in payload:
            raise RequestValidationError("prompt", "is required", show_value=False)
        return cls(**payload)

    def replace(self, **changes: Any) -> ImageRequest:
        """A copy with some fields changed, validated like a new request."""
        return dataclasses.replace(self, **changes)

    def __repr__(self) -> str:
        fields = [f"prompt={self.prompt[:40] + '…' if len(self.prompt) > 40 else self.prompt!r}"]
        for f in dataclasses.fields(self)[1:]:
            value = getattr(self, f.name)
            if value != f.default:
                fields.append(f"{f.name}={value!r}")
        return f"ImageRequest({', '.join(fields)})"


def make_request(request_or_prompt: ImageRequest | str, fields: dict[str, Any]) -> ImageRequest:
    """An ImageRequest from a prompt, or from a request plus field overrides."""
    allowed = ImageRequest.__dataclass_fields__
    for name in fields:
        if name not in allowed:
            raise RequestValidationError(
                name, f"is not a request field; allowed: {', '.join(allowed)}", show_value=False
            )
    if isinstance(request_or_prompt, ImageRequest):
        return request_or_prompt.replace(**fields) if fields else request_or_prompt
    if isinstance(request_or_prompt, str):
        if "prompt" in fields:
            raise RequestValidationError("prompt", "given twice", show_value=False)
        return ImageRequest(prompt=request_or_prompt, **fields)
    raise RequestValidationError("prompt", "must be a string or an ImageRequest", request_or_prompt)


def field_errors(**values: Any) -> dict[str, str]:
    """Every rule that these field values break, by field name; empty when all are valid.

    Unlike building an ImageRequest, which stops at the first error, this checks each field,
    so a form can show every problem next to its own field.
    """
    errors = {}
    for name, value in values.items():
        if name not in _CHECKS:
            raise RequestValidationError(name, "is not a request field", show_value=False)
        try:
            _CHECKS[name](value)
        except RequestValidationError as exc:
            errors[name] = str(exc)
    return errors


def _check_encodable(name: str, value: str) -> None:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise RequestValidationError(
            name, "must be valid Unicode text (it holds a lone surrogate)", show_value=False
        ) from None


def _check_text(name: str, value: Any, limit: int, *, required: bool) -> str | None:
    if value is None and not required:
        return None
    if not isinstance(value, str):
        raise RequestValidationError(name, "must be a string", value)
    _check_encodable(name, value)
    if not value.strip():
        if required:
            raise RequestValidationError(name, "must not be empty or only whitespace", value)
        return None
    if len(value) > limit:
        raise RequestValidationError(
            name, f"must be at most {limit} characters, this one has {len(value)}", value
        )
    return value


def _check_choice(name: str, value: Any, allowed: tuple[str, ...]) -> str:
    if not isinstance(value, str) or value not in allowed:
        raise RequestValidationError(name, f"must be one of {', '.join(allowed)}", value)
    return value


def _check_n(value: Any) -> int:
    # bool is an int subclass, but n=True is always a mistake
    if isinstance(value, bool) or not isinstance(value, int):
        raise RequestValidationError("n", f"must be an integer from 1 to {MAX_IMAGES}", value)
    if not 1 <= value <= MAX_IMAGES:
        raise RequestValidationError("n", f"must be from 1 to {MAX_IMAGES}", value)
    return value


def _check_urls(value: Any) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):  # one URL given where a list was expected
        value = (value,)
    if not isinstance(value, (list, tuple)):
        raise RequestValidationError("image_urls", "must be a list of URLs", value)
    return tuple(check_image_url(i, url) for i, url in enumerate(value))


def check_image_url(index: int, url: object) -> str:
    """The URL, trimmed, if the API would accept it as reference image number `index`."""
    name = f"image_urls[{index}]"
    if not isinstance(url, str):
        raise RequestValidationError(name, "must be a string URL", url)
    _check_encodable(name, url)
    url = url.strip()
    compact = "".join(url.split())  # base64 tools wrap lines
    if url.lower().startswith("data:") or (
        _BASE64_BLOB.fullmatch(compact) and "." not in compact and ":" not in compact
    ):
        raise RequestValidationError(
            name,
            "looks like base64 image data; the API refuses base64 and data: URIs, "
            "pass the image itself (a file path, bytes or a PIL image) and it is uploaded for you",
            url,
        )
    if len(url) > MAX_URL_CHARS:
        raise RequestValidationError(name, f"must be at most {MAX_URL_CHARS} characters", url)
    if has_credentials(url):
        raise RequestValidationError(
            name, "must not contain credentials (user:password@); use a public URL", url,
            show_value=False,
        )
    if any(ch.isspace() for ch in url):
        raise RequestValidationError(name, "must not contain whitespace", url)
    if not is_http_url(url):
        raise RequestValidationError(name, "must be a public http(s) URL with a host", url)
    return url


_CHECKS = {
    "prompt": lambda v: _check_text("prompt", v, MAX_PROMPT_CHARS, required=True),
    "model": lambda v: _check_choice("model", v, MODELS),
    "size": lambda v: _check_choice("size", v, SIZES),
    "resolution": lambda v: _check_choice("resolution", v, RESOLUTIONS),
    "n": _check_n,
    "negative_prompt": lambda v: _check_text(
        "negative_prompt", v, MAX_NEGATIVE_PROMPT_CHARS, required=False
    ),
    "image_urls": _check_urls,
}
