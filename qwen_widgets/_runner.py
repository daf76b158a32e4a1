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

__all__ = ["get_loop", "submit", "run"]

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
        return _loop


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
        return future.result()
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


_WIND_DOWN_SECONDS = 120.0  # longer than a POST's own time cap


class _Interrupted(Exception):
    """Carries a cancelled coroutine's last words (e.g. which task id to re-attach)."""
