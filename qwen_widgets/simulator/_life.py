"""One simulated task's life: drawn whole when it is created, read off the clock after."""

from __future__ import annotations

from dataclasses import dataclass

from ._contract import SimRequest

__all__: list[str] = []


@dataclass
class SimTask:
    """When a task queues, runs, fails or ends, and what it returns; its state at any time."""

    task_id: str
    request: SimRequest
    key_id: str
    """Which key submitted it (a digest, never the key): a key's balance counts its own tasks."""
    created: float
    queue: float
    duration: float
    estimate: float
    fail_at: float | None
    images_returned: int
    url_as_list: bool
    error: str = ""
    progress_style: str = "linear"
    """How the server reports progress: "linear" (1..99), "coarse" (0, then 50 at half
    way) or "none" (0 until done): what the real service does is not documented."""

    def state(self, now: float) -> tuple[str, int]:
        elapsed = now - self.created
        if self.fail_at is not None and elapsed >= self.fail_at:
            return "failed", self._progress(self.fail_at)
        if elapsed >= self.duration:
            return "completed", 100
        if elapsed < self.queue:
            return "pending", 0
        return "processing", self._progress(elapsed)

    def _progress(self, elapsed: float) -> int:
        if elapsed < self.queue or self.progress_style == "none":
            return 0
        share = (elapsed - self.queue) / (self.duration - self.queue)
        if self.progress_style == "coarse":
            return 50 if share >= 0.5 else 0
        return int(1 + 98 * share)
