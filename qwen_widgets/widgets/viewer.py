"""Viewer: the large view of one image, opened in place of the thumbnails that were clicked.

It opens where the user is looking (its card or grid swaps its thumbnails for it, rather than
adding it below everything), fits the window (at most 75% of its height, the full width),
and says which image it shows ("Image 2 of 4"), with previous/next, close, and the image's
own actions. The picture is a screen-sized JPEG made kernel-side from the full image, which
is read again (local copy or URL) and dropped when the view closes.
"""

from __future__ import annotations

import concurrent.futures
import html
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import ipywidgets as widgets

from ..model.errors import QwenError
from ._actions import image_download_html, save_and_offer
from ._format import error_message, expiry_line, safe_link
from ._theme import MUTED_COLOR, layout, show_error, style, text_html

if TYPE_CHECKING:
    from ..engine.sync import QwenClient
    from ..model.task import GeneratedImage, Task

__all__ = ["Viewer"]

SCREEN_EDGE = 1600
"""The large view's JPEG: sharp on a laptop screen, a fraction of a 2K PNG's bytes."""

Item = tuple["Task", "GeneratedImage", str]
"""(task, image, what to call it: its prompt, or its grid cell)."""


class Viewer(widgets.VBox):
    """Shows `items[index]` large; `on_hide` is called when it closes."""

    def __init__(self, client: QwenClient, *, save_dir: Path, on_hide: Callable[[], None],
                 on_use_reference: Callable[[GeneratedImage], str] | None = None):
        self.client = client
        self.save_dir = save_dir
        self.items: list[Item] = []
        self.index = 0
        self._on_hide = on_hide
        self._on_use_reference = on_use_reference
        self.caption = widgets.HTML(layout=layout(width="auto"), style=style("html"))
        self.picture = widgets.Image(format="jpeg", layout=layout(
            max_width="100%", max_height="75vh", object_fit="contain", width="auto", margin="4px auto"))
        button = _button_factory()
        self.previous_button = button("Previous", "chevron-left", lambda: self.step(-1))
        self.next_button = button("Next", "chevron-right", lambda: self.step(1))
        self.close_button = button("Close", "times", self.hide)
        self.reference_button = button("Use as reference", "share", self.use_as_reference)
        self.save_button = button("Save", "save", self.save)
        self.download_button = button("Download", "download", self.download)
        self.feedback = widgets.HTML(layout=layout(width="auto"), style=style("html"))
        actions = [self.previous_button, self.next_button, self.download_button, self.save_button]
        if on_use_reference is not None:
            actions.append(self.reference_button)
        self.bar = widgets.HBox([*actions, self.close_button],
                                layout=layout(flex_flow="row wrap", align_items="center"))
        super().__init__([self.caption, self.bar, self.feedback, self.picture],
                         layout=layout(width="auto", margin="4px 0"))
        self.add_class("qw-viewer")

    @property
    def current(self) -> Item:
        return self.items[self.index]

    def show(self, items: list[Item], index: int) -> concurrent.futures.Future:
        """Open on `items[index]`; the picture loads in the background (the returned future)."""
        self.items, self.index = list(items), index
        return self._load()

    def step(self, delta: int) -> concurrent.futures.Future | None:
        """Previous (-1) or next (+1), wrapping around."""
        if not self.items:
            return None
        self.index = (self.index + delta) % len(self.items)
        return self._load()

    def hide(self) -> None:
        self.picture.value = b""  # the large bytes leave widget state with the view
        self.feedback.value = ""
        self._on_hide()

    def use_as_reference(self) -> None:
        if self._on_use_reference is not None:
            _, image, _ = self.current
            self.feedback.value = text_html(self._on_use_reference(image))

    def save(self) -> concurrent.futures.Future:
        task, image, _ = self.current
        return self._act("Saving…", save_and_offer(self.client, task, image, self.save_dir))

    def download(self) -> concurrent.futures.Future:
        task, image, _ = self.current

        async def link() -> str:
            return image_download_html(task, image, await self.client.aio.fetch_image(image))

        return self._act("Preparing the download…", link())

    def _act(self, busy: str, work) -> concurrent.futures.Future:
        self.feedback.value = text_html(busy, color=MUTED_COLOR)

        async def run() -> None:
            try:
                self.feedback.value = await work
            except (QwenError, OSError, ValueError) as error:
                show_error(self.feedback, f"That did not work: {error_message(error)}")

        return self.client.background(run())

    def _load(self) -> concurrent.futures.Future:
        task, image, name = self.current
        self.feedback.value = ""
        self.picture.value = b""
        size = f"{image.width}x{image.height}" if image.width else "size unknown"
        self.caption.value = (
            f'<div style="line-height: 1.4"><b>Image {self.index + 1} of {len(self.items)}</b> · {size} · '
            f'<bdi>{html.escape(name)}</bdi><br><span style="color: {MUTED_COLOR}; font-size: 0.9em">'
            f"{html.escape(task.task_id)} · {safe_link(image.url, 'image URL')} · {expiry_line(image)}"
            "</span></div>")
        self.previous_button.disabled = self.next_button.disabled = len(self.items) < 2
        expected = (self.index, image)

        async def load() -> None:
            try:
                screen = await self.client.aio.thumbnail(image, SCREEN_EDGE)
            except (QwenError, ValueError) as error:
                show_error(self.feedback, f"This image cannot be shown: {error_message(error)}")
                return
            if (self.index, self.current[1]) == expected:  # not moved on meanwhile
                self.picture.value = screen

        return self.client.background(load())


def _button_factory():
    def button(label: str, icon: str, action: Callable[[], object]) -> widgets.Button:
        made = widgets.Button(description=label, icon=icon, tooltip=label,
                              layout=layout(width="auto"), style=style("button"))
        made.on_click(lambda _: action())
        return made

    return button
