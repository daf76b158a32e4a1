"""Sweeps running (engine.sweep) on the loopback simulator: order, concurrency, failures, cancel, script mode, the shared budget."""

from __future__ import annotations

import io
import json
import time

from PIL import Image

import qwen_widgets as qw
from qwen_widgets import _front as _api
from qwen_widgets.model.submission import EntryState
from qwen_widgets.model.plan import SweepPlan
from qwen_widgets.engine.sweep import Sweep
from qwen_widgets.simulator import SimResponse, Simulator, serve
from qwen_widgets.widgets.grid import SweepGrid

from ..conftest import SendRecorder, TIME_SCALE, busiest_second, loopback_client, wait_until

from qwen_widgets.widgets._theme import ERROR_COLOR as RED
BASE = {"prompt": "a fox", "model": "qwen-image-2.0", "size": "1:1", "resolution": "1K",
        "negative_prompt": None, "n": 1, "image_urls": ()}


# -- helpers ------------------------------------------------------------------------------------


def fields(**changes):
    return {**BASE, **changes}


def max_in_flight(simulator, task_ids) -> int:
    """Most tasks alive on the server at once (created, not yet finished there)."""
    spans = [(simulator.tasks[i].created, simulator.completion_time(i)) for i in task_ids]
    return max(sum(1 for start, end in spans if start <= moment < end) for moment, _ in spans)


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
                        assert max(thumb.size) <= 256  # as sharp as a card's
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
