"""Image bytes as values: what format they are, a small JPEG of them, text stored inside them.

Pure functions of bytes (no files, no network): the engine sniffs what it downloads, the
store writes text into the images it saves, and the views show thumbnails made here. Pillow
loads only when a thumbnail is made.

Text goes into a file without re-encoding it (the pixels stay byte for byte the server's): a
PNG gets iTXt chunks (UTF-8) after its header; a JPEG or a WebP gets one XMP packet (an APP1
segment, or an `XMP ` chunk with the VP8X header that announces it) whose `dc:description`
holds the prompt and whose `qw:receipt` holds the receipt's JSON. XMP rather than EXIF's
UserComment: it is UTF-8 by definition, and Lightroom, exiftool and most viewers show it.
"""

from __future__ import annotations

import html
import re
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


def mosaic(thumbnails: list[bytes], edge: int = 320, gap: int = 4) -> bytes:
    """Several thumbnails side by side in one JPEG at most `edge` pixels wide (a contact
    sheet: two columns for two or four images, three for three, five or six); one thumbnail
    is returned as it is. A finished card keeps this one picture instead of one per image, so
    its memory does not grow with the number of images. ValueError when one cannot be read."""
    import io
    import math

    from PIL import Image

    if len(thumbnails) == 1:
        return thumbnails[0]
    columns = 2 if len(thumbnails) in (2, 4) else 3
    rows = math.ceil(len(thumbnails) / columns)
    try:
        pictures = [Image.open(io.BytesIO(data)) for data in thumbnails]
        width, height = pictures[0].size
        cell_w = (edge - gap * (columns - 1)) // columns
        cell_h = max(1, round(cell_w * height / max(width, 1)))
        sheet = Image.new("RGB", (cell_w * columns + gap * (columns - 1), cell_h * rows + gap * (rows - 1)),
                          (128, 128, 128))
        for number, picture in enumerate(pictures):
            picture.thumbnail((cell_w, cell_h))
            x = (number % columns) * (cell_w + gap) + (cell_w - picture.width) // 2
            y = (number // columns) * (cell_h + gap) + (cell_h - picture.height) // 2
            sheet.paste(picture.convert("RGB"), (x, y))
        buffer = io.BytesIO()
        sheet.save(buffer, "JPEG", quality=80, optimize=True)
    except (OSError, ValueError, Image.DecompressionBombError) as exc:
        raise ValueError(f"not a readable image ({type(exc).__name__}: {exc})") from exc
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
    return data[:_IHDR_END] + chunks + _without_text(data[_IHDR_END:], {key.encode("latin-1") for key in text})


def _without_text(chunks: bytes, keys: set[bytes]) -> bytes:
    """PNG chunks without the text chunks of `keys` (written again, they are replaced, not doubled)."""
    kept, position = [], 0
    while position + 8 <= len(chunks):
        length, kind = struct.unpack(">I4s", chunks[position:position + 8])
        end = position + 12 + length
        if not (kind in (b"tEXt", b"zTXt", b"iTXt")
                and chunks[position + 8:end - 4].partition(b"\0")[0] in keys):
            kept.append(chunks[position:end])
        position = end
    return b"".join(kept) + chunks[position:]


_XMP_HEADER = b"http://ns.adobe.com/xap/1.0/\x00"
_XMP_NAMESPACE = "https://github.com/qwen-widgets/qwen_widgets/ns/receipt/1.0/"
_XMP_FIELD = re.compile(r"<qw:(\w+)>(.*?)</qw:\1>", re.S)
_JPEG_SEGMENT_LIMIT = 65_533  # a segment's length field counts itself: 2 + this


def with_text(data: bytes, text: dict[str, str]) -> bytes:
    """`data` with `text` stored inside it, the pixels untouched: iTXt chunks in a PNG, an XMP
    packet in a JPEG or WebP (the key 'prompt' as its dc:description, every key as qw:<key>);
    a GIF or anything else is returned as it is."""
    kind = image_format(data)
    if kind == "png":
        return png_with_text(data, text)
    if kind == "jpeg":
        return _jpeg_with_xmp(data, _xmp_packet(text))
    if kind == "webp":
        return _webp_with_xmp(data, _xmp_packet(text))
    return data


def read_text(data: bytes) -> dict[str, str]:
    """The text stored in an image: a PNG's tEXt, zTXt and iTXt chunks, or the qw: fields of
    a JPEG's or WebP's XMP packet. Empty when there is none (or the bytes are not an image)."""
    kind = image_format(data)
    if kind == "png":
        return _png_text(data)
    packet = _jpeg_xmp(data) if kind == "jpeg" else _webp_xmp(data) if kind == "webp" else None
    if packet is None:
        return {}
    return {key: html.unescape(value) for key, value in _XMP_FIELD.findall(packet)}


def _png_text(data: bytes) -> dict[str, str]:
    found: dict[str, str] = {}
    position = len(_PNG_SIGNATURE)
    while position + 8 <= len(data):
        length, kind = struct.unpack(">I4s", data[position:position + 8])
        payload = data[position + 8:position + 8 + length]
        position += 12 + length
        try:
            if kind == b"tEXt":
                key, _, value = payload.partition(b"\0")
                found[key.decode("latin-1")] = value.decode("latin-1")
            elif kind == b"zTXt":
                key, _, rest = payload.partition(b"\0")
                found[key.decode("latin-1")] = _inflate(rest[1:]).decode("latin-1")
            elif kind == b"iTXt":
                key, _, rest = payload.partition(b"\0")
                compressed, rest = rest[0], rest[2:]
                _language, _, rest = rest.partition(b"\0")
                _translated, _, value = rest.partition(b"\0")
                found[key.decode("latin-1")] = (_inflate(value) if compressed else value).decode("utf-8")
            elif kind == b"IEND":
                break
        except (ValueError, IndexError, zlib.error):
            continue  # one damaged chunk does not hide the others
    return found


_MAX_TEXT = 1 << 20
"""The most text one compressed chunk may inflate to (a receipt is a few KiB; a hostile file's
could be a thousand times its size)."""


def _inflate(compressed: bytes) -> bytes:
    inflater = zlib.decompressobj()
    text = inflater.decompress(compressed, _MAX_TEXT)
    if inflater.unconsumed_tail:
        raise ValueError("a text chunk inflates past 1 MiB")
    return text


def _xmp_packet(text: dict[str, str]) -> bytes:
    fields = "".join(f"<qw:{key}>{html.escape(value, quote=False)}</qw:{key}>"
                     for key, value in text.items() if re.fullmatch(r"\w+", key))
    description = ""
    if "prompt" in text:
        description = ('<dc:description><rdf:Alt><rdf:li xml:lang="x-default">'
                       f"{html.escape(text['prompt'], quote=False)}</rdf:li></rdf:Alt></dc:description>")
    return ('<?xpacket begin="\ufeff" id="W5M0MpCehiHzreSzNTczkc9d"?>'
            '<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
            '<rdf:Description rdf:about="" xmlns:dc="http://purl.org/dc/elements/1.1/" '
            f'xmlns:qw="{_XMP_NAMESPACE}">{description}{fields}</rdf:Description></rdf:RDF></x:xmpmeta>'
            '<?xpacket end="w"?>').encode()


def _jpeg_with_xmp(data: bytes, packet: bytes) -> bytes:
    """An APP1 XMP segment after SOI (and after a JFIF APP0, which must come first); any XMP
    segment already there is replaced. Too long for one segment: the file is left as it is."""
    body = _XMP_HEADER + packet
    if len(body) > _JPEG_SEGMENT_LIMIT:
        return data
    segments, position = [], 2
    insert_at = 2
    while position + 4 <= len(data) and data[position] == 0xFF and data[position + 1] not in (0xDA, 0xD9):
        marker = data[position + 1]
        length = struct.unpack(">H", data[position + 2:position + 4])[0]
        end = position + 2 + length
        if marker == 0xE0 and insert_at == position:
            insert_at = end
        if marker == 0xE1 and data[position + 4:position + 4 + len(_XMP_HEADER)] == _XMP_HEADER:
            segments.append((position, end))
        position = end
    for start, end in reversed(segments):  # an older XMP packet is replaced, not doubled
        data = data[:start] + data[end:]
        if start < insert_at:
            insert_at -= end - start
    segment = b"\xff\xe1" + struct.pack(">H", len(body) + 2) + body
    return data[:insert_at] + segment + data[insert_at:]


def _jpeg_xmp(data: bytes) -> str | None:
    position = 2
    while position + 4 <= len(data) and data[position] == 0xFF and data[position + 1] not in (0xDA, 0xD9):
        length = struct.unpack(">H", data[position + 2:position + 4])[0]
        body = data[position + 4:position + 2 + length]
        if data[position + 1] == 0xE1 and body.startswith(_XMP_HEADER):
            return body[len(_XMP_HEADER):].decode("utf-8", "replace")
        position += 2 + length
    return None


def _webp_chunks(data: bytes) -> list[tuple[bytes, bytes]]:
    chunks, position = [], 12
    while position + 8 <= len(data):
        kind, size = data[position:position + 4], struct.unpack("<I", data[position + 4:position + 8])[0]
        chunks.append((kind, data[position + 8:position + 8 + size]))
        position += 8 + size + (size & 1)
    return chunks


def _webp_with_xmp(data: bytes, packet: bytes) -> bytes:
    """The same WebP as an extended file (VP8X) with an `XMP ` chunk; the image chunks are
    copied as they are."""
    chunks = [(kind, body) for kind, body in _webp_chunks(data) if kind != b"XMP "]
    if not chunks:
        return data
    if chunks[0][0] == b"VP8X":
        header = bytearray(chunks[0][1])
        header[0] |= 0x04  # the XMP flag
        chunks[0] = (b"VP8X", bytes(header))
    else:
        size = _webp_canvas(chunks[0])
        if size is None:
            return data
        (width, height), alpha = size
        flags = 0x04 | (0x10 if alpha else 0)
        canvas = (width - 1).to_bytes(3, "little") + (height - 1).to_bytes(3, "little")
        chunks.insert(0, (b"VP8X", bytes([flags, 0, 0, 0]) + canvas))
    chunks.append((b"XMP ", packet))
    body = b"WEBP" + b"".join(kind + struct.pack("<I", len(chunk)) + chunk + b"\0" * (len(chunk) & 1)
                              for kind, chunk in chunks)
    return b"RIFF" + struct.pack("<I", len(body)) + body


def _webp_canvas(chunk: tuple[bytes, bytes]) -> tuple[tuple[int, int], bool] | None:
    """(width, height) and whether it has alpha, from a simple WebP's one image chunk."""
    kind, body = chunk
    if kind == b"VP8 " and len(body) >= 10 and body[3:6] == b"\x9d\x01\x2a":
        width, height = struct.unpack("<HH", body[6:10])
        return (width & 0x3FFF, height & 0x3FFF), False
    if kind == b"VP8L" and len(body) >= 5 and body[0] == 0x2F:
        bits = int.from_bytes(body[1:5], "little")
        return ((bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1), bool((bits >> 28) & 1)
    return None


def _webp_xmp(data: bytes) -> str | None:
    for kind, body in _webp_chunks(data):
        if kind == b"XMP ":
            return body.decode("utf-8", "replace")
    return None


def _chunk(kind: bytes, payload: bytes) -> bytes:
    crc = zlib.crc32(kind + payload) & 0xFFFFFFFF
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", crc)


def archive_name(now: datetime | None = None) -> str:
    """'qwen_images_20260130-141502.zip' (UTC), so downloads never overwrite each other."""
    return f"qwen_images_{(now or datetime.now(timezone.utc)):%Y%m%d-%H%M%S}.zip"
