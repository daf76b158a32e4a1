"""Card: one generation in the gallery, from submission to thumbnails.

The card's coroutine runs on the package's private loop; it updates widgets only by
assigning traits (never `with out:` or print, which land in the wrong cell from a
background thread). Stop cancels the watching, never the submission: a POST cut short
would leave its outcome unknown.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import html
import logging
import time
from pathlib import Path
from collections.abc import Callable

import ipywidgets as widgets

from .. import _runner
from .._sync import QwenClient
from .._errors import QwenError, stopped_watching
from .._task import GeneratedImage, Task, TaskStatus
from .._request import ImageRequest
from .._export import save_image
from ._theme import BORDER, ERROR_COLOR, load_thumbnail
from ._format import (
    error_message,
    expiry_line,
    params_line,
    retry_message,
    safe_link,
    status_line,
    timings_line,
)

__all__ = ["Card", "show", "THUMBNAIL_EDGE"]

THUMBNAIL_EDGE = 320
_log = logging.getLogger("qwen_widgets")


class Card(widgets.VBox):
    """One generation: prompt, parameters, live status, then the images with their actions.

    Start it with `start_generation(request)` or `start_attach(task_id)`; `future` is the
    concurrent future of the background work and `task` the last state seen.
    """

    def __init__(
        self,
        client: QwenClient,
        *,
        request: ImageRequest | None = None,
        save_dir: str | Path = "qwen_images",
        on_finished: Callable[[Task], None] | None = None,
        on_use_reference: Callable[[str], None] | None = None,
        on_reuse: Callable[[ImageRequest], None] | None = None,
    ):
        self.client = client
        self.request = request
        self.save_dir = Path(save_dir)
        self.task: Task | None = None
        self.future: concurrent.futures.Future | None = None
        self.full_images: dict[int, bytes] = {}
        """Full-resolution bytes by image index; they stay in Python, not in widget state."""
        self._on_finished = on_finished
        self._on_use_reference = on_use_reference
        self._on_reuse = on_reuse
        self._watcher: asyncio.Task | None = None
        self._submitting = False
        self._stop_requested = False
        self._started = time.monotonic()

        prompt = request.prompt if request is not None else ""
        self.title = widgets.HTML(
            f'<div style="white-space: pre-wrap; font-weight: 600"><bdi>{html.escape(prompt)}</bdi></div>'
        )
        self.params = widgets.Label(params_line(request))
        self.status = widgets.Label("")
        self.progress = widgets.FloatProgress(value=0, min=0, max=100, layout={"width": "100%"})
        self.message = widgets.Label("", style={"text_color": ERROR_COLOR}, layout={"display": "none"})
        self.message.observe(_hide_when_empty, "value")
        self.stop_button = widgets.Button(description="Stop", icon="stop",
                                          tooltip="Stop watching (the task may still finish and be billed)")
        self.attach_button = widgets.Button(description="Re-attach", icon="refresh",
                                            tooltip="Watch this task again", layout={"display": "none"})
        self.stop_button.on_click(lambda _: self.stop())
        self.attach_button.on_click(lambda _: self.reattach())
        self.timings = widgets.Label("", layout={"display": "none"})
        self.timings.observe(_hide_when_empty, "value")
        self.buttons = widgets.HBox([self.stop_button, self.attach_button])
        self.tiles = widgets.HBox(layout={"flex_flow": "row wrap"})
        self.viewer = widgets.Image(format="png", layout={"display": "none", "max_width": "100%"})
        self.viewer_close = widgets.Button(description="Close large view", layout={"display": "none"})
        self.viewer_close.on_click(lambda _: self._close_viewer())
        super().__init__(
            [self.title, self.params, self.status, self.progress,
             self.buttons, self.message,
             self.timings, self.tiles, self.viewer_close, self.viewer],
            layout={"border": BORDER, "padding": "6px", "margin": "4px 0"},
        )

    def __repr__(self) -> str:
        state = f"{self.task.task_id}, {self.task.status.value}" if self.task else "not submitted"
        return f"Card({state})"

    # -- starting and stopping ---------------------------------------------------------------

    def start_generation(self, request: ImageRequest) -> concurrent.futures.Future:
        """Submit `request` and watch it, in the background."""
        self.request = request
        self._submitting = True  # from now until the POST is answered, Stop must wait
        return self._launch(self._generate(request))

    def start_attach(self, task_or_id: Task | str) -> concurrent.futures.Future:
        """Watch an existing task (by id, or a Task that keeps its request), in the background."""
        task_id = task_or_id.task_id if isinstance(task_or_id, Task) else task_or_id
        self.status.value = f"{task_id} · re-attaching…"
        return self._launch(self._watch(task_or_id))

    def show_task(self, task: Task) -> concurrent.futures.Future:
        """Show a task that has already finished (its images load in the background)."""
        self.task = task
        self._on_update(task)
        return self._launch(self._show_result(task, watched=False))

    def stop(self) -> None:
        """Stop watching. The task itself cannot be cancelled: it may still finish and bill."""
        self._stop_requested = True
        watcher = self._watcher
        if watcher is not None:
            _runner.get_loop().call_soon_threadsafe(watcher.cancel)
        elif self._submitting:
            self.status.value = "Stop requested: waiting for the server to answer the submission…"

    def reattach(self) -> concurrent.futures.Future | None:
        """Watch this card's task again after Stop or a timeout."""
        if self.task is None or (self.future is not None and not self.future.done()):
            return None
        self.message.value = ""
        self.status.value = f"{self.task.task_id} · re-attaching…"
        return self._launch(self._watch(self.task))  # the Task keeps its request

    def _launch(self, coro) -> concurrent.futures.Future:
        self._stop_requested = False
        self._started = time.monotonic()
        self.buttons.layout.display = None
        self.stop_button.layout.display = None
        self.attach_button.layout.display = "none"
        self.future = _runner.submit(coro)
        self.future.add_done_callback(self._report_crash)
        return self.future

    def _report_crash(self, future: concurrent.futures.Future) -> None:
        """The done-callback: anything the coroutine did not handle lands in the card."""
        if future.cancelled():
            return
        error = future.exception()
        if error is not None:
            _log.error("generation card failed", exc_info=error)
            self._show_error(error)

    # -- the background work (runs on the private loop) -------------------------------------

    async def _generate(self, request: ImageRequest) -> Task | None:
        self.status.value = status_line(None, 0)
        try:
            task = await self.client.aio.submit(request, on_retry=self._on_retry)
        except QwenError as error:
            self._show_error(error)
            return None
        finally:
            self._submitting = False
        self._on_update(task)
        return await self._watch(task)

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
        """Refresh the elapsed time between polls, which may be seconds apart."""
        while True:
            await asyncio.sleep(1.0)
            if self.task is not None and not self.task.done:
                self.status.value = status_line(self.task, self._elapsed())

    def _on_update(self, task: Task) -> None:
        self.task = task
        self.message.value = ""
        self.status.value = status_line(task, self._elapsed())
        self.progress.value = task.progress
        overdue = task.estimated_time is not None and self._elapsed() > task.estimated_time
        self.progress.bar_style = "warning" if overdue and not task.done else ""

    def _on_retry(self, error: QwenError, delay: float) -> None:
        self.message.value = retry_message(error, delay)

    async def _show_result(self, task: Task, watched: bool = True) -> None:
        self.buttons.layout.display = "none"
        try:
            if task.status is not TaskStatus.COMPLETED:
                self.progress.bar_style = "danger"
                self.message.value = f"The task {task.status.value}: {task.error or 'no reason given'}"
                return
            self.progress.bar_style = "success"
            self.timings.value = timings_line(task, self._elapsed() if watched else None)
            self.tiles.children = [self._tile(image) for image in task.images]
            await asyncio.gather(*(self._load(image, tile)
                                   for image, tile in zip(task.images, self.tiles.children)))
        finally:  # the task is finished whatever happened to its thumbnails
            if self._on_finished is not None:
                self._on_finished(task)

    async def _load(self, image: GeneratedImage, tile: widgets.VBox) -> None:
        picture, caption = tile.children[0], tile.children[1]
        data = await load_thumbnail(self.client, image, picture, caption, THUMBNAIL_EDGE)
        if data is not None:
            self.full_images[image.index] = data

    # -- per-image widgets and actions ----------------------------------------------------------

    def _tile(self, image: GeneratedImage) -> widgets.VBox:
        picture = widgets.Image(format="jpeg", layout={"max_width": f"{THUMBNAIL_EDGE}px"})
        size = f"{image.width}x{image.height}" if image.width else "size unknown"
        caption = widgets.Label(f"#{image.index + 1} · {size}")
        link = widgets.HTML(f"{safe_link(image.url, 'image URL')} · {expiry_line(image)}")
        buttons = [self._button("View", "search-plus", lambda: self._view(image.index))]
        if self._on_use_reference is not None:
            buttons.append(self._button("Use as reference", "share",
                                        lambda: self._on_use_reference(image.url)))
        if self._on_reuse is not None and self.request is not None:
            buttons.append(self._button("Reuse settings", "sliders",
                                        lambda: self._on_reuse(self.request)))
        buttons.append(self._button("Save", "save", lambda: self._save(image, caption)))
        return widgets.VBox([picture, caption, link, widgets.HBox(buttons, layout={"flex_flow": "row wrap"})],
                            layout={"margin": "0 8px 8px 0", "max_width": f"{THUMBNAIL_EDGE + 16}px"})

    @staticmethod
    def _button(label: str, icon: str, action: Callable[[], object]) -> widgets.Button:
        button = widgets.Button(description=label, icon=icon, layout={"width": "auto"})
        button.on_click(lambda _: action())
        return button

    def _view(self, index: int) -> None:
        data = self.full_images.get(index)
        if data is None:
            self.message.value = "That image has not been downloaded."
            return
        self.viewer.value = data
        self.viewer.layout.display = None
        self.viewer_close.layout.display = None

    def _close_viewer(self) -> None:
        self.viewer.value = b""  # drop the bytes from widget state too
        self.viewer.layout.display = "none"
        self.viewer_close.layout.display = "none"

    def _save(self, image: GeneratedImage, caption: widgets.Label) -> None:
        data = self.full_images.get(image.index)
        if data is None or self.task is None:
            self.message.value = "That image has not been downloaded, so it cannot be saved."
            return
        try:
            path = save_image(self.task, image, data, self.save_dir)
        except OSError as error:
            self.message.value = f"Could not save: {error}"
            return
        caption.value = f"#{image.index + 1} saved to {path}"

    # -- status helpers ------------------------------------------------------------------------

    def _elapsed(self) -> float:
        return time.monotonic() - self._started

    def _show_stopped(self) -> None:
        task_id = self.task.task_id if self.task else "unknown"
        self.stop_button.layout.display = "none"
        self.attach_button.layout.display = None if self.task else "none"
        self.status.value = f"{task_id} · stopped watching"
        self.message.value = "S" + stopped_watching(task_id)[1:]

    def _show_error(self, error: BaseException) -> None:
        self.stop_button.layout.display = "none"
        self.progress.bar_style = "danger"
        self.message.value = error_message(error)
        resumable = self.task is not None and not self.task.done
        self.attach_button.layout.display = None if resumable else "none"
        self.buttons.layout.display = None if resumable else "none"


def _hide_when_empty(change: dict) -> None:
    """Observer: an empty label takes no room in the card."""
    change["owner"].layout.display = None if change["new"] else "none"


def show(tasks: Task | list[Task], client: QwenClient | None = None) -> list[Card]:
    """Display finished tasks as gallery cards, e.g. the result of `qw.generate(...)`."""
    from IPython.display import display

    from .._api import default_client

    cards = []
    for task in [tasks] if isinstance(tasks, Task) else tasks:
        card = Card(client or default_client(), request=task.request)
        card.show_task(task)
        display(card)
        cards.append(card)
    return cards
