"""Image bytes as values: what format they are, a small JPEG of them, text stored inside a PNG.

Pure functions of bytes (no files, no network): the engine sniffs what it downloads, the
store writes text into the PNGs it saves, and the views show thumbnails made here. Pillow
loads only when a thumbnail is made.
"""

from __future__ import annotations

import struct
import zlib
from datetime import datetime, timezone

__all__: list[str] = []

_SIGNATURES = (
    (b"\x89PNG\r\n\x1a\n", "png"),
    (b"\xff\xd8\xff", "jpeg"),
    (b"GIF87a", "gif"),
    (b"GIF89a", "gif"),
)
MIME_TYPES = {"png": "image/png", "jpeg": "image/jpeg", "gif": "image/gif", "webp": "image/webp"}
"""The content type of each format image_format() recognises."""
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_IHDR_END = 8 + 4 + 4 + 13 + 4  # signature, then IHDR: length, type, 13 bytes of data, CRC


def image_format(data: bytes) -> str | None:
    """'png', 'jpeg', 'gif' or 'webp' from the leading bytes; None if not an image."""
    for signature, name in _SIGNATURES:
        if data.startswith(signature):
            return name
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "webp"
    return None


MAX_DECODED_PIXELS = 64_000_000
"""The most pixels decoded for a thumbnail (16 times a 2K result). A small file may claim
12000x12000 pixels, which decode to gigabytes: such an image is refused from its header."""


def thumbnail(data: bytes, max_edge: int = 320) -> bytes:
    """A JPEG no larger than `max_edge` on its long side, so saved notebooks stay small.

    ValueError when the bytes cannot be decoded (Pillow's many error types, in one), or when
    they would decode to more than MAX_DECODED_PIXELS (checked from the header, before any
    pixel is decoded; a JPEG is first scaled down while decoding, so big photos still work).
    """
    import io

    from PIL import Image

    try:
        with Image.open(io.BytesIO(data)) as image:  # reads the header only
            image.draft("RGB", (max_edge, max_edge))  # JPEG: decode at 1/2, 1/4 or 1/8 scale
            width, height = image.size
            if width * height <= MAX_DECODED_PIXELS:
                image.thumbnail((max_edge, max_edge))
                buffer = io.BytesIO()
                image.convert("RGB").save(buffer, "JPEG", quality=82, optimize=True)
    except (OSError, ValueError, Image.DecompressionBombError) as exc:
        raise ValueError(f"not a readable image ({type(exc).__name__}: {exc})") from exc
    if width * height > MAX_DECODED_PIXELS:
        raise ValueError(f"too large to show: {width}x{height} pixels, over the "
                         f"{MAX_DECODED_PIXELS // 1_000_000} megapixels a thumbnail decodes")
    return buffer.getvalue()


def png_with_text(data: bytes, text: dict[str, str]) -> bytes:
    """The same PNG with iTXt chunks (UTF-8 text) after its header; other formats unchanged.

    Chunks are spliced in rather than re-encoding, so the pixels are byte-for-byte the
    server's.
    """
    if not data.startswith(_PNG_SIGNATURE) or data[12:16] != b"IHDR":
        return data
    chunks = b"".join(
        _chunk(b"iTXt", key.encode("latin-1") + b"\0\0\0\0\0" + value.encode("utf-8"))
        for key, value in text.items()
    )
    return data[:_IHDR_END] + chunks + data[_IHDR_END:]


def _chunk(kind: bytes, payload: bytes) -> bytes:
    crc = zlib.crc32(kind + payload) & 0xFFFFFFFF
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", crc)


def archive_name(now: datetime | None = None) -> str:
    """'qwen_images_20260130-141502.zip' (UTC), so downloads never overwrite each other."""
    return f"qwen_images_{(now or datetime.now(timezone.utc)):%Y%m%d-%H%M%S}.zip"
