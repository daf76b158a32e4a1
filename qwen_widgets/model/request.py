"""ImageRequest: the body of a generation request, validated against its model's rules.

A model's rules (`ModelRules`: sizes, tiers, pixel sizes, text limits, how many images) are the
service's to give: `GET /v1/model-schema` describes each model's input (docs/api-contract.md
section 5.3), and APIMart adds models without telling anyone. The documented pair's rules
(docs/api-contract.md section 1) are written here as the defaults, so a request checks offline
and `ImageRequest("a fox")` needs no network; the engine asks the service and passes what it
said (`rules=`). A model nobody has rules for is refused, naming the models that are known.
Reading the service's answers into rules is here too, as pure functions, so that every rule a
request obeys has one home.
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from .errors import MalformedResponseError, RequestValidationError, shorten
from .urls import MAX_URL_CHARS, has_credentials, is_http_url

__all__ = ["ImageRequest", "ModelRules", "MODELS", "SIZES", "RESOLUTIONS", "KNOWN_RULES", "rules_from_schema"]

MODELS = ("qwen-image-2.0", "qwen-image-2.0-pro")
"""The models documented when the package was written: known without asking the service."""
SIZES = ("1:1", "4:3", "3:4", "16:9", "9:16", "3:2", "2:3")
RESOLUTIONS = ("1K", "2K")
MAX_PROMPT_CHARS = 800
MAX_NEGATIVE_PROMPT_CHARS = 500
MAX_IMAGES = 6
FAMILY = "qwen-image"
"""The prefix of the models this package is for: APIMart's list holds its chat and video models too."""

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
_PIXELS = re.compile(r"(\d{2,5})\s*[x\u00d7*]\s*(\d{2,5})")


def output_size(size: str, resolution: str) -> tuple[int, int]:
    """Width and height in pixels that the API returns for an aspect ratio and tier (the
    documented pair's table)."""
    return OUTPUT_SIZES[(size, resolution)]


@dataclass(frozen=True)
class ModelRules:
    """What one model accepts. The defaults are the documented pair's rules; an empty choice
    (`sizes`, `resolutions`) or a None limit means the service did not say, so the client
    leaves that check to the service rather than guess."""

    model: str
    """The model id these rules are for."""
    sizes: tuple[str, ...] = SIZES
    """Aspect ratios it accepts, in the service's order; empty: any (the service checks)."""
    resolutions: tuple[str, ...] = RESOLUTIONS
    """Tiers it accepts; empty: any."""
    output_sizes: Mapping[tuple[str, str], tuple[int, int]] = field(
        default_factory=lambda: dict(OUTPUT_SIZES), hash=False)
    """(size, resolution) -> (width, height) where known; a pair missing here has no known
    pixel size (None), never a guessed one."""
    max_prompt_chars: int | None = MAX_PROMPT_CHARS
    max_negative_prompt_chars: int | None = MAX_NEGATIVE_PROMPT_CHARS
    min_images: int = 1
    max_images: int | None = MAX_IMAGES
    default_size: str = "1:1"
    """The size a request gets when it names none."""
    default_resolution: str = "1K"
    source: str = "known"
    """Where the rules come from: 'known' (the documented pair, offline), 'service' (the
    service's schema) or 'unknown' (a model the service lists without a readable schema)."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "output_sizes", dict(self.output_sizes))  # a copy the caller cannot change

    @classmethod
    def unknown(cls, model: str) -> ModelRules:
        """Rules that check only what any model needs (types, a prompt, at least one image):
        for a model the service offers without saying its rules, and for a journal's record of
        what a service once accepted."""
        return cls(model, sizes=(), resolutions=(), output_sizes={}, max_prompt_chars=None,
                   max_negative_prompt_chars=None, max_images=None, source="unknown")

    def pixels(self, size: str, resolution: str) -> tuple[int, int] | None:
        """(width, height) of an image of this size and tier, or None when not known."""
        return self.output_sizes.get((size, resolution))

    def limits_words(self) -> str:
        """'from 1 to 6' (or 'at least 1'): the range of `n` in words."""
        if self.max_images is None:
            return f"at least {self.min_images}"
        return f"from {self.min_images} to {self.max_images}"


KNOWN_RULES: Mapping[str, ModelRules] = MappingProxyType({model: ModelRules(model) for model in MODELS})
"""The documented pair's rules: what a request is checked against when nobody asked the service."""


