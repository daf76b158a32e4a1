"""Images on disk: the automatic copies in the home folder, exports with sidecars, pruning.

Result URLs die after about a day; the images were paid for. So a completed task's images
are copied into `<home>/images/` as soon as it completes (unless QWEN_WIDGETS_KEEP_IMAGES=0),
and exports to any folder carry a JSON sidecar and the prompt in the PNG's own metadata.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import os
import struct
import tempfile
import time
import zlib
from pathlib import Path
from typing import TYPE_CHECKING, Any
from collections.abc import Iterable

from ._download import image_format
from ._models import GeneratedImage, Task

if TYPE_CHECKING:
    from ._journal import Journal

__all__ = [
    "save",
    "save_image",
    "sidecar",
    "atomic_write",
    "png_with_text",
    "keep_copy",
    "images_dir",
    "disk_usage",
    "prune",
]

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_IHDR_END = 8 + 4 + 4 + 13 + 4  # signature, then IHDR: length, type, 13 bytes of data, CRC


def sidecar(task: Task, image: GeneratedImage) -> dict[str, Any]:
    """The record kept beside a saved image: request, task id, timings, URL and expiry."""

    def iso(value: Any) -> str | None:
        return value.isoformat() if value is not None else None

    return {
        "task_id": task.task_id,
        "image_index": image.index,
        "status": task.status.value,
        "request": task.request.to_payload() if task.request is not None else None,
        "width": image.width,
        "height": image.height,
        "url": image.url,
        "expires_at": iso(image.expires_at),
        "created_at": iso(task.created_at),
        "completed_at": iso(task.completed_at),
        "actual_time": task.actual_time,
        "estimated_time": task.estimated_time,
    }


def atomic_write(path: Path, data: bytes) -> None:
    """Write via a temporary file and a rename, so a crash never leaves half a file."""
    descriptor, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(descriptor, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


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

    Saving the same image again overwrites the same two files rather than adding copies.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    stem = f"{task.task_id}_{image.index}"
    record = sidecar(task, image)
    text = {"qwen_widgets": json.dumps(record, ensure_ascii=False)}
    if task.request is not None:
        text = {"prompt": task.request.prompt, **text}
    path = folder / f"{stem}.{image_format(data) or 'bin'}"
    atomic_write(path, png_with_text(data, text))
    atomic_write(folder / f"{stem}.json", json.dumps(record, indent=2, ensure_ascii=False).encode())
    return path


def save(tasks: Task | Iterable[Task], folder: str | Path, client: Any = None) -> list[Path]:
    """Export every image of `tasks` to `folder` with sidecars; returns the image paths.

    Uses the local copy when there is one, else downloads the URL (with `client`, by default
    the one behind `qwen_widgets.generate`).
    """
    if isinstance(tasks, Task):
        tasks = [tasks]
    if client is not None and inspect.iscoroutinefunction(client.fetch_image):
        raise TypeError("save() needs a synchronous QwenClient, not an AsyncQwenClient")
    images = [(task, image) for task in tasks for image in task.images]
    if images and client is None:
        from ._client import default_client

        client = default_client()
    return [save_image(task, image, client.fetch_image(image), folder) for task, image in images]


def images_dir() -> Path:
    """`<home>/images`, where completed tasks' images are kept."""
    from ._journal import home_dir

    path = home_dir() / "images"
    path.mkdir(mode=0o700, exist_ok=True)
    return path


def keep_copy(task: Task, image: GeneratedImage, data: bytes) -> tuple[Path, str]:
    """Write the automatic copy of one image; returns its path and sha256."""
    path = images_dir() / f"{task.task_id}_{image.index}.{image_format(data) or 'bin'}"
    atomic_write(path, data)
    return path, hashlib.sha256(data).hexdigest()


def disk_usage(journal: Journal | None = None) -> dict[str, Any]:
    """How many images are kept locally, how many bytes they take, and where."""
    journal = journal or _home_journal()
    copies = [c for c in journal.image_copies() if c[2].exists()]
    return {
        "folder": str(images_dir()),
        "images": len(copies),
        "bytes": sum(path.stat().st_size for _, _, path, _, _ in copies),
    }


def prune(older_than_days: float, journal: Journal | None = None) -> dict[str, Any]:
    """Delete local copies saved more than `older_than_days` ago; returns what was freed."""
    journal = journal or _home_journal()
    cutoff = time.time() - older_than_days * 86_400
    removed = freed = 0
    for task_id, index, path, _, saved_at in journal.image_copies():
        if saved_at < cutoff:
            if path.exists():
                freed += path.stat().st_size
                path.unlink()
            journal.forget_image_copy(task_id, index)
            removed += 1
    return {"removed": removed, "bytes_freed": freed}


def _home_journal() -> Journal:
    from ._journal import Journal

    return Journal.default()
