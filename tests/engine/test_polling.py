"""Layer 1: the adaptive poll schedule on a fake clock, and the shared poll-rate budget."""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from qwen_widgets.model.task import Task, TaskStatus
from qwen_widgets.engine.budget import RequestBudget
from qwen_widgets.engine.polling import DurationHistory, PollSchedule, PollTracker
from qwen_widgets.model.request import ImageRequest

TID = "task_poll"
EPS = 1e-9


@dataclass
class LinearTask:
    """A deterministic stand-in for the server: queued for `queue` seconds, then progress
    rising linearly 1..99 (like the simulator) until it completes at `duration`; the server's
    `estimated_time` overstates the duration by `overstate`."""

    duration: float
    queue: float = 0.0
    overstate: float = 2.5

    def at(self, elapsed: float) -> Task:
        estimate = self.duration * self.overstate
        if elapsed >= self.duration:
            return Task(TID, TaskStatus.COMPLETED, 100, estimate, self.duration)
        if elapsed < self.queue:
            return Task(TID, TaskStatus.PENDING, 0, estimate)
        share = (elapsed - self.queue) / (self.duration - self.queue)
        return Task(TID, TaskStatus.PROCESSING, int(1 + 98 * share), estimate)


@dataclass
class StyledTask(LinearTask):
    """LinearTask with the progress the server reports: smooth, 0 then 50, or none."""

    style: str = "linear"

    def at(self, elapsed: float) -> Task:
        task = LinearTask.at(self, elapsed)
        if task.status is not TaskStatus.PROCESSING or self.style == "linear":
            return task
        share = (elapsed - self.queue) / (self.duration - self.queue)
        progress = 50 if self.style == "coarse" and share >= 0.5 else 0
        return Task(TID, TaskStatus.PROCESSING, progress, task.estimated_time)


@dataclass
class Run:
    poll_times: list[float]
    delays: list[float]
    detection: float | None
    deadline: float

    @property
    def polls(self) -> int:
        return len(self.poll_times)


def drive(model: LinearTask, tracker: PollTracker | None = None) -> Run:
    """Poll `model` on a fake clock the way the engine does: wait next_delay, observe."""
    tracker = tracker or PollTracker()
    elapsed, times, delays = 0.0, [], []
    while True:
        delay = tracker.next_delay(elapsed)
        delays.append(delay)
        elapsed += delay
        task = model.at(elapsed)
        tracker.observe(elapsed, task)
        times.append(elapsed)
        if task.done:
            return Run(times, delays, elapsed - model.duration, tracker.deadline())
        if elapsed >= tracker.deadline() - EPS:
            return Run(times, delays, None, tracker.deadline())
        assert len(times) < 10_000


def _fixed_polls(duration: float, interval: float) -> int:
    return math.floor(duration / interval) + 1


# --- efficiency and detection ---------------------------------------------------------------


def test_twenty_second_task_few_polls_fast_detection():
    run = drive(LinearTask(duration=20.0))
    assert run.polls <= _fixed_polls(20.0, 0.5) / 3  # fixed 0.5 s (replicate) needs 41
    assert 0 <= run.detection < 1.0


@pytest.mark.parametrize("duration", [15.0, 20.0, 30.0, 45.0, 60.0, 120.0])
@pytest.mark.parametrize("queue", [0.0, 2.0, 5.0])
@pytest.mark.parametrize("overstate", [1.5, 2.5, 3.5])
def test_poll_count_and_detection_across_durations(duration, queue, overstate):
    run = drive(LinearTask(duration=duration, queue=queue, overstate=overstate))
    assert run.detection is not None, "the task finished before the deadline"
    assert run.polls <= _fixed_polls(duration, 0.5) / 3
    assert 0 <= run.detection < 1.0


def test_beats_a_fixed_three_second_poll_on_detection():
    # Public callers of this API sleep 3-5 s; the adaptive schedule detects sooner on average.
    durations = [15.0 + 0.7 * k for k in range(30)]
    ours = [drive(LinearTask(d)).detection for d in durations]
    fixed = [math.ceil(d / 3.0) * 3.0 - d for d in durations]
    assert sum(ours) / len(ours) < sum(fixed) / len(fixed) / 2


