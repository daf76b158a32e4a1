"""Time, sleep and randomness behind one seam, so tests can run fast and deterministic."""

from __future__ import annotations

import asyncio
import random
import time

__all__: list[str] = []


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
