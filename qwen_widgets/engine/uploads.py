"""Your own images as references: a file, bytes or a PIL image, read and checked to be uploaded.

The API wants public http(s) URLs in `image_urls`; APIMart's upload endpoint
(`POST /v1/uploads/images`, docs/api-contract.md section 4) makes one, valid for 72 h. Everything that can
be known locally is checked here, before any byte is sent: that it is a JPEG, PNG, GIF or
WebP (from the bytes, not the name), not empty, at most 20 MB. Sending it is the client's
`upload()`; uploads carry no idempotency key, so one whose answer was lost is never sent
again automatically.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, BinaryIO

from ..model.errors import MalformedResponseError, RequestValidationError, shorten
from ..model.images import MIME_TYPES, image_format
from ..model.task import UploadedImage
from ..model.urls import is_http_url

__all__: list[str] = []  # UploadedImage, its value, lives in model.task

MAX_UPLOAD_BYTES = 20 * 1024 * 1024
"""The documented upload limit."""
UPLOAD_LIFETIME = 72 * 3600.0
"""How long an uploaded image's URL works, by the contract."""


_HEAD = 16
"""Bytes enough to tell the format (image_format)."""
_CHUNK = 1024 * 1024


@dataclass(frozen=True)
class LocalImage:
    """A reference from the user's side, checked, ready to upload. A file is not held in
    memory: it is hashed in chunks here and streamed from disk when sent (`opened()`)."""

    filename: str
    content_type: str
    local_path: Path | None
    size: int
    """Its length in bytes."""
    sha256: str
    """Its content's hash: the same bytes are uploaded once."""
    held: bytes | None = None
    """The bytes, for an image given as bytes or a PIL image (None for a file)."""

    @property
    def data(self) -> bytes:
        """The bytes (a file is read again: only previews need them all at once)."""
        if self.held is not None:
            return self.held
        assert self.local_path is not None
        return self.local_path.read_bytes()

    def opened(self) -> contextlib.AbstractContextManager[BinaryIO]:
        """The content to send: the file itself, open, so httpx streams it in chunks (an
        upload costs a chunk of memory, not the file twice over), or the bytes held."""
        if self.held is not None:
            return contextlib.nullcontext(io.BytesIO(self.held))
        assert self.local_path is not None
        return self.local_path.open("rb")


def is_local(source: Any) -> bool:
    """True for a reference that must be uploaded first: a path, bytes, or a PIL image. A
    string counts when it names a file, or looks like a path to one (`photos/cat.jpg`), so a
    mistyped path is said to be missing rather than a bad URL."""
    if isinstance(source, (bytes, bytearray, memoryview, Path)):
        return True
    if isinstance(source, str):
        text = source.strip()
        if is_http_url(text) or "://" in text or text.lower().startswith("data:"):
            return False
        try:
            return Path(text).expanduser().is_file() or _looks_like_a_path(text)
        except (OSError, ValueError):  # a name too long, a NUL: not a file, let validation say why
            return False
    return _is_pil_image(source)


def _looks_like_a_path(text: str) -> bool:
    """A file name with an extension, or a path from a folder (`./`, `~/`, `/`, `C:\\`); not a
    base64 blob (which has no dot) nor anything longer than a path can be."""
    if not text or len(text) > 1024 or "\n" in text:
        return False
    path = Path(text)
    return bool(path.suffix) or text.startswith(("~", ".", "/", "\\")) or (len(text) > 2 and text[1] == ":")


