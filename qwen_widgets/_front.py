"""The front door: the module-level functions most users call, over the default client.

Above both the engine and the views: `sweep()` shows a live grid in a notebook, everything
else here returns values. Values (Task, Sweep) never reach up here; functions here reach down.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .engine.client import find_entry
from .engine.client import read_receipt as _read_receipt
from .engine.default import current_client, default_client
from .engine.sweep import Sweep
from .engine.sync import QwenClient
from .model.account import Balance
from .model.errors import RequestValidationError
from .model.history import HistoryQuery
from .model.lineage import describe_diff
from .model.plan import DEFAULT_MAX_IMAGES
from .model.receipt import Receipt
from .model.request import ImageRequest
from .model.submission import Entry
from .model.task import Task, UploadedImage
from .store.images import delete_generation
from .store.journal import Journal

if TYPE_CHECKING:
    import pandas

__all__ = ["generate", "resume", "sweep", "history", "save", "export", "upload", "balance", "star", "unstar",
           "hide", "unhide", "delete", "lineage", "diff", "read_receipt", "rerun"]


def generate(prompt: ImageRequest | str, **fields: Any) -> Task:
    """Generate images and wait for them: `qw.generate("a red fox in snow", n=2)`.

    `fields` are request fields (model, size, resolution, n, negative_prompt, image_urls) and
    the options of QwenClient.generate (on_update, timeout, on_retry).
    """
    return default_client().generate(prompt, **fields)


def upload(source: Any) -> UploadedImage:
    """Upload a local image (a path, bytes or a PIL image) to use as a reference: its `.url`
    goes in `image_urls`. `generate`, `sweep` and the panel do this by themselves."""
    return default_client().upload(source)


def balance(*, account: bool = False) -> Balance:
    """This key's balance (`GET /v1/balance`), or the whole account's with `account=True`, in
    the unit the service reports; simulated in demo mode."""
    return default_client().balance(account=account)


def resume() -> list[Task]:
    """Finish what the journal left open in the last 24 h (e.g. after a kernel restart): lost
    submissions resent with their key, unfinished tasks watched, images kept."""
    return default_client().resume()


def history(journal: Journal | None = None, *, search: str | None = None, starred: bool | None = None,
            since: Any = None, until: Any = None, model: Any = None, size: Any = None,
            resolution: Any = None, status: Any = None, hidden: bool | None = False,
            client: QwenClient | None = None) -> pandas.DataFrame:
    """The history as a DataFrame: one row per image, one per failed, refused or unknown
    submission, oldest first.

        qw.history(search="lighthouse", starred=True, since="7d", model="qwen-image-2.0-pro")

    The columns of to_frame() plus local_id, journal_state, submitted_at, starred and hidden.
    `search`: words that must all occur in the prompt or the negative prompt (any part of a
    word; "a quoted phrase" is one word). `since`/`until`: a datetime, a date, "2026-01-30", or
    a span back from now ("30m", "24h", "7d", "2w"). `model`, `size`, `resolution`, `status`
    (completed, failed, cancelled, running, unknown, refused, expired): one value or several.
    `starred=True` keeps starred ones; hidden ones show only with `hidden=True` (or None: all).

    Which journal: `journal`, else `client`'s, else the home folder's, whatever the mode: demo
    submissions are never written there (their simulator dies with the process), so without a
    key this shows the earlier keyed runs; `qw.history(client=panel.client)` (or the panel's
    History tab) shows a demo session's own.
    """
    from .model.frame import history_frame

    query = HistoryQuery.of(search=search, starred=starred, since=since, until=until, model=model,
                            size=size, resolution=resolution, status=status, hidden=hidden)
    journal = journal or (client.journal if client is not None else Journal.existing())
    if journal is None:
        return history_frame([])
    journal.settle_orphans()
    return history_frame(journal.history_rows(query))


def star(task: Task | Entry | str, *, client: QwenClient | None = None) -> None:
    """Star a generation (a Task, a task id or a journal entry), in the journal: the history
    filters by it (`qw.history(starred=True)`) and the panel offers starred prompts first."""
    _flag(task, "starred", True, client)


def unstar(task: Task | Entry | str, *, client: QwenClient | None = None) -> None:
    """Take the star away again."""
    _flag(task, "starred", False, client)


def hide(task: Task | Entry | str, *, client: QwenClient | None = None) -> None:
    """Hide a generation from the history (nothing is removed; `qw.unhide` shows it again)."""
    _flag(task, "hidden", True, client)


def unhide(task: Task | Entry | str, *, client: QwenClient | None = None) -> None:
    """Show a hidden generation in the history again."""
    _flag(task, "hidden", False, client)


def delete(task: Task | Entry | str, *, client: QwenClient | None = None) -> dict[str, int]:
    """Delete a generation: it leaves the history and its kept images are deleted from this
    machine. Returns {'images': kept images deleted, 'bytes_freed': ...}. Images you saved
    elsewhere (qw.save, Save, a download) are yours and stay. A generation still running cannot
    be deleted."""
    journal, entry = _find(task, client)
    return delete_generation(journal, entry.local_id)


def lineage(task: Task | Entry | str, *, client: QwenClient | None = None) -> list[Entry]:
    """The generations this one grew from (image to image), nearest first; each entry's
    `request` says what was asked, and `qw.diff(parent, child)` what changed."""
    journal, entry = _find(task, client)
    return journal.chain(entry.local_id)


def diff(before: ImageRequest | Task | Entry | Receipt, after: ImageRequest | Task | Entry | Receipt) -> str:
    """What changed between two requests, in words: "size 1:1 -> 16:9, prompt + 'at dusk'"."""
    from .engine.client import request_of

    return describe_diff(request_of(before), request_of(after))


def read_receipt(path: str | Path | bytes) -> Receipt:
    """The receipt inside an image file that Save, Download, Download all, `qw.save` or
    `qw.export` wrote: the request as sent, model, task id, request id, cost, timings, the
    image's sha256 and each reference's. Its `seed` is always None: the API takes no seed."""
    return _read_receipt(path)


def rerun(path: str | Path | bytes | Receipt | Task, *, client: QwenClient | None = None, **options: Any) -> Task:
    """Send the request in an image file's receipt again (or a Receipt's, or a Task's) and wait
    for the new task. References whose URLs have expired are uploaded again from this
    machine's files when the journal knows them. The API takes no seed: the same request makes
    new images, not the same pixels. `options`: on_update, timeout."""
    return (client or default_client()).rerun(path, **options)


def _find(task: Task | Entry | str, client: QwenClient | None) -> tuple[Journal, Entry]:
    """The journal that holds `task`, and its row: `client`'s, else the default client's (in
    demo mode, this session's, in memory), else the home folder's."""
    client = client or current_client()
    journals = [client.journal] if client is not None else []
    home = Journal.existing()
    if home is not None and all(home.path != journal.path for journal in journals):
        journals.append(home)
    missing: RequestValidationError | None = None
    for journal in journals:
        try:
            return journal, find_entry(journal, task, client.base_url if client is not None else None)
        except RequestValidationError as error:
            missing = missing or error
    raise missing or RequestValidationError("task", "is not in any journal: none was written here yet",
                                            show_value=False)


def _flag(task: Task | Entry | str, name: str, value: bool, client: QwenClient | None) -> None:
    journal, entry = _find(task, client)
    journal.set_flag(entry.local_id, name, value)


def save(tasks: Task | Iterable[Task], folder: str | Path, client: QwenClient | None = None) -> list[Path]:
    """Export every image of `tasks` to `folder` with sidecars; returns the image paths.

    Uses the local copy when there is one, else downloads the URL (with `client`, by default
    the one behind `qwen_widgets.generate`). Saving again overwrites, never duplicates.
    """
    tasks = [tasks] if isinstance(tasks, Task) else list(tasks)
    if client is not None and not isinstance(client, QwenClient):
        raise RequestValidationError("client", "must be a QwenClient (the synchronous client)", client)
    return (client or default_client()).save(tasks, folder)


def export(path: str | Path, tasks: Task | Iterable[Task] | None = None,
           client: QwenClient | None = None) -> Path:
    """One zip of images at full resolution, their JSON sidecars and results.csv; returns it.

        qw.export("work.zip", [task1, task2])   # these tasks
        qw.export("exports/")                   # the whole history, as a dated file there
                                                # (the folder is created when missing)

    Without `tasks`, every task of the client's journal (by default the one behind
    `qw.generate`: this session's in demo mode, the home folder's with a key). Images come
    from the local copy when there is one, else from their URL; one that cannot be had is
    listed in the zip's README.txt instead of failing the export.
    """
    client = client or default_client()
    if tasks is None:
        tasks = [entry.task for entry in client.journal.entries() if entry.task is not None]
    tasks = [tasks] if isinstance(tasks, Task) else list(tasks)
    return client.export(tasks, path)


def sweep(
    prompt: str | list[str],
    *,
    model: str | list[str] = "qwen-image-2.0",
    size: str | None | list[str] = None,
    resolution: str | None | list[str] = None,
    negative_prompt: str | None | list[str | None] = None,
    n: int | list[int] = 1,
    image_urls: tuple[str, ...] | list[str] = (),
    concurrency: int | None = None,
    max_images: int = DEFAULT_MAX_IMAGES,
    price_per_image: float | None = None,
    client: QwenClient | None = None,
    **slots: str | list[str],
) -> Sweep:
    """Generate every combination of the fields given as lists, `concurrency` at a time (by
    default as many as the request budget sustains, fewer after the service pushes back).

        s = qw.sweep(prompt=["a fox", "a wolf"], size=["1:1", "16:9"], n=2)
        s = qw.sweep(prompt="a {animal} in {place}", animal=["fox", "owl"], place=["snow", "rain"])

    A prompt can be a template: each `{slot}` given values as a keyword (or written inline,
    `{animal: fox|owl}`) is an axis labelled by its name.

    `size` and `resolution` default to each model's own. Every cell is checked against its
    model's rules as the service states them (a model the service added works too). States the
    plan (tasks, images, cost when `price_per_image` is given) before anything is sent and
    refuses more than `max_images` images. In a notebook it returns at once and shows
    a live grid; in a script it prints progress. `wait()`, `tasks`, `frame()`, `cancel()`.
    """
    client = client or default_client()
    fields = {"prompt": prompt, "model": model, "size": size, "resolution": resolution,
              "negative_prompt": negative_prompt, "n": n,
              "image_urls": client.references(image_urls)}  # one upload per local image
    plan = client.plan(fields, max_images=max_images, slots=slots)  # under the service's rules for its models
    client.check_limits(plan.images)  # before the first POST, for the whole plan
    running = Sweep(client, plan, concurrency=concurrency, price_per_image=price_per_image)
    if price_per_image is None:  # checked before anything goes out, pricing included
        model = plan.cells[0].request.model
        running.summary = plan.describe(*client.price_per_image(model))
    if _in_notebook():
        from IPython.display import display

        from .widgets.grid import SweepGrid

        display(SweepGrid(running))  # shown with a copy saved in the notebook (widgets/_static)
    else:
        print(f"sweep: {running.summary}", file=sys.stderr)
        running.on_change(lambda index: _print_progress(running, index))
    return running.start()


def _print_progress(running: Sweep, index: int) -> None:
    if running.results[index] is None and running.errors[index] is None:
        return  # submitted, not ended
    print(f"sweep: {running.done_count}/{len(running.cells)} done, {running.failed_count} failed",
          file=sys.stderr)


def _in_notebook() -> bool:
    shell = sys.modules.get("IPython") and sys.modules["IPython"].get_ipython()
    return type(shell).__name__ == "ZMQInteractiveShell"