def unknown_model(model: Any, offered: tuple[str, ...], why: str = "") -> RequestValidationError:
    """The refusal of a model that no rules are known for, naming the models that are."""
    why = why or ("the models known without asking the service; a client that reaches it also "
                  "accepts the models it lists")
    return RequestValidationError("model", f"must be one of {', '.join(offered)} ({why})", model)


def rules_for(model: Any, catalog: Mapping[str, ModelRules] | None = None) -> ModelRules:
    """The rules of `model`: from `catalog` (the rules a client has, by model id) when one is
    given, else the documented pair's; RequestValidationError naming the models known otherwise."""
    known = KNOWN_RULES if catalog is None else catalog
    if isinstance(model, str) and model in known:
        return known[model]
    offered = tuple(known) or MODELS
    if not isinstance(model, str) or not model.strip():
        raise RequestValidationError("model", f"must be one of {', '.join(offered)}", model)
    raise unknown_model(model, offered, "" if catalog is None else "the models whose rules this client has")


@dataclass(frozen=True, init=False)
class ImageRequest:
    """One generation request. Immutable; every field is checked when it is built, against
    the rules of its model (`rules`: by default the documented pair's, which know only
    qwen-image-2.0 and qwen-image-2.0-pro; a client passes the service's)."""

    prompt: str
    """What to draw; not only whitespace, at most the model's limit (800 characters)."""
    model: str = "qwen-image-2.0"
    """A model id: one of MODELS, or one the service lists (with its rules)."""
    size: str = "1:1"
    """Aspect ratio, one of the model's sizes; by default the model's default (1:1)."""
    resolution: str = "1K"
    """Tier, one of the model's; with `size` it fixes the pixel size. By default the model's (1K)."""
    n: int = 1
    """How many images, 1..6 for the documented pair. The server may return fewer: count what comes back."""
    negative_prompt: str | None = None
    """What to avoid, at most the model's limit (500 characters); empty text means none."""
    image_urls: tuple[str, ...] = field(default=())
    """Reference images for image-to-image: public http(s) URLs, never base64."""

    def __init__(self, prompt: str, model: str = "qwen-image-2.0", size: str | None = None,
                 resolution: str | None = None, n: int = 1, negative_prompt: str | None = None,
                 image_urls: Any = (), *, rules: ModelRules | None = None):
        if rules is None:
            rules = rules_for(model)
        elif not isinstance(rules, ModelRules):
            raise RequestValidationError("rules", "must be a ModelRules", rules)
        elif model != rules.model:
            raise RequestValidationError("model", f"must be {rules.model}, the model these rules are for", model)
        values = {"prompt": prompt, "model": model,
                  "size": rules.default_size if size is None else size,
                  "resolution": rules.default_resolution if resolution is None else resolution,
                  "n": n, "negative_prompt": negative_prompt, "image_urls": image_urls}
        checks = _checks(rules)
        for name, value in values.items():
            # frozen: normalise in place, once, at construction
            object.__setattr__(self, name, checks[name](value))
        object.__setattr__(self, "_rules", rules)

    @property
    def rules(self) -> ModelRules:
        """The rules this request was checked against (not part of its identity or its payload)."""
        rules: ModelRules = self.__dict__["_rules"]  # set once at construction, not a field
        return rules

    @property
    def output_size(self) -> tuple[int, int] | tuple[None, None]:
        """(width, height) in pixels of each image this request produces; (None, None) when
        its model's table does not say."""
        return self.rules.pixels(self.size, self.resolution) or (None, None)

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
    def from_payload(cls, payload: Any, *, rules: ModelRules | None = None) -> ImageRequest:
        """Rebuild a request from a JSON body; unknown keys are a validation error.

        Without `rules`, the documented pair is checked against its own rules, and any other
        model only for types (ModelRules.unknown): such a body is a record of what a service
        accepted (the journal's), and must come back to be resent or listed."""
        if not isinstance(payload, dict):
            raise RequestValidationError("body", "must be a JSON object", payload)
        known = [f.name for f in dataclasses.fields(cls)]
        for key in payload:
            if key not in known:
                raise RequestValidationError(
                    str(key), f"is not a field of the API; allowed: {', '.join(sorted(known))}",
                    show_value=False,
                )
        if "prompt" not in payload:
            raise RequestValidationError("prompt", "is required", show_value=False)
        model = payload.get("model", cls.model)
        if rules is None and isinstance(model, str) and model and model not in KNOWN_RULES:
            rules = ModelRules.unknown(model)
        return cls(**payload, rules=rules)

    def replace(self, *, rules: ModelRules | None = None, **changes: Any) -> ImageRequest:
        """A copy with some fields changed, validated like a new request: under `rules` when
        given, else its own rules while the model stays, else the new model's known rules."""
        values = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        values.update(changes)
        if rules is None and values["model"] == self.model:
            rules = self.rules
        return ImageRequest(**values, rules=rules)

    def __repr__(self) -> str:
        fields = [f"prompt={self.prompt[:40] + '…' if len(self.prompt) > 40 else self.prompt!r}"]
        for f in dataclasses.fields(self)[1:]:
            value = getattr(self, f.name)
            if value != f.default:
                fields.append(f"{f.name}={value!r}")
        return f"ImageRequest({', '.join(fields)})"


