"""Saving images where the user asks: the image, the prompt in its PNG metadata, a JSON sidecar.

"Keep" is the automatic copy in the home folder (`_store`); "save" is this: an export to a
folder of the user's choice, named `<task_id>_<index>`, never overwriting another image.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import struct
import zlib
from collections.abc import Callable, Iterable
from datetime import datetime
from pathlib import Path
from typing import Any

from ._download import image_format
from ._record import image_rows
from ._store import atomic_write
from ._task import GeneratedImage, Task

__all__: list[str] = []

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_IHDR_END = 8 + 4 + 4 + 13 + 4  # signature, then IHDR: length, type, 13 bytes of data, CRC
_SIDECAR_FIELDS = ("task_id", "image_index", "status", "request", "width", "height", "url", "expires_at",
                   "created_at", "completed_at", "actual_time", "estimated_time")


def sidecar(task: Task, image: GeneratedImage) -> dict[str, Any]:
    """The record kept beside a saved image: request, task id, timings, URL and expiry."""
    row, = image_rows(dataclasses.replace(task, images=(image,)))
    row["request"] = task.request.to_payload() if task.request is not None else None
    return {name: _jsonable(row[name]) for name in _SIDECAR_FIELDS}


def _jsonable(value: Any) -> Any:
    return value.isoformat() if isinstance(value, datetime) else value


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


def save_image(task: Task, image: GeneratedImage, data: bytes, folder: str | Path) -> Path:
    """Save one image as `<task_id>_<index>.<ext>` plus a `.json` sidecar; returns the image path.

    Saving the same image again overwrites its own two files rather than adding copies; an
    image of another submission under the same name (a server that reissued a task id) gets
    `-2`, `-3`... The sidecar records the bytes' sha256.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    record = {**sidecar(task, image), "sha256": hashlib.sha256(data).hexdigest()}
    stem = _free_stem(folder, f"{task.task_id}_{image.index}", record)
    text = {"qwen_widgets": json.dumps(record, ensure_ascii=False)}
    if task.request is not None:
        text = {"prompt": task.request.prompt, **text}
    path = folder / f"{stem}.{image_format(data) or 'bin'}"
    atomic_write(path, png_with_text(data, text))
    atomic_write(folder / f"{stem}.json", json.dumps(record, indent=2, ensure_ascii=False).encode())
    return path


def _free_stem(folder: Path, stem: str, record: dict[str, Any]) -> str:
    """`stem`, or the first `stem-N` whose sidecar is absent or describes this same image."""
    number = 0
    while True:
        number += 1
        candidate = stem if number == 1 else f"{stem}-{number}"
        try:
            existing = json.loads((folder / f"{candidate}.json").read_text(encoding="utf-8"))
        except FileNotFoundError:
            if not any(folder.glob(f"{candidate}.*")):
                return candidate
            continue  # an image without its sidecar: not ours to overwrite
        except (OSError, ValueError):
            continue
        if isinstance(existing, dict) and _same_image(existing, record):
            return candidate


def _same_image(existing: dict[str, Any], record: dict[str, Any]) -> bool:
    """A reissued task id comes with its own URL and creation time."""
    return all(existing.get(key) == record[key] for key in ("task_id", "image_index", "url", "created_at"))


def save_images(tasks: Iterable[Task], folder: str | Path, fetch: Callable[[GeneratedImage], bytes]) -> list[Path]:
    """Save every image of `tasks` to `folder`, with `fetch` for the bytes; returns the paths."""
    return [save_image(task, image, fetch(image), folder) for task in tasks for image in task.images]
