"""The panel and its cards from Python: controls, Generate, Stop/attach, errors, safety."""

from __future__ import annotations

import io
import json
import threading
import time
import warnings

import ipywidgets as widgets
import pytest
from PIL import Image

import qwen_widgets as qw
from qwen_widgets.simulator import SimResponse, Simulator
from qwen_widgets.widgets import Card, Panel

from .conftest import TEST_KEY, TIME_SCALE, fast_options, demo_client, walk, wait_until

HOSTILE = "a fox <img src=x onerror=alert(1)> <script>alert(2)</script>"




@pytest.fixture
def panel(tmp_path):
    return Panel(demo_client(), save_dir=tmp_path / "saved")




def hold_posts(simulator):
    """Hold the simulator's answers to POSTs (each task is created at once) until released;
    returns (arrived, release) events."""
    arrived, release = threading.Event(), threading.Event()
    handle = simulator.handle

    def held(method, *args):
        answer = handle(method, *args)
        if method == "POST":
            arrived.set()
            release.wait(30)
        return answer

    simulator.handle = held
    return arrived, release


def widget_states(root) -> str:
    """Everything the frontend (and a saved notebook) would get, as one string."""
    return json.dumps([w.get_state() for w in walk(root)], default=lambda b: f"<{len(b)} bytes>")




def test_controls_make_the_request(panel):
    panel.prompt.value = "a red fox in snow"
    panel.model.value = "qwen-image-2.0-pro"
    panel.size.value = "16:9"
    panel.resolution.value = "2K"
    panel.n.value = 4
    panel.negative_prompt.value = "blurry"
    panel.image_urls.value = "https://example.com/a.png\n\n  https://example.com/b.jpg  "
    assert panel.request == qw.ImageRequest(
        "a red fox in snow", model="qwen-image-2.0-pro", size="16:9", resolution="2K", n=4,
        negative_prompt="blurry", image_urls=("https://example.com/a.png", "https://example.com/b.jpg"))
    assert panel.output_size.value == "16:9 2K -> 2048x1152, 4 images"
    assert not panel.generate_button.disabled


def test_assigning_a_request_fills_every_control(panel):
    request = qw.ImageRequest("a lighthouse", model="qwen-image-2.0-pro", size="2:3",
                              resolution="2K", n=6, negative_prompt="fog",
                              image_urls=("https://example.com/ref.png",))
    panel.request = request
    assert (panel.prompt.value, panel.model.value, panel.size.value, panel.resolution.value,
            panel.n.value, panel.negative_prompt.value, panel.image_urls.value) == (
        "a lighthouse", "qwen-image-2.0-pro", "2:3", "2K", 6, "fog", "https://example.com/ref.png")
    assert panel.request == request
    assert panel.output_size.value == "2:3 2K -> 1360x2048, 6 images"


def test_counters_and_field_errors_next_to_the_field(panel):
    panel.prompt.value = "x" * 801
    assert panel.prompt_count.value == "801 / 800"
    assert panel.prompt_count.style.text_color is not None
    assert "at most 800" in panel.errors["prompt"].value
    assert panel.generate_button.disabled and "800" in panel.generate_button.tooltip
    panel.prompt.value = "fine"
    panel.negative_prompt.value = "y" * 501
    assert panel.negative_count.value == "501 / 500" and "500" in panel.errors["negative_prompt"].value
    assert panel.errors["prompt"].value == "" and panel.prompt_count.style.text_color is None
    panel.negative_prompt.value = ""
    assert not panel.generate_button.disabled


def test_empty_prompt_disables_generate_and_never_submits(panel):
    panel.prompt.value = "   "
    assert panel.generate_button.disabled
    with pytest.raises(qw.RequestValidationError):
        panel.generate()
    panel.generate_button.click()  # a click that slips through is answered, not crashed
    assert "prompt" in panel.errors["generate"].value
    assert panel.gallery.cards == [] and panel.client.simulator.count("POST") == 0


def test_reference_url_problems_are_reported_per_line(panel):
    panel.prompt.value = "a fox"
    panel.image_urls.value = "ftp://example.com/a.png\ndata:image/png;base64,iVBORw0KGgo="
    message = panel.errors["image_urls"].value
    assert "line 1: must be a public http(s) URL" in message
    assert "line 2:" in message and "base64" in message
    assert panel.generate_button.disabled