def make_request(request_or_prompt: ImageRequest | str, fields: dict[str, Any],
                 catalog: Mapping[str, ModelRules] | None = None) -> ImageRequest:
    """An ImageRequest from a prompt, or from a request plus field overrides, checked against
    its model's rules in `catalog` (the rules a client has, by model id) when given."""
    allowed = [f.name for f in dataclasses.fields(ImageRequest)]
    for name in fields:
        if name not in allowed:
            raise RequestValidationError(
                name, f"is not a request field; allowed: {', '.join(allowed)}", show_value=False
            )
    if isinstance(request_or_prompt, ImageRequest):
        if not fields and catalog is None:
            return request_or_prompt
        model = fields.get("model", request_or_prompt.model)
        rules = rules_for(model, catalog) if catalog is not None else None
        return request_or_prompt.replace(**fields, rules=rules)
    if isinstance(request_or_prompt, str):
        if "prompt" in fields:
            raise RequestValidationError("prompt", "given twice", show_value=False)
        model = fields.get("model", ImageRequest.model)
        return ImageRequest(prompt=request_or_prompt, **fields, rules=rules_for(model, catalog))
    raise RequestValidationError("prompt", "must be a string or an ImageRequest", request_or_prompt)


def field_errors(rules: ModelRules | None = None, **values: Any) -> dict[str, str]:
    """Every rule that these field values break, by field name; empty when all are valid.

    Unlike building an ImageRequest, which stops at the first error, this checks each field,
    so a form can show every problem next to its own field. `rules`: those of the model in
    `values` (by default the documented pair's); a model without rules is one error, and
    the other fields are then checked only for what any model needs.
    """
    errors = {}
    if rules is None or ("model" in values and values["model"] != rules.model):
        try:
            rules = rules_for(values.get("model", ImageRequest.model))
        except RequestValidationError as exc:
            rules = ModelRules.unknown(str(values.get("model")))
            if "model" in values:
                errors["model"] = str(exc)
    checks = _checks(rules)
    for name, value in values.items():
        if name not in checks:
            raise RequestValidationError(name, "is not a request field", show_value=False)
        if name in errors:
            continue
        try:
            checks[name](value)
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


