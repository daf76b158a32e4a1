"""Parameter sweeps: planning (pure), running on the loopback simulator, cancel, the grid."""

from __future__ import annotations

import io
import itertools
import json
import time

import ipywidgets as widgets
import pytest
from PIL import Image

import qwen_widgets as qw
from qwen_widgets import _front as _api
from qwen_widgets.model.submission import EntryState
from qwen_widgets.model.plan import AXIS_FIELDS, SweepPlan
from qwen_widgets.engine.sweep import Sweep
from qwen_widgets.simulator import SimResponse, Simulator, serve
from qwen_widgets.widgets.grid import SweepGrid

from .conftest import (TEST_KEY, TIME_SCALE, SendRecorder, busiest_second, demo_client, fast_options,
                       walk, wait_until)

HOSTILE = "a fox <img src=x onerror=alert(1)> <script>alert(2)</script>"
from qwen_widgets.widgets._theme import ERROR_COLOR as RED
BASE = {"prompt": "a fox", "model": "qwen-image-2.0", "size": "1:1", "resolution": "1K",
        "negative_prompt": None, "n": 1, "image_urls": ()}


# -- helpers ------------------------------------------------------------------------------------


def fields(**changes):
    return {**BASE, **changes}


@pytest.fixture
def client(server):
    """A sync client talking to the simulator over a real loopback socket."""
    made = qw.QwenClient(TEST_KEY, base_url=server.url, **fast_options())
    yield made
    made.close()


def loopback_client(server, **overrides) -> qw.QwenClient:
    return qw.QwenClient(TEST_KEY, base_url=server.url, **fast_options(**overrides))








def state_text(widget) -> str:
    return json.dumps(widget.get_state(), default=lambda b: f"<{len(b)} bytes>")


def max_in_flight(simulator, task_ids) -> int:
    """Most tasks alive on the server at once (created, not yet finished there)."""
    spans = [(simulator.tasks[i].created, simulator.completion_time(i)) for i in task_ids]
    return max(sum(1 for start, end in spans if start <= moment < end) for moment, _ in spans)


# -- 1. SweepPlan.of ----------------------------------------------------------------------------


def test_lists_become_axes_in_row_major_order_and_fixed_fields_are_shared():
    urls = ["https://example.com/a.png", "https://example.com/b.png"]
    plan = SweepPlan.of(fields(prompt=["a fox", "a wolf"], size=["1:1", "16:9", "9:16"],
                                    model="qwen-image-2.0-pro", resolution="2K",
                                    negative_prompt="blurry", n=2, image_urls=urls))
    axes, cells = plan.axes, plan.cells
    assert axes == [("prompt", ["a fox", "a wolf"]), ("size", ["1:1", "16:9", "9:16"])]
    assert [cell.labels for cell in cells] == [
        (("prompt", "a fox"), ("size", "1:1")), (("prompt", "a fox"), ("size", "16:9")),
        (("prompt", "a fox"), ("size", "9:16")), (("prompt", "a wolf"), ("size", "1:1")),
        (("prompt", "a wolf"), ("size", "16:9")), (("prompt", "a wolf"), ("size", "9:16"))]
    for cell in cells:
        labels = dict(cell.labels)
        assert cell.request == qw.ImageRequest(
            labels["prompt"], size=labels["size"], model="qwen-image-2.0-pro", resolution="2K",
            negative_prompt="blurry", n=2, image_urls=tuple(urls))


@pytest.mark.parametrize("name, values", [
    ("prompt", ["a fox", "a wolf"]),
    ("model", ["qwen-image-2.0", "qwen-image-2.0-pro"]),
    ("size", ("4:3", "3:4")),  # a tuple is a list too
    ("resolution", ["1K", "2K"]),
    ("negative_prompt", [None, "blurry"]),
    ("n", [1, 3]),
])
def test_each_axis_field_given_as_a_list_is_an_axis(name, values):
    plan = SweepPlan.of(fields(**{name: values}))
    axes, cells = plan.axes, plan.cells
    assert axes == [(name, list(values))]
    assert [cell.labels for cell in cells] == [((name, value),) for value in values]
    assert [getattr(cell.request, name) for cell in cells] == list(values)


