"""Panel: the generator form bound to ImageRequest, with its gallery of cards."""

from __future__ import annotations

import concurrent.futures
import time
from pathlib import Path
from typing import Any

import ipywidgets as widgets

from .. import _api, _runner
from .._sync import QwenClient
from .._errors import QwenError, RequestValidationError
from .._task import Task, validate_task_id
from .._request import (
    MAX_NEGATIVE_PROMPT_CHARS,
    MAX_PROMPT_CHARS,
    MODELS,
    RESOLUTIONS,
    SIZES,
    ImageRequest,
    check_image_url,
    field_errors,
)
from .._sweep import DEFAULT_MAX_IMAGES, Sweep, SweepPlan
from ._format import error_message, output_size_line
from ._theme import ERROR_COLOR, load_thumbnail
from .banner import DemoBanner
from .card import Card
from .gallery import Gallery

__all__ = ["Panel"]

_PREVIEW_EDGE = 96
_DOUBLE_CLICK_SECONDS = 0.6
class Panel(widgets.VBox):
    """A form for every request field, a Generate button, and a gallery of results.

    `panel.request` reads the form as an ImageRequest; assigning one fills the form.
    Generate runs in the background: the kernel stays free while images are made.
    """

    def __init__(self, client: QwenClient | None = None, *, save_dir: str | Path = "qwen_images",
                 max_images: int = DEFAULT_MAX_IMAGES):
        self.client = client or _api.default_client()
        self.save_dir = Path(save_dir)
        self.max_images = max_images
        """The most images one Compare run may make; a larger sweep is refused."""
        self.results: list[Task] = []
        """Every task that finished (completed, failed or cancelled), oldest first."""
        self._preview_boxes: dict[str, widgets.VBox] = {}
        self._last_click = -1.0
        self._build_request_controls()
        self._build_compare_controls()
        self._build_actions()
        self._build_key_banner()
        super().__init__(self._layout())
        self._refresh_banner()
        self._refresh()
        self._offer_resume()

    def _build_request_controls(self) -> None:
        """A control for every request field, each with a label for its problems."""
        self.prompt = widgets.Textarea(placeholder="Describe the image…", rows=4,
                                       layout={"width": "100%"})
        self.prompt_count = widgets.Label()
        self.negative_prompt = widgets.Textarea(placeholder="What to avoid (optional)", rows=2,
                                                layout={"width": "100%"})
        self.negative_count = widgets.Label()
        self.model = widgets.Dropdown(options=MODELS, description="Model")
        self.size = widgets.Dropdown(options=SIZES, description="Size", layout={"width": "180px"})
        self.resolution = widgets.Dropdown(options=RESOLUTIONS, description="Resolution",
                                           layout={"width": "180px"})
        self.n = widgets.IntSlider(value=1, min=1, max=6, description="Images")
        self.image_urls = widgets.Textarea(
            placeholder="Reference image URLs for image-to-image, one per line (optional)",
            rows=2, continuous_update=False, layout={"width": "100%"},
        )
        self.previews = widgets.HBox(layout={"flex_flow": "row wrap"})
        self.errors = {name: widgets.Label(style={"text_color": ERROR_COLOR})
                       for name in ("prompt", "negative_prompt", "model", "size", "resolution", "n",
                                    "image_urls", "generate")}
        for control in (self.prompt, self.negative_prompt, self.model, self.size, self.resolution, self.n):
            control.observe(lambda _: self._refresh(), "value")
        self.image_urls.observe(lambda _: self._refresh_references(), "value")
        self.single_row = widgets.HBox([self.model, self.size, self.resolution],
                                       layout={"flex_flow": "row wrap"})

    def _build_compare_controls(self) -> None:
        """Compare mode: several values of one or two fields, run as a sweep."""
        self.compare = widgets.ToggleButton(
            description="Compare", icon="th",
            tooltip="Vary one or two fields (one prompt per line, several models, sizes or "
                    "resolutions) and compare the results in a grid")
        self.models = widgets.SelectMultiple(options=MODELS, value=MODELS[:1], rows=2,
                                             description="Models")
        self.sizes = widgets.SelectMultiple(options=SIZES, value=SIZES[:1], rows=4,
                                            description="Sizes", layout={"width": "180px"})
        self.resolutions = widgets.SelectMultiple(options=RESOLUTIONS, value=RESOLUTIONS[:1],
                                                  rows=2, description="Resolutions",
                                                  layout={"width": "180px"})
        for control in (self.models, self.sizes, self.resolutions):
            control.observe(lambda _: self._refresh(), "value")
        self.compare.observe(lambda _: self._switch_mode(), "value")
        self.compare_row = widgets.HBox([self.models, self.sizes, self.resolutions],
                                        layout={"flex_flow": "row wrap", "display": "none"})

    def _build_actions(self) -> None:
        """Generate, the size line, Resume, and the gallery of cards."""
        self.output_size = widgets.Label()
        self.generate_button = widgets.Button(description="Generate", button_style="primary",
                                              icon="play")
        self.generate_button.on_click(lambda _: self._on_generate_click())
        self.gallery = Gallery()
        self.resume_note = widgets.Label()
        self.resume_button = widgets.Button(description="Resume", icon="history",
                                            tooltip="Watch the unfinished tasks of earlier sessions")
        self.resume_button.on_click(lambda _: self.resume())
        self.resume_box = widgets.HBox([self.resume_note, self.resume_button],
                                       layout={"display": "none", "align_items": "center"})

    def _build_key_banner(self) -> None:
        self.banner_box = DemoBanner(on_client=self._use_client)
        self.banner, self.key_field = self.banner_box.message, self.banner_box.key_field

    def _layout(self) -> list[widgets.Widget]:
        def labelled(title: str, *rows: widgets.Widget) -> widgets.VBox:
            return widgets.VBox([widgets.HTML(f"<b>{title}</b>"), *rows])

        return [
            self.banner_box,
            labelled("Prompt", self.prompt, widgets.HBox([self.prompt_count, self.errors["prompt"]])),
            labelled("Negative prompt", self.negative_prompt,
                     widgets.HBox([self.negative_count, self.errors["negative_prompt"]])),
            self.single_row,
            self.compare_row,
            widgets.HBox([self.n, self.errors["n"], self.errors["model"], self.errors["size"],
                          self.errors["resolution"]]),
            labelled("Reference images", self.image_urls, self.errors["image_urls"], self.previews),
            widgets.HBox([self.generate_button, self.compare, self.output_size,
                          self.errors["generate"]], layout={"align_items": "center"}),
            self.resume_box,
            self.gallery,
        ]

    def __repr__(self) -> str:
        return f"Panel(cards={len(self.gallery.cards)}, results={len(self.results)})"

    # -- the request ------------------------------------------------------------------------

    def _values(self) -> dict[str, Any]:
        return {
            "prompt": self.prompt.value,
            "model": self.model.value,
            "size": self.size.value,
            "resolution": self.resolution.value,
            "n": self.n.value,
            "negative_prompt": self.negative_prompt.value or None,
            "image_urls": _lines(self.image_urls.value),
        }

    @property
    def request(self) -> ImageRequest:
        """The form as a request; RequestValidationError names the first invalid field."""
        return ImageRequest(**self._values())

    @request.setter
    def request(self, request: ImageRequest) -> None:
        with self.hold_trait_notifications():
            self.prompt.value = request.prompt
            self.model.value = request.model
            self.size.value = request.size
            self.resolution.value = request.resolution
            self.n.value = request.n
            self.negative_prompt.value = request.negative_prompt or ""
            self.image_urls.value = "\n".join(request.image_urls)
        self._refresh()

    # -- actions ------------------------------------------------------------------------------

    def generate(self) -> Card:
        """What Generate does: a new card that submits the form's request in the background."""
        request = self.request
        card = self._new_card(request)
        card.start_generation(request)
        return card

    def attach(self, task_id: str) -> Card:
        """Watch an existing task (e.g. one whose watching was stopped) in a new card."""
        validate_task_id(task_id)
        card = self._new_card(None)
        card.start_attach(task_id)
        return card

    def resume(self) -> list[Card]:
        """A card for every unfinished task of the journal (e.g. from before a kernel restart)."""
        self.resume_box.layout.display = "none"
        cards = []
        for task in self.client.unfinished():
            card = self._new_card(task.request)
            card.start_attach(task)
            cards.append(card)
        return cards

    def _offer_resume(self) -> None:
        waiting = len(self.client.unfinished())
        if waiting:
            self.resume_note.value = f"{waiting} unfinished task(s) from earlier sessions."
            self.resume_box.layout.display = None

    def add_reference(self, url: str) -> None:
        """Append an image URL to the reference list (the image-to-image loop)."""
        urls = _lines(self.image_urls.value)
        if url not in urls:
            self.image_urls.value = "\n".join([*urls, url])

    def frame(self):
        """The finished tasks as a DataFrame, one row per image (see qwen_widgets.to_frame)."""
        from .._frame import to_frame

        return to_frame(self.results)

    def _new_card(self, request: ImageRequest | None) -> Card:
        card = Card(self.client, request=request, save_dir=self.save_dir,
                    on_finished=self.results.append, on_use_reference=self.add_reference,
                    on_reuse=self._reuse)
        return self.gallery.add(card)

    def _reuse(self, request: ImageRequest) -> None:
        self.request = request

    def _on_generate_click(self) -> None:
        now = time.monotonic()
        if now - self._last_click < _DOUBLE_CLICK_SECONDS:
            return  # a double click is one intent; a second POST would be billed
        self._last_click = now
        try:
            self.run_sweep() if self.compare.value else self.generate()
        except QwenError as error:
            self.errors["generate"].value = error_message(error)

    # -- compare mode: a sweep over one or two fields ------------------------------------------

    def sweep_fields(self) -> dict[str, Any]:
        """The form in Compare mode: each line of the prompt, and every selected model, size
        and resolution; a field with several values is an axis of the sweep."""

        def axis(values: list[Any]) -> Any:
            return values[0] if len(values) == 1 else list(values)

        return {
            "prompt": axis(_lines(self.prompt.value) or [""]),
            "model": axis(list(self.models.value) or [""]),
            "size": axis(list(self.sizes.value) or [""]),
            "resolution": axis(list(self.resolutions.value) or [""]),
            "n": self.n.value,
            "negative_prompt": self.negative_prompt.value or None,
            "image_urls": _lines(self.image_urls.value),
        }

    def run_sweep(self) -> Sweep:
        """What Generate does in Compare mode: a sweep, shown as a grid in the gallery."""
        fields = self.sweep_fields()
        _check_axes(fields)
        sweep = Sweep(self.client, SweepPlan.of(fields, max_images=self.max_images))
        from .grid import SweepGrid

        self.gallery.add(SweepGrid(sweep))

        def collect(index: int) -> None:
            if sweep.results[index] is not None:
                self.results.append(sweep.results[index])

        sweep.on_change(collect)
        return sweep.start()

    def _switch_mode(self) -> None:
        comparing = self.compare.value
        if comparing:  # start from the single choices
            self.models.value, self.sizes.value = (self.model.value,), (self.size.value,)
            self.resolutions.value = (self.resolution.value,)
        self.single_row.layout.display = "none" if comparing else None
        self.compare_row.layout.display = None if comparing else "none"
        self.prompt.placeholder = ("One prompt per line: each line is compared" if comparing
                                   else "Describe the image…")
        self._refresh()

    # -- keeping the form honest -------------------------------------------------------------

    def _refresh(self) -> None:
        if self.compare.value:
            self._refresh_compare()
            return
        values = self._values()
        errors = field_errors(**values)
        for name, label in self.errors.items():
            if name != "generate":
                label.value = errors.get(name, "")
        self.errors["generate"].value = ""
        _count(self.prompt_count, self.prompt.value, MAX_PROMPT_CHARS)
        _count(self.negative_count, self.negative_prompt.value, MAX_NEGATIVE_PROMPT_CHARS)
        if {"size", "resolution", "n"} & errors.keys():
            self.output_size.value = ""
        else:
            self.output_size.value = output_size_line(values["size"], values["resolution"], values["n"])
        self.generate_button.disabled = bool(errors)
        self.generate_button.tooltip = next(iter(errors.values()), "Submit this request")

    def _refresh_compare(self) -> None:
        for label in self.errors.values():
            label.value = ""
        longest = max(_lines(self.prompt.value) or [""], key=len)
        _count(self.prompt_count, longest, MAX_PROMPT_CHARS)
        _count(self.negative_count, self.negative_prompt.value, MAX_NEGATIVE_PROMPT_CHARS)
        try:
            fields = self.sweep_fields()
            _check_axes(fields)
            plan = SweepPlan.of(fields, max_images=self.max_images)
        except RequestValidationError as error:
            field = error.field.split("[")[0]
            self.errors[field if field in self.errors else "generate"].value = str(error)
            self.output_size.value = ""
            self.generate_button.disabled = True
            self.generate_button.tooltip = str(error)
            return
        self.output_size.value = f"Compare: {plan.describe()}"
        self.generate_button.disabled = False
        self.generate_button.tooltip = "Run the comparison"

    def _refresh_references(self) -> None:
        boxes, problems = [], []
        for line_number, url in enumerate(_lines(self.image_urls.value), 1):
            try:
                check_image_url(line_number - 1, url)
            except RequestValidationError as error:
                problems.append(f"line {line_number}: {error.rule}")
                continue
            if url not in self._preview_boxes:
                self._preview_boxes[url] = self._start_preview(url)
            boxes.append(self._preview_boxes[url])
        self.previews.children = boxes
        self._refresh()
        if problems:
            self.errors["image_urls"].value = "; ".join(problems)

    def _start_preview(self, url: str) -> widgets.VBox:
        picture = widgets.Image(format="jpeg", layout={"max_width": f"{_PREVIEW_EDGE}px"})
        note = widgets.Label("loading…", layout={"max_width": "220px"})

        def report(future: concurrent.futures.Future) -> None:
            if not future.cancelled() and future.exception() is not None:
                note.value = f"cannot be previewed: {error_message(future.exception())}"

        _runner.submit(self._load_preview(url, picture, note)).add_done_callback(report)
        return widgets.VBox([picture, note], layout={"margin": "0 6px 0 0"})

    async def _load_preview(self, url: str, picture: widgets.Image, note: widgets.Label) -> None:
        if await load_thumbnail(self.client, url, picture, note, _PREVIEW_EDGE,
                                note_prefix="cannot be previewed: ") is not None:
            note.value = ""

    # -- the key --------------------------------------------------------------------------------

    def _use_client(self, client: QwenClient) -> None:
        """A key was entered: this panel, and qw.generate, use it from now on."""
        self.client = client
        _api.set_default_client(client)
        self._refresh_banner()

    def _refresh_banner(self) -> None:
        self.banner_box.show_for(self.client)


def _check_axes(fields: dict[str, Any]) -> None:
    varied = [name for name, value in fields.items() if name != "image_urls" and isinstance(value, list)]
    if len(varied) > 2:
        raise RequestValidationError(
            "generate", f"vary at most two fields at once; now {', '.join(varied)} vary",
            show_value=False)


def _lines(text: str) -> list[str]:
    return [line.strip() for line in text.splitlines() if line.strip()]


def _count(label: widgets.Label, text: str, limit: int) -> None:
    label.value = f"{len(text)} / {limit}"
    label.style.text_color = ERROR_COLOR if len(text) > limit else None
    label.style.font_weight = "bold" if len(text) > limit else None
