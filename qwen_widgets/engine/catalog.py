"""The models the service offers and their rules, asked once per client.

APIMart adds models without a release of this package (Qwen-Image 3.0 is already served
elsewhere), so the list comes from `GET /v1/models` and each model's rules from
`GET /v1/model-schema` (docs/api-contract.md sections 5.2 to 5.4), each asked once per client
and kept. Nothing is asked for the documented pair (qwen-image-2.0 and -pro) until someone
wants the list or their rules (the panel, `models()`, `model_rules()`): a request for them
costs no discovery round trip, and bad input for them is refused without a network call. A
model they do not cover is what makes a client ask.

When the service cannot say (no list, no readable schema), the documented pair is what is
offered, each failure logged and asked about again after a while; a model outside it is then
refused locally with the reason, since nobody knows its rules.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping
from typing import Any, TypeVar
from urllib.parse import quote

from ..model.errors import QwenError, RequestValidationError
from ..model.request import (
    KNOWN_RULES,
    MODELS,
    ImageRequest,
    ModelRules,
    family,
    parse_model_list,
    parse_model_schema,
    pixels_from_markdown,
    unknown_model,
)
from .budget import Priority
from .call import Caller
from .clock import Clock

__all__: list[str] = []

T = TypeVar("T")
_log = logging.getLogger("qwen_widgets")
ASK_AGAIN_AFTER = 300.0
"""Seconds before a list or schema that could not be read is asked for again."""


class ModelCatalog:
    """What one client knows of the service's models: its list, and the rules of each model
    asked about. Lives on the client's loop; its answers are shared by every request."""

    def __init__(self, caller: Caller, clock: Clock):
        self._caller = caller
        self._clock = clock
        self._offered: tuple[str, ...] | None = None
        self._unreachable: tuple[str, float] | None = None
        """Why the list could not be read, and when."""
        self._rules: dict[str, ModelRules] = {}
        self._failed: dict[str, float] = {}
        """When each model's schema could not be read."""

    async def offered(self) -> tuple[str, ...] | None:
        """Every model id the service lists (APIMart's list holds its other models too), or
        None when the list cannot be had now."""
        if self._offered is None and not self._recent(self._unreachable and self._unreachable[1]):
            try:
                self._offered = await self._caller.call(
                    "GET", "/v1/models", lambda body, headers: parse_model_list(body), priority=Priority.SUBMIT)
            except QwenError as error:
                _log.warning("the service's list of models could not be read (%s); offering %s",
                             error, ", ".join(MODELS))
                self._unreachable = (str(error), self._clock.monotonic())
        return self._offered

    async def models(self) -> tuple[str, ...]:
        """The Qwen-Image models the service offers, in its order; the documented pair when
        its list cannot be had."""
        offered = await self.offered()
        if offered is None:
            return MODELS
        return family(offered) or offered

    async def rules(self, model: str) -> ModelRules:
        """The rules of `model` as the service states them; the documented pair's (or, for a
        model it lists, only the checks any model needs) when its schema cannot be read;
        RequestValidationError when no rules can be had for it."""
        if model in self._rules:
            return self._rules[model]
        offered = await self.offered()
        if offered is None:
            if model in KNOWN_RULES:
                return KNOWN_RULES[model]
            why = self._unreachable[0] if self._unreachable else "no answer"
            raise unknown_model(model, MODELS, "the models this package knows; the service's list of models "
                                               f"could not be read: {why}")
        if model not in offered:
            raise unknown_model(model, family(offered) or offered, "the models the service offers")
        if not self._recent(self._failed.get(model)):
            try:
                self._rules[model] = rules = await self._ask(model)
                return rules
            except QwenError as error:
                _log.warning("the rules of %s could not be read (%s); checking it %s", model, error,
                             "as documented" if model in KNOWN_RULES else "only for what any model needs")
                self._failed[model] = self._clock.monotonic()
        return KNOWN_RULES.get(model) or ModelRules.unknown(model)

    def at_hand(self) -> dict[str, ModelRules]:
        """The rules known without asking: the service's where it was asked, the documented
        pair's otherwise (unless the service's list leaves them out)."""
        catalog = {model: rules for model, rules in KNOWN_RULES.items()
                   if self._offered is None or model in self._offered}
        catalog.update(self._rules)
        return catalog

    async def checked(self, models: Iterable[Any], build: Callable[[Mapping[str, ModelRules]], T]) -> T:
        """`build(catalog)` under the rules at hand; when a model in play (`models`) has none
        at hand, under the service's rules for it, asked for then. A refusal no model's rules
        could lift (an empty prompt, a bad URL) is raised before anything is asked, and so is
        one of the documented pair's rules: bad input for a known model is said without a
        network call (its service rules count once someone asked for them, as the panel does)."""
        try:
            return build(self.at_hand())
        except RequestValidationError:
            names = [model for model in dict.fromkeys(models)
                     if isinstance(model, str) and model.strip() and model not in KNOWN_RULES]
            if not names:
                raise
            try:
                build({**self.at_hand(), **{model: ModelRules.unknown(model) for model in names}})
            except RequestValidationError as wrong_anyway:
                raise wrong_anyway from None
        catalog = self.at_hand()
        for model in names:
            catalog[model] = await self.rules(model)
        return build(catalog)

    def recheck(self, request: ImageRequest) -> ImageRequest:
        """`request` checked again under what the service said about its model, if it said
        anything (no request is sent for it)."""
        if self._offered is not None and request.model not in self._offered:
            raise unknown_model(request.model, family(self._offered) or self._offered, "the models the service offers")
        rules = self._rules.get(request.model)
        return request if rules is None or rules == request.rules else request.replace(rules=rules)

    async def _ask(self, model: str) -> ModelRules:
        query = f"model={quote(model, safe='')}"
        schema = await self._caller.call("GET", f"/v1/model-schema?{query}&operation=image_generation",
                                         lambda body, headers: body, priority=Priority.SUBMIT)
        rules = parse_model_schema(schema, model)
        try:  # the pixel table is in the model's page, when anywhere
            docs = await self._caller.call("GET", f"/v1/model-docs?{query}", lambda body, headers: body,
                                           priority=Priority.SUBMIT)
        except QwenError as error:
            _log.info("no documentation page for %s (%s): its pixel sizes stay unknown", model, error)
            return rules
        markdown = docs.get("markdown") if isinstance(docs, dict) else None
        pixels = pixels_from_markdown(markdown, rules.sizes, rules.resolutions)
        return parse_model_schema(schema, model, pixels) if pixels else rules

    def _recent(self, when: float | None) -> bool:
        return when is not None and self._clock.monotonic() - when < ASK_AGAIN_AFTER