def test_six_axes_make_the_cartesian_product_in_axis_order():
    values = {"prompt": ["a", "b"], "model": list(qw.MODELS), "size": ["1:1", "2:3"],
              "resolution": ["1K", "2K"], "negative_prompt": ["fog", "rain"], "n": [1, 2]}
    plan = SweepPlan.of(fields(**values), max_images=96)
    axes, cells = plan.axes, plan.cells
    assert [name for name, _ in axes] == list(AXIS_FIELDS)
    assert len(cells) == 64
    assert [tuple(v for _, v in cell.labels) for cell in cells] == list(
        itertools.product(*values.values()))
    # row-major: the last axis changes fastest, the first slowest
    assert dict(cells[1].labels)["n"] == 2 and dict(cells[1].labels)["prompt"] == "a"
    assert dict(cells[32].labels)["prompt"] == "b" and dict(cells[32].labels)["n"] == 1


def test_image_urls_is_never_an_axis():
    urls = ["https://example.com/a.png", "https://example.com/b.png", "https://example.com/c.png"]
    plan = SweepPlan.of(fields(image_urls=urls))
    axes, cells = plan.axes, plan.cells
    assert axes == []
    assert len(cells) == 1 and cells[0].labels == ()
    assert cells[0].request.image_urls == tuple(urls)


@pytest.mark.parametrize("name, values", [
    ("prompt", ["a fox", "x" * 801]),
    ("prompt", ["a fox", "   "]),
    ("model", ["qwen-image-2.0", "qwen-image-3"]),
    ("size", ["1:1", "16:9", "5:4"]),
    ("resolution", ["1K", "4K"]),
    ("negative_prompt", [None, "y" * 501]),
    ("n", [1, 7]),
    ("n", [True, 2]),
])
def test_a_bad_value_anywhere_is_refused_naming_its_field(name, values):
    with pytest.raises(qw.RequestValidationError) as caught:
        SweepPlan.of(fields(**{"prompt": ["a fox", "a wolf"], name: values}))
    assert caught.value.field == name
    assert str(caught.value).startswith(f"{name}:")


def test_a_bad_fixed_field_is_refused_naming_it():
    with pytest.raises(qw.RequestValidationError) as caught:
        SweepPlan.of(fields(prompt=["a", "b"], image_urls=["data:image/png;base64,iVBORw0KGgo="]))
    assert caught.value.field == "image_urls[0]" and "base64" in str(caught.value)


def test_an_unknown_field_is_refused():
    with pytest.raises(qw.RequestValidationError, match="fields"):
        SweepPlan.of({"prompt": ["a", "b"], "colour": "red"})


def test_an_invalid_sweep_sends_nothing(client, server):
    # the bad value is in the last cell: every request is checked before the first is sent
    with pytest.raises(qw.RequestValidationError) as caught:
        qw.sweep(["a fox", "a wolf"], size=["1:1", "16:9", "5:4"], client=client)
    assert caught.value.field == "size" and "5:4" in str(caught.value)
    with pytest.raises(qw.RequestValidationError, match="prompt"):
        qw.sweep(["a fox", ""], client=client)
    with pytest.raises(qw.RequestValidationError, match="concurrency"):
        qw.sweep(["a fox", "a wolf"], concurrency=0, client=client)
    time.sleep(0.05)
    assert server.simulator.log == [] and server.simulator.tasks == {}
    assert client.aio.journal.entries() == []


@pytest.mark.parametrize("concurrency", [0, -1, 1.5, True, "2"])
def test_concurrency_must_be_a_positive_integer(concurrency):
    client = demo_client()
    with pytest.raises(qw.RequestValidationError) as caught:
        Sweep(client, SweepPlan.of(fields(prompt=["a", "b"])), concurrency=concurrency)
    assert caught.value.field == "concurrency"
    assert client.simulator.log == []


@pytest.mark.parametrize("name, values", [("size", []), ("prompt", ()), ("n", [])])
def test_an_empty_axis_is_refused(name, values):
    with pytest.raises(qw.RequestValidationError) as caught:
        SweepPlan.of(fields(**{name: values}))
    assert caught.value.field == name and "at least one value" in str(caught.value)