# --- shape of the schedule ------------------------------------------------------------------


@pytest.mark.parametrize("first", [1.0, 0.25, 3.0])
def test_first_delay_is_the_schedule_first_delay(first):
    schedule = PollSchedule(first_delay=first)
    assert PollTracker(schedule).next_delay(0.0) == first
    assert drive(LinearTask(20.0), PollTracker(schedule)).delays[0] == first


@pytest.mark.parametrize("duration", [8.0, 20.0, 75.0])
def test_intervals_stay_within_min_and_max(duration):
    schedule = PollSchedule()
    run = drive(LinearTask(duration, queue=1.0))
    for delay in run.delays[1:]:
        assert schedule.min_interval - EPS <= delay <= schedule.max_interval + EPS


@pytest.mark.parametrize("duration", [20.0, 40.0, 120.0])
def test_polls_get_denser_near_the_predicted_end(duration):
    schedule = PollSchedule()
    run = drive(LinearTask(duration))
    delays = run.delays[1:]
    assert max(delays) == pytest.approx(schedule.max_interval)  # sparse mid-task
    assert delays[-1] <= schedule.max_interval / 3  # dense at the end
    # once the interval starts shrinking it keeps shrinking until the task is seen done
    peak = delays.index(max(delays))
    tail = delays[peak:]
    assert all(b <= a + EPS for a, b in zip(tail, tail[1:]))


def test_polls_are_densest_where_the_finish_is_likely():
    # no progress and no history: the finish is believed near half the 30 s estimate
    tracker = PollTracker()
    tracker.observe(1.0, Task(TID, TaskStatus.PENDING, 0, estimated_time=30.0))
    likely = tracker.belief().median
    assert likely == pytest.approx(15.0)
    early, near = tracker.next_delay(2.0), tracker.next_delay(likely)
    assert near < early and near <= 1.5
    assert early >= 3 * near


def test_progress_rate_beats_an_overstated_estimate():
    # Estimate says 60 s, but progress moves at 5 %/s: the prediction follows the progress.
    tracker = PollTracker()
    tracker.observe(1.0, Task(TID, TaskStatus.PROCESSING, 5, estimated_time=60.0))
    tracker.observe(11.0, Task(TID, TaskStatus.PROCESSING, 55, estimated_time=60.0))
    assert tracker.predicted_total(11.0) == pytest.approx(20.0, rel=0.05)
    assert tracker.belief().sigma < 0.1  # a moving progress bar is trusted most
    assert 0.5 <= tracker.next_delay(11.0) < 9.0


def test_history_narrows_the_prediction_and_a_fresh_estimate_scales_by_it():
    history = DurationHistory()
    request = ImageRequest("a fox")
    for duration in (18.0, 20.0, 22.0, 19.0, 21.0, 20.0):
        history.observe(request, duration, duration * 3)  # the server says three times too much
    fresh, learned = PollTracker(), PollTracker(history=history, request=request)
    for tracker in (fresh, learned):
        tracker.observe(1.0, Task(TID, TaskStatus.PENDING, 0, estimated_time=90.0))
    # two learned signals, weighed: durations seen (about 20 s) and this estimate / 3 (30 s)
    assert 20.0 < learned.belief().median < 30.0
    assert fresh.belief().median == pytest.approx(45.0)  # unlearned: half the estimate
    assert learned.belief().sigma < fresh.belief().sigma
    assert history.typical() == pytest.approx(20.0, rel=0.05)


@pytest.mark.parametrize("style", ["linear", "coarse", "none"])
def test_every_progress_style_is_cheap_and_prompt_once_durations_are_learned(style):
    history, request = DurationHistory(), ImageRequest("a fox")
    for duration in (16.0, 18.0, 20.0, 22.0, 24.0, 19.0, 21.0):
        history.observe(request, duration, duration * 2.5)
    runs = [drive(StyledTask(duration, style=style), PollTracker(history=history, request=request))
            for duration in (15.0, 18.0, 20.0, 22.0, 26.0)]
    assert max(run.polls for run in runs) <= _fixed_polls(26.0, 0.5) / 3
    assert sorted(run.detection for run in runs)[2] <= 1.0


