"""Take the work home: one zip of images at full resolution, their sidecars, and a CSV.

Binder culls idle sessions and its disk goes with them, so the panel's "Download all" hands
the browser one file, and `qw.export(path)` writes the same from Python. Inside the zip:
`<task_id>_<index>.png` (the server's bytes, with the prompt and record in PNG text chunks,
as Save writes them), a `.json` sidecar beside each, `results.csv` (one row per image, the
columns of `qw.to_frame`), and `README.txt` saying what is inside and what could not be had.
pandas loads only when an archive is built.
"""

from __future__ import annotations

import hashlib
import io
import json
import zipfile
from collections.abc import Iterable
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING

from ._download import image_format
from ._export import png_with_text, sidecar
from ._task import GeneratedImage, Task

if TYPE_CHECKING:
    from ._client import AsyncQwenClient

__all__: list[str] = []

Fetched = tuple[Task, GeneratedImage, "bytes | None", str]
"""(task, image, its bytes or None, why they are missing)."""


def archive_name(now: datetime | None = None) -> str:
    """'qwen_images_20260130-141502.zip' (UTC), so downloads never overwrite each other."""
    return f"qwen_images_{(now or datetime.now(timezone.utc)):%Y%m%d-%H%M%S}.zip"


def build_archive(tasks: list[Task], fetched: Iterable[Fetched]) -> bytes:
    """The zip, in memory: images with sidecars, results.csv and README.txt."""
    from ._frame import to_frame

    buffer, names, missing = io.BytesIO(), set(), []
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for task, image, data, why in fetched:
            if data is None:
                missing.append(f"{task.task_id} image {image.index + 1}: {why}")
                continue
            stem = _free(f"{task.task_id}_{image.index}", names)
            record = {**sidecar(task, image), "sha256": hashlib.sha256(data).hexdigest()}
            text = {"qwen_widgets": json.dumps(record, ensure_ascii=False)}
            if task.request is not None:
                text = {"prompt": task.request.prompt, **text}
            # images are compressed already: stored, not deflated again
            archive.writestr(zipfile.ZipInfo(f"{stem}.{image_format(data) or 'bin'}"),
                             png_with_text(data, text))
            archive.writestr(f"{stem}.json", json.dumps(record, indent=2, ensure_ascii=False))
        archive.writestr("results.csv", to_frame(tasks).to_csv(index=False))
        archive.writestr("README.txt", _readme(len(names), len(tasks), missing))
    return buffer.getvalue()


async def fetch_all(client: AsyncQwenClient, tasks: Iterable[Task]) -> list[Fetched]:
    """Every image of `tasks` at full resolution (local copy, else URL); a failure is noted,
    not raised, so one expired URL does not cost the rest."""
    from ._errors import QwenError

    fetched: list[Fetched] = []
    for task in tasks:
        for image in task.images:
            try:
                fetched.append((task, image, await client.fetch_image(image), ""))
            except QwenError as error:
                fetched.append((task, image, None, str(error)))
    return fetched


def write_archive(path: str | Path, data: bytes) -> Path:
    """Write the zip to `path` (a folder gets a dated file name); returns the file written."""
    from ._store import atomic_write

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
