"""The request budget: one cap on API requests per second, shared by every task and client,
and the order in which waiting requests get its slots.

The provider limits requests per account (about 20 per second, docs/api-contract.md section 8.2), polls and
submits alike, so they all take a slot of one process-wide budget before they are sent.
Slots go to the most urgent waiter first: a poll that is due (someone is waiting for that
result) before a new submission, and an interactive submission before a background sweep's.
Among due polls the one likeliest to find its task done goes first (each says how likely,
from its schedule's prediction), as an oracle would poll the task that ended first: when many
polls are due at once, the slot goes where it most probably brings a result. Otherwise first
come first served. A thousand queued submits therefore never hold back a result for as long as
they take to send. On a 429 the rate drops by a quarter, and it grows back slowly while no 429
comes.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import math
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import IntEnum
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .clock import Clock

__all__ = ["RequestBudget", "PollBudget", "Priority"]

PACING_RESOLUTION = 0.01
"""Seconds of lateness an event loop's timers show without any stall (more under load)."""
DEFAULT_RATE = 18.0
"""Requests per second: near the provider's ~20, with room for timer jitter in any second."""


class Priority(IntEnum):
    """Who gets the next slot: the lowest value first."""

    POLL = 0
    """A poll that is due: someone waits for its answer."""
    SUBMIT = 1
    """A submission someone is waiting for (a click, a `generate()` call)."""
    BACKGROUND = 2
    """A sweep's submissions: they wait behind everything interactive."""


Chance = Callable[[float], float]
"""chance(now): how likely a poll sent at clock.monotonic() `now` finds its task done."""


@dataclass(order=True)
class _Waiter:
    priority: int
    sequence: int
    loop: asyncio.AbstractEventLoop = field(compare=False)
    future: asyncio.Future = field(compare=False)
    chance: Chance | None = field(default=None, compare=False)
    since: float = field(default=0.0, compare=False)
    """When it began to wait (the clock's time)."""


_GRANT, _DISPATCH, _WAIT = "grant", "dispatch", "wait"
_STALE_AFTER = 0.5  # seconds past its slot after which a silent dispatcher is taken over
POLL_PATIENCE = 10.0
"""Seconds a poll waits at the budget before it counts as certain to find its task done: a poll
whose task looked unlikely to be done could otherwise lose every slot to likelier ones for as
long as they keep coming (and a prediction long past can round its chance to exactly 0)."""
_GO_TIMEOUT = 1.0  # seconds a dispatcher waits to hear that a granted request went


