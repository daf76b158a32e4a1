"""What the image buttons do, for the card, the grid, the history and the large view alike.

**Download** hands the browser the file in one click: the image with its receipt inside (the
request, model, task id, cost, timings, sha256s: see model.receipt), sent once as a message
of the view's small helper widget (`_keys.Keys`), so no image bytes stay in widget state or a
saved notebook. Without that helper (no `anywidget` package) the download is an `<a
download>` link whose target is the file as a `data:` URI: the browser saves it without any
request to the server (Binder works), but the link holds the bytes in widget state until it is
replaced, so it is made only on request and a second click saves it.

**Save** writes to the kernel's disk (a folder beside the notebook), which a Binder user
cannot reach: without the helper it also offers that link.
"""

from __future__ import annotations

import base64
import html
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from ..model.images import MIME_TYPES, image_format
from ..model.receipt import labelled
from ._format import size_words
from ._theme import MUTED_COLOR, text_html

if TYPE_CHECKING:
    import ipywidgets as widgets

    from ..engine.sync import QwenClient
    from ..model.task import GeneratedImage, Task
    from ._keys import Keys

__all__: list[str] = []


def image_name(task: Task, image: GeneratedImage, data: bytes) -> str:
    """`<task_id>_<index>.<ext>`, the name Save uses too."""
    return f"{task.task_id}_{image.index}.{image_format(data) or 'bin'}"


def download_html(filename: str, data: bytes, mime: str, words: str = "Download") -> str:
    """A link that makes the browser save `data` as `filename` (nothing is fetched)."""
    href = f"data:{mime};base64,{base64.b64encode(data).decode()}"
    return (f'<a download="{html.escape(filename, quote=True)}" href="{href}" '
            f'style="font-weight: 600">{html.escape(words)} {html.escape(filename)}</a> '
            f'<span style="color: {MUTED_COLOR}">({size_words(len(data))}, to this computer)</span>')


def send_file(keys: Keys | None, feedback: widgets.HTML, filename: str, mime: str, data: bytes) -> None:
    """Have the browser save `data` now, saying so in `feedback`; without the helper, a link
    to click (see the module docstring)."""
    def done(ok: bool) -> None:
        feedback.value = text_html(
            f"Downloaded {filename} ({size_words(len(data))}) to this computer." if ok else
            f"The browser did not take {filename}; try again.", color=MUTED_COLOR)

    if keys is not None and keys.download(filename, mime, data, done):
        feedback.value = text_html(f"Sending {filename} ({size_words(len(data))}) to your browser…",
                                   color=MUTED_COLOR)
    else:
        feedback.value = download_html(filename, data, mime, "Save")


async def download_image(client: QwenClient, keys: Keys | None, feedback: widgets.HTML, task: Task,
                         image: GeneratedImage) -> None:
    """Fetch one image (local copy or URL) and hand it to the browser, receipt inside."""
    data = await client.aio.fetch_image(image)
    _, stamped = labelled(task, image, data)
    send_file(keys, feedback, image_name(task, image, data), MIME_TYPES.get(image_format(data) or "",
                                                                            "application/octet-stream"), stamped)


async def save_and_offer(client: QwenClient, task: Task, image: GeneratedImage, folder: Path,
                         keys: Keys | None = None) -> str:
    """Have the client save one image (receipt inside, JSON sidecar beside) on the kernel's
    disk; HTML saying where, and without the download helper a link to the browser too."""
    path, _ = await client.aio.save_image(task, image, folder)
    said = f'Saved on the server: <code>{html.escape(str(path))}</code>'
    if keys is not None and keys.available:
        return f'<div style="line-height: 1.35">{said}</div>'
    stamped = path.read_bytes()
    mime = MIME_TYPES.get(image_format(stamped) or "", "application/octet-stream")
    return f'<div style="line-height: 1.35">{said}<br>{download_html(path.name, stamped, mime)}</div>'


def copy_text(keys: Keys | None, feedback: widgets.HTML, what: str, text: str,
              after: Callable[[], None] | None = None) -> None:
    """Put `text` on the clipboard (the helper asks the browser); where that cannot be done, a
    read-only box holding it, selected text the person copies with Ctrl+C."""
    rows = min(8, text.count("\n") + 1)
    box = (f'<textarea class="qw-copy-box" readonly rows="{rows}" aria-label="{html.escape(what, quote=True)}" '
           f'style="width: 100%; font: inherit">{html.escape(text)}</textarea>')

    def done(ok: bool) -> None:
        feedback.value = (text_html(f"Copied the {what}.", color=MUTED_COLOR) if ok else
                          text_html(f"The browser did not allow copying; select the {what} here and "
                                    "press Ctrl+C:", color=MUTED_COLOR) + box)
        if after is not None:
            after()

    if keys is None or not keys.copy(text, done):
        feedback.value = text_html(f"Select the {what} and press Ctrl+C:", color=MUTED_COLOR) + box
    if after is not None:
        after()