@pytest.mark.parametrize("name, values", [
    ("prompt", ["a fox", "a wolf", "a fox"]),
    ("size", ["1:1", "1:1"]),
    ("n", [2, 2]),
    ("negative_prompt", [None, None]),
])
def test_a_repeated_axis_value_is_refused(name, values):
    with pytest.raises(qw.RequestValidationError) as caught:
        SweepPlan.of(fields(**{name: values}))
    assert caught.value.field == name and "repeat" in str(caught.value)


def test_axis_values_that_make_the_same_request_are_refused_as_repeats():
    with pytest.raises(qw.RequestValidationError, match="repeat"):
        SweepPlan.of(fields(prompt="a fox", negative_prompt=[None, ""]))


def test_more_images_than_max_images_is_refused_with_the_counts_and_the_way_on():
    big = fields(prompt=["a", "b", "c"], size=["1:1", "16:9", "9:16"], n=3)  # 9 tasks, 27 images
    with pytest.raises(qw.RequestValidationError) as caught:
        SweepPlan.of(big)
    message = str(caught.value)
    assert caught.value.field == "max_images"
    assert "9 tasks" in message and "27 images" in message
    assert "max_images=24" in message and "pass max_images=27" in message
    with pytest.raises(qw.RequestValidationError, match="max_images=26"):
        SweepPlan.of(big, max_images=26)
    plan = SweepPlan.of(big, max_images=27)
    cells = plan.cells
    assert len(cells) == 9 and sum(cell.request.n for cell in cells) == 27


def test_max_images_counts_images_not_tasks():
    # 24 images is the default limit exactly; the sum of n counts, including an n axis
    plan = SweepPlan.of(fields(prompt=["a", "b", "c", "d"], size=["1:1", "16:9", "9:16"], n=2))
    cells = plan.cells
    assert len(cells) == 12
    with pytest.raises(qw.RequestValidationError, match="3 tasks and 6 images"):
        SweepPlan.of(fields(n=[1, 2, 3]), max_images=5)
    assert len(SweepPlan.of(fields(n=[1, 2, 3]), max_images=6).cells) == 3


def test_sweep_refuses_too_many_images_before_sending(client, server, capsys):
    with pytest.raises(qw.RequestValidationError, match="pass max_images=30"):
        qw.sweep(["a", "b", "c", "d", "e"], size=["1:1", "16:9"], n=3, client=client)
    assert server.simulator.log == [] and client.aio.journal.entries() == []
    assert capsys.readouterr().err == ""  # not even the plan line: nothing was planned to run


# -- 2. SweepPlan.describe------------------------------------------------------------------------


def test_plan_describe_counts_tasks_and_images_with_plurals():
    one = SweepPlan.of(fields())
    assert one.describe() == "1 task, 1 image"
    assert SweepPlan.of(fields(n=3)).describe() == "1 task, 3 images"
    assert SweepPlan.of(fields(prompt=["a", "b"])).describe() == "2 tasks, 2 images"
    assert SweepPlan.of(fields(prompt=["a", "b"], n=[1, 2])).describe() == \
        "4 tasks, 6 images"
    assert "$" not in one.describe()


@pytest.mark.parametrize("prompts, n, price, expected", [
    (["a", "b", "c"], 4, 0.021, "3 tasks, 12 images, about $0.25 at $0.021"),  # 0.252
    (["a", "b", "c", "d"], 6, 0.021, "4 tasks, 24 images, about $0.50 at $0.021"),  # 0.504
    (["a"], 1, 0.04, "1 task, 1 image, about $0.04 at $0.04"),
    (["a", "b"], 5, 0.1, "2 tasks, 10 images, about $1.00 at $0.1"),
    (["a", "b"], 3, 0.0333, "2 tasks, 6 images, about $0.20 at $0.0333"),  # 0.1998
])
def test_plan_describe_states_the_cost_to_the_cent(prompts, n, price, expected):
    plan = SweepPlan.of(fields(prompt=prompts, n=n))
    assert plan.describe(price).startswith(expected + " per image")


