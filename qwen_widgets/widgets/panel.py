"""Panel: the generator form bound to ImageRequest, with its gallery of cards, and the history.

A panel is composed of parts, each its own concept: the form and its rules (`form.Form`), the
reference images, URLs and your own (`references.References`), the balance, limits and prices
(`account.Account`), the demo line with its key field (`banner.DemoBanner`), the cards
(`gallery.Gallery`) and the journal as a library (`history.HistoryView`), in two tabs,
"Generate" and "History". This module is what the panel does with them: Generate (or
Compare), Resume, the key, "Download all", loading a result into the form (with Undo) or
sending it again, recent prompts, and the copy of its results saved with the notebook
(`_static`).
"""

from __future__ import annotations

import concurrent.futures
import html
import os
import time
from pathlib import Path
from urllib.parse import quote

import ipywidgets as widgets

from ..engine.default import default_client, set_default_client
from ..engine.sweep import Sweep
from ..engine.sync import QwenClient
from ..model.errors import AuthenticationError, QwenError, RequestValidationError
from ..model.plan import DEFAULT_MAX_IMAGES, SweepPlan
from ..model.request import ImageRequest
from ..model.task import Task, validate_task_id
from . import _static
from ..model.receipt import Receipt
from ..model.submission import Entry
from ._format import error_message, friendly_error
from ._keys import Keys
from ._theme import MUTED_COLOR, layout, show_error, style, stylesheet, text_html
from .account import Account
from .banner import DemoBanner
from .card import Card
from .form import Form
from .gallery import Gallery
from .grid import SweepGrid
from .history import HistoryView
from .references import References, lines

__all__ = ["Panel"]


def _relative_link(path: Path) -> str | None:
    """An `<a download>` to `path` relative to the kernel's working folder (where the notebook
    is), or None when it has no such path (another drive)."""
    try:
        relative = os.path.relpath(path, os.getcwd())
    except ValueError:
        return None
    href = quote(Path(relative).as_posix())
    return (f'<a download="{html.escape(path.name, quote=True)}" href="{html.escape(href, quote=True)}" '
            f'style="font-weight: 600">&#x2B07; Download {html.escape(path.name)}</a>')

_DOUBLE_CLICK_SECONDS = 0.6


