"""Running a sweep: every cell of a plan (`model.plan.SweepPlan`), under a concurrency cap.

Planning is pure and lives with the values; `Sweep` runs the plan on the package's private
loop. Every task goes through the client, so through the journal and the shared request
budget, like any other. A sweep is data (its cells, results and errors, and listeners told of
each change); drawing it is a view's business (`widgets.grid`).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING

from ..model.errors import QwenError, RateLimitError, RequestValidationError, stopped_watching
from ..model.plan import SweepPlan
from ..model.task import Task, TaskStatus
from . import runner as _runner
from .budget import Priority

if TYPE_CHECKING:
    import pandas

    from .sync import QwenClient

__all__ = ["Sweep"]

_log = logging.getLogger("qwen_widgets")


class SweepCancelled(QwenError):
    """A cell the sweep stopped before it ended: not a failure of the task."""


class Sweep:
    """A running sweep. `wait()` blocks until it ends; `cancel()` stops it early.

    `results[i]` is the Task of `cells[i]` once it finished, `errors[i]` why it did not.
    Listeners added with `on_change` are called (on the private loop's thread) with the cell
    index whenever a cell changes.
    """

    def __init__(self, client: QwenClient, plan: SweepPlan, *, concurrency: int | None = None,
                 price_per_image: float | None = None):
        if concurrency is None:
            concurrency = client.aio.sustainable_tasks()
        elif isinstance(concurrency, bool) or not isinstance(concurrency, int) or concurrency < 1:
            raise RequestValidationError("concurrency", "must be a positive integer or None (automatic)",
                                         concurrency)
        self.client = client
        self.plan = plan
        self.axes = plan.axes
        self.cells = plan.cells
        self.concurrency = min(concurrency, max(1, len(plan.cells)))
        """Cells in flight at once; halved on each 429 or 'too many tasks' answer to a submit."""
        self.summary = plan.describe(price_per_image, "user")
        """The plan in words: tasks, images, and cost when a price was given."""
        cells = plan.cells
        self.results: list[Task | None] = [None] * len(cells)
        self.errors: list[BaseException | None] = [None] * len(cells)
        self.submitted: list[Task | None] = [None] * len(cells)
        self._listeners: list[Callable[[int], None]] = []
        self._cancelled = threading.Event()
        self._watchers: dict[int, asyncio.Task] = {}
        self._submits: dict[int, asyncio.Task] = {}
        self.future: concurrent.futures.Future | None = None

    def __repr__(self) -> str:
        return f"Sweep({self.summary}; {self.done_count} done, {self.failed_count} failed)"

    # -- state --------------------------------------------------------------------------------

    @property
    def tasks(self) -> list[Task]:
        """The finished tasks (completed or failed), in cell order."""
        return [task for task in self.results if task is not None]

    @property
    def done_count(self) -> int:
        return sum(r is not None or e is not None for r, e in zip(self.results, self.errors))

    @property
    def failed_count(self) -> int:
        """Cells that failed (a cancelled cell did not fail)."""
        return sum((e is not None and not isinstance(e, SweepCancelled))
                   or (r is not None and r.status is not TaskStatus.COMPLETED)
                   for r, e in zip(self.results, self.errors))

    @property
    def done(self) -> bool:
        return self.future is not None and self.future.done()

    def on_change(self, listener: Callable[[int], None]) -> None:
        self._listeners.append(listener)

    # -- control ------------------------------------------------------------------------------

    def start(self) -> Sweep:
        self.future = _runner.submit(self._run())
        return self

    def wait(self, timeout: float | None = None) -> list[Task]:
        """Block until every cell has ended; returns the finished tasks."""
        assert self.future is not None, "start() the sweep first"
        self.future.result(timeout)
        return self.tasks

    def cancel(self, *, wait: bool = True) -> str:
        """Stop submitting and watching; returns (and says) what may still be billed.

        Submissions already on the wire are answered first, so their task ids are known;
        `wait=False` returns at once (the report is then partial until the sweep ends).
        """
        self._cancelled.set()
        loop = _runner.get_loop()
        for running in [*self._submits.values(), *self._watchers.values()]:
            loop.call_soon_threadsafe(running.cancel)
        if wait and self.future is not None:
            try:
                self.future.result(60)
            except concurrent.futures.TimeoutError:
                pass
        return self.cancel_report()

    def cancel_report(self) -> str:
        running = [t.task_id for t, r in zip(self.submitted, self.results) if t and r is None]
        message = f"Sweep cancelled: {self.done_count} of {len(self.cells)} cells ended."
        if running:
            message += (f" {len(running)} submitted task(s) were still running and may complete "
                        "and be billed; qwen_widgets.resume() picks them up: " + ", ".join(running))
        return message

    def frame(self) -> pandas.DataFrame:
        """The finished tasks as a DataFrame, one row per image, with a column per axis."""
        import pandas as pd

        from ..model.frame import to_frame

        parts = []
        for cell, task in zip(self.cells, self.results):
            if task is not None:
                part = to_frame([task])
                for position, (name, value) in enumerate(cell.labels):
                    part.insert(position, f"axis_{name}", str(value))
                parts.append(part)
        if not parts:
            return to_frame([])
        return pd.concat(parts, ignore_index=True)

    # -- the work, on the private loop ----------------------------------------------------------

    async def _run(self) -> None:
        gate = _Gate(self)
        await asyncio.gather(*(self._cell(i, gate) for i in range(len(self.cells))))

    def _slow_down(self, error: QwenError, delay: float) -> None:
        """on_retry of a submit: the service says too many requests or tasks at once."""
        if isinstance(error, RateLimitError) and self.concurrency > 1:
            self.concurrency = max(1, self.concurrency // 2)
            _log.info("sweep: the service pushed back; %d cells in flight from now on", self.concurrency)

    async def _cell(self, index: int, gate: _Gate) -> None:
        async with gate:
            task = await self._submit(index)
            if task is None:
                return
            self.submitted[index] = task
            self._changed(index)
            watcher = asyncio.ensure_future(self.client.aio.wait(task))
            self._watchers[index] = watcher
            if self._cancelled.is_set():  # set before cancel() looked at the watchers
                watcher.cancel()
            try:
                self._end(index, result=await watcher)
            except asyncio.CancelledError:
                if not watcher.cancelled():
                    raise
                self._end(index, error=SweepCancelled(stopped_watching(task.task_id)))
            except QwenError as error:
                self._end(index, error=error)
            finally:
                self._watchers.pop(index, None)

    async def _submit(self, index: int) -> Task | None:
        """Submit cell `index`; None when it ended without a task (cancelled, refused). A
        refusal for too many requests or tasks at once created nothing: the cell waits and
        tries again, with fewer cells in flight, rather than fail."""
        while True:
            if self._cancelled.is_set():
                self._end(index, error=SweepCancelled("cancelled before it was submitted"))
                return None
            submitting = asyncio.ensure_future(self.client.aio.submit(
                self.cells[index].request, on_retry=self._slow_down, priority=Priority.BACKGROUND))
            self._submits[index] = submitting
            if self._cancelled.is_set():
                submitting.cancel()
            try:  # a cancel stops it only before it leaves; once sent, its answer is awaited
                return await submitting
            except asyncio.CancelledError as stopped:
                self._end(index, error=SweepCancelled(str(stopped) or "cancelled"))
                return None
            except RateLimitError as refused:
                self._slow_down(refused, 0.0)
                await asyncio.sleep(refused.retry_after or 1.0)
            except QwenError as error:
                self._end(index, error=error)
                return None
            finally:
                self._submits.pop(index, None)

    def _end(self, index: int, *, result: Task | None = None, error: BaseException | None = None) -> None:
        self.results[index], self.errors[index] = result, error
        self._changed(index)

    def _changed(self, index: int) -> None:
        for listener in self._listeners:
            try:
                listener(index)
            except Exception:  # a view's bug must not stop the sweep
                _log.exception("a sweep listener failed")


class _Gate:
    """At most `sweep.concurrency` cells inside; the limit may shrink while cells wait."""

    def __init__(self, sweep: Sweep):
        self._sweep = sweep
        self._inside = 0
        self._changed = asyncio.Condition()

    async def __aenter__(self) -> None:
        async with self._changed:
            await self._changed.wait_for(lambda: self._inside < self._sweep.concurrency)
            self._inside += 1

    async def __aexit__(self, *exc_info: object) -> None:
        async with self._changed:
            self._inside -= 1
            self._changed.notify_all()
