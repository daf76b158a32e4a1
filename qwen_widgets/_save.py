"""Writing result images to a folder, each with a JSON sidecar that says how it was made."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

from ._download import image_format
from ._models import GeneratedImage, Task

__all__ = ["save_image", "sidecar", "atomic_write"]


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


def save_image(task: Task, image: GeneratedImage, data: bytes, folder: str | Path) -> Path:
    """Save one image as `<task_id>_<index>.<ext>` plus a `.json` sidecar; returns the image path.

    Saving the same image again overwrites the same two files rather than adding copies.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    stem = f"{task.task_id}_{image.index}"
    path = folder / f"{stem}.{image_format(data) or 'bin'}"
    atomic_write(path, data)
    record = json.dumps(sidecar(task, image), indent=2, ensure_ascii=False).encode()
    atomic_write(folder / f"{stem}.json", record)
    return path