@pytest.mark.parametrize("style", ["linear", "coarse", "none"])
def test_learned_short_tasks_cost_a_third_of_a_half_second_loop_and_are_seen_within_half_a_second(style):
    """Tasks of 3-6 s, of a kind the account has seen: the first poll and the spacing come from
    the learned durations (no fixed 1 s look, no 0.5 s grid), so a 4 s task is not polled
    twice before it can have finished."""
    history, request = DurationHistory(), ImageRequest("a quick fox")
    learned = [3.2, 3.6, 3.9, 4.1, 4.3, 4.6, 5.0, 5.5]
    for duration in learned:
        history.observe(request, duration, duration * 2.5)
    durations = [3.0 + 0.25 * k for k in range(13)]  # 3.0 .. 6.0 s
    runs = [drive(StyledTask(d, queue=0.3, style=style), PollTracker(history=history, request=request))
            for d in durations]
    ours = sum(run.polls for run in runs)
    fixed = sum(_fixed_polls(d, 0.5) for d in durations)
    assert ours <= fixed / 3
    assert sorted(run.detection for run in runs)[len(runs) // 2] <= 0.5
    assert all(run.poll_times[0] > PollSchedule().first_delay for run in runs)


def test_the_next_poll_comes_when_the_delay_it_would_add_reaches_a_polls_cost():
    history, request = DurationHistory(), ImageRequest("a quick fox")
    for duration in (3.2, 3.6, 3.9, 4.1, 4.3, 4.6, 5.0, 5.5):
        history.observe(request, duration, None)
    tracker = PollTracker(history=history, request=request)
    belief = tracker.belief()
    first = tracker.next_delay(0.0)
    assert first < PollSchedule().max_interval  # not cut short by the widest spacing
    # expected lateness of a poll at `first`: E[(first - D)+], by summing the belief's mass
    steps = 20_000
    lateness = sum((first - t) * (belief.done_by(t + first / steps) - belief.done_by(t)) for t in
                   (first * k / steps for k in range(steps)))
    assert lateness == pytest.approx(PollSchedule().poll_cost, rel=0.02)


def test_a_crowded_budget_makes_each_poll_likelier_to_find_the_task_done():
    history, request = DurationHistory(), ImageRequest("a fox")
    for duration in (16.0, 18.0, 20.0, 22.0, 24.0, 19.0, 21.0):
        history.observe(request, duration, None)
    chances = []
    for backlog in (0.0, 2.0, 10.0, 50.0):
        tracker = PollTracker(history=history, request=request)
        delay = tracker.next_delay(0.0, backlog)
        chances.append(tracker.outlook(0.0)(delay))
    assert chances == sorted(chances) and chances[0] < 0.2 and chances[-1] > 0.8


def test_outlook_is_the_chance_of_done_since_the_last_poll():
    tracker = PollTracker()
    tracker.observe(1.0, Task(TID, TaskStatus.PENDING, 0, estimated_time=40.0))
    tracker.observe(15.0, Task(TID, TaskStatus.PENDING, 0, estimated_time=40.0))
    belief, outlook = tracker.belief(), tracker.outlook(100.0)  # submitted at clock time 100
    assert outlook(115.0) == pytest.approx(0.0, abs=1e-12)  # not done at the last poll
    before = belief.done_by(15.0)
    assert outlook(125.0) == pytest.approx((belief.done_by(25.0) - before) / (1 - before))
    tracker.observe(30.0, Task(TID, TaskStatus.PENDING, 0, estimated_time=40.0))
    assert outlook(125.0) == pytest.approx((belief.done_by(25.0) - before) / (1 - before))  # frozen


def test_the_first_tasks_of_an_unknown_kind_are_probes_until_it_is_learned():
    from qwen_widgets.engine import polling

    history, fox, cat = DurationHistory(), ImageRequest("a fox"), ImageRequest("a cat", n=2)
    assert [history.probe(fox) for _ in range(polling.PROBES + 3)] == [True] * polling.PROBES + [False] * 3
    assert history.probe(cat) and not history.probe(None)  # another kind counts apart
    probe, plain = PollTracker(history=history, request=fox, probe=True), PollTracker(history=history, request=fox)
    crowded = 50.0  # seconds of requests waiting for the budget
    assert probe.next_delay(0.0, crowded) < plain.next_delay(0.0, crowded) / 3
    for duration in (16.0, 18.0, 20.0, 22.0, 24.0):
        history.observe(fox, duration, None)
    assert not history.probe(fox)  # learned: no more probes of that kind
    probe.observe(2.0, Task(TID, TaskStatus.PENDING, 0))
    plain.observe(2.0, Task(TID, TaskStatus.PENDING, 0))
    assert probe.next_delay(2.0, crowded) == plain.next_delay(2.0, crowded)  # a probe no longer


@pytest.mark.parametrize("reported, running, done, expected", [
    (4.0, 3.8, 4.1, 3.95),  # whole seconds (3.5-4.5) narrowed by the polls (3.8-4.1)
    (4.0, 0.0, 6.0, 4.0),  # polls looser than the second: the second
    (4.0, 4.7, 5.0, 4.0),  # clocks that disagree: the server's word
    (4.25, 3.8, 4.3, 4.25),  # a fraction is exact already
    (None, 3.8, 4.3, 4.3),  # no word: when it was seen done
])
def test_a_whole_second_duration_is_narrowed_by_the_polls_around_it(reported, running, done, expected):
    tracker = PollTracker()
    tracker.observe(running, Task(TID, TaskStatus.PROCESSING, 50))
    finished = Task(TID, TaskStatus.COMPLETED, 100, actual_time=reported)
    tracker.observe(done, finished)
    assert tracker.duration(finished, done) == pytest.approx(expected)


def test_after_prediction_passes_intervals_grow_geometrically_to_max():
    schedule = PollSchedule()
    tracker = PollTracker(schedule)
    stuck = Task(TID, TaskStatus.PENDING, 0, estimated_time=10.0)
    tracker.observe(1.0, stuck)
    elapsed, delays = 10.5, []
    for _ in range(12):
        delay = tracker.next_delay(elapsed)
        delays.append(delay)
        elapsed += delay
        tracker.observe(elapsed, stuck)
    assert delays[0] == pytest.approx(schedule.min_interval)
    for a, b in zip(delays, delays[1:]):
        assert b == pytest.approx(min(a * schedule.overrun_growth, schedule.max_interval))
    assert delays[-1] == schedule.max_interval
    assert max(delays) <= schedule.max_interval


def test_overrun_growth_resets_when_the_prediction_moves_out_again():
    tracker = PollTracker()
    tracker.observe(1.0, Task(TID, TaskStatus.PENDING, 0, estimated_time=10.0))
    past = tracker.belief().quantile(0.95) + 1.0
    tracker.observe(past, Task(TID, TaskStatus.PENDING, 0, estimated_time=10.0))
    first = tracker.next_delay(past)
    tracker.observe(past + first, Task(TID, TaskStatus.PENDING, 0, estimated_time=10.0))
    grown = tracker.next_delay(past + first)
    assert grown > PollSchedule().min_interval
    tracker.observe(past + 1.0, Task(TID, TaskStatus.PENDING, 0, estimated_time=400.0))
    assert tracker.next_delay(past + 1.0) == PollSchedule().max_interval  # far from the new finish


def test_planning_again_without_a_poll_neither_stretches_nor_moves_the_next_poll():
    # past its prediction, a task is planned again every few seconds while others finish: the
    # spacing grows with each poll, not with each plan, and counts from the last poll
    schedule = PollSchedule()
    tracker = PollTracker(schedule)
    stuck = Task(TID, TaskStatus.PENDING, 0, estimated_time=10.0)
    tracker.observe(1.0, stuck)
    elapsed = tracker.belief().quantile(0.95) + 1.0
    for _ in range(10):  # polls far past the prediction: the spacing grows by half each time
        elapsed += tracker.next_delay(elapsed, backlog=5.0)
        tracker.observe(elapsed, stuck)
    due = elapsed + tracker.next_delay(elapsed, backlog=5.0)
    assert due - elapsed > 20.0  # a crowded budget allows a spacing wider than max_interval
    for waited in (5.0, 10.0, 15.0):  # planned again while sleeping toward it
        assert elapsed + waited + tracker.next_delay(elapsed + waited, backlog=5.0) == pytest.approx(due)


def test_no_estimate_uses_default_estimate():
    schedule = PollSchedule(default_estimate=20.0)
    tracker = PollTracker(schedule)
    tracker.observe(1.0, Task(TID, TaskStatus.PENDING, 0))
    assert tracker.predicted_total(1.0) == pytest.approx(20.0)
    assert tracker.next_delay(19.0) <= 2.0


# --- deadline -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "estimate, expected",
    [(None, 600.0), (19.0, 600.0), (200.0, 600.0), (250.0, 750.0), (1000.0, 3000.0)],
)
def test_default_deadline_is_max_of_min_deadline_and_three_estimates(estimate, expected):
    tracker = PollTracker()
    tracker.observe(1.0, Task(TID, TaskStatus.PENDING, 0, estimated_time=estimate))
    assert tracker.deadline() == pytest.approx(expected)