def test_generate_shows_images_as_small_thumbnails(panel):
    panel.prompt.value = "a red fox in snow"
    panel.size.value = "16:9"
    panel.n.value = 3
    panel.generate_button.click()
    card = panel.gallery.cards[0]
    task = card.future.result(30)
    assert task.status is qw.TaskStatus.COMPLETED
    assert len(card.tiles.children) == 3 == len(task.images)
    for tile in card.tiles.children:
        thumb = Image.open(io.BytesIO(tile.children[0].value))
        assert max(thumb.size) <= 320 and thumb.size[0] > thumb.size[1]  # 16:9 kept
    assert task.task_id in card.status.value and "completed" in card.status.value
    assert card.progress.value == 100 and card.progress.bar_style == "success"
    assert panel.results == [task]
    assert list(panel.frame()["image_index"]) == [0, 1, 2]


def test_the_kernel_is_free_while_a_generation_runs(panel):
    simulator = panel.client.simulator
    frozen = time.time()
    simulator.clock = lambda: frozen  # the task cannot finish until the clock runs again
    panel.prompt.value = "a slow fox"
    started = time.monotonic()
    card = panel.generate()
    # generate() returned although the task cannot have finished; the bound only stops a
    # blocking generate() from hanging the test
    assert time.monotonic() - started < 5 and not card.future.done()
    simulator.clock = time.time
    assert card.future.result(30).status is qw.TaskStatus.COMPLETED


def test_several_generations_at_once_get_their_own_cards_newest_first(panel):
    panel.prompt.value = "first"
    first = panel.generate()
    panel.prompt.value = "second"
    second = panel.generate()
    assert panel.gallery.cards == [second, first]
    done = [first.future.result(30), second.future.result(30)]
    assert [t.request.prompt for t in done] == ["first", "second"]
    assert len({t.task_id for t in done}) == 2


def test_stop_says_so_honestly_and_attach_picks_the_task_up(panel):
    panel.client.simulator.duration = 150  # 1.5 s
    panel.prompt.value = "a fox to stop"
    card = panel.generate()
    wait_until(lambda: card.task is not None)
    card.stop_button.click()
    assert card.future.result(10) is None
    task_id = card.task.task_id
    assert "stopped watching" in card.status.value
    assert task_id in card.message.value and "may still complete and be billed" in card.message.value
    assert card.attach_button.layout.display is None  # Re-attach is offered
    attached = panel.attach(task_id)
    final = attached.future.result(30)
    assert final.task_id == task_id and final.status is qw.TaskStatus.COMPLETED
    again = card.reattach()  # the card's own button does the same, keeping its request
    assert again.result(30).request == qw.ImageRequest("a fox to stop")
    assert panel.client.simulator.count("POST") == 1


def test_stop_during_submission_waits_for_the_task_id(panel):
    arrived, release = hold_posts(panel.client.simulator)
    panel.prompt.value = "a fox"
    card = panel.generate()
    assert arrived.wait(10)  # the POST is on the wire, its answer held
    card.stop()
    assert "waiting for the server" in card.status.value
    release.set()
    assert card.future.result(10) is None
    assert card.task is not None  # the submission was answered, so its id is known
    assert card.task.task_id in card.message.value


def test_401_lands_in_the_card(server):
    server.simulator.api_keys = {"the-right-key"}
    client = qw.QwenClient("sk-wrong-key-XYZ", base_url=server.url, **fast_options())
    panel = Panel(client)
    panel.prompt.value = "a fox"
    card = panel.generate()
    assert card.future.result(10) is None
    assert "check your key" in card.message.value
    assert "Traceback" not in card.message.value and "sk-wrong-key-XYZ" not in widget_states(panel)
    assert card.progress.bar_style == "danger"


def test_rate_limit_retry_is_shown_while_it_waits(panel):
    panel.client.simulator.inject(SimResponse(429, {"Retry-After": "1"}, b"{}"), method="GET")
    seen = []
    panel.prompt.value = "a fox"
    card = panel.generate()
    card.message.observe(lambda change: seen.append(change["new"]), "value")
    seen.append(card.message.value)  # in case the 429 came before the observer (it lasts 1 s)
    assert card.future.result(30).status is qw.TaskStatus.COMPLETED
    assert "rate limited, retrying in 1 s" in seen
    assert card.message.value == ""  # cleared once polling recovered


