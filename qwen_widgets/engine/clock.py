"""Time, sleep and randomness behind one seam, so tests can run fast and deterministic."""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable
from typing import TypeVar

__all__: list[str] = []

T = TypeVar("T")


class Clock:
    """The real clock. Tests substitute an object with the same four methods."""

    def monotonic(self) -> float:
        """Seconds on a clock that never goes backwards (for intervals and deadlines)."""
        return time.monotonic()

    def time(self) -> float:
        """Wall-clock unix seconds (for timestamps and Retry-After dates)."""
        return time.time()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(max(seconds, 0.0))

    def random(self) -> float:
        """Uniform in [0, 1), for jitter."""
        return random.random()


SYSTEM_CLOCK = Clock()


async def within(awaitable: Awaitable[T], timeout: float | None) -> T:
    """`awaitable`'s result, or asyncio.TimeoutError after `timeout` real seconds (None: no
    limit); the awaitable is cancelled and has ended by then.

    asyncio.wait_for before Python 3.12 loses a cancel that arrives in the loop turn its
    awaitable finishes: it returns the result and the caller goes on as if never cancelled
    (a cancelled sweep then watched a task to its end). `asyncio.wait` never does.
    """
    inner = asyncio.ensure_future(awaitable)
    try:
        done, _ = await asyncio.wait({inner}, timeout=timeout)
    except BaseException:  # cancelled from outside: the awaitable ends too, the cancel goes on
        await _stopped(inner)
        raise
    if not done:
        await _stopped(inner)
        raise asyncio.TimeoutError
    return inner.result()


async def _stopped(inner: asyncio.Future) -> None:
    """Cancel `inner` and let it end (its cleanup runs), whatever it then says."""
    inner.cancel()
    await asyncio.wait({inner})
