"""What a finished card shows and does: thumbnails, the large view, its row of actions, and
the card as the copy saved with the notebook shows it.

Kept apart from the card's life (submit, watch, stop: `card.py`). A finished card holds only
its thumbnails; `FullImages` reads full images again when asked.
"""

from __future__ import annotations

import concurrent.futures
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING

import ipywidgets as widgets

from .. import _runner
from .._errors import QwenError
from .._task import GeneratedImage
from . import _static
from ._actions import save_and_offer
from ._format import error_message, params_line
from ._theme import MUTED_COLOR, layout, plain_text, show_error, style, text_html

if TYPE_CHECKING:
    from .card import Card

__all__: list[str] = []


class CardResults:
    """Mixed into Card: the finished part of a card."""

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
        from .viewer import Viewer

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

    def _offer_retry(self) -> None:
        actions = []
        if self.request is not None:
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

        return _runner.submit(run())


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