class Panel(widgets.VBox):
    """A form for every request field, a Generate button, and a gallery of results.

    `panel.request` reads the form as an ImageRequest; assigning one fills the form.
    `panel.add_image(path)` adds your own image as a reference (uploaded in the background).
    Generate runs in the background: the kernel stays free while images are made. Under it,
    the balance and today's usage against the spending limits (`panel.account`). The parts:
    `panel.form`, `panel.references`, `panel.account`, `panel.gallery`.
    """

    def __init__(self, client: QwenClient | None = None, *, save_dir: str | Path = "qwen_images",
                 max_images: int = DEFAULT_MAX_IMAGES):
        self.client = client or default_client(announce=False)  # the banner says it in its own line
        self.save_dir = Path(save_dir)
        self.results: list[Task] = []
        """Every task that finished (completed, failed or cancelled), oldest first."""
        self._last_click = -1.0
        self._mirror: _static.Mirror | None = None
        self._pasted_key = False
        self.account = Account(self.client, on_change=self._refresh, on_refused=self._key_refused)
        """The balance, today's usage against the limits, and prices (asked for once shown)."""
        self.references = References(self.client, on_change=self._refresh, on_receipt=self._offer_receipt)
        """The reference images of the next request: URL lines and your own images."""
        self.bridge = Keys(on_submit=self._submit_from_prompt)
        """The keyboard (Ctrl+Enter generates; arrows and Escape in the large view), focus, the
        clipboard and one-click downloads; `bridge.available` is False without anywidget."""
        self.shortcut = self.bridge.widget
        self.form = Form(self.references, self.account, max_images=max_images,
                         shortcut=self.bridge.available)
        """Every control of the request, with its problems, and the Generate button."""
        self.form.generate_button.on_click(lambda _: self._on_generate_click())
        self.banner = DemoBanner(on_client=self._use_client)
        self.gallery = Gallery()
        self.download_button = widgets.Button(
            description="Download all", layout={"width": "auto", "display": "none"},
            tooltip="One zip of this session's images at full resolution, each with its receipt inside, "
                    "JSON sidecars and results.csv, saved by your browser")
        self.download_button.on_click(lambda _: self.download_all())
        self.download_note = widgets.HTML()
        """What Download all is doing, where its zip was written, or why it failed."""
        self.download_link = widgets.Output()
        self.download_link.add_class("qw-download-all")  # where the browser helper clicks the link
        """The zip's link, as an output Jupyter renders (see download_all)."""
        self.resume_note = widgets.Label()
        self.resume_button = widgets.Button(description="Resume",
                                            tooltip="Finish what earlier sessions left open: resend "
                                                    "lost submissions (same key) and watch unfinished tasks")
        self.resume_button.on_click(lambda _: self.resume())
        self.resume_box = widgets.HBox([self.resume_note, self.resume_button],
                                       layout={"display": "none", "align_items": "center"})
        self.receipt_box = widgets.HBox(layout={"flex_flow": "row wrap", "align_items": "center"})
        self.loaded_note = widgets.HTML(layout=layout(width="auto"), style=style("html"))
        self.undo_button = widgets.Button(description="Undo", layout=layout(width="auto"), style=style("button"),
                                          tooltip="Put back what the form held before it was loaded")
        self.undo_button.on_click(lambda _: self.undo_load())
        self.loaded_box = widgets.HBox([self.loaded_note, self.undo_button],
                                       layout={"display": "none", "align_items": "center", "flex_flow": "row wrap"})
        self._before_load: dict | None = None
        self.history = HistoryView(self.client, save_dir=self.save_dir, on_reuse=self._reuse,
                                   on_more=self.more_like_this, on_use_reference=self.references.add_reference,
                                   bridge=self.bridge)
        """The journal as a library: the History tab."""
        self.tabs = widgets.Tab([widgets.VBox(self._layout(), layout=layout(width="auto")), self.history],
                                titles=("Generate", "History"), layout={"width": "auto"})
        self.tabs.observe(lambda change: self._tab_chosen(change["new"]), "selected_index")
        self._history_stale = True
        extras = [w for w in (self.bridge.widget, stylesheet()) if w is not None]
        super().__init__([self.banner, self.tabs, *extras])
        self.add_class("qw-panel")
        self.add_class("qw-root")
        self.banner.show_for(self.client)
        self._refresh()
        self._offer_resume()
        self._offer_prompts()

    def _layout(self) -> list[widgets.Widget]:
        form, references = self.form, self.references

        def under(*items: widgets.Widget) -> widgets.HBox:
            return widgets.HBox(list(items), layout=layout(align_items="baseline", flex_flow="row wrap"))

        return [
            self.loaded_box,
            form.prompt, under(form.prompt_count, form.errors["prompt"], form.recent),
            form.negative_prompt, under(form.negative_count, form.errors["negative_prompt"]),
            form.single_row, form.compare_row,
            under(form.errors["n"], form.errors["model"], form.errors["size"], form.errors["resolution"]),
            widgets.HBox([references.image_urls, references.add_image_button],
                         layout=layout(align_items="flex-start", flex_flow="row wrap")),
            under(form.errors["image_urls"], references.photo_note), self.receipt_box, references.previews,
            # the hint stands next to the Generate it explains; what it will make after that
            widgets.HBox([form.generate_button, form.hint, form.errors["generate"], form.compare, form.output_size,
                          form.cost_line], layout={"align_items": "center", "flex_flow": "row wrap"}),
            self.account.line,
            widgets.HBox([self.download_button, self.download_note, self.download_link],
                         layout={"align_items": "center", "flex_flow": "row wrap"}),
            self.resume_box,
            self.gallery,
        ]

    def __repr__(self) -> str:
        return f"Panel(cards={len(self.gallery.cards)}, results={len(self.results)})"

    # -- the request --------------------------------------------------------------------------

    @property
    def request(self) -> ImageRequest:
        """The form as a request; RequestValidationError names the first invalid field. Your
        own images are in it once uploaded (Generate waits for the others)."""
        return self.form.request

    @request.setter
    def request(self, request: ImageRequest) -> None:
        self.form.request = request

    def plan(self) -> SweepPlan:
        """The form in Compare mode as a sweep plan (see Form.plan)."""
        return self.form.plan()

    def add_image(self, source, name: str | None = None):
        """Add your own image (a path, bytes or a PIL image) as a reference: checked at once,
        uploaded in the background. Returns its Photo, or None when it was refused."""
        return self.references.add_image(source, name)

    def add_reference(self, reference) -> str:
        """Add a URL or a result image as a reference for the next generation; returns the
        words saying what happened (see References.add_reference)."""
        return self.references.add_reference(reference)

    def _refresh(self) -> None:
        if hasattr(self, "form"):  # the account and references may call before the form exists
            self.form.refresh()

    # -- display: the live panel, and the copy of its results saved with the notebook --------

    def _ipython_display_(self) -> None:
        if self._mirror is None:
            self._mirror = _static.Mirror(self._static_page, self.client.background)
        if not self.account.live:
            self.account.start()  # someone looks: the balance and prices are worth asking for
            self.form.load_models(self.client)  # and the models the service offers now
        self._mirror.display(self)

    def _static_page(self, mirror_id: str) -> str:
        entries = []
        for child in self.gallery.items():  # newest first, as the panel shows them
            if isinstance(child, Card):
                if child.task is not None and child.task.done:
                    entries.append(child.static_entry())
            elif isinstance(child, SweepGrid):
                entries.extend(child.static_entries())
        heading = (f"Results saved with the notebook: {len(entries)} generation{'s' * (len(entries) != 1)}, "
                   "newest first (run the cell for the live panel).")
        return _static.page_html(mirror_id, heading, entries)

    def _changed(self) -> None:
        if self._mirror is not None:
            self._mirror.refresh()
        self._offer_prompts()  # a star changes the menu beside the prompt

    # -- actions ------------------------------------------------------------------------------

    def generate(self) -> Card:
        """What Generate does: a new card that submits the form's request in the background
        (once your images still uploading are there). SpendingLimitError, before any card,
        when a daily limit would be passed."""
        request = self.request
        self._check_limits(request.n)
        card = self._new_card(request)
        card.start_generation(request, prepare=self.references.prepare_for(request))
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
        """What `qw.resume()` does, in cards: every submission of the last 24 h whose answer was
        lost is sent again with its idempotency key (so the server answers with the task it
        made, never a second one) and watched, and every unfinished task is re-attached."""
        self.resume_box.layout.display = "none"
        work = self.client.open_work()
        cards = []
        for entry in work.lost:
            card = self._new_card(entry.request)
            card.start_resend(entry)
            cards.append(card)
        for entry in work.unfinished:
            card = self._new_card(entry.request)
            card.start_attach(entry.task)
            cards.append(card)
        return cards

    def _offer_resume(self) -> None:
        work = self.client.open_work()
        parts = []
        if work.lost:
            parts.append(f"{len(work.lost)} submission(s) whose answer was lost (resent with the same "
                         "key: never a second task)")
        if work.unfinished:
            parts.append(f"{len(work.unfinished)} unfinished task(s)")
        if parts:
            self.resume_note.value = f"From earlier sessions: {' and '.join(parts)}."
            self.resume_box.layout.display = None

    def frame(self):
        """The finished tasks as a DataFrame, one row per image (see qwen_widgets.to_frame)."""
        from ..model.frame import to_frame

        return to_frame(self.results)

    def _new_card(self, request: ImageRequest | None) -> Card:
        client = self.client
        card = Card(client, request=request, save_dir=self.save_dir,
                    on_use_reference=self.references.add_reference, on_reuse=self._reuse,
                    on_more=self.more_like_this, on_changed=self._changed,
                    on_error=lambda error: self._card_error(client, error), bridge=self.bridge)
        card._on_finished = lambda task: self._finished(task, card)
        return self.gallery.add(card)

    def _finished(self, task: Task, card: Card | None = None) -> None:
        self.results.append(task)
        self.download_button.layout.display = None
        self.account.refresh()  # the balance moved, and so did today's usage
        if card is not None:
            self.gallery.finished(card)
        self._history_stale = True
        if self.tabs.selected_index == 1:
            self.history.refresh()
        self._offer_prompts()

    def _offer_prompts(self) -> None:
        """Recent and starred prompts, in the menu beside the prompt."""
        try:
            self.form.offer_prompts(self.client.recent_prompts())
        except QwenError:
            pass  # a journal that cannot be read says so where it matters (Generate)

    def _tab_chosen(self, index: int) -> None:
        if index == 1 and self._history_stale:
            self._history_stale = False
            self.history.refresh()

    def show_history(self) -> concurrent.futures.Future:
        """Switch to the History tab; the returned future ends when its page is shown."""
        self._history_stale = False
        self.tabs.selected_index = 1
        return self.history.refresh()

    def _reuse(self, request: ImageRequest, source: Entry | None = None) -> str:
        """Load `request` into the form, keeping reference images the form already has (one
        just added with "Use as reference" must not vanish); bring the form into view, with
        Undo beside it. Returns the words for the button that asked."""
        self._before_load = self.form.snapshot()
        references = self.references
        kept = [url for url in lines(references.image_urls.value) if url not in request.image_urls]
        self.form.compare.value = False
        self.request = request.replace(image_urls=[*request.image_urls, *kept]) if kept else request
        kept += [photo for photo in references.photos if photo.url not in request.image_urls]
        note = f", keeping your {len(kept)} reference image(s)" if kept else ""
        where = f" from {source.task.task_id}" if source is not None and source.task is not None else ""
        self.loaded_note.value = text_html(f"Loaded the prompt and settings{where}{note}.", color=MUTED_COLOR)
        self.loaded_box.layout.display = None
        self.tabs.selected_index = 0
        scrolled = self.bridge.scroll_to(".qw-prompt")
        place = "the form (now in view)" if scrolled else "the form at the top of the Generate tab"
        return f"Prompt and settings loaded into {place}{note}; Undo there puts back what it held."

    def _offer_receipt(self, photo, receipt: Receipt) -> None:
        """An image that carries our receipt was added: it is a reference now; offer to re-run
        its request, or load its settings, instead."""
        prompt = receipt.request.prompt if receipt.request else ""
        shown = prompt if len(prompt) <= 60 else prompt[:59] + "…"
        note = widgets.HTML(text_html(f"{photo.name} carries the receipt of {receipt.task_id} (‘{shown}’); it is "
                                      "a reference image now. Or:", color=MUTED_COLOR), layout=layout(width="auto"),
                            style=style("html"))

        def instead(action) -> None:
            self.references.remove_image(photo)
            self.receipt_box.children = ()
            said = action(receipt.request)
            self.references.photo_note.value = text_html(said, color=MUTED_COLOR)

        rerun = widgets.Button(description="Re-run its request", layout=layout(width="auto"), style=style("button"),
                               tooltip="Send the request in its receipt again (new images: the API has no seed)")
        rerun.on_click(lambda _: instead(self.more_like_this))
        load = widgets.Button(description="Load its settings", layout=layout(width="auto"), style=style("button"),
                              tooltip="Put the prompt and settings of its receipt in the form")
        load.on_click(lambda _: instead(self._reuse))
        keep = widgets.Button(description="Keep as reference", layout=layout(width="auto"), style=style("button"),
                              tooltip="Use it as a reference image (image to image)")
        keep.on_click(lambda _: setattr(self.receipt_box, "children", ()))
        self.receipt_box.children = (note, rerun, load, keep)

    def rerun(self, source) -> Card:
        """Send again, in a new card, the request of an image file that carries our receipt (a
        path or its bytes), of a Receipt, or of a Task: what "Re-run its request" does."""
        if isinstance(source, (Task, Entry, Receipt)):
            request = source.request
        else:
            request = self.client.read_receipt(source).request
        if request is None:
            raise RequestValidationError("source", "has no request to send again", show_value=False)
        said = self.more_like_this(request)
        if not said.startswith("Sent again"):
            raise RequestValidationError("source", said, show_value=False)
        return self.gallery.cards[0]

    def undo_load(self) -> None:
        """Put back what the form held before the last load."""
        if self._before_load is not None:
            self.form.restore(self._before_load)
            self._before_load = None
        self.loaded_box.layout.display = "none"
        self.bridge.scroll_to(".qw-prompt")

    def more_like_this(self, request: ImageRequest) -> str:
        """Send `request` again in a new card (a new task, billed; references whose links have
        expired are uploaded again from this machine's files). Returns what happened."""
        try:
            self._check_limits(request.n)
        except QwenError as error:
            return error_message(error)
        client = self.client
        card = self._new_card(request)
        # references whose links have expired are uploaded again first, from this machine's files
        card.start_generation(request, prepare=(lambda: client.aio.repeatable(request)) if request.image_urls else None)
        card.future.add_done_callback(self._ended_unfinished)
        self.tabs.selected_index = 0
        return "Sent again: the new card is first in the gallery (new images: the API has no seed)."

    def _submit_from_prompt(self, text: str | None) -> None:
        """Ctrl+Enter: the prompt as the browser showed it, then what Generate does."""
        if text is not None and text != self.form.prompt.value:
            self.form.prompt.value = text
        if not self.form.generate_button.disabled:
            self._on_generate_click()

    def _on_generate_click(self) -> None:
        now = time.monotonic()
        if now - self._last_click < _DOUBLE_CLICK_SECONDS:
            return  # a double click is one intent; a second POST would be billed
        self._last_click = now
        self.form.touch_all()
        errors = self.form.errors
        try:
            self.run_sweep() if self.form.compare.value else self.generate()
        except RequestValidationError as error:
            errors["generate"].value = html.escape(friendly_error(error.field, error.rule,
                                                                 limit=self.form.max_images))
        except QwenError as error:
            errors["generate"].value = html.escape(error_message(error))

    def run_sweep(self) -> Sweep:
        """What Generate does in Compare mode: a sweep, shown as a grid in the gallery. Your
        images still uploading are waited for first (the button waits by staying disabled), as
        a sweep's requests are fixed when it starts; ImageUploadError names one that fails."""
        self.references.wait_for_uploads()
        plan = self.plan()
        self._check_limits(plan.images)
        sweep = Sweep(self.client, plan)
        self.gallery.add(SweepGrid(sweep, on_use_reference=self.references.add_reference,
                                   save_dir=self.save_dir, bridge=self.bridge, on_changed=self._changed))

        def collect(index: int) -> None:
            if sweep.results[index] is not None:
                self._finished(sweep.results[index])
                self._changed()

        sweep.on_change(collect)
        return sweep.start()

    def download_all(self) -> concurrent.futures.Future:
        """Write one zip of every finished task's images into `save_dir` on the kernel's disk
        (streamed: the images are never all in memory) and offer it to the browser.

        The link is relative (`qwen_images/qwen_images_....zip`) in an output, not in an HTML
        widget: JupyterLab and Notebook 7 resolve an output's relative links against the
        notebook's folder (the kernel's working folder) and make them downloads from the
        Jupyter server's /files/ route, so the zip goes from disk to the browser without
        passing through widget state. Where no Jupyter server serves files (VS Code, Colab),
        the note says where the zip is on the kernel's disk."""
        tasks = list(self.results)
        self.download_link.outputs = ()
        self.download_note.value = text_html(f"Packing {len(tasks)} task(s)…", color=MUTED_COLOR)

        async def run() -> None:
            try:
                path = await self.client.aio.export(tasks, self.save_dir)
            except (QwenError, OSError, ValueError) as error:
                show_error(self.download_note, f"Could not pack the images: {error_message(error)}")
                return
            size = path.stat().st_size
            amount = f"{size / 2**20:.1f} MB" if size >= 2**20 else f"{max(1, round(size / 1024))} KB"
            self.download_note.value = text_html(f"Saved on the server: {path} ({amount})", color=MUTED_COLOR)
            link = _relative_link(path)
            if link is not None:
                self.download_link.outputs = ({"output_type": "display_data", "metadata": {},
                                               "data": {"text/html": link, "text/plain": str(path)}},)
                self.bridge.click(".qw-download-all a")  # one click: the browser takes it at once

        return self.client.background(run())

    # -- the key --------------------------------------------------------------------------------

    def _card_error(self, client: QwenClient, error: BaseException) -> None:
        if isinstance(error, AuthenticationError):
            self.account.refuse(client)  # Generate waits, and the key field opens

    def _key_refused(self) -> None:
        """Where the key is set (the banner's line) says the API refused it, with the field."""
        self.banner.show_refused(self.client, pasted=self._pasted_key)

    def _use_client(self, client: QwenClient) -> None:
        """A key was entered: this panel, and qw.generate, use it from now on."""
        self.client = client
        self._pasted_key = True
        set_default_client(client)
        self.banner.show_for(self.client)
        self.account.use_client(client)
        self.references.use_client(client)
        if self.account.live:
            self.form.load_models(client)
        self.history.client = client  # its journal now: the home folder's, with the key
        self._history_stale = True
        self._offer_prompts()
