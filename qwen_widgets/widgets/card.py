"""Card: one generation in the gallery, from submission to thumbnails, and what a finished
card does (the large view, its row of actions, its copy saved with the notebook).

The card's coroutine runs on the package's private loop (`client.background`); it updates
widgets only by assigning traits (never `with out:` or print, which land in the wrong cell
from a background thread). Stop cancels the watching, never the submission: a POST cut short
would leave its outcome unknown.

What a card shows is decided by its children list (`_arrange`), not by hiding widgets, so
its widgets can share layouts (see `_theme`). A finished card keeps only its thumbnails:
full images are read again by the client, from the local copy or the URL, when the large
view, Save or Download needs them (`FullImages`).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import html
import logging
import time
from collections.abc import Awaitable, Callable, Iterator, Mapping
from pathlib import Path

import ipywidgets as widgets

from ..engine.sync import QwenClient
from ..model.errors import AuthenticationError, QwenError, SubmitOutcomeUnknownError, TaskFailedError
from ..model.request import ImageRequest
from ..model.task import GeneratedImage, Task, TaskStatus
from ..model.submission import Entry
from . import _static
from ._actions import save_and_offer
from ._format import (cost_words, error_message, failed_status, params_line, retry_message, status_line,
                      stopped_message, timings_line)
from ._theme import (BORDER, MUTED_COLOR, THUMBNAIL_EDGE, layout, load_thumbnail, plain_text,
                     show_error, show_note, style, text_html)
from .viewer import Viewer

__all__ = ["Card", "THUMBNAIL_EDGE"]

_log = logging.getLogger("qwen_widgets")
Callback = Callable[..., object]


class Card(widgets.VBox):
    """One generation: prompt, parameters, live status, then the thumbnails and one row of
    actions. Clicking a thumbnail opens the large view in its place.

    Start it with `start_generation(request)` or `start_attach(task_id)`; `future` is the
    concurrent future of the background work and `task` the last state seen.
    `on_use_reference(image)` and `on_reuse(request)` return the words confirming what they did;
    `on_error(error)` hears every error the card shows (the panel points a refused key to its
    key field).
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
        on_changed: Callable[[], None] | None = None,
        on_error: Callable[[BaseException], None] | None = None,
    ):
        self.client = client
        self.request = request
        self.save_dir = Path(save_dir)
        self.task: Task | None = None
        self.future: concurrent.futures.Future | None = None
        self.full_images = FullImages(self)
        """Full-resolution bytes by image index, read again on demand (not kept in memory)."""
        self._loaded: set[int] = set()
        self._on_finished, self._on_changed, self._on_error = on_finished, on_changed, on_error
        self._on_use_reference, self._on_reuse = on_use_reference, on_reuse
        self._watcher: asyncio.Task | None = None
        self._prepare: Callable[[], Awaitable[ImageRequest]] | None = None
        self._lost: Entry | None = None  # a lost submission this card resends with its key
        self._unknown_key: str | None = None  # the key of this card's submission whose answer was lost
        self._submitting = self._running = self._stop_requested = False
        self._started = time.monotonic()
        self._mirror: _static.Mirror | None = None
        self._viewing = False
        self.viewer = None
        """The large view (a Viewer), made the first time a thumbnail is clicked."""

        html_widget = lambda: widgets.HTML(layout=layout(width="auto"), style=style("html"))  # noqa: E731
        self.title, self.params = html_widget(), html_widget()
        self.status = widgets.HTML(layout=layout(width="auto"),
                                   style=style("html", text_color=MUTED_COLOR, font_size="0.9em"))
        self.message, self.timings, self.feedback = html_widget(), html_widget(), html_widget()
        self._show_request(request)
        self._watching_widgets: dict[str, widgets.Widget] = {}
        self.tiles = widgets.GridBox(layout=layout(
            grid_template_columns="repeat(auto-fill, minmax(120px, 1fr))", grid_gap="6px", width="auto"))
        self.actions = widgets.HBox(layout=layout(flex_flow="row wrap", align_items="center"))
        super().__init__(layout={"border": BORDER, "padding": "6px 8px", "margin": "0", "min_width": "0"})
        self.add_class("qw-card")
        self._arrange()

    def __repr__(self) -> str:
        state = f"{self.task.task_id}, {self.task.status.value}" if self.task else "not submitted"
        return f"Card({state})"

    # The progress bar and the Stop / Re-attach buttons exist only while they can be needed:
    # made when watching starts, closed once the images are in (a thousand finished cards
    # should not carry four idle widgets each).

    @property
    def progress(self) -> widgets.FloatProgress:
        return self._watching("progress", lambda: widgets.FloatProgress(
            value=0, min=0, max=100, layout=layout(width="auto"), style=style("progress")))

    @property
    def stop_button(self) -> widgets.Button:
        return self._watching("stop", lambda: self._button(
            "Stop", "stop", self.stop, "Stop watching (the task may still finish and be billed)"))

    @property
    def attach_button(self) -> widgets.Button:
        return self._watching("attach", lambda: self._button(
            "Re-attach", "refresh", self.reattach, "Watch this task again"))

    @property
    def buttons(self) -> widgets.HBox:
        return self._watching("buttons", lambda: widgets.HBox(layout=layout(align_items="center")))

    def _watching(self, name: str, make: Callable[[], widgets.Widget]) -> widgets.Widget:
        if name not in self._watching_widgets:
            self._watching_widgets[name] = make()
        return self._watching_widgets[name]

    def _release_watching_widgets(self) -> None:
        widgets_ = self._watching_widgets
        self._watching_widgets = {}
        self._arrange()
        for widget in widgets_.values():
            widget.close()

    # -- display: the live card, and the copy saved with the notebook -------------------------

    def _ipython_display_(self) -> None:
        if self._mirror is None:
            self._mirror = _static.Mirror(lambda mirror_id: _static.page_html(
                mirror_id, "Saved with the notebook (the live card needs a running kernel):",
                [self.static_entry()]), self.client.background)
        self._mirror.display(self, "qwen_widgets card: the live view needs a running kernel; "
                                   "its saved copy follows.")

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
        self.message.value = ""
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
        self.task, self._loaded = None, set()
        self.message.value = self.timings.value = self.feedback.value = ""
        self.tiles.children, self.actions.children = (), ()
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
        if self.message.value:
            self.message.value = ""
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
            timings = " · ".join(filter(None, [timings_line(task, self._elapsed() if watched else None),
                                               cost_words(task)]))
            self.timings.value = text_html(timings, color=MUTED_COLOR, small=True)
            # one secondary line under the prompt: the task id, its state and its timings
            self._set_status(" · ".join(filter(None, [status_line(task, 0), timings])))
            self.tiles.children = [self._tile(image) for image in task.images]
            self._offer_actions()
            await asyncio.gather(*(self._load(image, tile)
                                   for image, tile in zip(task.images, self.tiles.children)))
        finally:  # the task is finished whatever happened to its thumbnails
            self._arrange()
            self._changed()
            if self._on_finished is not None:
                self._on_finished(task)

    async def _load(self, image: GeneratedImage, tile: widgets.GridBox) -> None:
        picture, caption = tile.children[0], tile.children[1]
        if await load_thumbnail(self.client, image, picture, caption) is not None:
            self._loaded.add(image.index)

    # -- what is shown ---------------------------------------------------------------------------

    def _arrange(self) -> None:
        shown = [self.title, self.params, self.status]
        if self._running:
            shown.append(self.progress)
        buttons = self._watching_widgets.get("buttons")
        if buttons is not None and buttons.children:
            shown.append(buttons)
        if self.message.value:
            shown.append(self.message)
        if self.tiles.children:
            shown.append(self.viewer if self._viewing else self.tiles)
        if self.actions.children:
            shown.append(self.actions)
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

    def _button(self, label: str, icon: str, action: Callback, tooltip: str) -> widgets.Button:
        button = widgets.Button(description=label, icon=icon, tooltip=tooltip,
                                layout=layout(width="auto"), style=style("button"))
        button.on_click(lambda _: action())
        return button

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

    # -- a finished card: thumbnails, the large view, actions, the saved copy --------------------

    def static_entry(self) -> _static.Entry:
        """This card as the static copy shows it (prompt, parameters, thumbnails, outcome)."""
        task = self.task
        title = self.request.prompt if self.request else f"Task {task.task_id if task else ''}"
        details = params_line(self.request)
        if task is not None:
            details += f" · {task.task_id} · {task.status.value}"
        thumbs = [tile.children[0].value for tile in self.tiles.children if tile.children[0].value]
        note = plain_text(self.message.value) or plain_text(self.timings.value)
        return _static.Entry(title, details, thumbs, note)

    def _tile(self, image: GeneratedImage) -> widgets.GridBox:
        """A thumbnail with its caption; a transparent button over it opens the large view."""
        picture = widgets.Image(format="jpeg", layout=layout(
            grid_area="pic", width="100%", height="auto", max_height="200px", object_fit="contain",
            margin="0"))
        size = f"{image.width}x{image.height}" if image.width else "size unknown"
        caption = widgets.HTML(f"#{image.index + 1} · {size}", layout=layout(grid_area="cap"),
                               style=style("html"))
        opener = widgets.Button(tooltip=f"Image {image.index + 1}: open it large",
                                layout=layout(grid_area="pic", width="auto", height="auto", margin="0"),
                                style=style("button", button_color="transparent"))
        opener.on_click(lambda _: self.open_viewer(image.index))
        return widgets.GridBox([picture, caption, opener], layout=layout(
            grid_template_areas='"pic" "cap"', grid_template_rows="auto auto", min_width="0"))

    def open_viewer(self, index: int) -> concurrent.futures.Future | None:
        """The large view of image `index`, in place of the thumbnails."""
        if self.task is None or not self.task.images:
            return None
        if self.viewer is None:
            self.viewer = Viewer(self.client, save_dir=self.save_dir, on_hide=self._viewer_closed,
                                 on_use_reference=self._on_use_reference)
        prompt = self.request.prompt if self.request else self.task.task_id
        position = next(i for i, image in enumerate(self.task.images) if image.index == index)
        future = self.viewer.show([(self.task, image, prompt) for image in self.task.images], position)
        self.layout.grid_column = "1 / -1"  # a whole row of the gallery: as wide as the page
        self._viewing = True
        self._arrange()
        return future

    def _viewer_closed(self) -> None:
        self.layout.grid_column = None
        self._viewing = False
        self._arrange()

    def _offer_actions(self) -> None:
        actions = []
        if self._on_reuse is not None and self.request is not None:
            actions.append(self._button("Reuse settings", "sliders", self.reuse_settings,
                                        "Load this card's prompt and settings into the form"))
        actions.append(self._button("Save", "save", self.save_all,
                                    f"Save the images (PNG + JSON sidecar) in {self.save_dir}/ on the "
                                    "server, with a download link to this computer"))
        self.actions.children = [*actions, self.feedback]

    def _offer_retry(self, retry: bool = True) -> None:
        actions = []
        if self.request is not None:
            if retry:
                actions.append(self._button("Retry", "redo", self.retry, "Submit the same request again"))
            if self._on_reuse is not None:
                actions.append(self._button("Edit", "edit", self.reuse_settings,
                                            "Load this request into the form to change it"))
        self.actions.children = [*actions, self.feedback] if actions else ()

    def reuse_settings(self) -> None:
        if self._on_reuse is not None and self.request is not None:
            self.feedback.value = text_html(self._on_reuse(self.request))

    def save_all(self) -> concurrent.futures.Future | None:
        """Save every loaded image on the server, with download links."""
        if self.task is None:
            return None
        self.feedback.value = text_html("Saving…", color=MUTED_COLOR)
        images = [image for image in self.task.images if image.index in self._loaded]

        async def run() -> None:
            try:
                parts = [await save_and_offer(self.client, self.task, image, self.save_dir)
                         for image in images]
            except (QwenError, OSError, ValueError) as error:
                show_error(self.feedback, f"Could not save: {error_message(error)}")
                return
            self.feedback.value = "".join(parts) or text_html("No image could be loaded, so none was saved.")

        return self.client.background(run())


async def _cancel(task: asyncio.Task) -> None:
    task.cancel()


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
