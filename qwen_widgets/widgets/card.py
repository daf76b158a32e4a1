"""Card: one generation in the gallery, from submission to thumbnails, and what a finished
card does (the large view, its row of actions, its copy saved with the notebook).

The card's coroutine runs on the package's private loop (`client.background`); it updates
widgets only by assigning traits (never `with out:` or print, which land in the wrong cell
from a background thread). Stop cancels the watching, never the submission: a POST cut short
would leave its outcome unknown.

What a card shows is decided by its children list (`_arrange`), not by hiding widgets, so
its widgets can share layouts (see `_theme`). A finished card shows its images in one of
three ways: `tiles` (a thumbnail each, sized to the card), `featured` (the gallery's newest:
the first image large, with the thumbnails below), or `compact` (an older card in a panel:
one contact-sheet picture of all its images, so a thousand cards hold a thousand pictures,
whatever their number of images). Widgets used only sometimes (messages, the second row of
actions, the large view) are made when first needed and closed when done. Full images are
read again by the client, from the local copy or the URL, when the large view, Save or
Download needs them (`FullImages`).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import html
import logging
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator, Mapping
from pathlib import Path

import ipywidgets as widgets

from ..engine.sync import QwenClient
from ..model.errors import AuthenticationError, QwenError, SubmitOutcomeUnknownError, TaskFailedError
from ..model.images import mosaic
from ..model.lineage import describe_diff
from ..model.request import ImageRequest
from ..model.submission import Entry
from ..model.task import GeneratedImage, Task, TaskStatus
from . import _static
from ._actions import copy_text, save_and_offer
from ._format import (cost_words, error_message, failed_status, made_words, origin_words, params_line,
                      retry_message, settings_text, size_words, status_line, stopped_message, timings_line)
from ._keys import Keys
from ._theme import (BORDER, MUTED_COLOR, THUMBNAIL_EDGE, alt_html, close_tree, layout, plain_text, show_error,
                     show_note, style, stylesheet, text_html)
from .viewer import Viewer, alt_text

__all__ = ["Card", "THUMBNAIL_EDGE"]

_log = logging.getLogger("qwen_widgets")
Callback = Callable[..., object]
FEATURE_DELAY = 1.0
"""Seconds before the newest card opens its first image large: a card overtaken at once (many
shown in a row) never makes its screen-sized picture."""
_PICTURE = dict(grid_area="pic", width="100%", height="auto", max_height="256px", object_fit="contain",
                margin="0")


class Card(widgets.VBox):
    """One generation: prompt, parameters, live status, then its images and one row of
    actions. Clicking a thumbnail opens the large view in its place.

    Start it with `start_generation(request)` or `start_attach(task_id)`; `future` is the
    concurrent future of the background work and `task` the last state seen.
    `on_use_reference(image)`, `on_reuse(request)` and `on_more(request)` return the words
    confirming what they did; `on_error(error)` hears every error the card shows (the panel
    points a refused key to its key field); `bridge` is its view's helper for the keyboard, the
    clipboard and downloads (a card shown on its own makes its own).
    """

    def __init__(
        self,
        client: QwenClient,
        *,
        request: ImageRequest | None = None,
        save_dir: str | Path = "qwen_images",
        on_finished: Callable[[Task], None] | None = None,
        on_use_reference: Callable[[GeneratedImage], str] | None = None,
        on_reuse: Callable[[ImageRequest], str] | None = None,
        on_more: Callable[[ImageRequest], str] | None = None,
        on_changed: Callable[[], None] | None = None,
        on_error: Callable[[BaseException], None] | None = None,
        bridge: Keys | None = None,
    ):
        self.client = client
        self.request = request
        self.save_dir = Path(save_dir)
        self.task: Task | None = None
        self.future: concurrent.futures.Future | None = None
        self.full_images = FullImages(self)
        """Full-resolution bytes by image index, read again on demand (not kept in memory)."""
        self.bridge = bridge
        self.mode = "tiles"
        """How a finished card shows its images: 'tiles', 'featured' or 'compact'."""
        self.timings = ""
        """The finished task's times and cost in words (also in the status line)."""
        self.starred = False
        """Starred in the journal (by its Star button)."""
        self.id = uuid.uuid4().hex[:10]
        self._loaded: set[int] = set()
        self._thumbnails: dict[int, bytes] = {}
        self._failed: dict[int, str] = {}  # why an image could not be shown, by index
        self._on_finished, self._on_changed, self._on_error = on_finished, on_changed, on_error
        self._on_use_reference, self._on_reuse, self._on_more = on_use_reference, on_reuse, on_more
        self._watcher: asyncio.Task | None = None
        self._prepare: Callable[[], Awaitable[ImageRequest]] | None = None
        self._lost: Entry | None = None  # a lost submission this card resends with its key
        self._unknown_key: str | None = None  # the key of this card's submission whose answer was lost
        self._submitting = self._running = self._stop_requested = False
        self._started = time.monotonic()
        self._mirror: _static.Mirror | None = None
        self._viewing = False
        self._extras: dict[str, widgets.Widget] = {}
        self.viewer: Viewer | None = None
        """The large view (a Viewer), made the first time a thumbnail is clicked."""

        html_widget = lambda: widgets.HTML(layout=layout(width="auto"), style=style("html"))  # noqa: E731
        self.title, self.params = html_widget(), html_widget()
        self.status = widgets.HTML(layout=layout(width="auto"),
                                   style=style("html", text_color=MUTED_COLOR, font_size="0.9em"))
        self._show_request(request)
        self._watching_widgets: dict[str, widgets.Widget] = {}
        self.tiles = widgets.GridBox(layout=layout(
            grid_template_columns="repeat(auto-fit, minmax(min(160px, 100%), 1fr))", grid_gap="6px",
            width="auto", align_items="center"))
        self.actions = widgets.HBox(layout=layout(flex_flow="row wrap", align_items="center"))
        super().__init__(layout={"border": BORDER, "padding": "6px 8px", "margin": "0", "min_width": "0"})
        self.add_class("qw-card")
        self._arrange()

    def __repr__(self) -> str:
        state = f"{self.task.task_id}, {self.task.status.value}" if self.task else "not submitted"
        return f"Card({state})"

    # Widgets made only when needed. The progress bar and the Stop / Re-attach buttons exist
    # only while a task is watched; a message, the feedback next to the actions, the line
    # saying where an image came from and the second row of actions only once they say
    # something (a thousand finished cards should not carry idle widgets each).

    @property
    def progress(self) -> widgets.FloatProgress:
        return self._watching("progress", lambda: widgets.FloatProgress(
            value=0, min=0, max=100, layout=layout(width="auto"), style=style("progress")))

    @property
    def stop_button(self) -> widgets.Button:
        return self._watching("stop", lambda: self._button(
            "Stop", self.stop, "Stop watching (the task may still finish and be billed)"))

    @property
    def attach_button(self) -> widgets.Button:
        return self._watching("attach", lambda: self._button(
            "Re-attach", self.reattach, "Watch this task again"))

    @property
    def buttons(self) -> widgets.HBox:
        return self._watching("buttons", lambda: widgets.HBox(layout=layout(align_items="center")))

    @property
    def message(self) -> widgets.HTML:
        """Errors and notes about the task (said in red only for a failure)."""
        return self._extra("message", lambda: widgets.HTML(layout=layout(width="auto"), style=style("html")))

    @property
    def feedback(self) -> widgets.HTML:
        """What an action did, next to its buttons."""
        return self._extra("feedback", lambda: widgets.HTML(layout=layout(width="auto"), style=style("html")))

    @property
    def origin(self) -> widgets.HTML:
        """Where the image came from (image to image), and what changed since."""
        return self._extra("origin", lambda: widgets.HTML(
            layout=layout(width="auto"), style=style("html", text_color=MUTED_COLOR, font_size="0.9em")))

    def _watching(self, name: str, make: Callable[[], widgets.Widget]) -> widgets.Widget:
        if name not in self._watching_widgets:
            self._watching_widgets[name] = make()
        return self._watching_widgets[name]

    def _extra(self, name: str, make: Callable[[], widgets.Widget]) -> widgets.Widget:
        if name not in self._extras:
            self._extras[name] = make()
        return self._extras[name]

    def _clear(self, name: str) -> bool:
        """Empty a made-when-needed text (without making it); True if it said something."""
        widget = self._extras.get(name)
        if widget is None or not widget.value:
            return False
        widget.value = ""
        return True

    def _release_watching_widgets(self) -> None:
        widgets_ = self._watching_widgets
        self._watching_widgets = {}
        self._arrange()
        for widget in widgets_.values():
            widget.close()

    # -- display: the live card, and the copy saved with the notebook -------------------------

    def _ipython_display_(self) -> None:
        if self.bridge is None:  # shown on its own: the keyboard, clipboard and downloads need a helper
            self.bridge = Keys()
            self._extras["bridge"] = widgets.Box([w for w in (self.bridge.widget, stylesheet()) if w is not None],
                                               layout=layout(display="none"))
            self.add_class("qw-root")
            self._arrange()
        if self._mirror is None:
            self._mirror = _static.Mirror(lambda mirror_id: _static.page_html(
                mirror_id, "Saved with the notebook: one generation.", [self.static_entry()]),
                self.client.background)
        self._mirror.display(self)

    def _changed(self) -> None:
        """The results changed: refresh the saved copies (the card's, and its gallery's)."""
        if self._mirror is not None:
            self._mirror.refresh()
        if self._on_changed is not None:
            self._on_changed()

    # -- starting and stopping ---------------------------------------------------------------

    def start_generation(self, request: ImageRequest, *,
                         prepare: Callable[[], Awaitable[ImageRequest]] | None = None
                         ) -> concurrent.futures.Future:
        """Submit `request` and watch it, in the background. `prepare` (run first, on the
        private loop) returns the request to send instead: the panel's waits for your images
        to upload and adds their URLs."""
        self.request, self._prepare = request, prepare
        self._show_request(request)
        self._submitting = True  # from now until the POST is answered, Stop must wait
        return self._launch(self._generate(request))

    def start_resend(self, lost: Entry) -> concurrent.futures.Future:
        """Send a submission whose answer was lost again, with its idempotency key (the server
        answers with the task it made, never a second one), and watch it, in the background."""
        self._lost = lost
        return self.start_generation(lost.request)

    def start_attach(self, task_or_id: Task | str) -> concurrent.futures.Future:
        """Watch an existing task (by id, or a Task that keeps its request), in the background."""
        task_id = task_or_id.task_id if isinstance(task_or_id, Task) else task_or_id
        self._set_status(f"{task_id} · re-attaching…")
        return self._launch(self._watch(task_or_id))

    def show_task(self, task: Task) -> concurrent.futures.Future:
        """Show a task that has already finished (its thumbnails load in the background)."""
        self.task = task
        self._on_update(task)
        return self._launch(self._show_result(task, watched=False), watching=False)

    def stop(self) -> None:
        """Stop watching. The task itself cannot be cancelled: it may still finish and bill."""
        self._stop_requested = True
        watcher = self._watcher
        if watcher is not None:
            self.client.background(_cancel(watcher))  # on its own loop: asyncio is not thread-safe
        elif self._submitting:
            self._set_status("Stop requested: waiting for the server to answer the submission…")
        elif self.future is not None and not self.future.done():
            self._set_status("Stop requested: nothing will be sent.")

    def reattach(self) -> concurrent.futures.Future | None:
        """Watch this card's task again after Stop or a timeout."""
        if self.task is None or (self.future is not None and not self.future.done()):
            return None
        self._clear("message")
        self._set_status(f"{self.task.task_id} · re-attaching…")
        # the same task, watched again: its clock goes on from when it was submitted
        return self._launch(self._watch(self.task), restart_clock=False)  # the Task keeps its request

    def retry(self) -> concurrent.futures.Future | None:
        """Submit this card's request again (a new task, billed again if it completes); a lost
        submission is sent again with its own key instead, so it can never make two tasks."""
        if self.request is None or (self.future is not None and not self.future.done()):
            return None
        if self._lost is None and self._unknown_key is not None:  # this card's own lost answer
            self._lost = next((entry for entry in self.client.open_work().lost
                               if entry.idempotency_key == self._unknown_key), None)
        self.task, self._loaded, self._failed, self.timings = None, set(), {}, ""
        self._clear("message")
        self._clear("feedback")
        old = list(self.tiles.children) + list(self.actions.children)
        self.tiles.children, self.actions.children = (), ()
        close_tree(old)
        self.progress.value, self.progress.bar_style = 0, ""
        return self.start_generation(self.request, prepare=self._prepare)

    def _launch(self, coro, *, watching: bool = True, restart_clock: bool = True) -> concurrent.futures.Future:
        self._stop_requested, self._running = False, watching
        if restart_clock:
            self._started = time.monotonic()
        if watching:
            self.buttons.children = (self.stop_button,)
        self._arrange()
        self.future = self.client.background(coro)
        self.future.add_done_callback(self._report_crash)
        return self.future

    def _report_crash(self, future: concurrent.futures.Future) -> None:
        """The done-callback: anything the coroutine did not handle lands in the card."""
        self._running = False
        if not future.cancelled() and future.exception() is not None:
            _log.error("generation card failed", exc_info=future.exception())
            self._show_error(future.exception())
        self._arrange()

    # -- the background work (runs on the private loop) -------------------------------------

    async def _generate(self, request: ImageRequest) -> Task | None:
        try:
            if self._prepare is not None and (request := await self._prepared()) is None:
                return None
            self._submitting = True
            self._set_status(status_line(None, 0))
            ticker = asyncio.ensure_future(self._tick())
            try:
                if self._lost is not None:
                    task = await self.client.aio.resend(self._lost, on_retry=self._on_retry)
                else:
                    task = await self.client.aio.submit(request, on_retry=self._on_retry)
            finally:
                ticker.cancel()
        except QwenError as error:
            self._submitting = False
            if isinstance(error, SubmitOutcomeUnknownError):
                self._unknown_key = error.idempotency_key if error.resent else None
            self._show_error(error)
            return None
        finally:
            self._submitting = False
        self._lost = self._unknown_key = None
        self._on_update(task)
        return await self._watch(task)

    async def _prepared(self) -> ImageRequest | None:
        """The request with the URLs of your images, once uploaded; None after a Stop."""
        self._submitting = False  # nothing is on its way yet: a Stop ends this at once
        self._set_status("waiting for your images to upload…")
        self.request = await self._prepare()
        self._show_request(self.request)
        if self._stop_requested:
            self.buttons.children = ()
            self._set_status("stopped before sending: nothing was submitted")
            self._offer_retry()
            return None
        return self.request

    async def _watch(self, task_or_id: Task | str) -> Task | None:
        # Stop cancels only this inner task: once the task is done, a late Stop cannot cut
        # short the loading of its images
        watcher = asyncio.ensure_future(self.client.aio.wait(
            task_or_id, on_update=self._on_update, on_retry=self._on_retry))
        self._watcher = watcher
        # stop() sets the flag before it looks for a watcher: checking after registering
        # one means no Stop is lost, whichever thread gets there first
        if self._stop_requested:
            watcher.cancel()
        ticker = asyncio.ensure_future(self._tick())
        try:
            final = await watcher
        except asyncio.CancelledError:
            if not watcher.cancelled():
                raise
            self._show_stopped()
            return None
        except QwenError as error:
            self._show_error(error)
            return None
        finally:
            ticker.cancel()
            self._watcher = None
        await self._show_result(final)
        return final

    async def _tick(self) -> None:
        """Refresh the elapsed time between polls (or submission attempts), which may be
        seconds apart."""
        while True:
            await asyncio.sleep(1.0)
            if (self.task is None and self._submitting) or (self.task is not None and not self.task.done):
                self._set_status(status_line(self.task, self._elapsed()))

    def _on_update(self, task: Task) -> None:
        self.task = task
        if self._clear("message"):
            self._arrange()
        self._set_status(status_line(task, self._elapsed()))
        if not self._running:
            return  # a finished task shown as it is: no progress to follow
        self.progress.value = task.progress
        overdue = task.estimated_time is not None and self._elapsed() > task.estimated_time
        self.progress.bar_style = "warning" if overdue and not task.done else ""

    def _on_retry(self, error: QwenError, delay: float) -> None:
        show_note(self.message, retry_message(error, delay))
        if self.task is None:
            self._set_status(f"submitting… trying again in {delay:.0f} s")
        self._arrange()

    async def _show_result(self, task: Task, watched: bool = True) -> None:
        self._running = False
        if "buttons" in self._watching_widgets:
            self.buttons.children = ()
        try:
            if task.status is not TaskStatus.COMPLETED:
                self.progress.bar_style = "danger"
                show_error(self.message, error_message(TaskFailedError(task)))
                self._offer_retry()
                return
            self._release_watching_widgets()
            self.timings = " · ".join(filter(None, [timings_line(task, self._elapsed() if watched else None),
                                                    cost_words(task)]))
            # one secondary line under the prompt: the task id, its state, when, its timings
            self._set_status(" · ".join(filter(None, [status_line(task, 0), made_words(task.created_at),
                                                      self.timings])))
            self._offer_actions()
            thumbnails = await asyncio.gather(*(self._thumbnail(image) for image in task.images))
            self._thumbnails = {image.index: data for image, data in zip(task.images, thumbnails) if data}
            if self.mode == "compact":
                await self._show_compact()
            else:
                self._show_tiles()
            if any(ref.parent_task_id for ref in task.references):
                await self._show_origin(task)
        finally:  # the task is finished whatever happened to its thumbnails
            self._arrange()
            self._changed()
            if self._on_finished is not None:
                self._on_finished(task)

    async def _thumbnail(self, image: GeneratedImage) -> bytes | None:
        """The image's thumbnail (its failure said in the card), its index marked loaded."""
        try:
            data = await self.client.aio.thumbnail(image, THUMBNAIL_EDGE)
        except (QwenError, ValueError) as error:
            self._failed[image.index] = error_message(error)
            return None
        self._loaded.add(image.index)
        return data

    async def _show_origin(self, task: Task) -> None:
        """'made from task_… image 1 (size 1:1 -> 16:9, prompt + 'at dusk')', from the journal."""
        try:
            chain = await self.client.aio.chain(task)
        except QwenError:
            chain = []
        diff = describe_diff(chain[0].request, task.request) if chain and chain[0].request and task.request else None
        self.origin.value = html.escape(origin_words(task.references, diff))

    # -- what is shown ---------------------------------------------------------------------------

    def _arrange(self) -> None:
        extras = self._extras
        shown = [self.title, self.params, self.status]
        if "origin" in extras and extras["origin"].value:
            shown.append(extras["origin"])
        if self._running:
            shown.append(self.progress)
        buttons = self._watching_widgets.get("buttons")
        if buttons is not None and buttons.children:
            shown.append(buttons)
        if "message" in extras and extras["message"].value:
            shown.append(extras["message"])
        if self._viewing and self.viewer is not None:
            shown.append(self.viewer)
        if self.tiles.children and (not self._viewing or self.mode == "featured"):
            shown.append(self.tiles)  # the newest result: large, with its thumbnails below
        if self.actions.children:
            shown.append(self.actions)
        for name in ("more", "confirm"):
            if name in extras:
                shown.append(extras[name])
        if "feedback" in extras and extras["feedback"].value:
            shown.append(extras["feedback"])
        if "bridge" in extras:
            shown.append(extras["bridge"])
        if tuple(shown) != self.children:
            self.children = shown

    def _show_request(self, request: ImageRequest | None) -> None:
        if request is not None:
            self.title.value = text_html(request.prompt, bold=True)
        suffix = " · simulated" if self.client.demo else ""
        self.params.value = text_html(params_line(request) + suffix, color=MUTED_COLOR, small=True)

    def _set_status(self, text: str) -> None:
        """Plain escaped text (one line, so `value` reads as the text itself), muted."""
        self.status.value = html.escape(text)

    def _button(self, label: str, action: Callback, tooltip: str) -> widgets.Button:
        """A text button (no icon: its glyph would begin the button's accessible name)."""
        button = widgets.Button(description=label, tooltip=tooltip, layout=layout(width="auto"),
                                style=style("button"))
        button.on_click(lambda _: action())
        return button

    def _say(self, text: str) -> None:
        """Words about what an action did, next to the actions."""
        self.feedback.value = text_html(text)
        self._arrange()

    def _elapsed(self) -> float:
        return time.monotonic() - self._started

    def _show_stopped(self) -> None:
        """Stopping is the user's choice, not a failure: said plainly, not in red."""
        task_id = self.task.task_id if self.task else "unknown"
        self.buttons.children = (self.attach_button,) if self.task else ()
        self._set_status(f"{task_id} · stopped watching")
        show_note(self.message, stopped_message(task_id))
        self._running = False
        self._arrange()

    def _show_error(self, error: BaseException) -> None:
        watching = self.task.task_id if self.task is not None and not self.task.done else None
        resumable = watching is not None
        self.progress.bar_style = "danger"
        self._set_status(failed_status(error, self.task))
        show_error(self.message, error_message(error, watching=watching))
        self.buttons.children = (self.attach_button,) if resumable else ()
        if not resumable:
            # Retry cannot help a refused key: only a new key can (the message says where)
            self._offer_retry(retry=not isinstance(error, AuthenticationError))
        self._running = False
        self._arrange()
        if self._on_error is not None:
            self._on_error(error)

    # -- a finished card: its images ----------------------------------------------------------

    def static_entry(self) -> _static.Entry:
        """This card as the static copy shows it (prompt, parameters, when, its pictures, outcome)."""
        task = self.task
        title = self.request.prompt if self.request else f"Task {task.task_id if task else ''}"
        details = params_line(self.request)
        if task is not None:
            details += f" · {task.task_id} · {task.status.value}"
            made = made_words(task.created_at)
            details += f" · {made}" if made else ""
        pictures = [picture.value for picture in _images(self.tiles) if picture.value]
        message = self._extras.get("message")
        note = (plain_text(message.value) if message is not None else "") or self.timings
        count = len(task.images) if task is not None else 0
        return _static.Entry(title, details, pictures, note, images=count if self.mode == "compact" else 0)

    def _show_tiles(self) -> None:
        """A thumbnail per image, each opening the large view."""
        assert self.task is not None
        old = list(self.tiles.children)
        self.tiles.children = [self._tile(image, self._thumbnails.get(image.index, b""))
                               for image in self.task.images]
        close_tree(old)
        self._arrange()

    def _tile(self, image: GeneratedImage, thumbnail: bytes) -> widgets.GridBox:
        """A thumbnail with its caption; a transparent button over it opens the large view."""
        count = len(self.task.images) if self.task is not None else 1
        name = self.request.prompt if self.request else "a generated image"
        picture = widgets.Image(value=thumbnail, format="jpeg", layout=layout(**_PICTURE))
        size = f"{image.width}x{image.height}" if image.width else "size unknown"
        caption = widgets.HTML(f"#{image.index + 1} · {size}", layout=layout(grid_area="cap"),
                               style=style("html"))
        if image.index in self._failed:  # said under the picture that is missing
            show_error(caption, self._failed[image.index])
        caption.value += alt_html(alt_text(name, image.index + 1, count))
        return widgets.GridBox([picture, caption, self._opener(image.index, f"Image {image.index + 1} of {count}")],
                               layout=layout(grid_template_areas='"pic" "cap"', grid_template_rows="auto auto",
                                             min_width="0"))

    def _opener(self, index: int, what: str) -> widgets.Button:
        opener = widgets.Button(tooltip=f"{what}: open it large", layout=layout(
            grid_area="pic", width="auto", height="auto", margin="0"),
            style=style("button", button_color="transparent"))
        opener.add_class(f"qw-open-{self.id}-{index}")
        opener.on_click(lambda _: self.open_viewer(index))
        return opener

    async def _show_compact(self) -> None:
        """One contact sheet of every image (see model.images.mosaic), opening the first large."""
        assert self.task is not None
        pictures = [self._thumbnails[image.index] for image in self.task.images if image.index in self._thumbnails]
        if not pictures:
            return
        try:
            sheet = await asyncio.to_thread(mosaic, pictures)
        except ValueError:
            sheet = pictures[0]
        count = len(self.task.images)
        name = self.request.prompt if self.request else "a generated image"
        image = self.task.images[0]
        size = f"{image.width}x{image.height}" if image.width else "size unknown"
        words = f"{count} images" if count > 1 else "1 image"
        picture = widgets.Image(value=sheet, format="jpeg", layout=layout(**_PICTURE))
        missing = f" ({len(self._failed)} could not be shown)" if self._failed else ""
        caption = widgets.HTML(html.escape(f"{words} · {size}{missing}") + alt_html(f"{words} of: {name}"),
                               layout=layout(grid_area="cap"), style=style("html"))
        old = list(self.tiles.children)
        self.tiles.children = [widgets.GridBox(
            [picture, caption, self._opener(image.index, f"{words}, the first")],
            layout=layout(grid_template_areas='"pic" "cap"', grid_template_rows="auto auto", min_width="0"))]
        self._thumbnails = {}  # the sheet stands for them all now
        close_tree(old)
        self._offer_actions()
        self._arrange()

    def feature(self) -> None:
        """Show this card's first image large above its thumbnails (the gallery's newest)."""
        self.mode = "featured"
        if self.task is not None and self.task.done and self.tiles.children:
            self.client.background(self._open_featured())

    async def _open_featured(self) -> None:
        await asyncio.sleep(FEATURE_DELAY)
        if self.mode == "featured" and not self._viewing and self.task is not None and self.task.images:
            self.open_viewer(self.task.images[0].index, focus=False)

    def compact(self) -> concurrent.futures.Future:
        """Show one contact sheet of this card's images, dropping its large view and its
        thumbnails (an older card in a panel)."""
        was = self.mode
        self.mode = "compact"

        async def shrink() -> None:
            if was == "featured" and self.viewer is not None:
                self._close_viewer()
            if self.task is not None and self.task.done and self._thumbnails:
                await self._show_compact()

        return self.client.background(shrink())

    def open_viewer(self, index: int, *, focus: bool = True) -> concurrent.futures.Future | None:
        """The large view of image `index`, in place of the thumbnails (above them when this is
        the gallery's newest card)."""
        if self.task is None or not self.task.images:
            return None
        if self.viewer is None:
            several = len(self.task.images) > 1
            self.viewer = Viewer(self.client, save_dir=self.save_dir, on_hide=self._viewer_closed,
                                 on_use_reference=self._on_use_reference, bridge=self.bridge,
                                 on_save_all=self.save_all if several else None)
            if self.viewer.save_all_button is not None:
                self.viewer.save_all_button.description = f"Save all {len(self.task.images)}"
        prompt = self.request.prompt if self.request else self.task.task_id
        position = next(i for i, image in enumerate(self.task.images) if image.index == index)
        self.viewer.opener = f"qw-open-{self.id}-{index}"
        future = self.viewer.show([(self.task, image, prompt) for image in self.task.images], position, focus=focus)
        self.layout.grid_column = "1 / -1"  # a whole row of the gallery: as wide as the page
        self._viewing = True
        self._offer_actions()  # the viewer has the saves now: one row says what each saves
        self._arrange()
        return future

    def _viewer_closed(self) -> None:
        self.layout.grid_column = None
        self._viewing = False
        if self.mode == "featured":
            self.mode = "tiles"
        self._offer_actions()
        self._arrange()

    def _close_viewer(self) -> None:
        viewer, self.viewer = self.viewer, None
        self._viewing = False
        self.layout.grid_column = None
        self._offer_actions()
        self._arrange()
        if viewer is not None:
            viewer.discard()

    # -- a finished card: its actions ---------------------------------------------------------

    def _offer_actions(self) -> None:
        """One row of actions: buttons while the card is the newest (or shows its images one
        by one), one "Actions…" menu of the same once it is an older card's contact sheet (a
        thousand older cards should not carry five idle buttons each)."""
        if self.task is None or not self.task.done:
            return
        old = list(self.actions.children)
        actions = [(label, action, tooltip) for label, action, tooltip in self._actions()
                   if not (self._viewing and action == self.save_all)]  # the large view has the saves
        if self.mode == "compact" and not self._viewing:
            menu = widgets.Dropdown(options=[("Actions…", "")] + [(label, label) for label, _, _ in actions],
                                    value="", layout=layout(width="auto"),
                                    tooltip="Actions: " + ", ".join(label for label, _, _ in actions))
            chosen = {label: action for label, action, _ in actions}

            def pick(change: dict) -> None:
                if change["new"]:
                    menu.value = ""
                    chosen[change["new"]]()

            menu.observe(pick, "value")
            self.actions.children = [menu]
        else:
            self.actions.children = [self._button(label, action, tooltip) for label, action, tooltip in actions]
        close_tree(old)

    def _actions(self) -> list[tuple[str, Callback, str]]:
        """(label, action, what it does) of a finished card's actions, in order."""
        assert self.task is not None
        actions: list[tuple[str, Callback, str]] = []
        if self._on_reuse is not None and self.request is not None:
            actions.append(("Load into the form", self.reuse_settings,
                            "Put this prompt and these settings in the form (Undo is there)"))
        if self._on_more is not None and self.request is not None:
            actions.append(("More like this", self.more_like_this,
                            "Send the same request again (new images: the API has no seed)"))
        if self.task.local_id is not None:
            actions.append(("Starred" if self.starred else "Star", self.toggle_star,
                            "Take the star away" if self.starred else
                            "Star it: the history finds starred ones, and the prompt menu offers them first"))
        count = len(self.task.images)
        actions.append(("Save all" if count > 1 else "Save", self.save_all,
                        f"Save the {'images' if count > 1 else 'image'} (PNG with its receipt inside, JSON "
                        f"sidecar) in {self.save_dir}/ on the server"))
        if self.mode == "compact" and not self._viewing:  # a menu: its second row's actions in it too
            actions += self._second_row()
        else:
            actions.append(("More…", self.toggle_more, "Copy the prompt or the settings, or delete"))
        return actions

    def _second_row(self) -> list[tuple[str, Callback, str]]:
        actions: list[tuple[str, Callback, str]] = []
        if self.request is not None:
            actions += [("Copy prompt", self.copy_prompt, "Copy the prompt to the clipboard"),
                        ("Copy settings", self.copy_settings, "Copy the prompt and every setting, one per line")]
        if self.task is not None and self.task.local_id is not None:
            actions.append(("Delete…", self.ask_delete, "Delete this generation and its kept images from this machine"))
        return actions

    def _offer_retry(self, retry: bool = True) -> None:
        actions = []
        if self.request is not None:
            if retry:
                actions.append(self._button("Retry", self.retry, "Submit the same request again"))
            if self._on_reuse is not None:
                actions.append(self._button("Edit", self.reuse_settings,
                                            "Load this request into the form to change it"))
        self.actions.children = actions

    def reuse_settings(self) -> None:
        if self._on_reuse is not None and self.request is not None:
            self._say(self._on_reuse(self.request))

    def more_like_this(self) -> None:
        """The same request again, in a new card (references whose links expired are uploaded
        again from this machine's files)."""
        if self._on_more is not None and self.request is not None:
            self._say(self._on_more(self.request))

    def toggle_star(self) -> concurrent.futures.Future | None:
        """Star this generation in the journal, or take the star away."""
        if self.task is None or self.task.local_id is None:
            return None
        starred = not self.starred

        async def run() -> None:
            try:
                await self.client.aio.star(self.task, starred)
            except QwenError as error:
                show_error(self.feedback, error_message(error))
                self._arrange()
                return
            self.starred = starred
            self._offer_actions()
            self._changed()

        return self.client.background(run())

    def toggle_more(self) -> None:
        """The second row of actions: copy the prompt, copy the settings, delete."""
        row = self._extras.pop("more", None)
        if row is not None:
            self._arrange()
            close_tree([row])
            return
        self._extras["more"] = widgets.HBox([self._button(label, action, tooltip)
                                             for label, action, tooltip in self._second_row()],
                                            layout=layout(flex_flow="row wrap", align_items="center"))
        self._arrange()

    def copy_prompt(self) -> None:
        if self.request is not None:
            copy_text(self.bridge, self.feedback, "prompt", self.request.prompt, self._arrange)

    def copy_settings(self) -> None:
        if self.request is not None:
            copy_text(self.bridge, self.feedback, "settings", settings_text(self.request), self._arrange)

    def ask_delete(self) -> None:
        """Ask before deleting: what goes, and that it cannot be undone."""
        if self.task is None or "confirm" in self._extras:
            return
        kept = [image.local_path for image in self.task.images if image.local_path is not None]
        size = sum(path.stat().st_size for path in kept if path.exists())
        words = (f"Delete this generation? Its {len(kept)} kept image(s) ({size_words(size)}) are deleted "
                 "from this machine and it leaves the history; this cannot be undone."
                 if kept else "Delete this generation? It leaves the history; this cannot be undone.")
        self._extras["confirm"] = widgets.HBox([
            widgets.HTML(text_html(words), layout=layout(width="auto"), style=style("html")),
            self._button("Delete", self.delete, "Delete it now"),
            self._button("Keep", self._keep, "Do not delete it")],
            layout=layout(flex_flow="row wrap", align_items="center"))
        self._arrange()

    def _keep(self) -> None:
        row = self._extras.pop("confirm", None)
        self._arrange()
        close_tree([row] if row is not None else [])

    def delete(self) -> concurrent.futures.Future | None:
        """Delete this generation (no question asked: `ask_delete` asks)."""
        task = self.task
        if task is None:
            return None

        async def run() -> None:
            try:
                freed = await self.client.aio.delete(task)
            except QwenError as error:
                self._keep()
                show_error(self.feedback, error_message(error))
                self._arrange()
                return
            self._keep()
            self._close_viewer()
            old = list(self.tiles.children) + list(self.actions.children) + [self._extras.pop("more", None)]
            self.tiles.children, self.actions.children = (), ()
            close_tree([widget for widget in old if widget is not None])
            self._set_status(f"{task.task_id} · deleted")
            self._say(f"Deleted: {freed['images']} kept image(s), {size_words(freed['bytes_freed'])} "
                      "freed on this machine.")
            self._changed()

        return self.client.background(run())

    def save_all(self) -> concurrent.futures.Future | None:
        """Save every loaded image on the server (the receipt inside each)."""
        if self.task is None:
            return None
        feedback = self.viewer.feedback if self._viewing and self.viewer is not None else self.feedback
        feedback.value = text_html("Saving…", color=MUTED_COLOR)
        self._arrange()
        images = [image for image in self.task.images if image.index in self._loaded]

        async def run() -> None:
            try:
                parts = [await save_and_offer(self.client, self.task, image, self.save_dir, self.bridge)
                         for image in images]
            except (QwenError, OSError, ValueError) as error:
                show_error(feedback, f"Could not save: {error_message(error)}")
                return
            feedback.value = "".join(parts) or text_html("No image could be loaded, so none was saved.")
            self._arrange()

        return self.client.background(run())


async def _cancel(task: asyncio.Task) -> None:
    task.cancel()


def _images(widget: widgets.Widget) -> list[widgets.Image]:
    found = [widget] if isinstance(widget, widgets.Image) else []
    for child in getattr(widget, "children", ()):
        found += _images(child)
    return found


class FullImages(Mapping):
    """A card's full-resolution images by index, read again when asked (the local copy, else
    the URL), so a finished card holds only its thumbnails. Use from the kernel's thread."""

    def __init__(self, card: Card):
        self._card = card

    def __getitem__(self, index: int) -> bytes:
        task = self._card.task
        if task is None or index not in self._card._loaded:
            raise KeyError(index)
        image = next(image for image in task.images if image.index == index)
        return self._card.client.fetch_image(image)

    def __iter__(self) -> Iterator[int]:
        return iter(sorted(self._card._loaded))

    def __len__(self) -> int:
        return len(self._card._loaded)
