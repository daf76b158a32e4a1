"""A sweep's plan (model.plan): axes, cells, validation before anything is sent, the plan in words."""

from __future__ import annotations

import itertools
import time

import pytest

import qwen_widgets as qw
from qwen_widgets.model.plan import AXIS_FIELDS, SweepPlan
from qwen_widgets.engine.sweep import Sweep

from ..conftest import (demo_client)

BASE = {"prompt": "a fox", "model": "qwen-image-2.0", "size": "1:1", "resolution": "1K",
        "negative_prompt": None, "n": 1, "image_urls": ()}


# -- helpers ------------------------------------------------------------------------------------


def fields(**changes):
    return {**BASE, **changes}


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


def test_each_cell_is_checked_against_its_own_models_rules():
    from qwen_widgets.model.request import KNOWN_RULES, ModelRules

    new = ModelRules("qwen-image-3.0", sizes=("21:9", "1:1"), output_sizes={}, max_images=4, default_size="21:9")
    catalog = {**KNOWN_RULES, "qwen-image-3.0": new}
    plan = SweepPlan.of({"prompt": "a fox", "model": ["qwen-image-2.0", "qwen-image-3.0"], "n": 4}, catalog=catalog)
    assert [(cell.request.size, cell.request.rules) for cell in plan.cells] == [
        ("1:1", KNOWN_RULES["qwen-image-2.0"]), ("21:9", new)]
    for fields, field in (({"n": 5}, "n"), ({"size": "16:9"}, "size")):
        with pytest.raises(qw.RequestValidationError) as caught:
            SweepPlan.of({"prompt": "a fox", "model": ["qwen-image-2.0", "qwen-image-3.0"], **fields}, catalog=catalog)
        assert caught.value.field == field
    with pytest.raises(qw.RequestValidationError) as caught:  # no rules known for it
        SweepPlan.of({"prompt": "a fox", "model": ["qwen-image-2.0", "qwen-image-3.0"]})
    assert caught.value.field == "model"


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
