"""A sweep's plan: every combination of the fields given as lists, validated, counted and
priced before anything is sent. Pure; running it is the engine's `Sweep`.

A prompt can be a template with slots: `a {animal} in {place}` with `animal=["fox", "owl"]`
and `place=["snow", "rain"]` (or written inline, `a {animal: fox|owl} in {place: snow|rain}`,
as the panel's Compare mode takes it) makes one axis per slot, labelled by the slot's name.
A prompt without slot values is sent as written, braces and all."""

from __future__ import annotations

import itertools
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .account import describe_price
from .errors import RequestValidationError
from .request import ImageRequest, ModelRules, rules_for

__all__ = ["SweepPlan"]

AXIS_FIELDS = ("prompt", "model", "size", "resolution", "negative_prompt", "n")
"""Fields that become an axis when given as a list (image_urls is a list by nature)."""
DEFAULT_MAX_IMAGES = 24
_SLOT = re.compile(r"\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*(?::([^{}]*))?\}")


def prompt_slots(prompt: str) -> tuple[str, dict[str, list[str]]]:
    """('a {animal} in {place}', {'animal': ['fox', 'owl']}) from 'a {animal: fox|owl} in
    {place}': the template with its slots named, and the values written inline."""
    values: dict[str, list[str]] = {}

    def name(match: re.Match) -> str:
        if match.group(2) is not None:
            values[match.group(1)] = [value.strip() for value in match.group(2).split("|")]
        return "{" + match.group(1) + "}"

    return _SLOT.sub(name, prompt), values


def fill(template: str, values: dict[str, str]) -> str:
    """The template with each `{slot}` replaced by its value (other braces left alone)."""
    return _SLOT.sub(lambda match: values.get(match.group(1), match.group(0)), template)


@dataclass(frozen=True)
class SweepCell:
    """One combination of axis values and the request it makes."""

    labels: tuple[tuple[str, Any], ...]
    """(field, value) for each axis, in axis order."""
    request: ImageRequest


@dataclass(frozen=True)
class SweepPlan:
    """What a sweep will send: its axes and one cell per combination, all validated."""

    axes: list[tuple[str, list[Any]]]
    """(field, values) for each field given as a list, in field order."""
    cells: list[SweepCell]
    """Every combination, the last axis varying fastest."""

    @classmethod
    def of(cls, fields: dict[str, Any], *, max_images: int = DEFAULT_MAX_IMAGES,
           catalog: Mapping[str, ModelRules] | None = None, slots: dict[str, Any] | None = None) -> SweepPlan:
        """Plan a sweep of `fields`; RequestValidationError before anything is sent. Each cell
        is checked against its model's rules in `catalog` (a client's, by model id), by
        default the documented pair's. `slots`: values for the `{name}` slots of the prompt
        (see the module docstring); slots written inline in the prompt count too."""
        fields, slots = _expand_templates(fields, dict(slots or {}))
        axes = [(name, list(value)) for name, value in fields.items()
                if name in AXIS_FIELDS and isinstance(value, (list, tuple))]
        axes += [(name, values) for name, values in slots.items()]
        for name, values in axes:
            if not values:
                raise RequestValidationError(name, "an axis needs at least one value", values)
            if len(set(map(repr, values))) != len(values):
                raise RequestValidationError(name, "an axis must not repeat a value", values)
        fixed = {name: value for name, value in fields.items() if name not in dict(axes)}
        names = [name for name, _ in axes]
        cells = []
        for combination in itertools.product(*(values for _, values in axes)):
            labels = tuple(zip(names, combination))
            cell = {**fixed, **{name: value for name, value in labels if name not in slots}}
            if slots:
                cell["prompt"] = fill(cell["prompt"], {name: value for name, value in labels if name in slots})
            try:
                request = ImageRequest(**cell, rules=rules_for(cell.get("model", ImageRequest.model), catalog))
            except TypeError as exc:  # an unknown keyword
                raise RequestValidationError("fields", str(exc), show_value=False) from None
            cells.append(SweepCell(labels, request))
        _refuse_repeats([(name, values) for name, values in axes if name not in slots], cells)
        plan = cls(axes, cells)
        if plan.images > max_images:
            raise RequestValidationError(
                "max_images",
                f"this sweep makes {len(cells)} tasks and {plan.images} images, more than "
                f"max_images={max_images}; pass max_images={plan.images} to go ahead",
                show_value=False,
            )
        return plan

    @property
    def images(self) -> int:
        """How many images the plan asks for (the server may return fewer)."""
        return sum(cell.request.n for cell in self.cells)

    def describe(self, price_per_image: float | None = None, source: str = "user") -> str:
        """'12 tasks, 24 images, about $0.50 at $0.021 per image (your price)': the price
        says where it came from (see _account), or that it is unknown."""
        tasks, images = len(self.cells), self.images
        text = f"{tasks} task{'s' * (tasks != 1)}, {images} image{'s' * (images != 1)}"
        if price_per_image is not None:
            text += (f", about ${images * price_per_image:.2f} {describe_price(price_per_image, source)};"
                     " billed per image generated, failures are free")
        elif source == "unknown":
            text += ", price unknown"
        return text


def _expand_templates(fields: dict[str, Any], slots: dict[str, Any]) -> tuple[dict[str, Any], dict[str, list[str]]]:
    """The fields with inline slot values taken out of the prompt(s), and every slot's values,
    checked: each slot of the prompt has values, each slot given is in the prompt."""
    prompts = fields.get("prompt")
    if not isinstance(prompts, (str, list, tuple)) or not all(isinstance(p, str) for p in (
            [prompts] if isinstance(prompts, str) else prompts)):
        return fields, {}
    templates = []
    for prompt in [prompts] if isinstance(prompts, str) else prompts:
        template, inline = prompt_slots(prompt)
        for name, values in inline.items():
            if name in slots and list(slots[name]) != values:
                raise RequestValidationError(name, "is given twice, in the prompt and as an argument",
                                             show_value=False)
            slots.setdefault(name, values)
        templates.append(template)
    if not slots:
        return fields, {}
    for name, values in list(slots.items()):
        if isinstance(values, str):
            values = [values]
        if not isinstance(values, (list, tuple)) or not values or not all(isinstance(v, str) for v in values):
            raise RequestValidationError(name, "a slot's values must be a non-empty list of text", values)
        if len(set(values)) != len(values):
            raise RequestValidationError(name, "an axis must not repeat a value", values)
        slots[name] = list(values)
    used = {match.group(1) for template in templates for match in _SLOT.finditer(template)}
    for name in slots:
        if name not in used:
            raise RequestValidationError(name, f"is not a slot of the prompt (write {{{name}}} where it goes)",
                                         show_value=False)
    for name in sorted(used - set(slots)):
        raise RequestValidationError("prompt", f"the slot {{{name}}} has no values: pass {name}=[...] or "
                                     f"write {{{name}: a|b}}", show_value=False)
    prompt = templates[0] if isinstance(prompts, str) else templates
    return {**fields, "prompt": prompt}, slots


def _refuse_repeats(axes: list[tuple[str, list[Any]]], cells: list[SweepCell]) -> None:
    """Values that differ only before validation normalises them (None and "" as negative
    prompts) would make identical requests, each billed: refuse them as repeats."""
    for position, (name, values) in enumerate(axes):
        normalised = {}
        for cell in cells:
            normalised.setdefault(repr(cell.labels[position][1]), getattr(cell.request, name))
        if len(set(map(repr, normalised.values()))) != len(values):
            raise RequestValidationError(
                name, "an axis must not repeat a value (some become the same once normalised)",
                values)