def test_deadline_follows_schedule_settings():
    schedule = PollSchedule(min_deadline=10.0, deadline_factor=2.0)
    tracker = PollTracker(schedule)
    assert tracker.deadline() == 10.0
    tracker.observe(1.0, Task(TID, TaskStatus.PENDING, 0, estimated_time=30.0))
    assert tracker.deadline() == 60.0


@pytest.mark.parametrize("timeout", [0.3, 30.0, 5000.0])
def test_caller_timeout_replaces_the_derived_deadline(timeout):
    tracker = PollTracker(timeout=timeout)
    tracker.observe(0.1, Task(TID, TaskStatus.PENDING, 0, estimated_time=1000.0))
    assert tracker.deadline() == timeout


def test_next_delay_never_goes_past_the_deadline():
    tracker = PollTracker(timeout=10.0)
    assert PollTracker(timeout=0.3).next_delay(0.0) == pytest.approx(0.3)
    tracker.observe(1.0, Task(TID, TaskStatus.PENDING, 0, estimated_time=60.0))
    assert tracker.next_delay(9.8) == pytest.approx(0.2)
    assert tracker.next_delay(10.0) == 0.0
    assert tracker.next_delay(12.0) == 0.0


def test_stuck_task_stops_at_the_deadline():
    run = drive(LinearTask(duration=10_000.0, queue=10_000.0 - 1), PollTracker(timeout=120.0))
    assert run.detection is None
    assert run.poll_times[-1] == pytest.approx(120.0)
    assert all(t <= 120.0 + EPS for t in run.poll_times)
    assert run.polls <= 120.0 / PollSchedule().max_interval + 20


