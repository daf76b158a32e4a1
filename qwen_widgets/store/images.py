"""Images on disk, one concept with four verbs: **keep** (the automatic copy of every completed
image in the home folder), **save** (to a folder of the user's choice, with the request in the
PNG's text and a JSON sidecar), **archive** (one zip to take home: images, sidecars,
`results.csv`, `README.txt`), and **prune** (what is kept, how much, and removing it).

Result URLs die after about a day and the images were paid for, so a completed task's images
are kept in `<home>/images/` (unless QWEN_WIDGETS_KEEP_IMAGES=0), named by task and submission
and listed in the journal. Every write is atomic: a crash leaves only a temporary file, which
disk_usage() counts and prune() and resume() remove. Kept copies are the user's alone (mode
0600, in a 0700 folder); what is saved or exported to a folder the user chose gets the modes
any program gives new files there (0644 under the usual umask), so a web server or a
colleague can read it. Fetching the bytes is the engine's job; everything here works on bytes
already in hand, one image at a time (an export of a thousand images streams to its file).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import secrets
import time
import zipfile
from collections.abc import Callable, Iterable
from datetime import datetime
from pathlib import Path
from typing import Any

from ..model.frame import to_frame
from ..model.images import archive_name, image_format, thumbnail
from ..model.receipt import labelled
from ..model.record import image_rows
from ..model.task import GeneratedImage, Task
from .journal import Journal

__all__ = ["disk_usage", "prune"]

TEMPORARY_SUFFIX = ".part"
STALE_TEMPORARY_SECONDS = 600.0
"""A temporary file older than this belongs to a write that died: no write takes that long."""
_SIDECAR_FIELDS = ("task_id", "image_index", "status", "request", "width", "height", "url", "expires_at",
                   "created_at", "completed_at", "actual_time", "estimated_time")



# -- keep: the automatic copies --------------------------------------------------------------

PRIVATE = 0o600
"""The mode of files in the home folder: the journal's images are the user's alone."""
SHARED = 0o666
"""The mode asked for in a folder the user chose, less their umask (usually 0644), as any
other program writes files there: other users and web servers may read them."""


def atomic_write(path: Path, data: bytes, mode: int = SHARED) -> None:
    """Write via a temporary file and a rename, so a crash never leaves half a file (a crash
    leaves a `.<name>.<random>.part` file instead, which stale_temporary_files() finds). The
    file gets `mode` less the umask."""
    descriptor, temporary = _temporary_beside(path, mode)
    try:
        with os.fdopen(descriptor, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


def _temporary_beside(path: Path, mode: int) -> tuple[int, Path]:
    """A new temporary file in `path`'s folder, opened for writing, created with `mode` less
    the umask (the operating system applies it, as for any new file)."""
    while True:
        temporary = path.parent / f".{path.name}.{secrets.token_hex(6)}{TEMPORARY_SUFFIX}"
        try:
            flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
            return os.open(temporary, flags, mode), temporary
        except FileExistsError:
            continue


def keep_copy(journal: Journal, local_id: str, task: Task, image: GeneratedImage, data: bytes) -> Path:
    """Write the automatic copy of one image of submission `local_id` and list it in the
    journal; returns its path. The name carries the submission, so a reissued task id never
    overwrites it."""
    name = f"{task.task_id}_{image.index}-{local_id[:12]}.{image_format(data) or 'bin'}"
    path = journal.images_folder() / name
    atomic_write(path, data, PRIVATE)
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
    """The receipt of one image (a superset of its sidecar record, with its bytes' sha256), and
    the image with the prompt and that receipt inside it (see model.receipt)."""
    return labelled(task, image, data)


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


class Archive:
    """One zip (images with sidecars, results.csv, README.txt) written to its file as each
    image arrives, so the images are never all in memory at once. It is written beside its
    final name and renamed into place by `finish()`, so an interrupted export leaves no half
    zip; `abort()` removes the partial file."""

    def __init__(self, path: str | Path):
        self.path = archive_path(path)
        descriptor, self._temporary = _temporary_beside(self.path, SHARED)
        self._file = os.fdopen(descriptor, "wb")
        self._zip = zipfile.ZipFile(self._file, "w", zipfile.ZIP_DEFLATED)
        self._names: set[str] = set()
        self._missing: list[str] = []

    def add(self, task: Task, image: GeneratedImage, data: bytes) -> None:
        """One image at full resolution, with the prompt in its PNG text, and its sidecar."""
        stem = _free(f"{task.task_id}_{image.index}", self._names)
        record, labelled = _labelled(task, image, data)
        made = task.completed_at or task.created_at
        # images are compressed already: stored, not deflated again
        self._zip.writestr(_member(f"{stem}.{image_format(data) or 'bin'}", made, zipfile.ZIP_STORED), labelled)
        self._zip.writestr(_member(f"{stem}.json", made), json.dumps(record, indent=2, ensure_ascii=False))

    def missing(self, task: Task, image: GeneratedImage, why: str) -> None:
        """An image that could not be had: listed in README.txt instead."""
        self._missing.append(f"{task.task_id} image {image.index + 1}: {why}")

    def finish(self, tasks: list[Task]) -> Path:
        """Add results.csv and README.txt, close the zip and move it into place; its path."""
        try:
            self._zip.writestr(_member("results.csv"), _csv_safe(to_frame(tasks)).to_csv(index=False))
            self._zip.writestr(_member("README.txt"), _readme(len(self._names), len(tasks), self._missing))
            self._zip.close()
            self._file.flush()
            os.fsync(self._file.fileno())
            self._file.close()
            os.replace(self._temporary, self.path)
        except BaseException:
            self.abort()
            raise
        return self.path

    def abort(self) -> None:
        """Stop, and remove the partial file."""
        try:
            self._zip.close()
        except (OSError, ValueError):
            pass
        self._file.close()
        self._temporary.unlink(missing_ok=True)


def archive_path(path: str | Path) -> Path:
    """Where an export of `path` goes: a folder (one that exists, or a path ending in `/` or
    without a file extension: `exports/`, `exports`) gets a dated zip inside, created when
    missing; anything else is the zip's own name, its folder created when missing."""
    text = os.fspath(path)
    path = Path(text)
    if path.is_dir() or text.endswith(("/", os.sep)) or not path.suffix:
        path = path / archive_name()
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def _csv_safe(frame: Any) -> Any:
    """The frame with every text cell that a spreadsheet would run as a formula (starting
    with =, +, -, @, a tab or a carriage return: OWASP's CSV injection advice) prefixed with
    a single quote, which spreadsheets show as text. Prompts and server messages are anyone's."""
    from pandas.api.types import is_object_dtype, is_string_dtype

    frame = frame.copy()
    for column in frame.columns:
        if is_object_dtype(frame[column]) or is_string_dtype(frame[column]):
            frame[column] = frame[column].map(
                lambda value: f"'{value}" if isinstance(value, str) and value.startswith(_FORMULA_STARTS) else value)
    return frame


def _member(name: str, made: datetime | None = None, compression: int = zipfile.ZIP_DEFLATED) -> zipfile.ZipInfo:
    """A zip entry dated when its image was made (else now; zip dates are local time, as zip
    tools show them), unpacked readable by others as any file (0644 less the umask)."""
    moment = max(made.timestamp() if made is not None else time.time(), 316_000_000)  # zip dates start in 1980
    member = zipfile.ZipInfo(name, time.localtime(moment)[:6])
    member.compress_type = compression
    member.external_attr = 0o644 << 16
    return member


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
        "Each image has a .json sidecar, its receipt: the request as sent, model, task id, request id,",
        "cost, timings, URL, the image's sha256 and each reference's. The image carries the same",
        "receipt inside it (PNG text chunks; XMP in a JPEG or WebP): qwen_widgets.read_receipt(path)",
        "reads it, qwen_widgets.rerun(path) sends the request again (the API has no seed: new images).",
        "results.csv has one row per image (failed tasks: one row).",
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
            freed += remove_copies([copy.path])[1]
            journal.forget_image_copy(copy.local_id, copy.index)
            removed += 1
    temporary, temporary_bytes = remove_stale_temporary_files(journal.images_folder())
    return {"removed": removed, "bytes_freed": freed + temporary_bytes,
            "temporary_files_removed": temporary}


# -- the library: thumbnails kept beside the copies, and deleting a generation ---------------

THUMBNAILS = ".thumbnails"
"""The folder, inside the images folder, of the thumbnails made from kept copies."""


def thumbnail_path(copy: Path, edge: int) -> Path:
    return copy.parent / THUMBNAILS / f"{copy.stem}-{edge}.jpg"


def cached_thumbnail(copy: Path, edge: int) -> bytes:
    """The JPEG of a kept copy at most `edge` pixels a side, made once and kept beside it:
    the history shows pages of old images without decoding a 2K PNG for each (OSError when
    the copy is gone, ValueError when it is not an image)."""
    path = thumbnail_path(copy, edge)
    try:
        return path.read_bytes()
    except OSError:
        pass
    small = thumbnail(copy.read_bytes(), edge)
    try:
        path.parent.mkdir(mode=0o700, exist_ok=True)
        atomic_write(path, small)
    except OSError:
        pass  # a read-only folder still shows the thumbnail, made again next time
    return small


def remove_copies(paths: Iterable[Path]) -> tuple[int, int]:
    """Delete kept copies and the thumbnails made from them; returns (copies, bytes) freed. A
    file already gone is skipped."""
    copies = freed = 0
    for copy in paths:
        for path in (copy, *copy.parent.joinpath(THUMBNAILS).glob(f"{copy.stem}-*.jpg")):
            try:
                size = path.stat().st_size
                path.unlink()
            except OSError:
                continue
            copies, freed = copies + (path == copy), freed + size
    return copies, freed


def delete_generation(journal: Journal, local_id: str) -> dict[str, int]:
    """Take a generation out of the library (see Journal.delete) and delete its kept images
    and their thumbnails; returns {'images': kept images deleted, 'bytes_freed': ...}."""
    images, freed = remove_copies(journal.delete(local_id))
    return {"images": images, "bytes_freed": freed}
