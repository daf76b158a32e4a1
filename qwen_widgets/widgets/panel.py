"""Panel: the generator form bound to ImageRequest, with its gallery of cards.

The form and its rules are in `form.py`, reference images (URLs and your own) in
`references.py`, the balance, limits and prices in `account.py`; this module is what the
panel does: Generate (or Compare), Resume, the key, "Download all", and the copy of its
results that is saved with the notebook (`_static`).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import html
import time
import warnings
from pathlib import Path

import ipywidgets as widgets

from .. import _api, _runner
from .._config import DemoModeWarning
from .._errors import QwenError, RequestValidationError
from .._request import ImageRequest
from .._sweep import DEFAULT_MAX_IMAGES, Sweep
from .._sync import QwenClient
from .._task import Task, validate_task_id
from . import _static
from ._actions import download_html
from ._format import error_message, friendly_error
from ._keys import submit_shortcut
from ._theme import MUTED_COLOR, layout, show_error, style, text_html
from .account import Account
from .banner import DemoBanner
from .card import Card
from .form import Form, lines
from .gallery import Gallery
from .references import References

__all__ = ["Panel"]

_DOUBLE_CLICK_SECONDS = 0.6


def quiet_default_client() -> QwenClient:
    """The default client, without the demo announcement: the view says it in its own line."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DemoModeWarning)
        return _api.default_client()