def _check_text(name: str, value: Any, limit: int | None, *, required: bool) -> str | None:
    if value is None and not required:
        return None
    if not isinstance(value, str):
        raise RequestValidationError(name, "must be a string", value)
    _check_encodable(name, value)
    if not value.strip():
        if required:
            raise RequestValidationError(name, "must not be empty or only whitespace", value)
        return None
    if limit is not None and len(value) > limit:
        raise RequestValidationError(
            name, f"must be at most {limit} characters, this one has {len(value)}", value
        )
    return value


def _check_choice(name: str, value: Any, allowed: tuple[str, ...]) -> str:
    if not isinstance(value, str) or not value.strip() or (allowed and value not in allowed):
        rule = f"must be one of {', '.join(allowed)}" if allowed else "must be a non-empty string"
        raise RequestValidationError(name, rule, value)
    return value


def _check_n(value: Any, rules: ModelRules) -> int:
    # bool is an int subclass, but n=True is always a mistake
    if isinstance(value, bool) or not isinstance(value, int):
        raise RequestValidationError("n", f"must be an integer {rules.limits_words()}", value)
    if value < rules.min_images or (rules.max_images is not None and value > rules.max_images):
        raise RequestValidationError("n", f"must be {rules.limits_words()}", value)
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


def _checks(rules: ModelRules) -> dict[str, Any]:
    """Each field's check under `rules`, in the order a request is checked."""
    return {
        "prompt": lambda v: _check_text("prompt", v, rules.max_prompt_chars, required=True),
        "model": lambda v: _check_choice("model", v, (rules.model,)),
        "size": lambda v: _check_choice("size", v, rules.sizes),
        "resolution": lambda v: _check_choice("resolution", v, rules.resolutions),
        "n": lambda v: _check_n(v, rules),
        "negative_prompt": lambda v: _check_text(
            "negative_prompt", v, rules.max_negative_prompt_chars, required=False
        ),
        "image_urls": _check_urls,
    }


# -- the service's word on its models (docs/api-contract.md sections 5.2 to 5.4) ----------------------


def parse_model_list(body: Any) -> tuple[str, ...]:
    """The model ids of a `GET /v1/models` answer (`{"data": [{"id": ...}, ...]}`), in its order."""
    data = body.get("data") if isinstance(body, dict) else None
    if not isinstance(data, list):
        raise MalformedResponseError(f"the model list has no 'data' list: {shorten(body)}")
    ids = (entry.get("id") if isinstance(entry, dict) else entry for entry in data)
    return tuple(dict.fromkeys(i for i in ids if isinstance(i, str) and i.strip()))


def family(ids: tuple[str, ...]) -> tuple[str, ...]:
    """The Qwen-Image models among `ids` (the ones a panel offers)."""
    return tuple(i for i in ids if i.lower().startswith(FAMILY))


def parse_model_schema(body: Any, model: str, pixels: Mapping[tuple[str, str], tuple[int, int]] | None = None,
                       ) -> ModelRules:
    """A model's rules from a `GET /v1/model-schema` answer (`{model, operation, input_schema}`)."""
    if not isinstance(body, dict) or not isinstance(body.get("input_schema"), dict):
        raise MalformedResponseError(f"the model schema has no 'input_schema' object: {shorten(body)}")
    if body.get("model", model) != model:
        raise MalformedResponseError(f"asked for the schema of {model} but the answer is about "
                                     f"{shorten(body.get('model'))}")
    if body.get("operation", "image_generation") != "image_generation":
        raise MalformedResponseError(f"{model}'s schema is for {shorten(body.get('operation'))}, "
                                     "not image_generation")
    return rules_from_schema(model, body["input_schema"], pixels=pixels)


