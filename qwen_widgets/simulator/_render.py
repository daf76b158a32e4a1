"""Placeholder PNGs at the exact output size: a colour field and the prompt, made with Pillow."""

from __future__ import annotations

import functools
import hashlib
import io
import textwrap

__all__ = ["render_placeholder"]


@functools.lru_cache(maxsize=48)
def render_placeholder(prompt: str, index: int, width: int, height: int, reference: bytes | None = None) -> bytes:
    """A PNG of `width` x `height` whose colours derive from the prompt and the image index.

    With a `reference` image (image-to-image), the picture is made from it: the reference,
    cropped to fill the frame and tinted by the prompt's colours, so its effect is visible.
    """
    from PIL import Image, ImageDraw, ImageFont, ImageOps

    digest = hashlib.sha256(f"{prompt}\0{index}".encode()).digest()
    top, bottom = tuple(digest[0:3]), tuple(digest[3:6])
    gradient = Image.linear_gradient("L").resize((width, height))
    image = Image.composite(Image.new("RGB", (width, height), bottom),
                            Image.new("RGB", (width, height), top), gradient)
    if reference is not None:
        with Image.open(io.BytesIO(reference)) as source:
            fitted = ImageOps.fit(source.convert("RGB"), (width, height))
        image = Image.blend(fitted, image, 0.3)
    draw = ImageDraw.Draw(image)
    unit = min(width, height)
    for k in range(3 if reference is None else 1):  # discs, so images of one prompt differ visibly
        cx = digest[6 + k] / 255 * width
        cy = digest[9 + k] / 255 * height
        r = (0.08 + digest[12 + k] / 255 * 0.18) * unit
        draw.ellipse((cx - r, cy - r, cx + r, cy + r), fill=tuple(digest[15 + 3 * k:18 + 3 * k]))
    font = ImageFont.load_default(size=max(12, unit // 22))
    small = ImageFont.load_default(size=max(10, unit // 36))
    margin = unit // 16
    chars_per_line = max(10, int((width - 2 * margin) / (font.size * 0.55)))
    lines = textwrap.wrap(prompt, chars_per_line, max_lines=8, placeholder=" …") or [""]
    draw.multiline_text((margin, margin), "\n".join(lines), font=font, fill="white",
                        stroke_width=max(1, font.size // 12), stroke_fill="black", spacing=font.size // 4)
    caption = f"simulated · image {index + 1} · {width}x{height}"
    draw.text((margin, height - margin - small.size), caption, font=small, fill="white",
              stroke_width=max(1, small.size // 12), stroke_fill="black")
    buffer = io.BytesIO()
    image.save(buffer, "PNG", compress_level=1)
    return buffer.getvalue()
