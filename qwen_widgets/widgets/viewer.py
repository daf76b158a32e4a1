"""Viewer: the large view of one image, the same for a card, a comparison grid and the history.

It opens where the user is looking (a card swaps its thumbnails for it, a grid and the
history show it above their tables, never inside a cell), fits the window (at most 75% of
its height, the full width), and says which image it shows ("Image 2 of 4"), with
previous/next across every image it was given, close, and the image's own actions. The
picture is a screen-sized JPEG made kernel-side from the full image, which is read again
(local copy or URL) and dropped when the view closes.

With the views' small helper (`_keys.Keys`) the keyboard works as in any image viewer:
opening moves focus into the view, the arrow keys go to the previous and next image, Escape
closes it and focus returns to the thumbnail. Every control has a name a screen reader reads
(no icon glyphs), and the picture's alternative text is its prompt and its place.
"""

from __future__ import annotations

import concurrent.futures
import html
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import ipywidgets as widgets

from ..model.errors import QwenError
from ._actions import download_image, save_and_offer
from ._format import error_message, expiry_line, made_words, safe_link
from ._theme import MUTED_COLOR, alt_html, close_tree, layout, show_error, style, text_html

if TYPE_CHECKING:
    from ..engine.sync import QwenClient
    from ..model.task import GeneratedImage, Task
    from ._keys import Keys

__all__ = ["Viewer", "alt_text"]

SCREEN_EDGE = 1600
"""The large view's JPEG: sharp on a laptop screen, a fraction of a 2K PNG's bytes."""

Item = tuple["Task", "GeneratedImage", str]
"""(task, image, what to call it: its prompt, or its grid cell)."""


def alt_text(name: str, position: int, count: int) -> str:
    """'Image 2 of 4: a lighthouse at dusk' (the prompt cut at 150 characters)."""
    name = name if len(name) <= 150 else name[:149] + "…"
    return f"Image {position} of {count}: {name}"


