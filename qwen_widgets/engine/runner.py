"""The package's private asyncio loop, on a daemon thread.

Sync calls and widget buttons hand coroutines to this loop, so they work inside a running
notebook cell (whose own loop is busy) without patching the kernel's loop.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from typing import Any, TypeVar
from collections.abc import Coroutine

__all__: list[str] = []

T = TypeVar("T")

_lock = threading.Lock()
_loop: asyncio.AbstractEventLoop | None = None
_thread: threading.Thread | None = None


def get_loop() -> asyncio.AbstractEventLoop:
    """The private loop, started on first use."""
    global _loop, _thread
    with _lock:
        if _loop is None or _thread is None or not _thread.is_alive():
            loop = asyncio.new_event_loop()
            ready = threading.Event()

            def serve() -> None:
                asyncio.set_event_loop(loop)
                loop.call_soon(ready.set)
                loop.run_forever()

            _thread = threading.Thread(target=serve, name="qwen_widgets-loop", daemon=True)
            _thread.start()
            ready.wait()
            _loop = loop
            _stop_at_exit(loop)
        return _loop


def _stop_at_exit(loop: asyncio.AbstractEventLoop) -> None:
    """At interpreter exit, cancel what still runs on the loop, quietly, before the thread
    pools refuse new work: otherwise a card still loading thumbnails when a script ends
    (`qw.show(task)` as its last line) dies with "cannot schedule new futures after
    interpreter shutdown" printed at the user.

    threading's exit hooks run newest first; the thread pools' hook is registered when
    concurrent.futures.thread is first imported, so it is imported here, before this hook is
    registered: this one then runs first.
    """
    import concurrent.futures.thread  # noqa: F401 (registers the pools' exit hook now)


    def stop() -> None:
        async def cancel_all() -> None:
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in tasks:
                task.cancel()
            if tasks:
                await asyncio.wait(tasks, timeout=_EXIT_GRACE_SECONDS)

        if loop.is_running():
            try:
                asyncio.run_coroutine_threadsafe(cancel_all(), loop).result(_EXIT_GRACE_SECONDS + 1)
            except (concurrent.futures.TimeoutError, RuntimeError):
                pass
            loop.call_soon_threadsafe(loop.stop)

    register = getattr(threading, "_register_atexit", None)
    if register is not None:
        register(stop)


def submit(coro: Coroutine[Any, Any, T]) -> concurrent.futures.Future[T]:
    """Schedule `coro` on the private loop and return at once."""
    return asyncio.run_coroutine_threadsafe(coro, get_loop())


def run(coro: Coroutine[Any, Any, T]) -> T:
    """Run `coro` on the private loop and wait for it.

    Ctrl-C cancels it, then waits for it to wind down, so a submission already on the wire
    is answered and its task id reported in the KeyboardInterrupt rather than lost.
    """
    if threading.current_thread() is _thread:
        coro.close()
        raise RuntimeError(
            "a synchronous qwen_widgets call was made from the package's own event loop "
            "(e.g. inside an on_update callback); use the async client there"
        )
    started: list[asyncio.Task] = []

    async def tracked() -> T:
        started.append(asyncio.current_task())
        try:
            return await coro
        except asyncio.CancelledError as cancelled:
            # a plain exception survives the trip to this thread; a cancel's message does not
            raise _Interrupted(str(cancelled)) from None

    future = asyncio.run_coroutine_threadsafe(tracked(), get_loop())
    try:
        return wait_for(future)
    except KeyboardInterrupt:
        if not started:
            future.cancel()
            raise
        get_loop().call_soon_threadsafe(started[0].cancel)
        try:
            future.result(timeout=_WIND_DOWN_SECONDS)
        except _Interrupted as interrupted:
            raise KeyboardInterrupt(str(interrupted)) from None
        except concurrent.futures.TimeoutError:
            pass
        raise


def wait_for(future: concurrent.futures.Future[T]) -> T:
    """future.result(), waiting in short slices: a Ctrl-C that lands just before a long wait
    begins is then raised within a slice, not when the work ends."""
    while True:
        try:
            return future.result(timeout=_SLICE_SECONDS)
        except concurrent.futures.TimeoutError:
            continue


_SLICE_SECONDS = 0.25
_WIND_DOWN_SECONDS = 120.0  # longer than a POST's own time cap
_EXIT_GRACE_SECONDS = 5.0  # a POST on the wire at exit gets this long to be answered


class _Interrupted(Exception):
    """Carries a cancelled coroutine's last words (e.g. which task id to re-attach)."""