class RequestBudget:
    """A process-wide cap on API requests (polls and submits) per second.

    Strict spacing (one slot every 1/rate seconds) rather than a bursty token bucket, so a
    one-second window holds about `rate` requests (one more at most: a request may leave up to
    half a spacing after its slot). One waiter at a time sleeps until the
    next slot and hands it to the most urgent waiter (see Priority). Thread-safe: clients on
    different event loops may share it.

    Args:
        rate: the most requests per second; the budget runs at this rate until a 429.
        adaptive: lower the rate by a quarter on each 429 (`throttled()`), and raise it back
            by a tenth every `recovery` seconds without one.
    """

    def __init__(self, rate: float = DEFAULT_RATE, *, adaptive: bool = True, recovery: float = 3.0):
        if not rate > 0 or math.isinf(rate):
            raise ValueError(f"rate must be a positive number of requests per second, got {rate!r}")
        self.max_rate = rate
        self.rate = rate
        """The current rate: `max_rate`, or less after a 429."""
        self.adaptive = adaptive
        self.recovery = recovery
        self.throttles = 0
        """How many times a 429 lowered the rate."""
        self._changed_at = -math.inf
        self._chain_start = -math.inf
        self._chain_length = 0
        self._lock = threading.Lock()
        self._waiters: list[_Waiter] = []
        self._sequence = itertools.count()
        self._dispatcher: _Waiter | None = None
        self._due = -math.inf
        """When the dispatcher should next act; well past it, another waiter takes over."""
        self._outstanding: _Waiter | None = None
        """The last waiter granted a slot, until its request goes."""

    @property
    def spacing(self) -> float:
        """Seconds between slots."""
        return 1.0 / self.rate

    def reserve(self, now: float) -> float:
        """Claim the next free slot; returns how long to wait before using it."""
        with self._lock:
            self._recover(now)
            # slots of a busy chain are start + k / rate, computed afresh each time: adding
            # 1/rate repeatedly drifts (0.1 ten times is 0.9999999999999999)
            next_slot = self._chain_start + self._chain_length / self.rate
            if now >= next_slot:
                self._chain_start, self._chain_length = now, 0
            slot = self._chain_start + self._chain_length / self.rate
            self._chain_length += 1
        return slot - now

    def backlog(self) -> float:
        """Seconds of requests already waiting for a slot: how congested the budget is. All
        of them count, submits too: a poll that goes first still takes the slot a queued
        submission would have had, so an early poll costs everyone behind it."""
        with self._lock:
            return len(self._waiters) / self.rate

    def throttled(self, now: float) -> None:
        """The server answered 429: lower the rate by a quarter (once per burst)."""
        if not self.adaptive:
            return
        with self._lock:
            if now - self._changed_at < self.spacing:
                return  # the same burst, seen by several requests
            self._set_rate(max(self.rate * 0.75, self.max_rate / 16), now)
            self.throttles += 1

    def _recover(self, now: float) -> None:
        if self.rate < self.max_rate and now - self._changed_at >= self.recovery:
            self._set_rate(min(self.max_rate, self.rate * 1.1), now)

    def _set_rate(self, rate: float, now: float) -> None:
        # the chain restarts at its next slot, spaced by the new rate from there on
        next_slot = self._chain_start + self._chain_length / self.rate
        self._chain_start, self._chain_length = max(next_slot, now), 0
        self.rate, self._changed_at = rate, now

    async def take(self, clock: Clock, priority: Priority = Priority.POLL, *,
                   deferred: bool = False, chance: Chance | None = None) -> Callable[[], None]:
        """Wait for a slot; the most urgent waiter gets each slot first.

        A poll's `chance` orders it among the due polls (likeliest done first; without one,
        a poll counts as certain: someone asked for that task's state now). It is called on
        whichever thread hands the slot out, so it must only read values that do not change.

        The waiter holding the dispatch role sleeps until the next slot and hands it to the
        most urgent waiter, keeping the role until it is the most urgent itself. The next slot
        counts from the moment the granted request actually goes, not from the grant: after
        a stall of a loop, granted requests would otherwise all go at once. With `deferred`,
        that moment is when the returned function is called (right before the request is
        sent), which the caller must do whatever happens; otherwise it is now. Waiters may
        live on different event loops: if the dispatcher's loop is closed or stops running (a
        blocking cell on the kernel's loop), a waiter on another loop takes the role over.
        """
        loop = asyncio.get_running_loop()
        me = _Waiter(int(priority), next(self._sequence), loop, loop.create_future(), chance, clock.monotonic())
        with self._lock:
            heapq.heappush(self._waiters, me)
            if self._stale(clock.monotonic()):
                self._claim(me, clock.monotonic())
        try:
            role = await self._await_role(me, clock)
            while role == _DISPATCH:
                await self._wait_for_a_slot(clock)
                role = self._give_slot(me, clock.monotonic())
                if role == _WAIT:  # the role was taken over while this loop was stuck
                    me.future = loop.create_future()
                    role = await self._await_role(me, clock)
        except BaseException:
            self._leave(me, clock.monotonic())
            raise

        def go() -> None:
            with self._lock:
                self._went(me, clock.monotonic())

        if not deferred:
            go()
        return go

    async def _await_role(self, me: _Waiter, clock: Clock) -> str:
        """My grant or the dispatch role; meanwhile, take the role over from a stuck dispatcher."""
        while True:  # asyncio.wait: never cancels the future, never loses a cancel (see _clock.within)
            done, _ = await asyncio.wait({me.future}, timeout=max(_STALE_AFTER, 2 * self.spacing))
            if done:
                return me.future.result()
            with self._lock:
                if self._stale(clock.monotonic()):
                    self._claim(me, clock.monotonic())

    def _stale(self, now: float) -> bool:
        """No dispatcher, or one whose loop is closed or has overslept its slot (lock held)."""
        if self._dispatcher is None or self._dispatcher.loop.is_closed():
            return True
        return now > self._due + max(_STALE_AFTER, 3 * self.spacing)

    def _claim(self, me: _Waiter, now: float) -> None:
        """Make `me` the dispatcher (lock held; called on `me`'s own loop)."""
        self._dispatcher, self._due = me, now
        if not me.future.done():
            me.future.set_result(_DISPATCH)

    async def _wait_for_a_slot(self, clock: Clock) -> None:
        waited, step = 0.0, min(self.spacing, 0.005)
        while self._outstanding is not None and waited < _GO_TIMEOUT:  # the last grant has not gone yet
            self._due = clock.monotonic() + _GO_TIMEOUT
            await clock.sleep(step)
            waited += step
        for attempt in (1, 2):
            now = clock.monotonic()
            wait = self.reserve(now)
            self._due = now + wait
            await clock.sleep(wait)
            late = clock.monotonic() - (now + wait)
            # a stale slot is given up once, never again: a loop whose every turn is longer
            # than a slot would otherwise wait forever
            if wait <= 0 or attempt == 2 or late <= max(self.spacing, PACING_RESOLUTION):
                return

    def _give_slot(self, me: _Waiter, now: float) -> str:
        """Hand the slot just reached to the most urgent waiter; returns my role next."""
        with self._lock:
            if self._dispatcher is not me:
                return _WAIT
            while self._waiters:
                top = self._pop_most_urgent(now)
                self._outstanding = top
                if top is me:
                    self._pass_dispatch(now)
                    return _GRANT
                if _resolve(top, _GRANT):
                    return _DISPATCH
            self._outstanding = self._dispatcher = None  # unreachable while I am queued
            return _GRANT

    def _pop_most_urgent(self, now: float) -> _Waiter:
        """The next waiter to serve, out of the queue (lock held): the first of the most urgent
        class, or among due polls the likeliest to find its task done (one that waited
        POLL_PATIENCE counts as certain, so none waits for ever)."""
        top = self._waiters[0]
        if top.priority != Priority.POLL or top.chance is None:
            return heapq.heappop(self._waiters)

        def chance_of(waiter: _Waiter) -> float:
            if waiter.chance is None or now - waiter.since >= POLL_PATIENCE:
                return 1.0
            return waiter.chance(now)

        best, best_chance = top, chance_of(top)
        for waiter in self._waiters:
            if waiter.priority == Priority.POLL and waiter is not top:
                chance = chance_of(waiter)
                if chance > best_chance or (chance == best_chance and waiter.sequence < best.sequence):
                    best, best_chance = waiter, chance
        if best is top:
            return heapq.heappop(self._waiters)
        self._waiters.remove(best)
        heapq.heapify(self._waiters)
        return best

    def _went(self, waiter: _Waiter, at: float) -> None:
        """A granted request went at `at` (or gave up): when it went late, the next slot is a
        spacing after it (lock held). The hand-over itself (a wake-up, a thread switch) is
        not lateness: counting it would lose a few percent of every second's slots."""
        if self._outstanding is waiter:
            self._outstanding = None
            granted = self._chain_start + (self._chain_length - 1) / self.rate
            if at > granted + self.spacing / 2:
                self._chain_start, self._chain_length = at, 1

    def _pass_dispatch(self, now: float) -> None:
        """Give the dispatch role to the most urgent waiter (lock held)."""
        self._due = now
        while self._waiters:
            self._dispatcher = self._waiters[0]
            if _resolve(self._dispatcher, _DISPATCH):
                return
            heapq.heappop(self._waiters)  # its loop is closed: it will never wake
        self._dispatcher = None

    def _leave(self, me: _Waiter, now: float) -> None:
        """A waiter gave up (cancelled): take it out, and pass the dispatch role on if it held it."""
        with self._lock:
            self._went(me, now)  # granted and gone: nobody waits for it
            if me in self._waiters:
                self._waiters.remove(me)
                heapq.heapify(self._waiters)
            if self._dispatcher is me:
                self._pass_dispatch(now)

    def __repr__(self) -> str:
        shown = f"{self.rate:g}/s" if self.rate == self.max_rate else f"{self.rate:.3g}/s of {self.max_rate:g}/s"
        return f"RequestBudget(rate={shown})"


def _resolve(waiter: _Waiter, role: str) -> bool:
    """Tell a waiter, on its own loop, what it got; False when that loop is closed."""
    def settle() -> None:
        if not waiter.future.done():
            waiter.future.set_result(role)

    try:
        waiter.loop.call_soon_threadsafe(settle)
    except RuntimeError:
        return False
    return True


PollBudget = RequestBudget
"""The earlier name, from when the budget paced polls only."""

DEFAULT_BUDGET = RequestBudget()