class Panel(References, Form, widgets.VBox):
    """A form for every request field, a Generate button, and a gallery of results.

    `panel.request` reads the form as an ImageRequest; assigning one fills the form.
    `panel.add_image(path)` adds your own image as a reference (uploaded in the background).
    Generate runs in the background: the kernel stays free while images are made. Under it,
    the balance and today's usage against the spending limits (`panel.account`).
    """

    def __init__(self, client: QwenClient | None = None, *, save_dir: str | Path = "qwen_images",
                 max_images: int = DEFAULT_MAX_IMAGES):
        self.client = client or quiet_default_client()
        self.save_dir = Path(save_dir)
        self.max_images = max_images
        """The most images one Compare run may make; a larger sweep is refused."""
        self.results: list[Task] = []
        """Every task that finished (completed, failed or cancelled), oldest first."""
        self._last_click = -1.0
        self._mirror: _static.Mirror | None = None
        self.account = Account(self.client, on_change=self._refresh)
        """The balance, today's usage against the limits, and prices (asked for once shown)."""
        self._build_request_controls()
        self._build_reference_controls()
        self._build_compare_controls()
        self._build_actions()
        self.banner_box = DemoBanner(on_client=self._use_client)
        self.banner, self.key_field = self.banner_box.message, self.banner_box.key_field
        self.shortcut = submit_shortcut(self._submit_from_prompt)
        """Ctrl+Enter in the prompt presses Generate (None without the anywidget package)."""
        super().__init__(self._layout() + ([self.shortcut] if self.shortcut is not None else []))
        self.add_class("qw-panel")
        self.banner_box.show_for(self.client)
        self._refresh()
        self._offer_resume()

    def _build_actions(self) -> None:
        """Generate with its hint, Download all, Resume, and the gallery of cards."""
        self.output_size = widgets.Label(style={"text_color": MUTED_COLOR})
        self.cost_line = widgets.HTML(style=style("html", text_color=MUTED_COLOR))  # `$` as typed
        self.hint = widgets.HTML(style=style("html", text_color=MUTED_COLOR))
        self.generate_button = widgets.Button(  # as wide as what it says ("Compare: 12 tasks")
            description="Generate", button_style="primary", icon="play",
            layout=widgets.Layout(width="auto", min_width="148px", flex="0 0 auto"))
        self.generate_button.on_click(lambda _: self._on_generate_click())
        self.gallery = Gallery()
        self.download_button = widgets.Button(
            description="Download all", icon="download", layout={"width": "auto", "display": "none"},
            tooltip="One zip of this session's images at full resolution, with JSON sidecars and "
                    "results.csv, saved by your browser")
        self.download_button.on_click(lambda _: self.download_all())
        self.download_link = widgets.HTML()
        self.resume_note = widgets.Label()
        self.resume_button = widgets.Button(description="Resume", icon="history",
                                            tooltip="Watch the unfinished tasks of earlier sessions")
        self.resume_button.on_click(lambda _: self.resume())
        self.resume_box = widgets.HBox([self.resume_note, self.resume_button],
                                       layout={"display": "none", "align_items": "center"})

    def _layout(self) -> list[widgets.Widget]:
        def under(*items: widgets.Widget) -> widgets.HBox:
            return widgets.HBox(list(items), layout=layout(align_items="baseline", flex_flow="row wrap"))

        return [
            self.banner_box,
            self.prompt, under(self.prompt_count, self.errors["prompt"]),
            self.negative_prompt, under(self.negative_count, self.errors["negative_prompt"]),
            self.single_row, self.compare_row,
            under(self.errors["n"], self.errors["model"], self.errors["size"], self.errors["resolution"]),
            widgets.HBox([self.image_urls, self.add_image_button], layout=layout(align_items="flex-start")),
            under(self.errors["image_urls"], self.photo_note), self.previews,
            widgets.HBox([self.generate_button, self.compare, self.output_size, self.cost_line, self.hint,
                          self.errors["generate"]], layout={"align_items": "center", "flex_flow": "row wrap"}),
            self.account.line,
            widgets.HBox([self.download_button, self.download_link], layout={"align_items": "center"}),
            self.resume_box,
            self.gallery,
        ]

    def __repr__(self) -> str:
        return f"Panel(cards={len(self.gallery.cards)}, results={len(self.results)})"

    # -- display: the live panel, and the copy of its results saved with the notebook --------

    def _ipython_display_(self) -> None:
        if self._mirror is None:
            self._mirror = _static.Mirror(self._static_page)
        if not self.account.live:
            self.account.start()  # someone looks: the balance and prices are worth asking for
        self._mirror.display(self, "qwen_widgets panel: the live form needs a running kernel; "
                                   "the results saved with the notebook follow.")

    def _static_page(self, mirror_id: str) -> str:
        entries = []
        for child in reversed(self.gallery.items()):  # oldest first, as they were made
            if isinstance(child, Card):
                if child.task is not None and child.task.done:
                    entries.append(child.static_entry())
            elif hasattr(child, "static_entries"):
                entries.extend(child.static_entries())
        heading = (f"Results saved with the notebook: {len(entries)} generation(s). "
                   "The live panel above needs a running kernel (run its cell again).")
        return _static.page_html(mirror_id, heading, entries)

    def _changed(self) -> None:
        if self._mirror is not None:
            self._mirror.refresh()

    # -- actions ------------------------------------------------------------------------------

    def generate(self) -> Card:
        """What Generate does: a new card that submits the form's request in the background
        (once your images still uploading are there). SpendingLimitError, before any card,
        when a daily limit would be passed."""
        request = self.request
        self._check_limits(request.n)
        card = self._new_card(request)
        card.start_generation(request, prepare=self._references_for(request))
        card.future.add_done_callback(self._ended_unfinished)
        return card

    def _ended_unfinished(self, future: concurrent.futures.Future) -> None:
        """A card that ended without a finished task (stopped, refused, over a limit) may still
        have changed today's usage; a finished one refreshes through `_finished`."""
        if future.cancelled() or future.exception() is not None or future.result() is None:
            self.account.refresh()

    def _check_limits(self, images: int) -> None:
        """The journal's count now (another kernel sharing the home folder may have used some)."""
        try:
            self.client.check_limits(images)
        except QwenError:
            self.account.refresh()  # the line and Generate follow
            raise

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

    def frame(self):
        """The finished tasks as a DataFrame, one row per image (see qwen_widgets.to_frame)."""
        from .._frame import to_frame

        return to_frame(self.results)

    def _new_card(self, request: ImageRequest | None) -> Card:
        card = Card(self.client, request=request, save_dir=self.save_dir,
                    on_finished=self._finished, on_use_reference=self.add_reference,
                    on_reuse=self._reuse, on_changed=self._changed)
        return self.gallery.add(card)

    def _finished(self, task: Task) -> None:
        self.results.append(task)
        self.download_button.layout.display = None
        self.account.refresh()  # the balance moved, and so did today's usage

    def _reuse(self, request: ImageRequest) -> str:
        """Load `request` into the form, keeping reference images the form already has
        (one just added with "Use as reference" must not vanish)."""
        kept = [url for url in lines(self.image_urls.value) if url not in request.image_urls]
        self.request = request.replace(image_urls=[*request.image_urls, *kept]) if kept else request
        kept += [photo for photo in self.photos if photo.url not in request.image_urls]
        note = f", keeping your {len(kept)} reference image(s)" if kept else ""
        return f"Prompt and settings loaded into the form above{note}."

    def _submit_from_prompt(self, text: str | None) -> None:
        """Ctrl+Enter: the prompt as the browser showed it, then what Generate does."""
        if text is not None and text != self.prompt.value:
            self.prompt.value = text
        if not self.generate_button.disabled:
            self._on_generate_click()

    def _on_generate_click(self) -> None:
        now = time.monotonic()
        if now - self._last_click < _DOUBLE_CLICK_SECONDS:
            return  # a double click is one intent; a second POST would be billed
        self._last_click = now
        self._touched.update(("prompt", "negative_prompt", "image_urls"))
        try:
            self.run_sweep() if self.compare.value else self.generate()
        except RequestValidationError as error:
            self.errors["generate"].value = html.escape(friendly_error(error.field, error.rule,
                                                                       limit=self.max_images))
        except QwenError as error:
            self.errors["generate"].value = html.escape(error_message(error))

    def run_sweep(self) -> Sweep:
        """What Generate does in Compare mode: a sweep, shown as a grid in the gallery. Your
        images still uploading are waited for first (the button waits by staying disabled), as
        a sweep's requests are fixed when it starts; ImageUploadError names one that fails."""
        from .grid import SweepGrid

        client = self.client
        for photo in [photo for photo in self.photos if photo.url is None]:
            _runner.run(photo.wait_url(client))
        plan = self.plan()
        self._check_limits(plan.images)
        sweep = Sweep(self.client, plan)
        self.gallery.add(SweepGrid(sweep, on_use_reference=self.add_reference, save_dir=self.save_dir))

        def collect(index: int) -> None:
            if sweep.results[index] is not None:
                self._finished(sweep.results[index])
                self._changed()

        sweep.on_change(collect)
        return sweep.start()

    def download_all(self) -> concurrent.futures.Future:
        """Build the zip of every finished task's images and offer it to the browser."""
        from .._archive import archive_name, build_archive, fetch_all

        tasks = list(self.results)
        self.download_link.value = text_html(f"Packing {len(tasks)} task(s)…", color=MUTED_COLOR)

        async def run() -> None:
            try:
                fetched = await fetch_all(self.client.aio, tasks)
                data = await asyncio.to_thread(build_archive, tasks, fetched)
            except (QwenError, OSError, ValueError) as error:
                show_error(self.download_link, f"Could not pack the images: {error_message(error)}")
                return
            self.download_link.value = download_html(archive_name(), data, "application/zip", "Save")

        return _runner.submit(run())

    # -- the key --------------------------------------------------------------------------------

    def _use_client(self, client: QwenClient) -> None:
        """A key was entered: this panel, and qw.generate, use it from now on."""
        self.client = client
        _api.set_default_client(client)
        self.banner_box.show_for(self.client)
        self.account.use_client(client)
        self._restart_uploads()

