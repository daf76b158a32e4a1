"""`within`: a time limit on an await that never loses a cancel."""

from __future__ import annotations

import asyncio

import pytest

from qwen_widgets.engine.clock import within

pytestmark = pytest.mark.anyio


async def slow(cleaned: asyncio.Event) -> None:
    """An hour's wait that says when its cleanup ran."""
    try:
        await asyncio.sleep(3600)
    finally:
        cleaned.set()


async def test_a_cancel_that_arrives_with_the_result_is_not_lost():
    """asyncio.wait_for before Python 3.12 returns the result here and the cancel is gone."""
    answer = asyncio.get_running_loop().create_future()
    waiting = asyncio.ensure_future(within(answer, 30))
    await asyncio.sleep(0)  # waiting for the answer
    answer.set_result("the answer")
    waiting.cancel()  # in the same loop turn
    with pytest.raises(asyncio.CancelledError):
        await waiting


async def test_a_cancel_from_outside_stops_the_awaitable_and_lets_it_clean_up():
    cleaned = asyncio.Event()
    waiting = asyncio.ensure_future(within(slow(cleaned), 30))
    await asyncio.sleep(0)
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    assert cleaned.is_set()


async def test_past_the_limit_the_awaitable_is_stopped_and_timeout_error_raised():
    cleaned = asyncio.Event()
    with pytest.raises(asyncio.TimeoutError):
        await within(slow(cleaned), 0.01)
    assert cleaned.is_set()


async def test_a_result_or_an_error_comes_through_as_it_is():
    async def answer() -> str:
        return "done"

    async def fail() -> None:
        raise ValueError("bad answer")

    assert await within(answer(), 30) == "done"
    assert await within(answer(), None) == "done"
    with pytest.raises(ValueError, match="bad answer"):
        await within(fail(), 30)
