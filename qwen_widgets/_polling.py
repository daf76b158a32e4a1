"""When to poll a task next, and when to give up.

The server reports `estimated_time` (often two or three times the real duration) and
`progress`. The schedule predicts the finish from the progress rate when progress moves,
from the estimate otherwise; it polls after a fraction of the predicted remaining time, so
polls get denser near the expected end, and stretches them geometrically once the
prediction has passed without a result. Pure logic: elapsed times come in as numbers.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from ._task import Task, TaskStatus

__all__ = ["PollSchedule"]


@dataclass(frozen=True)
class PollSchedule:
    """Tuning of the adaptive poll schedule; all values in seconds."""

    first_delay: float = 1.0
    """First poll after submit: learn the queue state and the server's estimate early."""
    min_interval: float = 0.5
    """Closest spacing of polls, reached near the predicted end."""
    max_interval: float = 5.0
    """Widest spacing, so a pessimistic estimate never makes detection slow."""
    tail_fraction: float = 0.5
    """Poll after this fraction of the predicted remaining time."""
    overrun_growth: float = 1.5
    """After the predicted end has passed, each interval grows by this factor."""
    default_estimate: float = 20.0
    """Assumed duration while the server has given no estimate."""
    min_deadline: float = 600.0
    """The overall deadline is the larger of this and `deadline_factor` x the estimate..."""
    deadline_factor: float = 3.0
    max_deadline: float = 86_400.0
    """...but never past the day that task ids live, whatever the server estimates."""

    def scaled(self, factor: float) -> PollSchedule:
        """The same schedule with every duration multiplied (for time-scaled simulators)."""
        return dataclasses.replace(
            self,
            first_delay=self.first_delay * factor,
            min_interval=self.min_interval * factor,
            max_interval=self.max_interval * factor,
            default_estimate=self.default_estimate * factor,
            min_deadline=self.min_deadline * factor,
            max_deadline=self.max_deadline * factor,
        )


@dataclass
class PollTracker:
    """What the schedule has learnt about one task; call observe() after each poll."""

    schedule: PollSchedule = field(default_factory=PollSchedule)
    timeout: float | None = None
    """A caller's fixed deadline; None derives it from the server's estimate."""
    polls: int = 0
    estimated_time: float | None = None
    _points: list[tuple[float, int]] = field(default_factory=list)
    _overrun_interval: float | None = None

    def observe(self, elapsed: float, task: Task) -> None:
        """Record a poll answer seen `elapsed` seconds after submit."""
        self.polls += 1
        if task.estimated_time is not None and task.estimated_time > 0:
            self.estimated_time = task.estimated_time
        if task.status is TaskStatus.PROCESSING and 0 < task.progress < 100:
            if not self._points or task.progress > self._points[-1][1]:
                self._points.append((elapsed, task.progress))
                self._points = self._points[-4:]

    def deadline(self) -> float:
        """Seconds after submit at which watching stops with TaskTimeoutError."""
        if self.timeout is not None:
            return self.timeout
        estimate = self.estimated_time or 0.0
        wanted = max(self.schedule.min_deadline, self.schedule.deadline_factor * estimate)
        return min(wanted, self.schedule.max_deadline)

    def predicted_total(self, elapsed: float) -> float:
        """Predicted task duration, in seconds since submit."""
        if len(self._points) >= 2:
            (t0, p0), (t1, p1) = self._points[0], self._points[-1]
            rate = (p1 - p0) / (t1 - t0) if t1 > t0 else 0.0
            if rate > 0:
                return t1 + (100 - p1) / rate
        if len(self._points) == 1:
            t1, p1 = self._points[0]
            # assumes progress started at submit: errs long when the task queued first
            return t1 * 100 / p1
        return self.estimated_time or self.schedule.default_estimate

    def next_delay(self, elapsed: float) -> float:
        """Seconds to wait before the next poll, never past the deadline."""
        s = self.schedule
        if self.polls == 0:
            delay = s.first_delay
        else:
            remaining = self.predicted_total(elapsed) - elapsed
            if remaining > s.min_interval:
                self._overrun_interval = None
                delay = remaining * s.tail_fraction
            else:
                previous = self._overrun_interval
                delay = s.min_interval if previous is None else previous * s.overrun_growth
                self._overrun_interval = delay
            delay = min(max(delay, s.min_interval), s.max_interval)
        return max(0.0, min(delay, self.deadline() - elapsed))