class Viewer(widgets.VBox):
    """Shows `items[index]` large; `on_hide` is called when it closes. `on_save_all`, when
    given, adds "Save all" (a card's images), so a card with its viewer open shows one row of
    saves, each saying what it saves."""

    def __init__(self, client: QwenClient, *, save_dir: Path, on_hide: Callable[[], None],
                 on_use_reference: Callable[[GeneratedImage], str] | None = None,
                 bridge: Keys | None = None, on_save_all: Callable[[], object] | None = None):
        self.client = client
        self.save_dir = save_dir
        self.items: list[Item] = []
        self.index = 0
        self.bridge = bridge
        self.dom_class = f"qw-viewer-{uuid.uuid4().hex[:12]}"
        self.opener: str | None = None
        """The DOM class of the thumbnail that opened it (focus returns there on close)."""
        self._on_hide = on_hide
        self._on_use_reference = on_use_reference
        self.caption = widgets.HTML(layout=layout(width="auto"), style=style("html"))
        self.picture = widgets.Image(format="jpeg", layout=layout(
            max_width="100%", max_height="75vh", object_fit="contain", width="auto", margin="4px auto"))
        self.previous_button = _button("Previous", self.step_back, "Previous image (left arrow)")
        self.next_button = _button("Next", self.step_on, "Next image (right arrow)")
        self.close_button = _button("Close", self.hide, "Close the large view (Escape)")
        self.reference_button = _button("Use as reference", self.use_as_reference,
                                        "Add this image as a reference image in the form (image to image)")
        self.save_button = _button("Save this image", self.save,
                                   f"Save this image (PNG, receipt inside, JSON sidecar) in {save_dir}/ on the server")
        self.download_button = _button("Download", self.download,
                                       "Download this image to this computer (its receipt inside)")
        self.feedback = widgets.HTML(layout=layout(width="auto"), style=style("html"))
        actions = [self.previous_button, self.next_button, self.download_button, self.save_button]
        self.save_all_button: widgets.Button | None = None
        if on_save_all is not None:
            self.save_all_button = _button("Save all", lambda: on_save_all(),
                                           f"Save every image of this generation in {save_dir}/ on the server")
            actions.append(self.save_all_button)
        if on_use_reference is not None:
            actions.append(self.reference_button)
        self.bar = widgets.HBox([*actions, self.close_button],
                                layout=layout(flex_flow="row wrap", align_items="center"))
        super().__init__([self.caption, self.bar, self.feedback, self.picture],
                         layout=layout(width="auto", margin="4px 0"))
        self.add_class("qw-viewer")
        self.add_class(self.dom_class)
        if bridge is not None:
            bridge.watch_viewer(self.dom_class, self._key)

    @property
    def current(self) -> Item:
        return self.items[self.index]

    def show(self, items: list[Item], index: int, *, focus: bool = True) -> concurrent.futures.Future:
        """Open on `items[index]`; the picture loads in the background (the returned future).
        `focus`: move the keyboard's focus into the view (a click asked for it; a view opened
        by itself, as the newest result is, leaves focus where it is)."""
        self.items, self.index = list(items), index
        future = self._load()
        if focus and self.bridge is not None:
            self.bridge.focus(f".{self.dom_class}")
        return future

    def step(self, delta: int) -> concurrent.futures.Future | None:
        """Previous (-1) or next (+1), wrapping around."""
        if not self.items:
            return None
        self.index = (self.index + delta) % len(self.items)
        return self._load()

    def step_back(self) -> concurrent.futures.Future | None:
        return self.step(-1)

    def step_on(self) -> concurrent.futures.Future | None:
        return self.step(1)

    def hide(self) -> None:
        self.picture.value = b""  # the large bytes leave widget state with the view
        self.feedback.value = ""
        self._on_hide()
        if self.bridge is not None:
            self.bridge.restore(f".{self.opener}" if self.opener else None)

    def discard(self) -> None:
        """Close this view for good: its picture, its widgets, and the helper's hold on it."""
        self.picture.value = b""
        if self.bridge is not None:
            self.bridge.unwatch_viewer(self.dom_class)
        close_tree([self])

    def _key(self, key: str) -> None:
        {"previous": self.step_back, "next": self.step_on, "close": self.hide}[key]()

    def use_as_reference(self) -> None:
        if self._on_use_reference is not None:
            _, image, _ = self.current
            self.feedback.value = text_html(self._on_use_reference(image))

    def save(self) -> concurrent.futures.Future:
        task, image, _ = self.current
        return self._act("Saving…", save_and_offer(self.client, task, image, self.save_dir, self.bridge))

    def download(self) -> concurrent.futures.Future:
        task, image, _ = self.current

        async def send() -> None:
            await download_image(self.client, self.bridge, self.feedback, task, image)

        return self._act("Preparing the download…", send(), says_itself=True)

    def _act(self, busy: str, work, *, says_itself: bool = False) -> concurrent.futures.Future:
        self.feedback.value = text_html(busy, color=MUTED_COLOR)

        async def run() -> None:
            try:
                said = await work
            except (QwenError, OSError, ValueError) as error:
                show_error(self.feedback, f"That did not work: {error_message(error)}")
                return
            if not says_itself:
                self.feedback.value = said

        return self.client.background(run())

    def _load(self) -> concurrent.futures.Future:
        task, image, name = self.current
        self.feedback.value = ""
        self.picture.value = b""
        position, count = self.index + 1, len(self.items)
        size = f"{image.width}x{image.height}" if image.width else "size unknown"
        made = made_words(task.created_at)
        self.caption.value = (
            f'<div style="line-height: 1.4"><b>Image {position} of {count}</b> · {size} · '
            f'<bdi>{html.escape(name)}</bdi><br><span style="color: {MUTED_COLOR}; font-size: 0.9em">'
            f"{html.escape(task.task_id)} · {made + ' · ' if made else ''}{safe_link(image.url, 'image URL')}"
            f" · {expiry_line(image)}"
            + (" · ← → move, Esc closes" if self.bridge is not None and self.bridge.available else "")
            + f"</span>{alt_html(alt_text(name, position, count))}</div>")
        self.previous_button.disabled = self.next_button.disabled = count < 2
        expected = (self.index, image)

        async def load() -> None:
            try:
                screen = await self.client.aio.thumbnail(image, SCREEN_EDGE)
            except (QwenError, ValueError) as error:
                show_error(self.feedback, f"This image cannot be shown: {error_message(error)}")
                return
            if self.items and (self.index, self.current[1]) == expected:  # not moved on meanwhile
                self.picture.value = screen

        return self.client.background(load())


def _button(label: str, action: Callable[[], object], tooltip: str) -> widgets.Button:
    """A text button (no icon: an icon's glyph would start its accessible name)."""
    made = widgets.Button(description=label, tooltip=tooltip, layout=layout(width="auto"), style=style("button"))
    made.on_click(lambda _: action())
    return made
