"""QwenClient: AsyncQwenClient's methods as blocking calls, run on the package's private loop.

Blocking on the private loop (not the caller's) is what lets `client.generate(...)` work
inside a notebook cell, whose own loop is already running. Every method spells out its
parameters so that help() and completion show them; the docstrings are the engine's own.
"""

from __future__ import annotations

import concurrent.futures
import inspect
from collections.abc import Callable, Coroutine, Iterable
from pathlib import Path
from typing import Any, TypeVar

from ..model.account import Balance
from ..model.history import EVERYTHING, PAGE_SIZE, HistoryPage, HistoryQuery
from ..model.limits import Usage
from ..model.plan import DEFAULT_MAX_IMAGES, SweepPlan
from ..model.receipt import Receipt
from ..model.request import ImageRequest, ModelRules
from ..model.secret import as_secret
from ..model.task import GeneratedImage, Task, UploadedImage
from ..model.submission import Entry, OpenWork
from . import runner as _runner
from .budget import Priority
from .call import OnRetry
from .client import AsyncQwenClient, OnUpdate
from .uploads import LocalImage

__all__ = ["QwenClient"]

F = TypeVar("F", bound=Callable[..., Any])
T = TypeVar("T")


def _doc_of(engine_method: Callable[..., Any]) -> Callable[[F], F]:
    """Give a blocking method the docstring of the coroutine it runs."""

    def give(method: F) -> F:
        method.__doc__ = engine_method.__doc__
        return method

    return give


