"""Form: a control for every request field, and what is wrong with it, said next to it.

A problem is shown only once its field was touched (a red "the prompt is empty" must not
greet someone who has not typed yet); until then Generate stays disabled with a quiet hint
beside it. Messages speak to the person at the panel: no parameter names, no `(got '')`.

Compare mode picks several values from visible checkboxes (a selected 9:16 cannot hide in a
scrolled list), takes prompt templates with inline slots (`a {animal: fox|owl} in snow`: one
axis per slot), and the Generate button says what it will run ("Compare: 6 tasks").

The models, their sizes and tiers, the image slider's range and the prompt counters follow
each model's rules (`catalog`): the documented pair's until the panel is shown, then the
service's (`load_models`, in the background), so a model APIMart adds appears by itself.

Every control has a visible label (a placeholder is only an example), which is also its
accessible name; recent and starred prompts are one click away in a menu beside the prompt.
What the form held can be taken (`snapshot`) and put back (`restore`): loading a result into
the form can be undone.
"""

from __future__ import annotations

import concurrent.futures
import html
import logging
from collections.abc import Mapping
from typing import Any

import ipywidgets as widgets
from traitlets import Tuple

from ..engine.sync import QwenClient
from ..model.errors import QwenError, RequestValidationError
from ..model.plan import SweepPlan, prompt_slots
from ..model.request import (
    KNOWN_RULES,
    MAX_IMAGES,
    RESOLUTIONS,
    SIZES,
    ImageRequest,
    ModelRules,
    field_errors,
    rules_for,
)
from ._format import friendly_error, output_size_line
from ._theme import ERROR_COLOR, MUTED_COLOR, layout, style
from .account import Account
from .references import References, lines

__all__ = ["Form", "CheckboxGroup"]

FIELDS = ("prompt", "negative_prompt", "model", "size", "resolution", "n", "image_urls")
_log = logging.getLogger("qwen_widgets")


class CheckboxGroup(widgets.HBox):
    """Several choices as visible checkboxes; `value` is the tuple of ticked options."""

    value = Tuple(help="The ticked options, in the order offered")

    def __init__(self, options: tuple[str, ...], description: str, value: tuple[str, ...] = ()):
        self._syncing = False
        self.title = widgets.HTML(f"<b>{html.escape(description)}</b>", layout=layout(width="95px"),
                                  style=style("html"))
        super().__init__(layout=layout(flex_flow="row wrap", align_items="center"))
        self.set_options(options, value)
        self.observe(lambda _: self._to_boxes(), "value")

    def set_options(self, options: tuple[str, ...], value: tuple[str, ...] | None = None) -> None:
        """Offer `options` (a box each), ticking `value`, by default the ticked ones still offered."""
        ticked = tuple(self.value if value is None else value)
        self.options = tuple(options)
        self.boxes = [widgets.Checkbox(description=option, indent=False, value=option in ticked,
                                       layout=layout(width="auto", margin="0 10px 0 0"))
                      for option in self.options]
        for box in self.boxes:
            box.observe(lambda _: self._from_boxes(), "value")
        self.children = [self.title, *self.boxes]
        self.value = tuple(option for option in ticked if option in self.options)

    def _from_boxes(self) -> None:
        if not self._syncing:
            self.value = tuple(o for o, box in zip(self.options, self.boxes) if box.value)

    def _to_boxes(self) -> None:
        self._syncing = True  # ticking the boxes one by one must not rewrite `value` midway
        try:
            for option, box in zip(self.options, self.boxes):
                box.value = option in self.value
        finally:
            self._syncing = False


