"""The shared request budget as a scheduler: who gets the next slot, and the rate after a 429."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

import qwen_widgets as qw
from qwen_widgets.engine.budget import POLL_PATIENCE, _GRANT, Priority, RequestBudget
from qwen_widgets.simulator import SimResponse
from qwen_widgets.engine.clock import SYSTEM_CLOCK
from qwen_widgets.model.plan import SweepPlan
from qwen_widgets.store.journal import Journal

from ..conftest import FakeClock, ManualClock, TEST_KEY, fast_options

pytestmark = pytest.mark.anyio


class SettlingClock(FakeClock):
    """A fake clock whose sleeps let every granted waiter resume before time moves on, so the
    order waiters return in is the order the budget granted them."""

    async def sleep(self, seconds: float) -> None:
        for _ in range(5):
            await asyncio.sleep(0)
        self.now += max(seconds, 0.0)


async def take_all(budget: RequestBudget, clock: FakeClock, priorities: list[Priority]) -> list[tuple[int, float]]:
    """Start a waiter per priority, in order; returns (waiter number, slot time) in grant order."""
    granted: list[tuple[int, float]] = []

    async def one(number: int, priority: Priority) -> None:
        await budget.take(clock, priority)
        granted.append((number, clock.monotonic()))

    # all queue before the first slot is handed out (tasks start in creation order)
    await asyncio.gather(*(one(number, priority) for number, priority in enumerate(priorities)))
    return granted


async def test_a_due_poll_goes_before_queued_submissions():
    budget, clock = RequestBudget(10.0), SettlingClock(0.0)
    order = [Priority.BACKGROUND] * 30 + [Priority.SUBMIT] + [Priority.POLL]
    granted = await take_all(budget, clock, order)
    numbers = [number for number, _ in granted]
    assert numbers[:2] == [31, 30]  # the poll, then the interactive submit, then the sweep
    assert numbers[2:] == list(range(30))


async def test_slots_stay_one_spacing_apart_whatever_the_order():
    budget, clock = RequestBudget(10.0), SettlingClock(0.0)
    granted = await take_all(budget, clock, [Priority.BACKGROUND, Priority.POLL, Priority.SUBMIT] * 10)
    times = [at for _, at in granted]
    assert len(times) == 30
    assert all(b - a >= 0.1 - 1e-9 for a, b in zip(times, times[1:]))
    assert times[-1] - times[0] == pytest.approx(2.9)


@pytest.mark.parametrize("handover, next_slot", [(0.03, 0.2), (0.08, 0.28)])
async def test_the_next_slot_counts_from_a_late_request_not_from_its_handover(handover, next_slot):
    """A request sent 30 ms after its slot (a wake-up, a thread switch) keeps the chain; one
    sent 80 ms late, most of a 100 ms spacing, pushes the next slot to a spacing after it."""
    budget, clock = RequestBudget(10.0), SettlingClock(0.0)
    await budget.take(clock)  # slot 0.0
    go = await budget.take(clock, deferred=True)  # slot 0.1
    clock.now += handover
    go()
    await budget.take(clock)
    assert clock.monotonic() == pytest.approx(next_slot)


async def test_within_a_class_first_come_first_served():
    budget, clock = RequestBudget(10.0), SettlingClock(0.0)
    granted = await take_all(budget, clock, [Priority.POLL] * 12)
    assert [number for number, _ in granted] == list(range(12))


async def test_among_due_polls_the_likeliest_to_find_its_task_done_goes_first():
    """As an oracle would poll the task that ended first: each poll says how likely it finds
    its task done (its schedule's prediction, read at the slot's time); a poll that says
    nothing (someone asked for the task's state) counts as certain."""
    budget, clock = RequestBudget(10.0), SettlingClock(0.0)
    granted: list[str] = []

    async def one(name: str, priority: Priority, chance=None) -> None:
        await budget.take(clock, priority, chance=chance)
        granted.append(name)

    rising = lambda now: min(1.0, 0.05 + now)  # noqa: E731 (0.05 at the first slot, 0.35 at the fourth)
    await asyncio.gather(
        one("sweep", Priority.BACKGROUND), one("low", Priority.POLL, lambda now: 0.2),
        one("likely", Priority.POLL, lambda now: 0.9), one("rising", Priority.POLL, rising),
        one("asked", Priority.POLL), one("click", Priority.SUBMIT), one("middle", Priority.POLL, lambda now: 0.3))
    assert granted == ["asked", "likely", "middle", "rising", "low", "click", "sweep"]


async def test_a_poll_unlikely_to_find_its_task_done_still_goes_once_it_has_waited_long():
    """Likelier polls win each slot, but not for ever: a poll that waited POLL_PATIENCE goes
    (here two likelier ones are always waiting beside it, for 40 s of slots)."""
    budget, clock = RequestBudget(10.0), SettlingClock(0.0)
    granted_at: dict[str, float] = {}

    async def hopeless() -> None:
        await budget.take(clock, Priority.POLL, chance=lambda now: 0.0)
        granted_at["hopeless"] = clock.monotonic()

    async def likely(slots: int) -> None:
        for _ in range(slots):
            await budget.take(clock, Priority.POLL, chance=lambda now: 0.5)
        granted_at.setdefault("stream ended", clock.monotonic())

    await asyncio.gather(likely(200), hopeless(), likely(200))
    assert granted_at["stream ended"] >= 39.0
    assert POLL_PATIENCE <= granted_at["hopeless"] <= POLL_PATIENCE + 0.5


async def settle() -> None:
    for _ in range(20):
        await asyncio.sleep(0)


async def until_done(clock: ManualClock, waiting: asyncio.Future, step: float = 1.0) -> None:
    """Move the clock a slot at a time until `waiting` is done (a lost role never is)."""
    for _ in range(10):
        await settle()
        if waiting.done():
            return
        clock.advance(step)
    await settle()


async def test_a_cancelled_dispatcher_hands_its_role_on():
    clock = ManualClock()
    budget = RequestBudget(1.0)
    await budget.take(clock)  # the free slot: the next one is a second away
    first = asyncio.ensure_future(budget.take(clock))  # holds the dispatch role, sleeping
    second = asyncio.ensure_future(budget.take(clock))
    await settle()
    assert clock.sleeping() == 1 and budget._dispatcher is not None
    first.cancel()
    await until_done(clock, second)  # would never be done if the role were lost with `first`
    assert first.cancelled() and second.done() and budget._dispatcher is None


async def test_a_waiter_cancelled_in_the_turn_its_slot_comes_is_cancelled_and_leaves_no_slot_held():
    """The cancel wins over a grant settled in the same loop turn (asyncio.wait_for before
    Python 3.12 returned the grant and lost the cancel: a cancelled sweep then watched a task to
    its end), and the budget goes on for everyone else."""
    clock = ManualClock()
    budget = RequestBudget(1.0)
    await budget.take(clock)  # the free slot: the next one is a second away
    dispatcher = asyncio.ensure_future(budget.take(clock))  # holds the dispatch role, sleeping
    waiting = asyncio.ensure_future(budget.take(clock))
    await settle()
    (me,) = [waiter for waiter in budget._waiters if not waiter.future.done()]
    me.future.set_result(_GRANT)  # what the dispatcher's hand-over does...
    waiting.cancel()  # ...and a cancel in the same turn
    with pytest.raises(asyncio.CancelledError):
        await waiting
    assert budget._outstanding is not me and me not in budget._waiters
    await until_done(clock, dispatcher)
    assert dispatcher.done()
    following = asyncio.ensure_future(budget.take(clock))
    await until_done(clock, following)
    assert following.done()  # the next slot is handed out as usual


def test_two_event_loops_share_one_spacing():
    """The package's private loop and a user's loop take slots of the same budget."""
    budget, rate, count = RequestBudget(200.0), 200.0, 20
    sent: list[float] = []
    lock = threading.Lock()

    def run() -> None:
        async def take_many() -> None:
            for _ in range(count):
                await budget.take(SYSTEM_CLOCK, Priority.POLL)
                with lock:
                    sent.append(time.monotonic())
        asyncio.run(take_many())

    threads = [threading.Thread(target=run) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert len(sent) == 2 * count
    # a lower bound only: load can stretch the spacing, never shrink it below the budget's
    assert max(sent) - min(sent) >= (2 * count - 1) / rate - 0.01


def test_a_429_lowers_the_rate_and_quiet_time_raises_it_back_slowly():
    budget = RequestBudget(20.0, recovery=5.0)
    budget.throttled(100.0)
    assert budget.rate == 15.0 and budget.throttles == 1
    budget.throttled(100.01)  # the same burst, seen twice: counted once
    assert budget.rate == 15.0
    budget.reserve(104.0)
    assert budget.rate == 15.0  # not yet
    budget.reserve(105.0)
    assert budget.rate == pytest.approx(16.5)
    for step in range(1, 20):
        budget.reserve(105.0 + 5.0 * step)
    assert budget.rate == 20.0  # back, never above the configured rate
    fixed = RequestBudget(20.0, adaptive=False)
    fixed.throttled(100.0)
    assert fixed.rate == 20.0


async def test_a_429_storm_slows_the_clients_budget(server, make_client):
    budget = RequestBudget(1000.0)
    server.simulator.inject(SimResponse(429, {"Retry-After": "0"}, b'{"error": {"message": "slow"}}'),
                            method="GET", count=3)
    async with make_client(poll_budget=budget) as client:
        task = await client.generate("a fox")
    assert task.status is qw.TaskStatus.COMPLETED
    assert budget.throttles >= 1 and budget.rate < 1000.0


def test_the_default_budget_is_near_the_providers_limit():
    assert 15.0 <= RequestBudget().max_rate < 20.0


async def test_a_sweep_takes_its_concurrency_from_the_budget_and_halves_it_on_pushback(server):
    simulator = server.simulator
    simulator.max_running = 3  # the service's own limit on running tasks
    simulator.duration = 50  # 0.5 s at this scale: twelve submitted at once overlap
    with qw.QwenClient(TEST_KEY, base_url=server.url, **fast_options(poll_budget=RequestBudget(1000.0))) as client:
        plan = SweepPlan.of({"prompt": [f"fox {i}" for i in range(12)]}, max_images=12)
        sweep = qw.Sweep(client, plan)
        assert sweep.concurrency == 12  # the budget sustains all of them at once (22 of 0.2 s tasks)
        tasks = await asyncio.to_thread(lambda: sweep.start().wait(120))
    assert len(tasks) == 12 and sweep.failed_count == 0
    assert sweep.concurrency < 12  # halved after the service said "too many tasks"
    assert len(simulator.tasks) == 12  # a refused submit created nothing; none ran twice


async def test_a_cancelled_submission_stops_waiting_for_its_slot_at_once(server, make_client):
    budget = RequestBudget(0.01)  # a slot every 100 s
    async with make_client(poll_budget=budget) as client:
        await budget.take(SYSTEM_CLOCK)  # the free slot is gone: the next is 100 s away
        submitting = asyncio.ensure_future(client.submit(qw.ImageRequest("a fox")))
        await asyncio.sleep(0.1)
        submitting.cancel()
        with pytest.raises(asyncio.CancelledError, match="nothing was created"):
            await asyncio.wait_for(submitting, 30)  # not the 100 s the queue would take
    assert server.simulator.count("POST") == 0
    assert [entry.state.value for entry in client.journal.entries()] == ["refused"]
    assert budget._dispatcher is None and budget._waiters == []


async def test_a_new_client_learns_durations_from_the_journal(server, tmp_path):
    journal = Journal(tmp_path / "journal.sqlite")
    request = qw.ImageRequest("a fox learned from")
    for i in range(6):
        task = qw.Task(f"task_learn_{i}", qw.TaskStatus.COMPLETED, 100, estimated_time=120.0,
                       actual_time=40.0 + i, request=request)
        journal.record(task, server.url)
    async with qw.AsyncQwenClient(TEST_KEY, base_url=server.url, journal=journal,
                                  **fast_options(poll_schedule=qw.PollSchedule(),
                                                 poll_budget=RequestBudget(2.0))) as client:
        assert client.sustainable_tasks() == 4  # before learning: 2/s x the default 20 s / 9
        history = await client._durations()
        assert history.typical() == pytest.approx(42.0, abs=1.5)
        # the schedule now expects about 40 s, not the estimate's 120 or the default 20
        belief = history.beliefs(request, 120.0)
        assert len(belief) == 2 and all(30 < b.median < 50 for b in belief)
        assert client.sustainable_tasks() == 9  # 2/s x the 42 s this account saw / 9 requests


def test_a_loop_blocked_while_dispatching_does_not_stop_the_budget():
    """The kernel's loop holds the dispatch role, then a blocking cell freezes it: requests
    of the package's own loop still get their slots (one takes the role over)."""
    clock = SYSTEM_CLOCK
    budget = RequestBudget(10.0)
    dispatching, release = threading.Event(), threading.Event()

    def frozen_loop() -> None:
        async def main() -> None:
            await budget.take(clock)  # the free slot
            asyncio.ensure_future(budget.take(clock))  # the dispatcher, asleep until its slot
            await asyncio.sleep(0)
            dispatching.set()
            release.wait(60)  # a blocking cell: this loop runs nothing meanwhile

        asyncio.run(main())

    frozen = threading.Thread(target=frozen_loop)
    frozen.start()
    try:
        assert dispatching.wait(30)

        async def five() -> None:
            for _ in range(5):
                await budget.take(clock)

        asyncio.run(asyncio.wait_for(five(), 30))  # far beyond the half second a takeover takes
    finally:
        release.set()
        frozen.join(60)


def test_a_closed_loop_that_held_the_role_does_not_stop_the_budget():
    clock = SYSTEM_CLOCK
    budget = RequestBudget(10.0)
    gone = asyncio.new_event_loop()
    gone.run_until_complete(budget.take(clock))
    gone.create_task(budget.take(clock))  # takes the dispatch role...
    gone.run_until_complete(asyncio.sleep(0))
    gone.close()  # ...and its loop is closed without cancelling it

    async def three() -> None:
        for _ in range(3):
            await budget.take(clock)

    asyncio.run(asyncio.wait_for(three(), 30))


async def test_a_loop_busy_for_longer_than_a_slot_still_gets_slots():
    budget, clock = RequestBudget(50.0), SYSTEM_CLOCK  # a slot every 20 ms
    stop = asyncio.Event()

    async def hog() -> None:  # every turn of the loop takes 60 ms
        while not stop.is_set():
            time.sleep(0.06)
            await asyncio.sleep(0)

    hogging = asyncio.ensure_future(hog())
    try:
        for _ in range(5):
            await asyncio.wait_for(budget.take(clock), 30)
    finally:
        stop.set()
        await hogging
