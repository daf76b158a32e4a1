"""Image bytes as values (model.images): thumbnails that never decode a bomb."""

from __future__ import annotations

import io
import struct
import zlib

import pytest
from PIL import Image

from qwen_widgets.model import images
from qwen_widgets.model.images import thumbnail


def _chunk(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))


def bomb_png(width: int = 12000, height: int = 12000) -> bytes:
    """A small valid PNG (about 20 KB) whose header claims width x height pixels, written row
    by row so that making it never holds the pixels either."""
    packer = zlib.compressobj(9)
    row = b"\0" * (1 + (width + 7) // 8)  # filter byte, then 1-bit grey pixels
    idat = b"".join(packer.compress(row) for _ in range(height)) + packer.flush()
    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", header) + _chunk(b"IDAT", idat) + _chunk(b"IEND", b"")


def encoded(kind: str, size: tuple[int, int]) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, (90, 140, 200)).save(buffer, kind)
    return buffer.getvalue()


@pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")  # Pillow's own, at open
def test_a_decompression_bomb_is_refused_from_its_header():
    data = bomb_png()
    assert len(data) < 600_000
    with pytest.raises(ValueError, match="too large to show: 12000x12000 pixels"):
        thumbnail(data)


def test_a_large_jpeg_is_decoded_scaled_down_while_a_png_as_large_is_refused(monkeypatch):
    monkeypatch.setattr(images, "MAX_DECODED_PIXELS", 1_000_000)
    small = Image.open(io.BytesIO(thumbnail(encoded("JPEG", (2000, 1000)), 320)))
    assert small.size == (320, 160)
    with pytest.raises(ValueError, match="2000x1000"):
        thumbnail(encoded("PNG", (2000, 1000)), 320)


def test_an_ordinary_result_makes_a_thumbnail():
    small = Image.open(io.BytesIO(thumbnail(encoded("PNG", (2048, 1152)), 256)))
    assert small.format == "JPEG" and small.size == (256, 144)
