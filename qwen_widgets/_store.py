"""The kept copies: every completed image, saved in the home folder as soon as it completes.

Result URLs die after about a day; the images were paid for. So a completed task's images are
copied into `<home>/images/` (unless QWEN_WIDGETS_KEEP_IMAGES=0), named by task and
submission and listed in the journal. Writes are atomic; a crash leaves only a temporary file,
which disk_usage() counts and prune() and resume() remove.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import time
from pathlib import Path
from typing import Any

from ._download import image_format
from ._journal import Journal
from ._task import GeneratedImage, Task

__all__ = ["disk_usage", "prune"]

TEMPORARY_SUFFIX = ".part"
STALE_TEMPORARY_SECONDS = 600.0
"""A temporary file older than this belongs to a write that died: no write takes that long."""


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