class QwenClient:
    """The synchronous client: AsyncQwenClient's methods, run on the package's private loop.

    Works in scripts and inside a running notebook cell alike. Callbacks (`on_update`,
    `on_retry`) run on the loop's thread. The options are AsyncQwenClient's, documented there.
    """

    def __init__(self, api_key: str | None = None, **options: Any):
        api_key = as_secret(api_key)  # rebinding: even this frame's locals show ***
        self.aio = AsyncQwenClient(api_key, **options)
        """The underlying async client. It belongs to the package's private loop: use it in
        coroutines run there (as the widgets do). To `await` in a notebook cell, create an
        AsyncQwenClient of your own."""

    # the same options as the engine: shown by help() and completion, written once
    __init__.__signature__ = inspect.signature(AsyncQwenClient.__init__)  # type: ignore[attr-defined]

    demo = property(lambda self: self.aio.demo, doc="True when running against the simulator.")
    demo_reason = property(lambda self: self.aio.demo_reason, doc="Why it runs against the simulator, or None.")
    demo_forced = property(lambda self: self.aio.demo_forced,
                           doc="True when QWEN_WIDGETS_DEMO=1 forces the simulator (a key would not be used).")
    base_url = property(lambda self: self.aio.base_url, doc="The API's base URL.")
    simulator = property(lambda self: self.aio.simulator, doc="The demo simulator, if any.")
    journal = property(lambda self: self.aio.journal, doc="Where every submission is recorded.")
    limits = property(lambda self: self.aio.limits, doc="The daily spending limits checked before each POST.")

    def __repr__(self) -> str:
        if not hasattr(self, "aio"):
            return "QwenClient(not ready)"
        return repr(self.aio).replace("AsyncQwenClient", "QwenClient", 1)

    def __enter__(self) -> QwenClient:
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()

    def close(self) -> None:
        """Close the HTTP clients."""
        _runner.run(self.aio.aclose())

    @_doc_of(AsyncQwenClient.submit)
    def submit(self, request: ImageRequest, *, on_retry: OnRetry | None = None,
               priority: Priority = Priority.SUBMIT) -> Task:
        return _runner.run(self.aio.submit(request, on_retry=on_retry, priority=priority))

    @_doc_of(AsyncQwenClient.get_task)
    def get_task(self, task_id: str, *, request: ImageRequest | None = None,
                 on_retry: OnRetry | None = None) -> Task:
        return _runner.run(self.aio.get_task(task_id, request=request, on_retry=on_retry))

    @_doc_of(AsyncQwenClient.wait)
    def wait(self, task_or_id: Task | str, *, on_update: OnUpdate | None = None,
             timeout: float | None = None, on_retry: OnRetry | None = None) -> Task:
        return _runner.run(self.aio.wait(task_or_id, on_update=on_update, timeout=timeout,
                                         on_retry=on_retry))

    @_doc_of(AsyncQwenClient.generate)
    def generate(self, request_or_prompt: ImageRequest | str, *, on_update: OnUpdate | None = None,
                 timeout: float | None = None, on_retry: OnRetry | None = None, **fields: Any) -> Task:
        return _runner.run(self.aio.generate(request_or_prompt, on_update=on_update, timeout=timeout,
                                             on_retry=on_retry, **fields))

    @_doc_of(AsyncQwenClient.fetch_image)
    def fetch_image(self, url_or_image: str | GeneratedImage) -> bytes:
        return _runner.run(self.aio.fetch_image(url_or_image))

    @_doc_of(AsyncQwenClient.resume)
    def resume(self, *, on_update: OnUpdate | None = None) -> list[Task]:
        return _runner.run(self.aio.resume(on_update=on_update))

    @_doc_of(AsyncQwenClient.resend)
    def resend(self, lost: Entry, *, on_retry: OnRetry | None = None) -> Task:
        return _runner.run(self.aio.resend(lost, on_retry=on_retry))

    def open_work(self) -> OpenWork:
        """What the journal left open for this client's API in the last 24 h: submissions whose
        answer was lost, tasks not seen to end, images not yet kept. What resume() finishes."""
        return self.aio.journal.open_work(self.aio.base_url)

    @_doc_of(AsyncQwenClient.upload)
    def upload(self, source: Any) -> UploadedImage:
        return _runner.run(self.aio.upload(source))

    @_doc_of(AsyncQwenClient.read_image)
    def read_image(self, source: Any) -> LocalImage:
        return self.aio.read_image(source)

    @_doc_of(AsyncQwenClient.references)
    def references(self, sources: Any) -> list[str]:
        return _runner.run(self.aio.references(sources))

    @_doc_of(AsyncQwenClient.models)
    def models(self) -> tuple[str, ...]:
        return _runner.run(self.aio.models())

    @_doc_of(AsyncQwenClient.model_rules)
    def model_rules(self, model: str) -> ModelRules:
        return _runner.run(self.aio.model_rules(model))

    @_doc_of(AsyncQwenClient.build_request)
    def build_request(self, request_or_prompt: ImageRequest | str, **fields: Any) -> ImageRequest:
        return _runner.run(self.aio.build_request(request_or_prompt, **fields))

    @_doc_of(AsyncQwenClient.plan)
    def plan(self, fields: dict[str, Any], *, max_images: int = DEFAULT_MAX_IMAGES,
             slots: dict[str, Any] | None = None) -> SweepPlan:
        return _runner.run(self.aio.plan(fields, max_images=max_images, slots=slots))

    @_doc_of(AsyncQwenClient.balance)
    def balance(self, *, account: bool = False) -> Balance:
        return _runner.run(self.aio.balance(account=account))

    @_doc_of(AsyncQwenClient.price_per_image)
    def price_per_image(self, model: str = "qwen-image-2.0") -> tuple[float | None, str]:
        return _runner.run(self.aio.price_per_image(model))

    @_doc_of(AsyncQwenClient.usage)
    def usage(self) -> Usage | None:
        return self.aio.usage()

    @_doc_of(AsyncQwenClient.check_limits)
    def check_limits(self, images: int) -> None:
        self.aio.check_limits(images)

    @_doc_of(AsyncQwenClient.save_image)
    def save_image(self, task: Task, image: GeneratedImage, folder: str | Path) -> tuple[Path, bytes]:
        return _runner.run(self.aio.save_image(task, image, folder))

    @_doc_of(AsyncQwenClient.save)
    def save(self, tasks: Iterable[Task], folder: str | Path) -> list[Path]:
        return _runner.run(self.aio.save(tasks, folder))

    @_doc_of(AsyncQwenClient.export)
    def export(self, tasks: Iterable[Task], path: str | Path) -> Path:
        return _runner.run(self.aio.export(tasks, path))

    # -- the library ---------------------------------------------------------------------------

    @_doc_of(AsyncQwenClient.history)
    def history(self, query: HistoryQuery = EVERYTHING, offset: int = 0, limit: int = PAGE_SIZE) -> HistoryPage:
        return self.aio.journal.page(query, offset, limit)

    @_doc_of(AsyncQwenClient.find)
    def find(self, task: Task | Entry | str) -> Entry:
        return _runner.run(self.aio.find(task))

    @_doc_of(AsyncQwenClient.star)
    def star(self, task: Task | Entry | str, starred: bool = True) -> Entry:
        return _runner.run(self.aio.star(task, starred))

    @_doc_of(AsyncQwenClient.hide)
    def hide(self, task: Task | Entry | str, hidden: bool = True) -> Entry:
        return _runner.run(self.aio.hide(task, hidden))

    @_doc_of(AsyncQwenClient.delete)
    def delete(self, task: Task | Entry | str) -> dict[str, int]:
        return _runner.run(self.aio.delete(task))

    @_doc_of(AsyncQwenClient.recent_prompts)
    def recent_prompts(self, limit: int = 20) -> list[tuple[str, bool]]:
        return self.aio.journal.recent_prompts(limit)

    @_doc_of(AsyncQwenClient.chain)
    def chain(self, task: Task | Entry | str) -> list[Entry]:
        return _runner.run(self.aio.chain(task))

    @_doc_of(AsyncQwenClient.repeatable)
    def repeatable(self, request: ImageRequest) -> ImageRequest:
        return _runner.run(self.aio.repeatable(request))

    @_doc_of(AsyncQwenClient.read_receipt)
    def read_receipt(self, source: str | Path | bytes) -> Receipt:
        return self.aio.read_receipt(source)

    @_doc_of(AsyncQwenClient.rerun)
    def rerun(self, source: Any, *, on_update: OnUpdate | None = None, timeout: float | None = None) -> Task:
        return _runner.run(self.aio.rerun(source, on_update=on_update, timeout=timeout))

    def background(self, coro: Coroutine[Any, Any, T]) -> concurrent.futures.Future[T]:
        """Run a coroutine on this client's loop (the package's private one, where `aio`
        lives) and return at once with its future: how views use the async methods without
        blocking the kernel. Cancelling the future cancels the coroutine."""
        return _runner.submit(coro)
