"""A sweep's plan: every combination of the fields given as lists, validated, counted and
priced before anything is sent. Pure; running it is the engine's `Sweep`."""

from __future__ import annotations

import itertools
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
           catalog: Mapping[str, ModelRules] | None = None) -> SweepPlan:
        """Plan a sweep of `fields`; RequestValidationError before anything is sent. Each cell
        is checked against its model's rules in `catalog` (a client's, by model id), by
        default the documented pair's."""
        axes = [(name, list(value)) for name, value in fields.items()
                if name in AXIS_FIELDS and isinstance(value, (list, tuple))]
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
            cell = {**fixed, **dict(labels)}
            try:
                request = ImageRequest(**cell, rules=rules_for(cell.get("model", ImageRequest.model), catalog))
            except TypeError as exc:  # an unknown keyword
                raise RequestValidationError("fields", str(exc), show_value=False) from None
            cells.append(SweepCell(labels, request))
        _refuse_repeats(axes, cells)
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