class Form:
    """The controls of a Panel, from the prompt to Generate, and the rules that keep them
    honest. Its reference images are `references`; the daily limits and prices come from
    `account`; `max_images` caps one comparison. The panel lays the controls out."""

    def __init__(self, references: References, account: Account, *, max_images: int, shortcut: bool):
        self.references = references
        self.account = account
        self.max_images = max_images
        self._shortcut = shortcut
        self.prompt = widgets.Textarea(placeholder="Describe the image…", rows=3, description="Prompt",
                                       layout={"width": "auto"}, tooltip="The prompt: what to draw",
                                       _dom_classes=("qw-prompt",))  # where Ctrl+Enter generates
        self.prompt_count, self.negative_count = widgets.Label(), widgets.Label()
        self.negative_prompt = widgets.Textarea(placeholder="e.g. blurry, text (optional)", rows=1,
                                                description="Avoid", layout={"width": "auto"},
                                                tooltip="The negative prompt: what to avoid (optional)")
        self.recent = widgets.Dropdown(options=[("Recent and starred prompts…", "")], value="",
                                       layout={"width": "min(260px, 100%)"},
                                       tooltip="Recent and starred prompts: pick one to put it in the prompt")
        self.recent.observe(lambda change: self._pick_recent(change["new"]), "value")
        self.catalog: dict[str, ModelRules] = dict(KNOWN_RULES)
        """The rules of each model offered, by id: the documented pair's until the service's arrive."""
        self.models_future: concurrent.futures.Future | None = None
        """The service's models being asked for (or the last time they were): tests wait on it."""
        self.model = widgets.Dropdown(options=tuple(self.catalog), description="Model",
                                      layout={"width": "min(260px, 100%)"})
        self.size = widgets.Dropdown(options=SIZES, description="Size", layout={"width": "min(160px, 100%)"})
        self.resolution = widgets.Dropdown(options=RESOLUTIONS, description="Resolution",
                                           layout={"width": "min(170px, 100%)"})
        self.n = widgets.IntSlider(value=1, min=1, max=MAX_IMAGES, description="Images",
                                   layout={"width": "min(300px, 100%)"}, tooltip="How many images")
        self.model.observe(lambda _: self._follow_model(), "value")  # before the checks below see it
        error_style = style("html", text_color=ERROR_COLOR)
        self.errors = {name: widgets.HTML(style=error_style, layout=layout(width="auto"))
                       for name in (*FIELDS, "generate")}
        self._touched: set[str] = set()
        for name in FIELDS:
            control = references.image_urls if name == "image_urls" else getattr(self, name)
            control.observe(lambda _, name=name: self._touch(name), "value")
        self.single_row = widgets.HBox([self.model, self.size, self.resolution, self.n],
                                       layout={"flex_flow": "row wrap"})
        self._build_compare_controls()
        self.output_size = widgets.Label(style={"text_color": MUTED_COLOR})
        self.cost_line = widgets.HTML(style=style("html", text_color=MUTED_COLOR))  # `$` as typed
        self.hint = widgets.HTML(style=style("html", text_color=MUTED_COLOR))
        self.generate_button = widgets.Button(  # as wide as what it says ("Compare: 12 tasks")
            description="Generate", button_style="primary", icon="play",
            layout=widgets.Layout(width="auto", min_width="148px", flex="0 0 auto"))

    def _build_compare_controls(self) -> None:
        self.compare = widgets.ToggleButton(
            description="Compare mode", icon="th", layout={"width": "auto"},
            tooltip="Vary one or two fields (one prompt per line, several models, sizes or "
                    "resolutions) and compare the results in a grid")
        models = tuple(self.catalog)
        self.models = CheckboxGroup(models, "Models", models[:1])
        self.sizes = CheckboxGroup(SIZES, "Sizes", SIZES[:1])
        self.resolutions = CheckboxGroup(RESOLUTIONS, "Resolutions", RESOLUTIONS[:1])
        self.models.observe(lambda _: self._follow_model(), "value")
        for control in (self.models, self.sizes, self.resolutions):
            control.observe(lambda _: self.refresh(), "value")
        self.compare.observe(lambda _: self._switch_mode(), "value")
        self.compare_row = widgets.VBox([self.models, self.sizes, self.resolutions],
                                        layout={"display": "none"})

    # -- the request ------------------------------------------------------------------------

    def _values(self) -> dict[str, Any]:
        return {"prompt": self.prompt.value, "model": self.model.value, "size": self.size.value,
                "resolution": self.resolution.value, "n": self.n.value,
                "negative_prompt": self.negative_prompt.value or None,
                "image_urls": self.references.urls()}

    @property
    def request(self) -> ImageRequest:
        """The form as a request; RequestValidationError names the first invalid field. Your
        own images are in it once uploaded (Generate waits for the others)."""
        values = self._values()
        return ImageRequest(**values, rules=rules_for(values["model"], self.catalog))

    @request.setter
    def request(self, request: ImageRequest) -> None:
        if request.model not in self.catalog:  # e.g. a card's request of a model not offered now
            self.use_catalog({**self.catalog, request.model: request.rules})
        self.model.value = request.model  # its sizes and tiers first, then the values
        self.prompt.value = request.prompt
        self.model.value, self.size.value = request.model, request.size
        self.resolution.value, self.n.value = request.resolution, request.n
        self.negative_prompt.value = request.negative_prompt or ""
        shown = {photo.url for photo in self.references.photos}  # shown as images already
        self.references.image_urls.value = "\n".join(url for url in request.image_urls if url not in shown)
        self.refresh()

    def sweep_fields(self) -> dict[str, Any]:
        """The form in Compare mode: each line of the prompt, and every ticked model, size
        and resolution; a field with several values is an axis of the sweep."""

        def axis(values: list[Any]) -> Any:
            return values[0] if len(values) == 1 else list(values)

        return {"prompt": axis(lines(self.prompt.value) or [""]),
                "model": axis(list(self.models.value) or [""]),
                "size": axis(list(self.sizes.value) or [""]),
                "resolution": axis(list(self.resolutions.value) or [""]),
                "n": self.n.value, "negative_prompt": self.negative_prompt.value or None,
                "image_urls": self.references.urls()}

    def plan(self) -> SweepPlan:
        """The form in Compare mode as a sweep plan: at most two things vary (a field with
        several values, or a `{slot: a|b}` of the prompt)."""
        fields = self.sweep_fields()
        varied = [name for name, value in fields.items() if name != "image_urls" and isinstance(value, list)]
        prompts = fields["prompt"] if isinstance(fields["prompt"], list) else [fields["prompt"]]
        varied += list(dict.fromkeys(name for prompt in prompts for name in prompt_slots(prompt)[1]))
        if len(varied) > 2:
            raise RequestValidationError("generate", "vary at most two fields at once; now "
                                         f"{', '.join(varied)} vary", show_value=False)
        return SweepPlan.of(fields, max_images=self.max_images, catalog=self.catalog)

    # -- the models on offer -------------------------------------------------------------------

    def rules(self) -> ModelRules:
        """The rules of the model chosen (in Compare mode, of the first one ticked)."""
        chosen = (self.models.value or (self.model.value,)) if self.compare.value else (self.model.value,)
        return self.catalog.get(chosen[0]) or KNOWN_RULES["qwen-image-2.0"]

    def _in_play(self) -> list[ModelRules]:
        """The rules of every model the next run uses."""
        chosen = self.models.value if self.compare.value else (self.model.value,)
        return [self.catalog[model] for model in chosen if model in self.catalog] or [self.rules()]

    def load_models(self, client: QwenClient) -> concurrent.futures.Future:
        """Ask `client` for the models the service offers and their rules, in the background
        (the kernel is not held up), and offer them once they are here."""
        self.models_future = client.background(self._ask_models(client))
        return self.models_future

    async def _ask_models(self, client: QwenClient) -> None:
        catalog = {}
        for model in await client.aio.models():
            try:
                catalog[model] = await client.aio.model_rules(model)
            except QwenError as error:  # listed, yet refused: not offered here
                _log.info("the panel leaves out %s: %s", model, error)
        if catalog and client is self.account.client:  # a key entered meanwhile asks again itself
            self.use_catalog(catalog)

    def use_catalog(self, catalog: Mapping[str, ModelRules]) -> None:
        """Offer these models, with their sizes, tiers and limits; choices still offered stay."""
        self.catalog = dict(catalog)
        models = tuple(self.catalog)
        chosen = self.model.value if self.model.value in self.catalog else models[0]
        self.model.options = models
        self.model.value = chosen
        self.models.set_options(models, tuple(m for m in self.models.value if m in models) or (chosen,))
        self.sizes.set_options(_union(rules.sizes or SIZES for rules in self.catalog.values()))
        self.resolutions.set_options(_union(rules.resolutions or RESOLUTIONS for rules in self.catalog.values()))
        self._follow_model()

    def _follow_model(self) -> None:
        """The sizes, tiers and image range of the model chosen (the smallest range of those ticked)."""
        if not hasattr(self, "compare"):
            return  # still being built
        rules = self.catalog.get(self.model.value)
        if rules is not None:
            for control, offered, default in ((self.size, rules.sizes or SIZES, rules.default_size),
                                              (self.resolution, rules.resolutions or RESOLUTIONS,
                                               rules.default_resolution)):
                keep = control.value if control.value in offered else default
                if tuple(control.options) != tuple(offered):
                    control.options = offered
                control.value = keep if keep in offered else offered[0]
        highest = [rules.max_images for rules in self._in_play() if rules.max_images is not None]
        self.n.max = min(highest) if highest else MAX_IMAGES
        self.refresh()

    # -- what the form held, and recent prompts ---------------------------------------------

    def snapshot(self) -> dict[str, Any]:
        """Every control's value as it is (valid or not), for `restore`."""
        names = ("prompt", "negative_prompt", "model", "size", "resolution", "n", "compare", "models", "sizes",
                 "resolutions")
        return {**{name: getattr(self, name).value for name in names},
                "image_urls": self.references.image_urls.value}

    def restore(self, snapshot: dict[str, Any]) -> None:
        """Put back what `snapshot` took."""
        self.compare.value = snapshot["compare"]
        for name, value in snapshot.items():
            control = self.references.image_urls if name == "image_urls" else getattr(self, name)
            control.value = value
        self.refresh()

    def offer_prompts(self, prompts: list[tuple[str, bool]]) -> None:
        """The menu beside the prompt: starred prompts (marked ★), then recent ones."""
        options = [("Recent and starred prompts…", "")]
        for prompt, starred in prompts:
            shown = " ".join(prompt.split())
            shown = shown if len(shown) <= 70 else shown[:69] + "…"
            options.append((("★ " if starred else "") + shown, prompt))
        self.recent.options = list(dict.fromkeys(options))
        self.recent.value = ""

    def _pick_recent(self, prompt: str) -> None:
        if prompt:
            self.prompt.value = prompt
            self.recent.value = ""

    # -- keeping the form honest -------------------------------------------------------------

    def touch_all(self) -> None:
        """Show every problem, touched or not (Generate was pressed)."""
        self._touched.update(("prompt", "negative_prompt", "image_urls"))

    def _touch(self, name: str) -> None:
        self._touched.add(name)
        if name == "image_urls":
            self.references.refresh_previews()
        self.refresh()

    def refresh(self) -> None:
        """Check every field again: problems next to their fields, the size and cost beside
        Generate, and Generate enabled only when the request can go."""
        in_play = self._in_play()
        _count(self.prompt_count, max(lines(self.prompt.value) or [""], key=len)
               if self.compare.value else self.prompt.value, _lowest(r.max_prompt_chars for r in in_play))
        _count(self.negative_count, self.negative_prompt.value,
               _lowest(r.max_negative_prompt_chars for r in in_play))
        if self.compare.value:
            problems, summary, images = self._compare_problems()
        else:
            values = self._values()
            rules = self.catalog.get(values["model"])
            problems = {name: friendly_error(name, message)
                        for name, message in field_errors(rules, **values).items()}
            valid = not {"model", "size", "resolution", "n"} & problems.keys()
            summary = output_size_line(values["size"], values["resolution"], values["n"], rules) if valid else ""
            images = {values["model"]: values["n"]} if valid else {}
        if not problems and images:  # a daily limit, said next to Generate
            limit = self.account.limit_problem(sum(images.values()))
            if limit:
                problems["generate"] = limit
        for name, label in self.errors.items():
            shown = problems.get(name, "") if name in self._touched or name == "generate" else ""
            if name == "image_urls" and "image_urls" in self._touched and self.references.line_problems:
                shown = "; ".join(self.references.line_problems)  # each line said by its number
            label.value = html.escape(shown)
        self.output_size.value = summary
        self.cost_line.value = html.escape(self.account.plan_cost(images), quote=False) if images else ""
        uploading = self._uploading_words()
        self.generate_button.disabled = bool(problems) or (self.compare.value and bool(uploading))
        first = next(iter(problems.values()), "")
        said = any(name in self._touched or name == "generate" for name in problems)
        self.hint.value = html.escape(first if problems and not said else uploading)
        shortcut = " (Ctrl+Enter in the prompt)" if self._shortcut else ""
        self.generate_button.tooltip = first or uploading or ("Run the comparison" if self.compare.value
                                                              else "Submit this request") + shortcut
        self._label_generate()

    def _uploading_words(self) -> str:
        """Said beside Generate while your images upload: a single generation waits for them;
        a comparison starts once they are there (its grid needs every URL up front)."""
        waiting = self.references.uploading()
        failed = sum(photo.future is not None and photo.future.done() for photo in waiting)
        if failed:
            again = "add it again or remove it" if self.compare.value else "Generate tries again"
            return f"{failed} of your images could not be uploaded (said under it): {again}."
        if not waiting:
            return ""
        what, them = ("1 image is", "it") if len(waiting) == 1 else (f"{len(waiting)} images are", "them")
        return (f"{what} still uploading: Compare is ready once {them} {'has' if them == 'it' else 'have'} "
                "uploaded." if self.compare.value else f"{what} still uploading: Generate waits for {them}.")

    def _compare_problems(self) -> tuple[dict[str, str], str, dict[str, int]]:
        try:
            plan = self.plan()
        except RequestValidationError as error:
            field = error.field.split("[")[0]
            if field in ("size", "resolution") and isinstance(error.value, str) and error.value:
                # ticked, so offered by some model: not by every model ticked
                return {field: f"Not every ticked model offers {error.value}: untick it, or the "
                               "models without it."}, "", {}
            return {field if field in self.errors else "generate": friendly_error(
                error.field, error.rule, limit=self.max_images)}, "", {}
        images: dict[str, int] = {}
        for cell in plan.cells:
            images[cell.request.model] = images.get(cell.request.model, 0) + cell.request.n
        return {}, f"Compare: {plan.describe()}", images

    def _label_generate(self) -> None:
        if not self.compare.value:
            self.generate_button.description = "Generate"
            return
        try:
            tasks = len(self.plan().cells)
        except RequestValidationError:
            self.generate_button.description = "Compare"
            return
        self.generate_button.description = f"Compare: {tasks} task{'s' * (tasks != 1)}"

    def _switch_mode(self) -> None:
        comparing = self.compare.value
        if comparing:  # start from the single choices
            self.models.value, self.sizes.value = (self.model.value,), (self.size.value,)
            self.resolutions.value = (self.resolution.value,)
        self.single_row.children = ([self.n] if comparing
                                    else [self.model, self.size, self.resolution, self.n])
        self.compare_row.layout.display = None if comparing else "none"
        self.prompt.placeholder = ("One prompt per line: each line is compared" if comparing
                                   else "Describe the image…")
        self.refresh()


def _union(choices: Any) -> tuple[str, ...]:
    return tuple(dict.fromkeys(choice for offered in choices for choice in offered))


def _lowest(limits: Any) -> int | None:
    known = [limit for limit in limits if limit is not None]
    return min(known) if known else None


def _count(label: widgets.Label, text: str, limit: int | None) -> None:
    """'12 / 800'; just '12' when the model's limit is not known (the service checks it)."""
    over = limit is not None and len(text) > limit
    label.value = f"{len(text)} / {limit}" if limit is not None else str(len(text))
    label.style.text_color = ERROR_COLOR if over else MUTED_COLOR
    label.style.font_weight = "bold" if over else None
