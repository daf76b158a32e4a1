"""The comparison grid (widgets.grid): shown at once in a notebook, its axes and labels."""

from __future__ import annotations

import itertools
import json
import time

import ipywidgets as widgets

import qwen_widgets as qw
from qwen_widgets import _front as _api
from qwen_widgets.model.plan import SweepPlan
from qwen_widgets.engine.sweep import Sweep
from qwen_widgets.widgets.grid import SweepGrid

from ..conftest import (demo_client, walk, wait_until)

HOSTILE = "a fox <img src=x onerror=alert(1)> <script>alert(2)</script>"
BASE = {"prompt": "a fox", "model": "qwen-image-2.0", "size": "1:1", "resolution": "1K",
        "negative_prompt": None, "n": 1, "image_urls": ()}


# -- helpers ------------------------------------------------------------------------------------


def fields(**changes):
    return {**BASE, **changes}


def state_text(widget) -> str:
    return json.dumps(widget.get_state(), default=lambda b: f"<{len(b)} bytes>")


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
    # headers are HTML (they wrap, and show $ literally), so the text must arrive escaped (a
    # picture's alternative text too: a hidden span beside it)
    assert all(isinstance(w, widgets.HTML) and "<img" not in w.value for w in carriers)
    assert not any(isinstance(w, widgets.HTMLMath) for w in walk(grid))
    row_label = grid.grid.children[3]
    assert "&lt;img src=x onerror=alert(1)&gt;" in row_label.value and row_label.tooltip == HOSTILE
