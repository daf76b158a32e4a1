"""When to poll a task next, and when to give up. Pure logic: elapsed times come in as numbers.

The finish time is predicted as a distribution (log-normal), from every signal there is,
each weighted by how much it can be trusted: the progress rate when progress moves, a single
progress mark, the durations this account actually saw for the same kind of request, the
server's `estimated_time` scaled by how it related to real durations before (it often says
two or three times too much), or a default. Then each poll comes when the detection delay
it would add, on average, since the last poll has grown to what a poll costs: dense where the
finish is likely, sparse where it is not, whatever style of progress the server reports
(smooth, coarse, none), and as sparse for a short task as for a long one relative to how well
its end is known. A poll costs more when other requests wait for the shared budget, so a
crowd of tasks polls where each poll probably brings a result. Once the prediction is
overrun, intervals stretch geometrically.
"""

from __future__ import annotations

import dataclasses
import math
from collections import deque
from dataclasses import dataclass, field
from statistics import NormalDist, fmean, pstdev

from ..model.request import ImageRequest
from ..model.task import Task, TaskStatus

__all__ = ["PollSchedule"]

_UNIT = NormalDist()
CONGESTION_COST = 0.4
"""Seconds of detection delay a poll is worth per second of requests waiting for the budget."""
PROBES = 24
"""Tasks of a new kind watched closely: enough that the first to finish is among them."""
PROBE_BACKLOG = 2.0
"""A probe is planned as if at most this many minimum intervals of requests waited."""
_MIN_SIGMA = 0.02
_LEARNED_AFTER = 5  # observations before a learned source is trusted


@dataclass(frozen=True)
class PollSchedule:
    """Tuning of the adaptive poll schedule; all values in seconds."""

    first_delay: float = 1.0
    """First poll after submit while nothing is learned of the task's kind: learn the queue
    state and the server's estimate early. Once durations are learned, they place it."""
    min_interval: float = 0.5
    """Closest spacing of polls."""
    max_interval: float = 5.0
    """Widest spacing, so a wrong prediction never makes detection slow."""
    poll_cost: float = 0.06
    """Seconds of detection delay one poll is worth: the next poll comes when the delay it
    would be expected to add since the last one reaches this."""
    overrun_growth: float = 1.5
    """Once the predicted finish (its 95th percentile) has passed, intervals grow by this."""
    default_estimate: float = 20.0
    """Assumed duration while nothing better is known."""
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
            poll_cost=self.poll_cost * factor,
            default_estimate=self.default_estimate * factor,
            min_deadline=self.min_deadline * factor,
            max_deadline=self.max_deadline * factor,
        )


@dataclass(frozen=True)
class Belief:
    """A log-normal belief about a task's total duration: log-seconds mean and spread."""

    mu: float
    sigma: float

    @classmethod
    def around(cls, seconds: float, sigma: float) -> Belief:
        return cls(math.log(max(seconds, 1e-6)), max(sigma, _MIN_SIGMA))

    @property
    def median(self) -> float:
        return math.exp(self.mu)

    def quantile(self, share: float) -> float:
        return math.exp(self.mu + self.sigma * _UNIT.inv_cdf(min(max(share, 1e-9), 1 - 1e-9)))

    def done_by(self, seconds: float) -> float:
        """The chance the task is done `seconds` after submit."""
        if seconds <= 0:
            return 0.0
        return _UNIT.cdf((math.log(seconds) - self.mu) / self.sigma)

    @staticmethod
    def combine(beliefs: list[Belief]) -> Belief:
        """Independent signals, weighted by their precision."""
        weights = [1 / b.sigma ** 2 for b in beliefs]
        mu = sum(w * b.mu for w, b in zip(weights, beliefs)) / sum(weights)
        return Belief(mu, max(math.sqrt(1 / sum(weights)), _MIN_SIGMA))