def rules_from_schema(model: str, input_schema: Any,
                      pixels: Mapping[tuple[str, str], tuple[int, int]] | None = None) -> ModelRules:
    """A model's rules read from the JSON schema of its input: `enum` for sizes and tiers (and
    `default`), `maxLength` for the prompts, `minimum`/`maximum` for `n`. What the schema does
    not say is left to the service (an empty choice, a None limit). Pixel sizes come from
    `pixels` (the model's docs), else from the documented table for the documented pair, else
    they are unknown; `model` in the input is ignored (it goes at the top level)."""
    properties = input_schema.get("properties") if isinstance(input_schema, dict) else None
    if not isinstance(properties, dict):
        raise MalformedResponseError(f"{model}'s input schema has no 'properties': {shorten(input_schema)}")

    def prop(name: str) -> dict[str, Any]:
        value = properties.get(name)
        return value if isinstance(value, dict) else {}

    sizes, resolutions = _enum(prop("size")), _enum(prop("resolution"))
    n = prop("n")
    min_images = max(_whole(n.get("minimum")) or 1, 1)
    max_images = _whole(n.get("maximum"))
    table = dict(pixels or {})
    if model in KNOWN_RULES:  # the documented table, where the service did not say otherwise
        for pair, size in OUTPUT_SIZES.items():
            table.setdefault(pair, size)
    return ModelRules(
        model, sizes=sizes, resolutions=resolutions,
        output_sizes={pair: size for pair, size in table.items()
                      if (not sizes or pair[0] in sizes) and (not resolutions or pair[1] in resolutions)},
        max_prompt_chars=_whole(prop("prompt").get("maxLength")),
        max_negative_prompt_chars=_whole(prop("negative_prompt").get("maxLength")),
        min_images=min_images,
        max_images=max_images if max_images is None or max_images >= min_images else None,
        default_size=_default(prop("size"), sizes, "1:1"),
        default_resolution=_default(prop("resolution"), resolutions, "1K"),
        source="service",
    )


def pixels_from_markdown(markdown: Any, sizes: tuple[str, ...], resolutions: tuple[str, ...],
                         ) -> dict[tuple[str, str], tuple[int, int]]:
    """The pixel table of a model's documentation page (`GET /v1/model-docs`: Markdown), read
    from its table rows: either one row per size with a column per tier (`| 16:9 | 1280x720 |
    2048x1152 |` under a header naming the tiers) or one row per pair (`| 16:9 | 2K | 2048x1152 |`).
    Only sizes and tiers the model offers are read; the page is data, never instructions."""
    table: dict[tuple[str, str], tuple[int, int]] = {}
    if not isinstance(markdown, str):
        return table
    columns: dict[int, str] = {}
    for line in markdown.splitlines():
        if line.count("|") < 2:
            continue
        cells = [cell.strip().strip("`*").strip() for cell in line.strip().strip("|").split("|")]
        size = next((cell for cell in cells if cell in sizes), None)
        found = [(i, _PIXELS.fullmatch(cell)) for i, cell in enumerate(cells)]
        measured = [(i, (int(m.group(1)), int(m.group(2)))) for i, m in found if m]
        if size is None or not measured:
            named = {i: tier for i, cell in enumerate(cells) for tier in resolutions
                     if re.search(rf"(?<![0-9A-Za-z]){re.escape(tier)}(?![0-9A-Za-z])", cell)}
            if named:
                columns = named  # a header row: which column holds which tier
            continue
        tier = next((cell for cell in cells if cell in resolutions), None)
        if tier is not None and len(measured) == 1:
            table.setdefault((size, tier), measured[0][1])
        else:
            for i, pixels in measured:
                if i in columns:
                    table.setdefault((size, columns[i]), pixels)
    return table


def _enum(schema: dict[str, Any]) -> tuple[str, ...]:
    values = schema.get("enum")
    if not isinstance(values, list):
        return ()
    return tuple(dict.fromkeys(v for v in values if isinstance(v, str) and v.strip()))


def _whole(value: Any) -> int | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
        return None
    return int(value) if value == int(value) else None


def _default(schema: dict[str, Any], allowed: tuple[str, ...], documented: str) -> str:
    """The schema's default when it is one of `allowed`, else the first allowed value, else
    the documented pair's default (a model that allows anything)."""
    default = schema.get("default")
    if isinstance(default, str) and default.strip() and (not allowed or default in allowed):
        return default
    return allowed[0] if allowed else documented