def test_the_sweep_summary_is_the_plan_in_words():
    sweep = Sweep(demo_client(), SweepPlan.of(fields(prompt=["a", "b"], n=2)), price_per_image=0.05)
    assert sweep.summary.startswith("2 tasks, 4 images, about $0.20")
    assert "Sweep(2 tasks, 4 images" in repr(sweep)


# -- 3. running on the loopback simulator -------------------------------------------------------


def test_sweep_runs_every_cell_in_order(client, server):
    sim = server.simulator
    prompts, sizes = ["a fox", "a wolf"], ["1:1", "16:9", "9:16"]
    sweep = qw.sweep(prompts, size=sizes, n=2, concurrency=3, client=client)
    tasks = sweep.wait(timeout=20)
    assert sweep.done and sweep.done_count == 6 and sweep.failed_count == 0
    assert sweep.errors == [None] * 6
    assert tasks == sweep.tasks and len(tasks) == 6
    assert all(t.status is qw.TaskStatus.COMPLETED and len(t.images) == 2 for t in tasks)
    # in cell order, each made from its own cell's labels, and that is what the server got
    for cell, task, submitted in zip(sweep.cells, tasks, sweep.submitted):
        assert task.task_id == submitted.task_id
        assert task.request == cell.request
        for name, value in cell.labels:
            assert getattr(task.request, name) == value
            assert getattr(sim.tasks[task.task_id].request, name) == value
    assert [dict(c.labels)["prompt"] for c in sweep.cells] == ["a fox"] * 3 + ["a wolf"] * 3
    assert len(sim.tasks) == 6 and sim.count("POST") == 6  # each cell submitted once
    # the cap held on the server (a task ends there before the client can see it end), and
    # it was reached: the cells did run side by side
    assert max_in_flight(sim, [t.task_id for t in tasks]) == 3


def test_frame_has_axis_columns_and_one_row_per_image(client):
    sweep = qw.sweep(["a fox", "a wolf"], size=["1:1", "16:9"], n=[1, 2], client=client)
    tasks = sweep.wait(timeout=20)
    frame = sweep.frame()
    assert list(frame.columns[:3]) == ["axis_prompt", "axis_size", "axis_n"]
    assert len(frame) == sum(len(t.images) for t in tasks) == 12
    assert list(frame["task_id"].drop_duplicates()) == [t.task_id for t in tasks]
    assert (frame["axis_prompt"] == frame["prompt"]).all()
    assert (frame["axis_size"] == frame["size"]).all()
    assert (frame["axis_n"] == frame["n"].astype(str)).all()
    assert frame["url"].notna().all() and (frame["status"] == "completed").all()


def test_concurrency_cap_holds_between_submit_and_finish(server):
    sim = server.simulator
    client = loopback_client(server)
    try:
        sweep = Sweep(client, SweepPlan.of(fields(prompt=["a", "b", "c", "d"], size=["1:1", "16:9"])), concurrency=2)
        running, events = set(), []
        peak = [0]

        def record(index):
            if sweep.results[index] is None and sweep.errors[index] is None:
                running.add(index)
                events.append(("submitted", index))
            else:
                running.discard(index)
                events.append(("finished", index))
            peak[0] = max(peak[0], len(running))

        sweep.on_change(record)
        sweep.start().wait(timeout=20)
    finally:
        client.close()
    assert sorted(events) == sorted([("submitted", i) for i in range(8)] +
                                    [("finished", i) for i in range(8)])
    assert peak[0] == 2
    ids = [t.task_id for t in sweep.tasks]
    assert len(ids) == 8 and max_in_flight(sim, ids) == 2


def test_every_sweep_task_is_journaled(client):
    sweep = qw.sweep(["a fox", "a wolf", "a bear"], client=client)
    ids = {t.task_id for t in sweep.wait(timeout=20)}
    entries = client.aio.journal.entries()
    journaled = {e.task.task_id: e for e in entries if e.task is not None}
    assert ids and ids <= journaled.keys()
    assert all(journaled[i].state is EntryState.FINISHED for i in ids)
    assert {journaled[i].request.prompt for i in ids} == {"a fox", "a wolf", "a bear"}


