"""The engine on a fake clock with the in-process simulator: realistic 20 s tasks, run instantly.

Also demo mode: which configuration selects the simulator, and the notice it gives.
"""

from __future__ import annotations

import statistics
import warnings

import pytest

import qwen_widgets as qw
from qwen_widgets.engine import settings as _config
from qwen_widgets.simulator import Simulator

from ..conftest import TEST_KEY, FakeClock, fast_options

pytestmark = pytest.mark.anyio


def fake_setup(**simulator_options):
    clock = FakeClock()
    simulator = Simulator(seed=11, clock=clock.time, **simulator_options)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", qw.DemoModeWarning)
        client = qw.AsyncQwenClient(simulator=simulator, clock=clock, poll_budget=qw.RequestBudget(10))
    return clock, simulator, client


async def test_adaptive_polling_is_cheap_and_prompt_on_realistic_tasks():
    """20 s tasks whose estimate overstates 1.5-3.5x: few polls, completion seen quickly."""
    clock, sim, client = fake_setup()
    polls, delays = [], []
    async with client:
        for i in range(40):
            before = sim.count("GET")
            task = await client.generate(f"prompt {i}")
            polls.append(sim.count("GET") - before)
            delays.append(clock.now - sim.completion_time(task.task_id))
    fixed_half_second = statistics.median(
        (sim.completion_time(t) - sim.tasks[t].created) / 0.5 for t in sim.tasks)
    assert statistics.median(polls) <= fixed_half_second / 3
    assert statistics.median(delays) <= 1.5  # fixed 3 s polling averages 1.5 s
    assert max(delays) <= qw.PollSchedule().max_interval


async def test_estimate_sets_the_default_deadline():
    # the server underestimates: 500 s announced, 2000 s taken
    clock, sim, client = fake_setup(duration=2000.0, duration_spread=0.0, estimate_factor=(0.25, 0.25))
    async with client:
        task = await client.submit(qw.ImageRequest("a very slow fox"))
        start = clock.now
        with pytest.raises(qw.TaskTimeoutError) as caught:
            await client.wait(task)
    assert caught.value.timeout == 3 * 500.0  # the larger of 10 min and 3x the estimate
    assert clock.now - start == pytest.approx(1500.0, abs=1.0)
    assert caught.value.task.status is qw.TaskStatus.PROCESSING


async def test_on_update_sees_every_state_in_order():
    clock, sim, client = fake_setup()
    seen = []

    async def on_update(task):  # async callbacks are awaited
        seen.append((task.status, task.progress))

    async with client:
        await client.generate("a fox", on_update=on_update)
    statuses = [s for s, _ in seen]
    assert statuses[0] is qw.TaskStatus.SUBMITTED and statuses[-1] is qw.TaskStatus.COMPLETED
    assert qw.TaskStatus.PROCESSING in statuses
    progress = [p for _, p in seen]
    assert progress == sorted(progress)


async def test_partial_results_report_what_really_came_back():
    clock, sim, client = fake_setup(short_result_rate=1.0)
    async with client:
        task = await client.generate("a fox", n=6)
    assert len(task.images) == sim.tasks[task.task_id].images_returned < 6


async def test_generate_accepts_request_and_overrides():
    clock, sim, client = fake_setup()
    base = qw.ImageRequest("a fox", size="16:9")
    async with client:
        task = await client.generate(base, n=2, resolution="2K")
        with pytest.raises(qw.RequestValidationError) as caught:
            await client.generate("a fox", colour="red")
    assert task.request == base.replace(n=2, resolution="2K")
    assert caught.value.field == "colour"
    assert sim.count("POST") == 1  # the bad call never reached the network


# -- demo mode --------------------------------------------------------------------------------


@pytest.fixture
def fresh_notice(monkeypatch):
    monkeypatch.setattr(_config, "_demo_announced", False)


async def test_no_key_means_demo_with_a_single_notice(fresh_notice):
    with pytest.warns(qw.DemoModeWarning, match="APIMART_API_KEY"):
        first = qw.AsyncQwenClient()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        second = qw.AsyncQwenClient()  # no second notice
    assert first.demo and second.demo and first.simulator is not None
    await first.aclose()
    await second.aclose()


async def test_key_from_environment_means_live(monkeypatch):
    monkeypatch.setenv("APIMART_API_KEY", TEST_KEY)
    async with qw.AsyncQwenClient() as client:
        assert not client.demo and client.base_url == "https://api.apimart.ai"
    monkeypatch.setenv("APIMART_BASE_URL", "http://127.0.0.1:9/")
    async with qw.AsyncQwenClient() as client:
        assert client.base_url == "http://127.0.0.1:9"
        assert TEST_KEY not in repr(client)


async def test_demo_switch_wins_over_a_key(monkeypatch, fresh_notice):
    monkeypatch.setenv("APIMART_API_KEY", TEST_KEY)
    monkeypatch.setenv("QWEN_WIDGETS_DEMO", "1")
    with pytest.warns(qw.DemoModeWarning):
        client = qw.AsyncQwenClient()
    assert client.demo
    await client.aclose()


async def test_demo_generates_real_pngs_in_process():
    clock, sim, client = fake_setup()
    async with client:
        task = await client.generate("a fox", size="9:16")
        png = await client.fetch_image(task.images[0])
    from PIL import Image
    import io
    assert Image.open(io.BytesIO(png)).size == (720, 1280)


def test_module_generate_uses_the_default_client(monkeypatch):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", qw.DemoModeWarning)
        client = qw.QwenClient(simulator=Simulator(time_scale=0.01), **fast_options())
    qw.set_default_client(client)
    task = qw.generate("a fox", n=2)
    assert task.status is qw.TaskStatus.COMPLETED and len(task.images) == 2
    assert client.simulator.tasks[task.task_id].request.n == 2
