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
    """Run `coro` on the private loop and wait for it; Ctrl-C cancels it."""
    if threading.current_thread() is _thread:
        coro.close()
        raise RuntimeError(
            "a synchronous qwen_widgets call was made from the package's own event loop "
            "(e.g. inside an on_update callback); use the async client there"
        )
    future = submit(coro)
    try:
        return future.result()
    except BaseException:
        future.cancel()
        raise
