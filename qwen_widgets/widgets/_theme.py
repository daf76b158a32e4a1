"""What every view shares: the theme's colours, and the one way a thumbnail reaches the screen.

Colours are JupyterLab's CSS variables (with a fallback for other frontends), so light and
dark themes both read well. Thumbnails are made kernel-side with Pillow and sent as Image
bytes: that works on Binder and in demo mode, where the browser cannot reach the image URL.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

import ipywidgets as widgets

from .._download import thumbnail
from .._errors import QwenError
from ._format import error_message

if TYPE_CHECKING:
    from .._sync import QwenClient
    from .._task import GeneratedImage

__all__: list[str] = []

ERROR_COLOR = "var(--jp-error-color1, #b71c1c)"
BORDER = "1px solid var(--jp-border-color2, #ccc)"


def show_error(label: widgets.Label, text: str) -> None:
    """Put `text` in `label`, in the error colour."""
    label.value = text
    label.style.text_color = ERROR_COLOR


async def load_thumbnail(client: QwenClient, image: GeneratedImage | str, picture: widgets.Image,
                         note: widgets.Label, edge: int, *, note_prefix: str = "") -> bytes | None:
    """Fetch `image` and show it in `picture` as a JPEG of at most `edge` pixels a side.

    Runs on the private loop. Returns the full-size bytes; on failure says why in `note` and
    returns None.
    """
    try:
        data = await client.aio.fetch_image(image)
        picture.value = await asyncio.to_thread(thumbnail, data, edge)
    except (QwenError, ValueError) as error:
        show_error(note, f"{note_prefix}{error_message(error)}")
        return None
    return data