# -- 4. failures, per cell ----------------------------------------------------------------------


def test_failed_cells_are_counted_and_shown_in_red_with_the_reason():
    # seed 10: of the first four tasks, numbers 1 and 2 fail
    simulator = Simulator(seed=10, time_scale=TIME_SCALE, failure_rate=0.5)
    with serve(simulator) as server:
        client = loopback_client(server)
        try:
            sweep = Sweep(client, SweepPlan.of(fields(prompt=["a fox", "a wolf"], size=["1:1", "16:9"])), concurrency=4)
            grid = SweepGrid(sweep)
            sweep.start().wait(timeout=20)
            failing = {i for i, t in enumerate(sweep.results)
                       if simulator.tasks[t.task_id].fail_at is not None}
            assert len(failing) == 2
            assert sweep.failed_count == 2 and sweep.done_count == 4
            assert sweep.errors == [None] * 4  # a failed task is a result, not an error
            for index, (task, cell) in enumerate(zip(sweep.results, grid.tiles)):
                picture, label = cell.children[:2]
                if index in failing:
                    assert task.status is qw.TaskStatus.FAILED
                    assert label.style.text_color == RED
                    assert label.value == f"failed: {simulator.tasks[task.task_id].error}"
                else:
                    assert task.status is qw.TaskStatus.COMPLETED
                    assert label.style.text_color != RED
                    wait_until(lambda p=picture: len(p.value) > 0)
                    with Image.open(io.BytesIO(picture.value)) as thumb:
                        assert max(thumb.size) <= 200
            assert all(len(c.children[0].value) == 0 for i, c in enumerate(grid.tiles) if i in failing)
            assert grid.status.value == "4/4 done, 2 failed"
            assert grid.progress.value == 4 and grid.progress.bar_style == "warning"
            frame = sweep.frame()
            assert sorted(frame.loc[frame["status"] == "failed", "task_id"]) == sorted(
                sweep.results[i].task_id for i in failing)
        finally:
            client.close()


def test_a_refused_submission_is_an_error_of_its_cell(server):
    body = json.dumps({"error": {"code": 402, "message": "insufficient balance",
                                 "type": "payment_required"}}).encode()
    server.simulator.inject(SimResponse(402, {"Content-Type": "application/json"}, body),
                            method="POST", count=1)
    client = loopback_client(server)
    try:
        sweep = Sweep(client, SweepPlan.of(fields(prompt=["a fox", "a wolf", "a bear"])), concurrency=1)
        grid = SweepGrid(sweep)
        tasks = sweep.start().wait(timeout=20)
    finally:
        client.close()
    assert isinstance(sweep.errors[0], qw.PermissionDeniedError)
    assert sweep.results[0] is None and sweep.submitted[0] is None
    assert sweep.errors[1:] == [None, None] and len(tasks) == 2
    assert sweep.failed_count == 1 and sweep.done_count == 3
    label = grid.tiles[0].children[1]
    assert "insufficient balance" in label.value and label.style.text_color == RED


# -- 5. cancel ----------------------------------------------------------------------------------


def test_cancel_reports_what_may_be_billed_and_submits_nothing_more(client, server):
    sim = server.simulator
    sim.duration = 6000  # 60 s tasks
    sweep = qw.sweep(["a fox", "a wolf"], size=["1:1", "16:9", "9:16"], concurrency=2,
                     client=client)
    wait_until(lambda: sum(t is not None for t in sweep.submitted) == 2)
    started = time.monotonic()
    message = sweep.cancel()
    assert time.monotonic() - started < 30  # did not wait for the 60 s tasks
    posts, polls = sim.count("POST"), sim.count("GET", "/v1/tasks/")
    running = [t.task_id for t in sweep.submitted if t is not None]
    assert len(running) == 2 and posts == 2
    assert "may complete and be billed" in message
    assert all(task_id in message for task_id in running)
    assert sweep.future.done() and sweep.done
    assert sweep.results == [None] * 6 and sweep.tasks == []
    for index in range(6):
        error = sweep.errors[index]
        assert isinstance(error, qw.QwenError)
        if sweep.submitted[index] is None:
            assert "cancelled" in str(error)
        else:
            assert sweep.submitted[index].task_id in str(error)
    assert sum(sweep.submitted[i] is None for i in range(6)) == 4
    # the running tasks stay in the journal as unfinished, so resume() can pick them up
    unfinished = {e.task.task_id for e in client.aio.journal.open_work(client.base_url).unfinished}
    assert unfinished == set(running)
    time.sleep(0.3)
    assert sim.count("POST") == posts  # no submission after cancel returned
    assert sim.count("GET", "/v1/tasks/") == polls  # and no more watching


