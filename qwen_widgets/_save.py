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
    "stale_temporary_files",
    "remove_stale_temporary_files",
    "disk_usage",
    "prune",
]

TEMPORARY_SUFFIX = ".part"
STALE_TEMPORARY_SECONDS = 600.0
"""A temporary file older than this belongs to a write that died: no write takes that long."""
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
    """Write via a temporary file and a rename, so a crash never leaves half a file (a crash
    leaves a `.<name>.<random>.part` file instead, which stale_temporary_files() finds)."""
    descriptor, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.",
                                             suffix=TEMPORARY_SUFFIX)
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


def keep_copy(journal: Journal, local_id: str, task: Task, image: GeneratedImage,
              data: bytes) -> tuple[Path, str]:
    """Write the automatic copy of one image of submission `local_id`; returns its path and
    sha256. The name carries the submission, so a reissued task id never overwrites it."""
    name = f"{task.task_id}_{image.index}-{local_id[:12]}.{image_format(data) or 'bin'}"
    path = journal.images_folder() / name
    atomic_write(path, data)
    return path, hashlib.sha256(data).hexdigest()


def stale_temporary_files(folder: Path, now: float | None = None) -> list[Path]:
    """Temporary files in `folder` left by writes that died (a crash mid-copy)."""
    cutoff = (time.time() if now is None else now) - STALE_TEMPORARY_SECONDS
    found = []
    for path in folder.glob(f".*{TEMPORARY_SUFFIX}"):
        try:
            if path.is_file() and path.stat().st_mtime < cutoff:
                found.append(path)
        except OSError:  # removed meanwhile by another kernel
            continue
    return found


def remove_stale_temporary_files(folder: Path) -> tuple[int, int]:
    """Delete what stale_temporary_files() finds; returns (files, bytes) removed."""
    removed = freed = 0
    for path in stale_temporary_files(folder):
        try:
            size = path.stat().st_size
            path.unlink()
        except OSError:
            continue
        removed, freed = removed + 1, freed + size
    return removed, freed


def disk_usage(journal: Journal | None = None) -> dict[str, Any]:
    """How many images are kept locally, how many bytes they take, and where; temporary
    files left by interrupted writes are counted apart (prune() removes them)."""
    journal = journal or _home_journal()
    folder = journal.images_folder()
    copies = [copy for copy in journal.image_copies() if copy.path.exists()]
    leftovers = stale_temporary_files(folder)
    return {
        "folder": str(folder),
        "images": len(copies),
        "bytes": sum(copy.path.stat().st_size for copy in copies),
        "temporary_files": len(leftovers),
        "temporary_bytes": sum(path.stat().st_size for path in leftovers),
    }


def prune(older_than_days: float, journal: Journal | None = None) -> dict[str, Any]:
    """Delete local copies saved more than `older_than_days` ago, and temporary files left by
    interrupted writes; returns what was freed."""
    journal = journal or _home_journal()
    cutoff = time.time() - older_than_days * 86_400
    removed = freed = 0
    for copy in journal.image_copies():
        if copy.saved_at < cutoff:
            if copy.path.exists():
                freed += copy.path.stat().st_size
                copy.path.unlink()
            journal.forget_image_copy(copy.local_id, copy.index)
            removed += 1
    temporary, temporary_bytes = remove_stale_temporary_files(journal.images_folder())
    return {"removed": removed, "bytes_freed": freed + temporary_bytes,
            "temporary_files_removed": temporary}


def _home_journal() -> Journal:
    from ._journal import Journal

    return Journal.default()