class DurationHistory:
    """What this account's tasks took, by (model, resolution, n), and how that compared with
    the server's estimate: the memory the schedule predicts from. Fed from the journal when a
    client starts, and by every task it sees finish."""

    def __init__(self, window: int = 50):
        self._durations: dict[tuple[str, str, int], deque[float]] = {}
        self._ratios: deque[float] = deque(maxlen=window * 4)
        self._window = window
        self._probes: dict[tuple[str, str, int], int] = {}
        self.version = 0
        """Counts what was learned: a schedule planned before a change may plan again."""

    def observe(self, request: ImageRequest | None, duration: float, estimate: float | None) -> None:
        if not duration > 0 or not math.isfinite(duration):
            return
        if request is not None:
            key = (request.model, request.resolution, request.n)
            self._durations.setdefault(key, deque(maxlen=self._window)).append(math.log(duration))
        if estimate is not None and estimate > 0:
            self._ratios.append(math.log(duration / estimate))
        self.version += 1

    def probe(self, request: ImageRequest | None) -> bool:
        """Whether a task of `request` just started should be a probe (see PollTracker.probe):
        one of the first PROBES of its kind while too few of that kind have finished to learn
        from."""
        if request is None or self.beliefs(request, None):
            return False
        key = (request.model, request.resolution, request.n)
        self._probes[key] = self._probes.get(key, 0) + 1
        return self._probes[key] <= PROBES

    def beliefs(self, request: ImageRequest | None, estimate: float | None) -> list[Belief]:
        """What the history says about a task of `request` that the server estimates at `estimate`."""
        found = []
        seen = self._durations.get((request.model, request.resolution, request.n)) if request else None
        if seen is not None and len(seen) >= _LEARNED_AFTER:
            found.append(Belief(fmean(seen), max(pstdev(seen), _MIN_SIGMA)))
        if estimate is not None and len(self._ratios) >= _LEARNED_AFTER:
            found.append(Belief(math.log(estimate) + fmean(self._ratios), max(pstdev(self._ratios), _MIN_SIGMA)))
        return found

    def typical(self) -> float | None:
        """The median duration seen, over every kind of request; None before any."""
        seen = sorted(value for durations in self._durations.values() for value in durations)
        return math.exp(seen[len(seen) // 2]) if seen else None


@dataclass
class PollTracker:
    """What the schedule has learnt about one task; call observe() after each poll."""

    schedule: PollSchedule = field(default_factory=PollSchedule)
    timeout: float | None = None
    """A caller's fixed deadline; None derives it from the server's estimate."""
    history: DurationHistory | None = None
    """The account's past durations, when known."""
    request: ImageRequest | None = None
    polls: int = 0
    estimated_time: float | None = None
    _points: list[tuple[float, int]] = field(default_factory=list)
    probe: bool = False
    """One of the first tasks of a kind nothing is known about: watched closely whatever the
    load until durations of its kind are learned, so that the first results come early."""
    _overrun_interval: float | None = None
    _overrun_polls: int = -1
    _last: float = 0.0
    _running_at: float = 0.0

    def observe(self, elapsed: float, task: Task) -> None:
        """Record a poll answer seen `elapsed` seconds after submit."""
        self.polls += 1
        self._last = elapsed
        if not task.done:
            self._running_at = elapsed
        if task.estimated_time is not None and task.estimated_time > 0:
            self.estimated_time = task.estimated_time
        if task.status is TaskStatus.PROCESSING and 0 < task.progress < 100:
            if not self._points or task.progress > self._points[-1][1]:
                self._points.append((elapsed, task.progress))
                self._points = self._points[-4:]

    def duration(self, task: Task, elapsed: float) -> float:
        """How long the task took, as well as it is known: the server's `actual_time`; when
        that is in whole seconds (the live service's way: +-0.5 s is much of a short task),
        narrowed by the polls that saw it running and then done."""
        reported = task.actual_time
        if not reported or reported <= 0:
            return elapsed
        if reported != round(reported):
            return reported
        low, high = max(reported - 0.5, self._running_at), min(reported + 0.5, elapsed)
        return (low + high) / 2 if low <= high else reported

    def deadline(self) -> float:
        """Seconds after submit at which watching stops with TaskTimeoutError."""
        if self.timeout is not None:
            return self.timeout
        estimate = self.estimated_time or 0.0
        wanted = max(self.schedule.min_deadline, self.schedule.deadline_factor * estimate)
        return min(wanted, self.schedule.max_deadline)

    def belief(self) -> Belief:
        """The predicted total duration, from every signal there is."""
        found = self._progress_beliefs()
        if self.history is not None:
            found += self.history.beliefs(self.request, self.estimated_time)
        if not found and self.estimated_time:
            # unlearned: the server's estimate, which usually overstates two or three times
            found.append(Belief.around(self.estimated_time / 2, 0.45))
        if not found:
            found.append(Belief.around(self.schedule.default_estimate, 0.6))
        return Belief.combine(found)

    def _progress_beliefs(self) -> list[Belief]:
        if len(self._points) >= 2:
            (t0, p0), (t1, p1) = self._points[0], self._points[-1]
            rate = (p1 - p0) / (t1 - t0) if t1 > t0 else 0.0
            if rate > 0:
                # the rate may drift by some 8%, but only over what is left to run: a bar
                # seen moving steadily for most of a long task pins its end closely
                left = (100 - p1) / rate
                return [Belief.around(t1 + left, 0.08 * left / (t1 + left))]
        if len(self._points) == 1:
            t1, p1 = self._points[0]
            # assumes progress started at submit: errs long when the task queued first
            return [Belief.around(t1 * 100 / p1, 0.3)]
        return []

    def _learned(self) -> bool:
        return self.history is not None and bool(self.history.beliefs(self.request, None))

    def predicted_total(self, elapsed: float) -> float:
        """Predicted task duration, in seconds since submit (the median of the belief)."""
        return max(self.belief().median, elapsed)

    def outlook(self, start: float) -> Outlook:
        """The chance, at any clock time, that a poll finds the task done, as predicted now
        (`start`: the clock time of the submit); for the request budget's order."""
        return Outlook(self.belief(), start, self._last)

    def next_delay(self, elapsed: float, backlog: float = 0.0) -> float:
        """Seconds to wait before the next poll, never past the deadline.

        The next poll comes when the detection delay it is expected to add since the last
        poll reaches what a poll costs: `poll_cost`, plus `CONGESTION_COST` of the `backlog`
        (seconds of requests already waiting for the shared budget), since a poll that finds
        the task still running takes a slot from every one of them. So a lone task is polled
        densely where its finish is likely and sparsely where it is not, and a crowd of them
        spends polls only where each one probably brings a result.
        """
        s = self.schedule
        if self.probe and not self._learned():
            backlog = min(backlog, PROBE_BACKLOG * s.min_interval)
        congestion = 1.0 + backlog / s.min_interval
        if self.polls == 0 and congestion < 2 and not self._learned():
            delay = s.first_delay  # learn the queue state and the server's estimate early
        else:
            belief = self.belief()
            if elapsed < belief.quantile(0.95):
                self._overrun_interval = None
                cost = s.poll_cost + CONGESTION_COST * backlog
                delay = _lateness_reaches(belief, self._last, cost) - elapsed
            else:  # the prediction was wrong: stretch rather than poll a tail densely
                previous = self._overrun_interval
                if previous is None:
                    interval = s.min_interval
                elif self._overrun_polls == self.polls:  # planned again with no poll since
                    interval = previous
                else:
                    interval = previous * s.overrun_growth
                self._overrun_interval, self._overrun_polls = interval, self.polls
                delay = self._last + interval - elapsed  # from the last poll, however often planned
            # the widest spacing widens with congestion too: a fixed cap would poll every task
            # every few seconds whatever the budget can afford
            delay = min(max(delay, s.min_interval), s.max_interval * congestion)
        return max(0.0, min(delay, self.deadline() - elapsed))


@dataclass(frozen=True)
class Outlook:
    """A frozen prediction of one task, readable from any thread: how likely a poll at clock
    time `now` finds it done, given it was not at the last poll."""

    belief: Belief
    start: float
    last: float

    def __call__(self, now: float) -> float:
        before = self.belief.done_by(self.last)
        return (self.belief.done_by(now - self.start) - before) / max(1.0 - before, 1e-12)


def _lateness_reaches(belief: Belief, after: float, cost: float) -> float:
    """The time t at which the detection delay expected from a poll at t, for a task not done
    at `after`, reaches `cost`: E[(t - D)+ | D > after] = cost, D ~ belief."""
    mu, sigma = belief.mu, belief.sigma
    mean = math.exp(mu + sigma * sigma / 2)
    f_after = belief.done_by(after)
    survive = max(1.0 - f_after, 1e-12)

    def moment(t: float) -> float:
        return 0.0 if t <= 0 else _UNIT.cdf((math.log(t) - mu - sigma * sigma) / sigma)

    m_after = moment(after)

    def lateness(t: float) -> float:
        return (t * (belief.done_by(t) - f_after) - mean * (moment(t) - m_after)) / survive

    low, high = max(after, 1e-6), max(after, belief.quantile(0.5)) * 2 + cost
    for _ in range(64):  # lateness grows without bound: some doubling passes `cost`
        if lateness(high) >= cost:
            break
        high *= 2
    for _ in range(50):
        middle = (low + high) / 2
        if lateness(middle) < cost:
            low = middle
        else:
            high = middle
    return high