def test_failed_task_card_says_why(tmp_path):
    panel = Panel(demo_client(failure_rate=1.0))
    panel.prompt.value = "a fox"
    card = panel.generate()
    task = card.future.result(30)
    assert task.status is qw.TaskStatus.FAILED
    assert "failed" in card.message.value and task.error in card.message.value
    assert panel.results == [task] and panel.frame()["status"].tolist() == ["failed"]


def test_hostile_prompt_is_inert_everywhere(panel):
    panel.prompt.value = HOSTILE
    card = panel.generate()
    card.future.result(30)
    html_values = [w.value for w in walk(panel) if isinstance(w, widgets.HTML)]
    assert any("&lt;img src=x onerror=alert(1)&gt;" in v for v in html_values)
    assert not any("<img" in v or "<script" in v for v in html_values)
    assert panel.frame()["prompt"][0] == HOSTILE  # data keeps the text intact


def test_image_actions_reference_reuse_view_save(panel, tmp_path):
    panel.request = qw.ImageRequest("a fox", size="3:2", n=2)
    card = panel.generate()
    task = card.future.result(30)
    panel.request = qw.ImageRequest("something else")
    buttons = {b.description: b for b in walk(card.tiles.children[1]) if isinstance(b, widgets.Button)}
    assert set(buttons) == {"View", "Use as reference", "Reuse settings", "Save"}
    buttons["Use as reference"].click()
    assert panel.image_urls.value == task.images[1].url
    buttons["Reuse settings"].click()
    assert panel.request == qw.ImageRequest("a fox", size="3:2", n=2)
    buttons["View"].click()
    assert Image.open(io.BytesIO(card.viewer.value)).size == (1248, 832)  # full resolution
    buttons["Save"].click()
    saved = tmp_path / "saved" / f"{task.task_id}_1.png"
    with Image.open(saved) as copy, Image.open(io.BytesIO(card.full_images[1])) as original:
        assert copy.tobytes() == original.tobytes() and copy.text["prompt"] == "a fox"
    assert json.loads(saved.with_suffix(".json").read_text())["request"]["size"] == "3:2"
    expiry = [w.value for w in walk(card.tiles.children[1]) if isinstance(w, widgets.HTML)]
    assert any("expires in 24 h" in v for v in expiry)


def test_key_field_moves_the_key_and_clears_at_once(monkeypatch):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", qw.DemoModeWarning)
        panel = Panel(demo_client())
    qw.set_default_client(panel.client)
    assert panel.client.demo and "Simulated images" in panel.banner.value
    panel.key_field.value = TEST_KEY
    assert panel.key_field.value == ""
    assert not panel.client.demo and qw.default_client() is panel.client
    assert panel.banner_box.layout.display == "none"
    assert TEST_KEY not in widget_states(panel)
    assert TEST_KEY not in repr(panel) + repr(panel.client)


def test_card_without_panel_has_no_panel_actions():
    client = demo_client()
    card = Card(client, request=qw.ImageRequest("a fox"))
    card.start_generation(card.request).result(30)
    labels = {b.description for b in walk(card.tiles) if isinstance(b, widgets.Button)}
    assert labels == {"View", "Save"}


def test_reference_previews_load_in_the_background(panel):
    first = panel.client.generate("a reference", size="16:9")
    missing = first.urls[0].replace(first.task_id, "task_01MISSING")
    panel.prompt.value = "refine it"
    panel.image_urls.value = f"{first.urls[0]}\n{missing}"
    boxes = panel.previews.children
    assert len(boxes) == 2
    wait_until(lambda: boxes[0].children[0].value and "cannot" in boxes[1].children[1].value)
    assert max(Image.open(io.BytesIO(boxes[0].children[0].value)).size) <= 96
    assert "HTTP 404" in boxes[1].children[1].value
    assert not panel.generate_button.disabled  # the server fetches references, not the kernel
    assert panel.request.image_urls == (first.urls[0], missing)


def test_timeout_lands_in_the_card_with_the_task_id():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", qw.DemoModeWarning)
        simulator = Simulator(time_scale=TIME_SCALE, duration=10_000)  # 100 s at this scale
        client = qw.QwenClient(simulator=simulator, **fast_options(poll_schedule=qw.PollSchedule(
            first_delay=0.01, min_interval=0.01, max_interval=0.05, min_deadline=0.3,
            deadline_factor=0.0)))
    panel = Panel(client)
    panel.prompt.value = "a fox that takes forever"
    card = panel.generate()
    assert card.future.result(10) is None
    assert card.task.task_id in card.message.value and "may still complete" in card.message.value
    assert card.attach_button.layout.display is None  # offered, since the task is not done


