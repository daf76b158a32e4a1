"""Images on disk, one concept with four verbs: **keep** (the automatic copy of every completed
image in the home folder), **save** (to a folder of the user's choice, with the request in the
PNG's text and a JSON sidecar), **archive** (one zip to take home: images, sidecars,
`results.csv`, `README.txt`), and **prune** (what is kept, how much, and removing it).

Result URLs die after about a day and the images were paid for, so a completed task's images
are kept in `<home>/images/` (unless QWEN_WIDGETS_KEEP_IMAGES=0), named by task and submission
and listed in the journal. Every write is atomic: a crash leaves only a temporary file, which
disk_usage() counts and prune() and resume() remove. Fetching the bytes is the engine's job;
everything here works on bytes already in hand.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import os
import tempfile
import time
import zipfile
from collections.abc import Callable, Iterable
from datetime import datetime
from pathlib import Path
from typing import Any

from ..model.frame import to_frame
from ..model.images import archive_name, image_format, png_with_text
from ..model.record import image_rows
from ..model.task import GeneratedImage, Task
from .journal import Journal

__all__ = ["disk_usage", "prune"]

TEMPORARY_SUFFIX = ".part"
STALE_TEMPORARY_SECONDS = 600.0
"""A temporary file older than this belongs to a write that died: no write takes that long."""
_SIDECAR_FIELDS = ("task_id", "image_index", "status", "request", "width", "height", "url", "expires_at",
                   "created_at", "completed_at", "actual_time", "estimated_time")

Fetched = tuple[Task, GeneratedImage, "bytes | None", str]
"""(task, image, its bytes or None, why they are missing): what an archive is built from."""


# -- keep: the automatic copies --------------------------------------------------------------

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


def keep_copy(journal: Journal, local_id: str, task: Task, image: GeneratedImage, data: bytes) -> Path:
    """Write the automatic copy of one image of submission `local_id` and list it in the
    journal; returns its path. The name carries the submission, so a reissued task id never
    overwrites it."""
    name = f"{task.task_id}_{image.index}-{local_id[:12]}.{image_format(data) or 'bin'}"
    path = journal.images_folder() / name
    atomic_write(path, data)
    journal.add_image_copy(local_id, image.index, path, hashlib.sha256(data).hexdigest())
    return path


# -- save: images where the user asks ----------------------------------------------------


def sidecar(task: Task, image: GeneratedImage) -> dict[str, Any]:
    """The record kept beside a saved image: request, task id, timings, URL and expiry."""
    row, = image_rows(dataclasses.replace(task, images=(image,)))
    row["request"] = task.request.to_payload() if task.request is not None else None
    return {name: _jsonable(row[name]) for name in _SIDECAR_FIELDS}


def _jsonable(value: Any) -> Any:
    return value.isoformat() if isinstance(value, datetime) else value


def save_image(task: Task, image: GeneratedImage, data: bytes, folder: str | Path) -> Path:
    """Save one image as `<task_id>_<index>.<ext>` plus a `.json` sidecar; returns the image path.

    Saving the same image again overwrites its own two files rather than adding copies; an
    image of another submission under the same name (a server that reissued a task id) gets
    `-2`, `-3`... The sidecar records the bytes' sha256.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    record, labelled = _labelled(task, image, data)
    stem = _free_stem(folder, f"{task.task_id}_{image.index}", record)
    path = folder / f"{stem}.{image_format(data) or 'bin'}"
    atomic_write(path, labelled)
    atomic_write(folder / f"{stem}.json", json.dumps(record, indent=2, ensure_ascii=False).encode())
    return path


def _labelled(task: Task, image: GeneratedImage, data: bytes) -> tuple[dict[str, Any], bytes]:
    """The sidecar record of one image (with its bytes' sha256), and the image with the
    prompt and that record in its PNG text."""
    record = {**sidecar(task, image), "sha256": hashlib.sha256(data).hexdigest()}
    text = {"qwen_widgets": json.dumps(record, ensure_ascii=False)}
    if task.request is not None:
        text = {"prompt": task.request.prompt, **text}
    return record, png_with_text(data, text)


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


# -- archive: one zip to take home ----------------------------------------------------------


def build_archive(tasks: list[Task], fetched: Iterable[Fetched]) -> bytes:
    """The zip, in memory: images with sidecars, results.csv and README.txt."""
    buffer, names, missing = io.BytesIO(), set(), []
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for task, image, data, why in fetched:
            if data is None:
                missing.append(f"{task.task_id} image {image.index + 1}: {why}")
                continue
            stem = _free(f"{task.task_id}_{image.index}", names)
            record, labelled = _labelled(task, image, data)
            # images are compressed already: stored, not deflated again
            archive.writestr(zipfile.ZipInfo(f"{stem}.{image_format(data) or 'bin'}"), labelled)
            archive.writestr(f"{stem}.json", json.dumps(record, indent=2, ensure_ascii=False))
        archive.writestr("results.csv", to_frame(tasks).to_csv(index=False))
        archive.writestr("README.txt", _readme(len(names), len(tasks), missing))
    return buffer.getvalue()


def write_archive(path: str | Path, data: bytes) -> Path:
    """Write the zip to `path` (a folder gets a dated file name); returns the file written."""
    path = Path(path)
    if path.is_dir():
        path = path / archive_name()
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, data)
    return path


def _free(stem: str, taken: set[str]) -> str:
    candidate, number = stem, 1
    while candidate in taken:
        number += 1
        candidate = f"{stem}-{number}"
    taken.add(candidate)
    return candidate


def _readme(images: int, tasks: int, missing: list[str]) -> str:
    lines = [
        "Images made with qwen_widgets (Qwen-Image 2.0 on APIMart).",
        f"{images} image(s) from {tasks} task(s), at full resolution as the server sent them.",
        "Each image has a .json sidecar (request, task id, timings, URL, sha256); PNGs also carry",
        "the prompt in their text metadata. results.csv has one row per image (failed tasks: one row).",
    ]
    if missing:
        lines += ["", f"{len(missing)} image(s) could not be fetched:", *missing]
    return "\n".join(lines) + "\n"


# -- prune: what is kept, and removing it -----------------------------------------------------


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
    journal = journal or Journal.default()
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
    journal = journal or Journal.default()
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
