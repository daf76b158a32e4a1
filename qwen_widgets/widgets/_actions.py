"""What the image buttons do, for the card, the grid and the large view alike.

**Save** writes to the kernel's disk (a folder beside the notebook), which a Binder user
cannot reach; so every save also offers a download to the browser. The download is an
`<a download>` link whose target is the file itself as a `data:` URI: the browser saves it
without any request to the server, which works on Binder and without custom JavaScript. The
link holds the bytes in widget state until it is replaced, so it is made only on request.
"""

from __future__ import annotations

import base64
import html
from pathlib import Path
from typing import TYPE_CHECKING

from ..model.images import MIME_TYPES, image_format
from ._theme import MUTED_COLOR

if TYPE_CHECKING:
    from ..engine.sync import QwenClient
    from ..model.task import GeneratedImage, Task

__all__: list[str] = []

def image_name(task: Task, image: GeneratedImage, data: bytes) -> str:
    """`<task_id>_<index>.<ext>`, the name Save uses too."""
    return f"{task.task_id}_{image.index}.{image_format(data) or 'bin'}"


def download_html(filename: str, data: bytes, mime: str, words: str = "Download") -> str:
    """A link that makes the browser save `data` as `filename` (nothing is fetched)."""
    size = _size(len(data))
    href = f"data:{mime};base64,{base64.b64encode(data).decode()}"
    return (f'<a download="{html.escape(filename, quote=True)}" href="{href}" '
            f'style="font-weight: 600">&#x2B07; {html.escape(words)} {html.escape(filename)}</a> '
            f'<span style="color: {MUTED_COLOR}">({size}, to this computer)</span>')


def image_download_html(task: Task, image: GeneratedImage, data: bytes) -> str:
    name = image_name(task, image, data)
    return download_html(name, data, MIME_TYPES.get(image_format(data) or "", "application/octet-stream"))


async def save_and_offer(client: QwenClient, task: Task, image: GeneratedImage,
                         folder: Path) -> str:
    """Have the client save one image (and its sidecar) on the kernel's disk; HTML saying
    where, with a download link to the browser."""
    path, data = await client.aio.save_image(task, image, folder)
    return (f'<div style="line-height: 1.5">Saved on the server: <code>{html.escape(str(path))}</code>'
            f"<br>{image_download_html(task, image, data)}</div>")


def _size(count: int) -> str:
    if count >= 1024 * 1024:
        return f"{count / 1024 / 1024:.1f} MB"
    return f"{max(1, round(count / 1024))} KB"