@dataclass
class Observation:
    gap: float
    status: TaskStatus
    progress: int
    estimate: float | None


OBSERVATIONS = st.lists(
    st.builds(
        Observation,
        gap=st.floats(min_value=0.0, max_value=30.0),
        status=st.sampled_from([TaskStatus.PENDING, TaskStatus.PROCESSING, TaskStatus.UNKNOWN]),
        progress=st.integers(min_value=-10, max_value=120),
        estimate=st.one_of(st.none(), st.floats(min_value=-5.0, max_value=500.0)),
    ),
    max_size=25,
)


@settings(max_examples=200, deadline=None)
@given(observations=OBSERVATIONS, timeout=st.one_of(st.none(), st.floats(0.1, 400.0)))
def test_any_history_gives_a_bounded_delay_within_the_deadline(observations, timeout):
    schedule = PollSchedule()
    tracker = PollTracker(schedule, timeout=timeout)
    elapsed = 0.0
    first = tracker.next_delay(elapsed)
    assert first == min(schedule.first_delay, tracker.deadline())
    for obs in observations:
        elapsed += obs.gap
        tracker.observe(elapsed, Task(TID, obs.status, obs.progress, obs.estimate))
        delay = tracker.next_delay(elapsed)
        deadline = tracker.deadline()
        assert math.isfinite(delay) and delay >= 0
        assert elapsed + delay <= max(deadline, elapsed) + EPS
        if deadline - elapsed >= schedule.max_interval:
            assert schedule.min_interval - EPS <= delay <= schedule.max_interval + EPS