# -- regressions found in review ---------------------------------------------------------------


def test_undecodable_image_keeps_the_finished_task(panel):
    panel.client.simulator.inject(SimResponse(200, {}, b"\x89PNG\r\n\x1a\nbroken"),
                                  path_prefix="/sim-images/", count=1)
    panel.request = qw.ImageRequest("a fox", n=2)
    card = panel.generate()
    task = card.future.result(30)
    assert task.status is qw.TaskStatus.COMPLETED and panel.results == [task]
    captions = [tile.children[1].value for tile in card.tiles.children]
    assert sum("not a readable image" in c for c in captions) == 1
    assert len(card.full_images) == 1  # the other image loaded normally


def test_pasted_key_is_never_echoed_to_frontends():
    panel = Panel(demo_client())
    sent = []
    panel.key_field._send = lambda message, buffers=None: sent.append(message)
    panel.key_field.set_state({"value": TEST_KEY})  # what a frontend sends on Enter
    assert TEST_KEY not in json.dumps(sent) and panel.key_field.value == ""
    assert not panel.client.demo


def test_a_double_click_submits_once(panel):
    panel.prompt.value = "a fox"
    panel.generate_button.click()
    panel.generate_button.click()  # the second click of a double click, a moment later
    assert len(panel.gallery.cards) == 1
    panel._last_click -= 1.0  # as if a second had passed
    panel.generate_button.click()  # a deliberate second generation
    assert len(panel.gallery.cards) == 2
    for card in panel.gallery.cards:
        card.future.result(30)
    assert panel.client.simulator.count("POST") == 2


def test_empty_labels_take_no_room(panel):
    panel.prompt.value = "a fox"
    card = panel.generate()
    card.future.result(30)
    assert card.message.value == "" and card.message.layout.display == "none"
    assert card.timings.layout.display is None  # filled, so shown
    assert card.buttons.layout.display == "none"  # nothing to stop or re-attach


# -- Compare mode: a sweep from the panel ---------------------------------------------------------


def test_compare_mode_runs_a_sweep_over_prompt_lines_and_sizes(panel):
    panel.compare.value = True
    assert panel.compare_row.layout.display is None and panel.single_row.layout.display == "none"
    panel.prompt.value = "a fox\n\na wolf\n"
    panel.sizes.value = ("1:1", "16:9")
    panel.n.value = 2
    assert panel.sweep_fields()["prompt"] == ["a fox", "a wolf"]
    assert panel.output_size.value == "Compare: 4 tasks, 8 images"
    panel.generate_button.click()
    grid = panel.gallery.children[0]
    sweep = grid.sweep
    assert [dict(c.labels) for c in sweep.cells] == [
        {"prompt": p, "size": s} for p in ("a fox", "a wolf") for s in ("1:1", "16:9")]
    sweep.wait(60)
    wait_until(lambda: len(panel.results) == 4)
    assert {(t.request.prompt, t.request.size, t.request.n) for t in panel.results} == {
        (p, s, 2) for p in ("a fox", "a wolf") for s in ("1:1", "16:9")}


def test_compare_mode_refuses_three_axes_and_too_many_images(panel):
    panel.compare.value = True
    panel.prompt.value = "a\nb"
    panel.models.value = qw.MODELS
    panel.sizes.value = ("1:1", "4:3")
    assert panel.generate_button.disabled and "at most two fields" in panel.errors["generate"].value
    panel.models.value = qw.MODELS[:1]
    panel.sizes.value = qw.SIZES  # 2 prompts x 7 sizes x 2 images = 28 > 24
    panel.n.value = 2
    assert panel.generate_button.disabled and "28 images" in panel.errors["generate"].value
    panel.max_images = 28
    panel.n.value = 1
    panel.n.value = 2  # any change re-checks the plan
    assert not panel.generate_button.disabled
    assert panel.client.simulator.count("POST") == 0


def test_leaving_compare_mode_restores_the_single_form(panel):
    panel.size.value = "3:2"
    panel.compare.value = True
    assert panel.sizes.value == ("3:2",)  # starts from the single choice
    panel.compare.value = False
    panel.prompt.value = "a fox"
    assert panel.request.size == "3:2" and panel.output_size.value.startswith("3:2 1K")