def test_cancel_does_not_send_submissions_still_waiting_for_the_budget(server):
    sim = server.simulator
    sim.duration = 1000  # 10 s tasks
    # a request every 4 s: the first POST goes at once, the second waits far longer than it
    # takes to see the first answered and cancel (cancel() returns only when the waiting one
    # has given up, at its slot)
    client = loopback_client(server, poll_budget=qw.RequestBudget(0.25))
    try:
        sweep = qw.sweep(["a fox", "a wolf"], concurrency=2, client=client)
        wait_until(lambda: any(sweep.submitted))
        message = sweep.cancel()  # returns once every cell ended: a POST it let go is logged
        posts = sim.count("POST")
    finally:
        client.close()
    assert posts == 1 == sum(t is not None for t in sweep.submitted), message
    assert "cancelled" in str(sweep.errors[sweep.submitted.index(None)])


# -- 6. script mode -----------------------------------------------------------------------------


def test_script_mode_prints_plan_and_progress_and_shows_no_widget(client, capsys, monkeypatch):
    displayed = []
    monkeypatch.setattr("IPython.display.display", lambda *a, **k: displayed.append(a))
    assert not _api._in_notebook()
    sweep = qw.sweep(["a fox", "a wolf"], n=2, price_per_image=0.05, concurrency=1,
                     client=client)
    sweep.wait(timeout=20)
    out, err = capsys.readouterr()
    lines = err.splitlines()
    assert lines[0].startswith("sweep: 2 tasks, 4 images, about $0.20")
    assert lines[1:] == ["sweep: 1/2 done, 0 failed", "sweep: 2/2 done, 0 failed"]
    assert out == "" and displayed == []


# -- 7. notebook mode ---------------------------------------------------------------------------


def test_notebook_mode_shows_a_grid_at_once_and_returns_before_the_tasks_end(
        client, server, capsys, monkeypatch):
    server.simulator.duration = 1000  # 10 s tasks
    displayed = []
    monkeypatch.setattr(_api, "_in_notebook", lambda: True)
    monkeypatch.setattr("IPython.display.display", lambda *a, **k: displayed.append(a))
    started = time.monotonic()
    sweep = qw.sweep(["a fox", "a wolf"], size=["1:1", "16:9"], client=client)
    try:
        assert time.monotonic() - started < 5.0  # the tasks take 10 s
        assert not sweep.done
        assert len(displayed) == 1 and len(displayed[0]) == 1
        grid = displayed[0][0]
        assert isinstance(grid, SweepGrid) and grid.sweep is sweep
        assert grid.summary.value.startswith("Sweep: 4 tasks, 4 images, about $0.08")
        assert "APIMart's pricing endpoint" in grid.summary.value  # the simulator's public price
        wait_until(lambda: all(c.children[1].value.startswith("running") for c in grid.tiles))
        assert not sweep.done
        assert capsys.readouterr().err == ""  # no script-mode progress lines
    finally:
        sweep.cancel()


# -- 8. the grid's layout -----------------------------------------------------------------------


def _plain(label: str) -> str:
    """A grid header's text: escaped HTML without its tags (and without bidi isolates)."""
    import html
    import re

    text = html.unescape(re.sub(r"<[^>]+>", "", label))
    return text.replace("\u2068", "").replace("\u2069", "").removesuffix(" ↓")


