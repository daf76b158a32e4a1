"""Reference images in the panel: URLs (one per line, with previews) and your own images.

Your own image ("Add image…", `panel.add_image(path)`, or "Use as reference" on a result
whose link has expired) is checked here, shown as a thumbnail made in the kernel, and
uploaded once in the background as soon as it is added; the request carries its URL. The
file upload control is emptied the moment its files arrive, so their bytes live in Python
only, never in widget state or a saved notebook.

An image this package wrote carries its receipt (see model.receipt): added here it is a
reference as any other, and the panel offers the choice to re-run its request or load its
settings instead.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
from collections.abc import Awaitable, Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import ipywidgets as widgets

from ..engine.sync import QwenClient
from ..model.errors import ImageUploadError, QwenError, RequestValidationError
from ..model.receipt import Receipt
from ..model.request import ImageRequest, check_image_url
from ..model.task import GeneratedImage, UploadedImage
from ._format import error_message, expiry_words, photo_problem
from ._theme import (
    MUTED_COLOR,
    layout,
    load_thumbnail,
    plain_text,
    show_error,
    show_note,
    style,
    text_html,
)

__all__ = ["Photo", "References", "lines"]

PREVIEW_EDGE = 96
_ACCEPT = ".png,.jpg,.jpeg,.gif,.webp,image/png,image/jpeg,image/gif,image/webp"


class Photo(widgets.VBox):
    """One of your own images in the form: its thumbnail, its name, how its upload goes, and
    a button to remove it. `url` is its uploaded URL once there (None before)."""

    def __init__(self, source: bytes | Path, data: bytes, name: str, key: str,
                 on_remove: Callable[[Photo], None], on_change: Callable[[], None]):
        self.source, self.name, self.key = source, name, key
        self.uploaded: UploadedImage | None = None
        self.future: concurrent.futures.Future | None = None
        """The upload under way, or the last one."""
        self._data: bytes | None = data  # for the thumbnail only
        self._client: QwenClient | None = None
        self._on_change = on_change
        self.picture = widgets.Image(format="jpeg", layout=layout(
            max_width=f"{PREVIEW_EDGE}px", max_height=f"{PREVIEW_EDGE}px", object_fit="contain"))
        self.note = widgets.HTML(layout=layout(width="auto"), style=style("html"))
        self.remove_button = widgets.Button(
            icon="times", description="", tooltip=f"Remove {name} from the reference images",
            layout=layout(width="28px", height="24px", padding="0"), style=style("button"))
        self.remove_button.on_click(lambda _: on_remove(self))
        caption = widgets.HTML(text_html(name, small=True), layout=layout(width="auto", flex="1 1 auto"),
                               style=style("html"))
        super().__init__([self.picture, widgets.HBox([caption, self.remove_button], layout=layout(
            align_items="flex-start")), self.note], layout=layout(margin="0 8px 0 0", width="150px"))
        self.add_class("qw-photo")

    def __repr__(self) -> str:
        return f"Photo({self.name!r}, url={self.url!r})"

    @property
    def url(self) -> str | None:
        """The uploaded URL while it has an hour left, else None."""
        expires = self.uploaded.expires_at if self.uploaded else None
        if self.uploaded is None or (expires is not None and
                                     (expires - datetime.now(timezone.utc)).total_seconds() < 3600):
            return None
        return self.uploaded.url

    def start(self, client: QwenClient) -> concurrent.futures.Future:
        """Upload in the background with `client` (again after a failure or a new key)."""
        self._client, self.uploaded = client, None
        self.future = client.background(self._upload(client))
        self.future.add_done_callback(lambda _: self._on_change())  # once it is done, either way
        return self.future

    async def wait_url(self, client: QwenClient) -> str:
        """On the private loop: the URL, uploading again if the last try failed, the link is
        about to expire, or the client changed. QwenError names the image when it fails."""
        if self.url is not None and self._client is client:
            return self.url
        if self.future is None or self._client is not client or self.future.done():
            self.start(client)  # never started, a new key, failed, or its link is ending
        return await asyncio.wrap_future(self.future)

    async def _upload(self, client: QwenClient) -> str:
        if self._data is not None:
            try:
                self.picture.value = await client.aio.thumbnail(self._data, PREVIEW_EDGE)
            except ValueError:
                pass  # the service will say what it thinks of it
            self._data = None
        show_note(self.note, "uploading…")
        try:
            try:
                uploaded = await client.aio.upload(self.source)
            except ImageUploadError as error:  # bytes upload as "image.png": name it as you know it
                raise ImageUploadError(self.name, error.reason, outcome_unknown=error.outcome_unknown) from error
        except QwenError as error:
            if client is self._client:
                show_error(self.note, error_message(error))
            raise
        if client is self._client:
            self.uploaded = uploaded
            show_note(self.note, f"uploaded · link {expiry_words(uploaded.expires_at)}")
        return uploaded.url


class References:
    """The reference images of the next request: URL lines (with previews) and your own images
    (checked, shown, uploaded in the background). Part of a Panel; `on_change()` tells the form
    to check itself again."""

    def __init__(self, client: QwenClient, *, on_change: Callable[[], None],
                 on_receipt: Callable[[Photo, Receipt], None] | None = None):
        self.client = client
        self._on_change = on_change
        self._on_receipt = on_receipt
        self.image_urls = widgets.Textarea(
            placeholder="https://… one per line (optional)", description="References",
            tooltip="Reference image URLs for image to image, one per line (optional)",
            rows=1, continuous_update=False, layout={"width": "auto", "flex": "1 1 300px"})
        self.previews = widgets.HBox(layout={"flex_flow": "row wrap"})
        self.photos: list[Photo] = []
        """Your own images in the form, in the order added (after the URL lines)."""
        self.add_image_button = widgets.FileUpload(
            description="Add image…", accept=_ACCEPT, multiple=True, icon="",
            layout={"width": "auto", "flex": "0 0 auto"},
            tooltip="Use your own images (JPEG, PNG, GIF or WebP, up to 20 MB) as references")
        self.add_image_button.observe(self._files_chosen, "value")
        self.photo_note = widgets.HTML(layout=layout(width="auto"), style=style("html"))
        self.line_problems: list[str] = []
        """What is wrong with each URL line ("line 2: must be ..."), as the previews found it."""
        self._preview_boxes: dict[str, widgets.VBox] = {}
        self._url_boxes: list[widgets.VBox] = []

    def urls(self) -> list[str]:
        """The URL lines, then your own images that are uploaded (in the order added)."""
        uploaded = [photo.url for photo in self.photos if photo.url is not None]
        return list(dict.fromkeys([*lines(self.image_urls.value), *uploaded]))

    def uploading(self) -> list[Photo]:
        """Your images without a usable URL yet (uploading, or failed)."""
        return [photo for photo in self.photos if photo.url is None]

    def wait_for_uploads(self) -> None:
        """Block until every image still uploading is there; ImageUploadError names one that
        fails (a comparison's requests are fixed when it starts, so it needs them all)."""
        for photo in self.uploading():
            self.client.background(photo.wait_url(self.client)).result()

    # -- your own images ------------------------------------------------------------------------

    def _files_chosen(self, change: dict) -> None:
        files = change["new"]
        if not files:
            return
        self.add_image_button.value = ()  # out of widget state at once: the bytes live here only
        for file in files:
            self.add_image(bytes(file["content"]), name=str(file["name"]))

    def add_image(self, source: Any, name: str | None = None) -> Photo | None:
        """Add your own image (a path, bytes or a PIL image) as a reference. It is checked at
        once (a refusal is said next to "Add image…"), then uploaded in the background; the
        same image twice is added once. Returns its Photo, or None when it was refused."""
        try:
            local = self.client.read_image(source)
        except RequestValidationError as error:
            show_error(self.photo_note, photo_problem(name or "The image", error.rule))
            return None
        self.photo_note.value = ""
        known = next((photo for photo in self.photos if photo.key == local.sha256), None)
        if known is not None:
            if known.future is not None and known.future.done() and known.url is None:
                known.start(self.client)  # added again after a failed upload: try again
            return known
        data = local.data  # read once: for its preview, and its receipt (ours sits at the start)
        photo = Photo(local.local_path or data, data, name or local.filename, local.sha256,
                      on_remove=self.remove_image, on_change=self._on_change)
        self.photos.append(photo)
        self._show_previews()
        photo.start(self.client)
        self._on_change()
        receipt = Receipt.from_bytes(data[:256 * 1024])
        if receipt is not None and receipt.request is not None and self._on_receipt is not None:
            self._on_receipt(photo, receipt)
        return photo

    def remove_image(self, photo: Photo) -> None:
        """Take one of your images out of the references (a generation already started keeps it)."""
        if photo in self.photos:
            self.photos.remove(photo)
            self._show_previews()
            self._on_change()

    def use_client(self, client: QwenClient) -> None:
        """A new client (a key entered) cannot use the old one's URLs: upload again."""
        self.client = client
        for photo in self.photos:
            photo.start(self.client)

    def prepare_for(self, request: ImageRequest) -> Callable[[], Awaitable[ImageRequest]] | None:
        """When `request` lacks some of your images (still uploading when it was read): a
        coroutine function (for the card, on the private loop) that waits for them and returns
        the request with their URLs. (An upload may finish between reading the form and this
        check, so it looks at the request, not at the uploads.)"""
        photos, client = list(self.photos), self.client
        if all(photo.url in request.image_urls for photo in photos):
            return None
        urls = lines(self.image_urls.value)

        async def prepare() -> ImageRequest:
            uploaded = [await photo.wait_url(client) for photo in photos]
            return request.replace(image_urls=list(dict.fromkeys([*urls, *uploaded])))

        return prepare

    # -- "Use as reference" ---------------------------------------------------------------------

    def add_reference(self, reference: GeneratedImage | str) -> str:
        """Add a reference for the next generation (the image-to-image loop): a URL, or a
        result image. A result whose link has expired, or will within the hour, is added from
        the copy kept on this machine (uploaded). Returns the words saying what happened,
        shown next to the button that asked."""
        if isinstance(reference, GeneratedImage):
            expires = reference.expires_at
            ending = expires is not None and (expires - datetime.now(timezone.utc)).total_seconds() < 3600
            kept = reference.local_path if reference.local_path and reference.local_path.is_file() else None
            if ending and kept is not None:
                photo = self.add_image(kept)
                if photo is None:
                    return f"Its link {expiry_words(expires)}: {plain_text(self.photo_note.value)}"
                place = self._place(photo)
                return (f"Its link {expiry_words(expires)}, so the copy kept on this machine is "
                        f"uploaded and used instead: {place}; write the change you want and press Generate.")
            if ending and expires <= datetime.now(timezone.utc):
                return ("Its link has expired and no copy of it was kept on this machine, so it "
                        "cannot be a reference any more.")
            reference = reference.url
        urls = lines(self.image_urls.value)
        total = len(urls) + len(self.photos)
        if reference in urls:
            return f"Already reference image {urls.index(reference) + 1} of {total} in the form above."
        self.image_urls.value = "\n".join([*urls, reference])
        return (f"Added as reference image {len(urls) + 1} of {total + 1} in the form above; "
                "write the change you want and press Generate.")

    def _place(self, photo: Photo) -> str:
        count = len(lines(self.image_urls.value))
        return (f"reference image {count + self.photos.index(photo) + 1} of "
                f"{count + len(self.photos)} in the form above")

    # -- URL previews ----------------------------------------------------------------------------

    def refresh_previews(self) -> None:
        """The URL lines were edited: a preview for each usable one, a problem for each other
        (`line_problems`, which the form shows)."""
        boxes, problems = [], []
        for line_number, url in enumerate(lines(self.image_urls.value), 1):
            try:
                check_image_url(line_number - 1, url)
            except RequestValidationError as error:
                problems.append(f"line {line_number}: {error.rule}")
                continue
            if url not in self._preview_boxes:
                self._preview_boxes[url] = self._start_preview(url)
            boxes.append(self._preview_boxes[url])
        self._url_boxes, self.line_problems = boxes, problems
        self._show_previews()

    def _show_previews(self) -> None:
        self.previews.children = [*self._url_boxes, *self.photos]

    def _start_preview(self, url: str) -> widgets.VBox:
        picture = widgets.Image(format="jpeg", layout={"max_width": f"{PREVIEW_EDGE}px"})
        note = widgets.HTML(text_html("loading…", color=MUTED_COLOR, small=True),
                            layout={"max_width": "220px"})

        def report(future: concurrent.futures.Future) -> None:
            if not future.cancelled() and future.exception() is not None:
                show_error(note, f"cannot be previewed: {error_message(future.exception())}")

        self.client.background(self._load_preview(url, picture, note)).add_done_callback(report)
        return widgets.VBox([picture, note], layout={"margin": "0 6px 0 0"})

    async def _load_preview(self, url: str, picture: widgets.Image, note: widgets.HTML) -> None:
        if await load_thumbnail(self.client, url, picture, note, PREVIEW_EDGE,
                                note_prefix="cannot be previewed: ") is not None:
            note.value = ""


def lines(text: str) -> list[str]:
    """The non-empty lines of `text`, trimmed."""
    return [line.strip() for line in text.splitlines() if line.strip()]