def read_local(source: Any, field: str = "image") -> LocalImage:
    """A path, bytes or PIL image, checked by the upload rules (names the file)."""
    if isinstance(source, (str, Path)):
        path = Path(source).expanduser().absolute()
        try:
            return _checked_file(path, field)
        except FileNotFoundError:
            raise RequestValidationError(field, f"no such file: {path} (a reference is a local image file "
                                                "or a public http(s) URL)", show_value=False) from None
        except OSError as error:
            raise RequestValidationError(field, f"{path} cannot be read ({error.strerror or error})",
                                         show_value=False) from None
    if isinstance(source, (bytes, bytearray, memoryview)):
        data = bytes(source)
        kind = image_format(data)
        return _checked(data, f"image.{'jpg' if kind == 'jpeg' else kind or 'bin'}", field)
    if _is_pil_image(source):
        buffer = io.BytesIO()
        try:  # PNG holds these modes; others (CMYK, YCbCr, ...) are converted first
            image = source if source.mode in ("1", "L", "LA", "P", "RGB", "RGBA") else source.convert("RGB")
            image.save(buffer, "PNG")
        except (OSError, ValueError) as error:
            raise RequestValidationError(field, f"this PIL image cannot be saved as PNG ({error})",
                                         show_value=False) from None
        return _checked(buffer.getvalue(), "image.png", field)
    raise RequestValidationError(field, "must be a file path, bytes, a PIL image or an http(s) URL", source)


def _checked_file(path: Path, field: str) -> LocalImage:
    """A file checked from its size and first bytes, and hashed a chunk at a time."""
    with path.open("rb") as handle:
        size = os.fstat(handle.fileno()).st_size
        head = handle.read(_HEAD)
        content_type = _check(head, size, str(path), field)
        digest = hashlib.sha256(head)
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return LocalImage(path.name, content_type, path, size, digest.hexdigest())


def _checked(data: bytes, name: str, field: str) -> LocalImage:
    content_type = _check(data[:_HEAD], len(data), name, field)
    return LocalImage(name, content_type, None, len(data), hashlib.sha256(data).hexdigest(), data)


def _check(head: bytes, size: int, shown: str, field: str) -> str:
    """The content type, if the upload rules allow an image of `size` bytes starting with `head`."""
    if not size:
        raise RequestValidationError(field, f"{shown} is empty", show_value=False)
    if size > MAX_UPLOAD_BYTES:
        raise RequestValidationError(
            field, f"{shown} is {size / 2**20:.1f} MB, over the {MAX_UPLOAD_BYTES // 2**20} MB upload limit",
            show_value=False)
    kind = image_format(head)
    if kind is None:
        raise RequestValidationError(field, f"{shown} is not a JPEG, PNG, GIF or WebP image", show_value=False)
    return MIME_TYPES[kind]


def _is_pil_image(value: Any) -> bool:
    # no Pillow import for a plain check: only an object that already comes from Pillow
    return type(value).__module__.startswith("PIL.") and hasattr(value, "save") and hasattr(value, "size")


def parse_upload(body: Any, local: LocalImage, now: float) -> UploadedImage:
    """The upload endpoint's answer as an UploadedImage; MalformedResponseError without a usable URL."""
    data = body.get("data", body) if isinstance(body, dict) else None
    url = data.get("url") if isinstance(data, dict) else None
    if not isinstance(url, str) or not is_http_url(url):
        raise MalformedResponseError(f"the upload answer has no usable url: {shorten(data)}")
    created = _seconds(data.get("created_at")) or now
    expires = _seconds(data.get("expires_at")) or created + UPLOAD_LIFETIME
    return UploadedImage(url, datetime.fromtimestamp(expires, timezone.utc),
                         data.get("filename") if isinstance(data.get("filename"), str) else local.filename,
                         local.content_type, local.size, local.sha256, local.local_path)


def _seconds(value: Any) -> float | None:
    if isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0:
        return float(value) / (1000 if value > 1e11 else 1)
    return None


def as_sources(sources: Any) -> list[Any]:
    """`image_urls` as a list: one path, URL, bytes or PIL image becomes a list of one."""
    if sources is None or isinstance(sources, (str, Path, bytes, bytearray, memoryview)) or _is_pil_image(sources):
        return [sources] if sources is not None else []
    if not isinstance(sources, (list, tuple)):
        raise RequestValidationError("image_urls", "must be a list of URLs or images", sources)
    return list(sources)