def test_grid_two_axes_prompts_down_sizes_across():
    prompts, sizes = ["a fox", "a wolf", "a bear"], ["1:1", "16:9"]
    sweep = Sweep(demo_client(), SweepPlan.of(fields(prompt=prompts, size=sizes)))
    grid = SweepGrid(sweep)
    children = grid.grid.children
    assert len(children) == (len(prompts) + 1) * (len(sizes) + 1)
    width = len(sizes) + 1
    assert [_plain(w.value) for w in children[:width]] == ["prompt", "1:1", "16:9"]
    assert [_plain(children[(r + 1) * width].value) for r in range(len(prompts))] == prompts
    for r, c in itertools.product(range(len(prompts)), range(len(sizes))):
        index = r * len(sizes) + c
        assert children[(r + 1) * width + 1 + c] is grid.tiles[index]
        assert sweep.cells[index].labels == (("prompt", prompts[r]), ("size", sizes[c]))
    assert all(cell.children[1].value == "queued" for cell in grid.tiles)
    assert grid.progress.max == 6 and grid.status.value == "0/6 done"


def test_grid_three_axes_rows_are_the_product_of_the_first_two():
    sweep = Sweep(demo_client(), SweepPlan.of(fields(prompt=["a fox", "a wolf"], size=["1:1", "16:9"], n=[1, 2])))
    grid = SweepGrid(sweep)
    children = grid.grid.children
    assert len(children) == (4 + 1) * (2 + 1)
    assert [_plain(w.value) for w in children[:3]] == ["prompt · size", "1", "2"]
    assert [_plain(children[3 * (r + 1)].value) for r in range(4)] == [
        "a fox · 1:1", "a fox · 16:9", "a wolf · 1:1", "a wolf · 16:9"]
    for r, c in itertools.product(range(4), range(2)):
        assert children[3 * (r + 1) + 1 + c] is grid.tiles[r * 2 + c]
        labels = dict(sweep.cells[r * 2 + c].labels)
        assert _plain(children[3 * (r + 1)].value) == f"{labels['prompt']} · {labels['size']}"
        assert labels["n"] == [1, 2][c]


def test_a_hostile_axis_value_only_reaches_labels():
    client = demo_client()
    sweep = Sweep(client, SweepPlan.of(fields(prompt=[HOSTILE, "a calm lake"], size=["1:1", "16:9"])))
    grid = SweepGrid(sweep)
    sweep.start().wait(timeout=20)
    wait_until(lambda: all(len(c.children[0].value) > 0 for c in grid.tiles))
    carriers = [w for w in walk(grid) if "onerror" in state_text(w)]
    assert carriers, "the hostile prompt should be shown (as text) somewhere"
    # headers are HTML (they wrap, and show $ literally), so the text must arrive escaped
    assert all(isinstance(w, widgets.HTML) and "<img" not in w.value for w in carriers)
    assert not any(isinstance(w, widgets.HTMLMath) for w in walk(grid))
    row_label = grid.grid.children[3]
    assert "&lt;img src=x onerror=alert(1)&gt;" in row_label.value and row_label.tooltip == HOSTILE


# -- 9. the shared request budget ---------------------------------------------------------------


def test_a_sweep_submits_and_polls_within_the_clients_budget(server):
    sim = server.simulator
    sim.duration = 100  # 1 s tasks
    eager = qw.PollSchedule(first_delay=0.0, min_interval=0.01, max_interval=0.01)
    recorder = SendRecorder()
    client = loopback_client(server, poll_budget=qw.RequestBudget(20), poll_schedule=eager,
                             keep_images=False, transport=recorder)
    started = time.monotonic()
    try:
        sweep = qw.sweep(["a", "b", "c", "d"], size=["1:1", "16:9"], concurrency=8, client=client,
                         price_per_image=0.02)  # no pricing lookup among the counted requests
        tasks = sweep.wait(timeout=30)
    finally:
        client.close()
    assert len(tasks) == 8 and sweep.failed_count == 0
    # the client's send times, which the budget governs (arrivals add the server's delays)
    times = sorted(at for at, _, _ in recorder.sent)
    assert sim.count("POST") == 8 and len(times) == len([e for e in sim.log if e["path"].startswith("/v1/")])
    assert len(times) > 30 and busiest_second(times) <= 20 + 2
    # no request before its slot, no slot before `started`, slots 50 ms apart
    assert len(times) <= 1 + 20 * (times[-1] - started)