# --- scaling --------------------------------------------------------------------------------


def test_scaled_multiplies_every_duration_only():
    base = PollSchedule()
    scaled = base.scaled(0.01)
    for name in ("first_delay", "min_interval", "max_interval", "poll_cost", "default_estimate", "min_deadline"):
        assert getattr(scaled, name) == pytest.approx(getattr(base, name) * 0.01)
    for name in ("overrun_growth", "deadline_factor"):
        assert getattr(scaled, name) == getattr(base, name)
    assert base.first_delay == 1.0  # the original is unchanged


def test_scaled_schedule_on_a_scaled_task_polls_the_same_way():
    factor = 0.25  # a power of two: scaled times are exact in floating point
    full = drive(LinearTask(20.0, queue=2.0))
    small = drive(
        LinearTask(20.0 * factor, queue=2.0 * factor), PollTracker(PollSchedule().scaled(factor))
    )
    assert small.polls == full.polls
    assert small.poll_times == pytest.approx([t * factor for t in full.poll_times])
    assert small.detection == pytest.approx(full.detection * factor)


# --- RequestBudget -----------------------------------------------------------------------------


@pytest.mark.parametrize("rate", [1.0, 4.0, 10.0, 20.0])
def test_budget_spacing_is_one_over_rate(rate):
    budget = RequestBudget(rate)
    waits = [budget.reserve(100.0) for _ in range(50)]
    assert waits[0] == 0.0
    for a, b in zip(waits, waits[1:]):
        assert b - a == pytest.approx(1.0 / rate, rel=1e-9)


def test_budget_free_slot_costs_nothing_and_later_calls_reuse_the_gap():
    budget = RequestBudget(10.0)
    assert budget.reserve(5.0) == 0.0
    assert budget.reserve(5.0) == pytest.approx(0.1)
    assert budget.reserve(50.0) == 0.0  # long after: no waiting
    assert budget.reserve(50.05) == pytest.approx(0.05)


def _max_per_window(slots: list[float]) -> int:
    counts: dict[int, int] = {}
    for slot in slots:
        counts[math.floor(slot)] = counts.get(math.floor(slot), 0) + 1
    return max(counts.values())


@pytest.mark.parametrize("rate", [10.0, 20.0])
def test_no_one_second_window_holds_more_than_rate(rate):
    budget = RequestBudget(rate)
    slots = [0.0 + budget.reserve(0.0) for _ in range(1000)]
    assert _max_per_window(slots) <= rate


@pytest.mark.parametrize("rate", [1.0, 2.0, 4.0, 8.0])
def test_no_one_second_window_holds_more_than_rate_exact_spacing(rate):
    # Same property with spacings exactly representable in binary (no rounding drift).
    budget = RequestBudget(rate)
    slots = [budget.reserve(0.0) for _ in range(1000)]
    assert _max_per_window(slots) == rate
    assert slots[-1] == pytest.approx(999 / rate)


def test_budget_is_thread_safe():
    rate, threads, per_thread = 50.0, 8, 250
    budget = RequestBudget(rate)
    waits: list[float] = []
    lock = threading.Lock()
    start = threading.Barrier(threads)

    def worker():
        mine = []
        start.wait()
        for _ in range(per_thread):
            mine.append(budget.reserve(0.0))
        with lock:
            waits.extend(mine)

    pool = [threading.Thread(target=worker) for _ in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join(timeout=10)
    total = threads * per_thread
    assert len(waits) == total
    waits.sort()
    assert waits[0] == 0.0
    for a, b in zip(waits, waits[1:]):
        assert b - a == pytest.approx(1.0 / rate, rel=1e-6)
    assert waits[-1] == pytest.approx((total - 1) / rate, rel=1e-6)


@pytest.mark.parametrize("rate", [0, 0.0, -1.0, -0.001, float("nan"), float("inf")])
def test_budget_rejects_non_positive_or_non_finite_rate(rate):
    with pytest.raises(ValueError):
        RequestBudget(rate)


def test_budget_repr_names_the_rate():
    assert "20" in repr(RequestBudget(20.0))
