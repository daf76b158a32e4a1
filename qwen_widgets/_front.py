"""The front door: the module-level functions most users call, over the default client.

Above both the engine and the views: `sweep()` shows a live grid in a notebook, everything
else here returns values. Values (Task, Sweep) never reach up here; functions here reach down.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .engine.default import default_client
from .engine.sweep import Sweep
from .engine.sync import QwenClient
from .model.account import Balance
from .model.errors import RequestValidationError
from .model.plan import DEFAULT_MAX_IMAGES
from .model.request import ImageRequest
from .model.task import Task, UploadedImage
from .store.journal import Journal

if TYPE_CHECKING:
    import pandas

__all__ = ["generate", "resume", "sweep", "history", "save", "export", "upload", "balance"]


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


def history(journal: Journal | None = None) -> pandas.DataFrame:
    """Every journaled submission: one row per image, one per failed, refused or unknown one.

    The columns of to_frame() plus local_id, journal_state and submitted_at. Defaults to the
    journal in the home folder, whatever the mode: demo submissions are never in it (their
    simulator dies with the process), so without a key this shows the earlier keyed runs.
    """
    from .model.frame import history_frame

    if journal is None:
        journal = Journal.existing()
        if journal is None:
            return history_frame([])
    journal.settle_orphans()
    return history_frame(journal.entries())


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
) -> Sweep:
    """Generate every combination of the fields given as lists, `concurrency` at a time (by
    default as many as the request budget sustains, fewer after the service pushes back).

        s = qw.sweep(prompt=["a fox", "a wolf"], size=["1:1", "16:9"], n=2)

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
    plan = client.plan(fields, max_images=max_images)  # under the service's rules for its models
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
