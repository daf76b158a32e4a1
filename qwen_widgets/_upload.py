"""Your own images as references: a file, bytes or a PIL image, turned into a URL the API takes.

The API wants public http(s) URLs in `image_urls`; APIMart's upload endpoint
(`POST /v1/uploads/images`, API.md section 5) makes one, valid for 72 h. Everything that can
be known locally is checked before any byte is sent: that it is a JPEG, PNG, GIF or WebP
(from the bytes, not the name), not empty, at most 20 MB. Uploads carry no idempotency key,
so one whose answer was lost is never sent again automatically.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ._budget import Priority
from ._download import image_format
from ._errors import APIError, ImageUploadError, MalformedResponseError, RequestValidationError, shorten
from ._keeper import journal_quietly
from ._task import UploadedImage
from ._urls import is_http_url

if TYPE_CHECKING:
    from ._client import AsyncQwenClient

__all__: list[str] = []  # UploadedImage, its value, lives in _task

MAX_UPLOAD_BYTES = 20 * 1024 * 1024
"""The documented upload limit."""
UPLOAD_LIFETIME = 72 * 3600.0
"""How long an uploaded image's URL works, by the contract."""
CONTENT_TYPES = {"png": "image/png", "jpeg": "image/jpeg", "gif": "image/gif", "webp": "image/webp"}


@dataclass(frozen=True)
class LocalImage:
    """A reference read from the user's side, checked, ready to upload."""

    data: bytes
    filename: str
    content_type: str
    local_path: Path | None

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.data).hexdigest()


def is_local(source: Any) -> bool:
    """True for a reference that must be uploaded first: a path, bytes, or a PIL image."""
    if isinstance(source, (bytes, bytearray, memoryview, Path)):
        return True
    if isinstance(source, str):
        if is_http_url(source.strip()) or source.strip().lower().startswith("data:"):
            return False
        try:
            return Path(source).expanduser().is_file()
        except (OSError, ValueError):  # a name too long, a NUL: not a file, let validation say why
            return False
    return _is_pil_image(source)


def read_local(source: Any, field: str = "image") -> LocalImage:
    """The bytes of a path, bytes or PIL image, checked by the upload rules (names the file)."""
    if isinstance(source, (str, Path)):
        path = Path(source).expanduser().absolute()
        try:
            data = path.read_bytes()
        except OSError as error:
            raise RequestValidationError(field, f"{path} cannot be read ({error.strerror or error})",
                                         show_value=False) from None
        return _checked(data, path.name, path, field)
    if isinstance(source, (bytes, bytearray, memoryview)):
        data = bytes(source)
        kind = image_format(data)
        return _checked(data, f"image.{'jpg' if kind == 'jpeg' else kind or 'bin'}", None, field)
    if _is_pil_image(source):
        buffer = io.BytesIO()
        try:  # PNG holds these modes; others (CMYK, YCbCr, ...) are converted first
            image = source if source.mode in ("1", "L", "LA", "P", "RGB", "RGBA") else source.convert("RGB")
            image.save(buffer, "PNG")
        except (OSError, ValueError) as error:
            raise RequestValidationError(field, f"this PIL image cannot be saved as PNG ({error})",
                                         show_value=False) from None
        return _checked(buffer.getvalue(), "image.png", None, field)
    raise RequestValidationError(field, "must be a file path, bytes, a PIL image or an http(s) URL", source)


def _checked(data: bytes, name: str, path: Path | None, field: str) -> LocalImage:
    shown = str(path) if path is not None else name
    if not data:
        raise RequestValidationError(field, f"{shown} is empty", show_value=False)
    if len(data) > MAX_UPLOAD_BYTES:
        raise RequestValidationError(
            field, f"{shown} is {len(data) / 2**20:.1f} MB, over the {MAX_UPLOAD_BYTES // 2**20} MB upload limit",
            show_value=False)
    kind = image_format(data)
    if kind is None:
        raise RequestValidationError(field, f"{shown} is not a JPEG, PNG, GIF or WebP image", show_value=False)
    return LocalImage(data, name, CONTENT_TYPES[kind], path)


def _is_pil_image(value: Any) -> bool:
    # no Pillow import for a plain check: only an object that already comes from Pillow
    return type(value).__module__.startswith("PIL.") and hasattr(value, "save") and hasattr(value, "size")


async def upload(client: AsyncQwenClient, source: Any, field: str = "image") -> UploadedImage:
    """Upload a local image once: the same bytes reuse their URL while it has an hour left
    (remembered in the journal, so across sessions too)."""
    local = read_local(source, field)
    digest = local.sha256
    now = time.time()
    known = client._uploads.get(digest) or await asyncio.to_thread(
        client.journal.uploaded, digest, client.base_url, now)
    if known is not None and (known.expires_at is None or known.expires_at.timestamp() > now + 3600):
        client._uploads[digest] = known
        return known

    def parse(body: Any, headers: Any) -> UploadedImage:
        return _parse_upload(body, local, digest, now)

    def lost(reason: str) -> ImageUploadError:
        return ImageUploadError(local.filename, reason, outcome_unknown=True)

    try:
        uploaded = await client._caller.call(
            "POST", "/v1/uploads/images", parse, files={"file": (local.filename, local.data, local.content_type)},
            unknown=lost, priority=Priority.SUBMIT)
    except APIError as error:
        raise ImageUploadError(local.filename, str(error)) from error
    client._uploads[digest] = uploaded
    await journal_quietly(client.journal, client.journal.add_upload, uploaded, client.base_url)
    return uploaded


def _parse_upload(body: Any, local: LocalImage, digest: str, now: float) -> UploadedImage:
    data = body.get("data", body) if isinstance(body, dict) else None
    url = data.get("url") if isinstance(data, dict) else None
    if not isinstance(url, str) or not is_http_url(url):
        raise MalformedResponseError(f"the upload answer has no usable url: {shorten(data)}")
    created = _seconds(data.get("created_at")) or now
    expires = _seconds(data.get("expires_at")) or created + UPLOAD_LIFETIME
    return UploadedImage(url, datetime.fromtimestamp(expires, timezone.utc),
                         data.get("filename") if isinstance(data.get("filename"), str) else local.filename,
                         local.content_type, len(local.data), digest, local.local_path)


def _seconds(value: Any) -> float | None:
    if isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0:
        return float(value) / (1000 if value > 1e11 else 1)
    return None


async def resolve(client: AsyncQwenClient, sources: Any) -> list[Any]:
    """`image_urls` with every local image replaced by its uploaded URL (URLs pass through,
    and anything else is left for the request's own validation to refuse)."""
    if sources is None or isinstance(sources, (str, Path, bytes, bytearray, memoryview)) or _is_pil_image(sources):
        sources = [sources] if sources is not None else []
    if not isinstance(sources, (list, tuple)):
        raise RequestValidationError("image_urls", "must be a list of URLs or images", sources)
    resolved = []
    for index, source in enumerate(sources):
        resolved.append((await upload(client, source, f"image_urls[{index}]")).url if is_local(source) else source)
    return resolved
