"""The panel and its cards from Python: controls, Generate, Stop/attach, errors, safety."""

from __future__ import annotations

import base64
import dataclasses
import io
import json
import re
import socket
import threading
import time
import types
import warnings
import zipfile
from datetime import datetime, timedelta, timezone

import ipywidgets as widgets
import pytest
from PIL import Image, ImageStat

import qwen_widgets as qw
from qwen_widgets.engine import runner as _runner
from qwen_widgets.engine.sweep import Sweep
from qwen_widgets.model.plan import SweepPlan
from qwen_widgets.simulator import SimResponse, Simulator
from qwen_widgets.widgets import Card, Panel
from qwen_widgets.widgets._theme import ERROR_COLOR, MUTED_COLOR, plain_text
from qwen_widgets.widgets.grid import SweepGrid
from qwen_widgets.store.journal import Journal

from ..conftest import TEST_KEY, TIME_SCALE, demo_client, fast_options, wait_until, walk

HOSTILE = "a fox <img src=x onerror=alert(1)> <script>alert(2)</script>"




@pytest.fixture
def panel(tmp_path):
    return Panel(demo_client(), save_dir=tmp_path / "saved")




def hold_posts(simulator, path_prefix: str = "/"):
    """Hold the simulator's answers to POSTs under `path_prefix` (what they create is created
    at once) until released; returns (arrived, release) events."""
    arrived, release = threading.Event(), threading.Event()
    handle = simulator.handle

    def held(method, target, *args):
        answer = handle(method, target, *args)
        if method == "POST" and target.startswith(path_prefix):
            arrived.set()
            release.wait(30)
        return answer

    simulator.handle = held
    return arrived, release


def pixels(data: bytes) -> tuple:
    with Image.open(io.BytesIO(data)) as image:
        return image.size, image.tobytes()


def widget_states(root) -> str:
    """Everything the frontend (and a saved notebook) would get, as one string."""
    return json.dumps([w.get_state() for w in walk(root)], default=lambda b: f"<{len(b)} bytes>")




def test_controls_make_the_request(panel):
    panel.form.prompt.value = "a red fox in snow"
    panel.form.model.value = "qwen-image-2.0-pro"
    panel.form.size.value = "16:9"
    panel.form.resolution.value = "2K"
    panel.form.n.value = 4
    panel.form.negative_prompt.value = "blurry"
    panel.references.image_urls.value = "https://example.com/a.png\n\n  https://example.com/b.jpg  "
    assert panel.request == qw.ImageRequest(
        "a red fox in snow", model="qwen-image-2.0-pro", size="16:9", resolution="2K", n=4,
        negative_prompt="blurry", image_urls=("https://example.com/a.png", "https://example.com/b.jpg"))
    assert panel.form.output_size.value == "16:9 2K -> 2048x1152, 4 images"
    assert not panel.form.generate_button.disabled


def test_assigning_a_request_fills_every_control(panel):
    request = qw.ImageRequest("a lighthouse", model="qwen-image-2.0-pro", size="2:3",
                              resolution="2K", n=6, negative_prompt="fog",
                              image_urls=("https://example.com/ref.png",))
    panel.request = request
    assert (panel.form.prompt.value, panel.form.model.value, panel.form.size.value, panel.form.resolution.value,
            panel.form.n.value, panel.form.negative_prompt.value, panel.references.image_urls.value) == (
        "a lighthouse", "qwen-image-2.0-pro", "2:3", "2K", 6, "fog", "https://example.com/ref.png")
    assert panel.request == request
    assert panel.form.output_size.value == "2:3 2K -> 1360x2048, 6 images"


def test_counters_and_field_errors_next_to_the_field(panel):
    panel.form.prompt.value = "x" * 801
    assert panel.form.prompt_count.value == "801 / 800"
    assert panel.form.prompt_count.style.text_color is not None
    assert "at most 800" in panel.form.errors["prompt"].value
    assert panel.form.generate_button.disabled and "800" in panel.form.generate_button.tooltip
    panel.form.prompt.value = "fine"
    panel.form.negative_prompt.value = "y" * 501
    assert panel.form.negative_count.value == "501 / 500" and "500" in panel.form.errors["negative_prompt"].value
    assert panel.form.errors["prompt"].value == "" and panel.form.prompt_count.style.text_color != ERROR_COLOR
    panel.form.negative_prompt.value = ""
    assert not panel.form.generate_button.disabled


def test_empty_prompt_disables_generate_and_never_submits(panel):
    panel.form.prompt.value = "   "
    assert panel.form.generate_button.disabled
    with pytest.raises(qw.RequestValidationError):
        panel.generate()
    panel.form.generate_button.click()  # a click that slips through is answered, not crashed
    assert "prompt" in panel.form.errors["generate"].value
    assert panel.gallery.cards == [] and panel.client.simulator.count("POST") == 0


def test_reference_url_problems_are_reported_per_line(panel):
    panel.form.prompt.value = "a fox"
    panel.references.image_urls.value = "ftp://example.com/a.png\ndata:image/png;base64,iVBORw0KGgo="
    message = panel.form.errors["image_urls"].value
    assert "line 1: must be a public http(s) URL" in message
    assert "line 2:" in message and "base64" in message
    assert panel.form.generate_button.disabled


def test_generate_shows_images_as_small_thumbnails(panel):
    panel.form.prompt.value = "a red fox in snow"
    panel.form.size.value = "16:9"
    panel.form.n.value = 3
    panel.form.generate_button.click()
    card = panel.gallery.cards[0]
    task = card.future.result(30)
    assert task.status is qw.TaskStatus.COMPLETED
    assert len(card.tiles.children) == 3 == len(task.images)
    for tile in card.tiles.children:
        thumb = Image.open(io.BytesIO(tile.children[0].value))
        assert max(thumb.size) <= 320 and thumb.size[0] > thumb.size[1]  # 16:9 kept
    assert task.task_id in card.status.value and "completed" in card.status.value
    assert not any(isinstance(w, widgets.FloatProgress) for w in walk(card))  # done: no bar, no Stop
    assert not any(isinstance(w, widgets.Button) and w.description == "Stop" for w in walk(card))
    assert panel.results == [task]
    assert list(panel.frame()["image_index"]) == [0, 1, 2]


def test_the_kernel_is_free_while_a_generation_runs(panel):
    simulator = panel.client.simulator
    frozen = time.time()
    simulator.clock = lambda: frozen  # the task cannot finish until the clock runs again
    panel.form.prompt.value = "a slow fox"
    started = time.monotonic()
    card = panel.generate()
    # generate() returned although the task cannot have finished; the bound only stops a
    # blocking generate() from hanging the test
    assert time.monotonic() - started < 5 and not card.future.done()
    simulator.clock = time.time
    assert card.future.result(30).status is qw.TaskStatus.COMPLETED


def test_several_generations_at_once_get_their_own_cards_newest_first(panel):
    panel.form.prompt.value = "first"
    first = panel.generate()
    panel.form.prompt.value = "second"
    second = panel.generate()
    assert panel.gallery.cards == [second, first]
    done = [first.future.result(30), second.future.result(30)]
    assert [t.request.prompt for t in done] == ["first", "second"]
    assert len({t.task_id for t in done}) == 2


def test_stop_says_so_honestly_and_attach_picks_the_task_up(panel):
    panel.client.simulator.duration = 150  # 1.5 s
    panel.form.prompt.value = "a fox to stop"
    card = panel.generate()
    wait_until(lambda: card.task is not None)
    card.stop_button.click()
    assert card.future.result(10) is None
    task_id = card.task.task_id
    assert "stopped watching" in card.status.value
    said = plain_text(card.message.value)
    assert said == (f"Stopped watching task {task_id}. It keeps running on the server and may still finish "
                    "and be billed: press Re-attach to watch it again.")  # words, not Python
    assert card.attach_button in card.buttons.children and card.buttons in card.children
    assert card.progress.bar_style != "danger" and ERROR_COLOR not in card.message.value  # not a failure
    attached = panel.attach(task_id)
    final = attached.future.result(30)
    assert final.task_id == task_id and final.status is qw.TaskStatus.COMPLETED
    again = card.reattach()  # the card's own button does the same, keeping its request
    assert again.result(30).request == qw.ImageRequest("a fox to stop")
    assert panel.client.simulator.count("POST") == 1


def test_stop_during_submission_waits_for_the_task_id(panel):
    arrived, release = hold_posts(panel.client.simulator)
    panel.form.prompt.value = "a fox"
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
    panel.form.prompt.value = "a fox"
    card = panel.generate()
    assert card.future.result(10) is None
    assert "Check your key" in card.message.value and "key field" in card.message.value
    assert "Traceback" not in card.message.value and "sk-wrong-key-XYZ" not in widget_states(panel)
    assert card.progress.bar_style == "danger"


def test_rate_limit_retry_is_shown_while_it_waits(panel):
    panel.client.simulator.inject(SimResponse(429, {"Retry-After": "1"}, b"{}"), method="GET")
    seen = []
    panel.form.prompt.value = "a fox"
    card = panel.generate()
    card.message.observe(lambda change: seen.append(change["new"]), "value")
    seen.append(card.message.value)  # in case the 429 came before the observer (it lasts 1 s)
    assert card.future.result(30).status is qw.TaskStatus.COMPLETED
    assert any("rate limited, retrying in 1 s" in text for text in seen)
    assert card.message.value == ""  # cleared once polling recovered


def test_failed_task_card_says_why(tmp_path):
    panel = Panel(demo_client(failure_rate=1.0))
    panel.form.prompt.value = "a fox"
    card = panel.generate()
    task = card.future.result(30)
    assert task.status is qw.TaskStatus.FAILED
    assert "failed" in card.message.value and task.error in plain_text(card.message.value)
    assert [b.description for b in card.actions.children] == ["Retry", "Edit"]
    assert panel.results == [task] and panel.frame()["status"].tolist() == ["failed"]


def test_hostile_prompt_is_inert_everywhere(panel):
    panel.form.prompt.value = HOSTILE
    card = panel.generate()
    card.future.result(30)
    html_values = [w.value for w in walk(panel) if isinstance(w, widgets.HTML)]
    assert any("&lt;img src=x onerror=alert(1)&gt;" in v for v in html_values)
    assert not any("<img" in v or "<script" in v for v in html_values)
    assert panel.frame()["prompt"][0] == HOSTILE  # data keeps the text intact


def test_key_field_moves_the_key_and_clears_at_once(monkeypatch):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", qw.DemoModeWarning)
        panel = Panel(demo_client())
    qw.set_default_client(panel.client)
    assert panel.client.demo and "Simulated images" in panel.banner.message.value
    panel.banner.key_field.value = TEST_KEY
    assert panel.banner.key_field.value == ""
    assert not panel.client.demo and qw.default_client() is panel.client
    assert panel.banner.layout.display == "none"
    assert TEST_KEY not in widget_states(panel)
    assert TEST_KEY not in repr(panel) + repr(panel.client)


def test_reference_previews_load_in_the_background(panel):
    first = panel.client.generate("a reference", size="16:9")
    missing = first.urls[0].replace(first.task_id, "task_01MISSING")
    panel.form.prompt.value = "refine it"
    panel.references.image_urls.value = f"{first.urls[0]}\n{missing}"
    boxes = panel.references.previews.children
    assert len(boxes) == 2
    wait_until(lambda: boxes[0].children[0].value and "cannot" in boxes[1].children[1].value)
    assert max(Image.open(io.BytesIO(boxes[0].children[0].value)).size) <= 96
    assert "HTTP 404" in boxes[1].children[1].value
    assert not panel.form.generate_button.disabled  # the server fetches references, not the kernel
    assert panel.request.image_urls == (first.urls[0], missing)


# -- issue 24 items 16-18: failures said where they can be acted on ------------------------------


def test_a_key_refused_for_the_balance_is_said_where_the_key_is_set(server, monkeypatch):
    server.simulator.api_keys = {"sk-the-right-key-0123"}
    monkeypatch.setenv("APIMART_API_KEY", "sk-wrong-key-XYZ123")
    monkeypatch.setenv("APIMART_BASE_URL", server.url)  # a pasted key's client goes there too
    panel = Panel(qw.QwenClient(**fast_options()))
    assert panel.banner.layout.display == "none"  # a key is set: no demo line
    panel.account.start().result(10)  # what showing the panel does: the balance answers 401
    message = plain_text(panel.banner.message.value)
    assert "The API refused this key" in message and "APIMART_API_KEY" in message
    assert panel.banner.layout.display is None and panel.banner.key_row.layout.display is None  # the field, open
    panel.form.prompt.value = "a fox"
    assert panel.form.generate_button.disabled
    assert "refused the key" in panel.form.errors["generate"].value
    panel.banner.key_field.value = "sk-the-right-key-0123"  # a valid key, pasted where it was asked for
    wait_until(lambda: panel.account.future.done() and not panel.form.generate_button.disabled)
    assert panel.banner.layout.display == "none"
    assert panel.generate().future.result(30).status is qw.TaskStatus.COMPLETED


def test_a_key_refused_for_a_card_offers_the_key_field_not_a_retry(server):
    server.simulator.api_keys = {"sk-the-right-key-0123"}
    panel = Panel(qw.QwenClient("sk-wrong-key-XYZ123", base_url=server.url, **fast_options()))
    panel.form.prompt.value = "a fox"
    card = panel.generate()
    assert card.future.result(10) is None
    labels = [button.description for button in card.actions.children if isinstance(button, widgets.Button)]
    assert "Retry" not in labels and "Edit" in labels  # a retry could only fail again
    assert "key field" in plain_text(card.message.value)
    assert "given to the client as api_key=" in plain_text(panel.banner.message.value)
    assert panel.banner.key_row.layout.display is None and panel.form.generate_button.disabled


def test_a_card_that_could_not_reach_the_api_says_so_in_words_and_stops_counting():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # nobody listens there
    panel = Panel(qw.QwenClient(TEST_KEY, base_url=f"http://127.0.0.1:{port}", **fast_options()))
    panel.form.prompt.value = "a fox"
    card = panel.generate()
    assert card.future.result(10) is None
    said = plain_text(card.message.value)
    assert said == ("Network problem: could not connect to the server (is it down, or the network off?). "
                    "The request never reached the API: nothing was created or billed. "
                    "Check the connection, then press Retry.")
    assert plain_text(card.status.value) == "not submitted"  # not "submitting… 0 s" for ever


def test_a_card_retrying_its_submission_says_so_with_the_time(server):
    server.simulator.inject(SimResponse(503, {"Retry-After": "0"}, b'{"error": {"message": "busy"}}'),
                            method="POST")
    panel = Panel(qw.QwenClient(TEST_KEY, base_url=server.url, **fast_options()))
    panel.form.prompt.value = "a fox"
    seen = []

    def keep(change):
        seen.append(plain_text(change["new"]))

    card = panel.generate()
    card.status.observe(keep, "value")
    card.future.result(30)
    assert any(text.startswith("submitting… trying again in") for text in seen), seen
    assert not plain_text(card.status.value).startswith("submitting")


def test_retry_after_a_lost_answer_resends_with_the_same_key_never_a_second_task(server):
    attempts = qw.RetryPolicy().max_attempts
    server.simulator.inject(SimResponse(action="drop"), method="POST", process=True, count=attempts)
    panel = Panel(qw.QwenClient(TEST_KEY, base_url=server.url, **fast_options()))
    panel.form.prompt.value = "a fox"
    card = panel.generate()
    assert card.future.result(30) is None
    said = plain_text(card.message.value)
    assert "may exist and be billed" in said and "same idempotency key" in said
    assert plain_text(card.status.value) == "submission's answer lost"
    assert card.retry().result(30).status is qw.TaskStatus.COMPLETED
    keys = {entry["idempotency_key"] for entry in server.simulator.log if entry["method"] == "POST"}
    assert len(server.simulator.tasks) == 1 and len(keys) == 1


def test_reattach_keeps_the_cards_clock(panel, monkeypatch):
    import qwen_widgets.widgets.card as card_module

    now = [1000.0]
    monkeypatch.setattr(card_module, "time", types.SimpleNamespace(monotonic=lambda: now[0]))
    panel.client.simulator.duration = 150
    panel.form.prompt.value = "a fox to stop"
    card = panel.generate()
    wait_until(lambda: card.task is not None)
    card.stop_button.click()
    assert card.future.result(10) is None
    now[0] += 95.0  # a while later, the same card watches its task again
    final = card.reattach().result(30)
    assert final.status is qw.TaskStatus.COMPLETED
    assert "took 95.0 s here" in card.timings  # not counted again from 0


def test_timeout_lands_in_the_card_with_the_task_id():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", qw.DemoModeWarning)
        simulator = Simulator(time_scale=TIME_SCALE, duration=10_000)  # 100 s at this scale
        client = qw.QwenClient(simulator=simulator, **fast_options(poll_schedule=qw.PollSchedule(
            first_delay=0.01, min_interval=0.01, max_interval=0.05, min_deadline=0.3,
            deadline_factor=0.0)))
    panel = Panel(client)
    panel.form.prompt.value = "a fox that takes forever"
    card = panel.generate()
    assert card.future.result(10) is None
    assert card.task.task_id in card.message.value and "may still finish and be billed" in card.message.value
    assert card.buttons.children == (card.attach_button,)  # offered, since the task is not done


# -- regressions found in review ---------------------------------------------------------------


def test_undecodable_image_keeps_the_finished_task(panel):
    panel.client.simulator.inject(SimResponse(200, {}, b"\x89PNG\r\n\x1a\nbroken"),
                                  path_prefix="/sim-images/", count=1)
    panel.request = qw.ImageRequest("a fox", n=2)
    card = panel.generate()
    task = card.future.result(30)
    assert task.status is qw.TaskStatus.COMPLETED and panel.results == [task]
    captions = [tile.children[1].value for tile in card.tiles.children]
    assert sum("not a readable image" in c for c in captions) == 1  # said under the missing one
    assert len(card.full_images) == 1  # the other image loaded normally


def test_pasted_key_is_never_echoed_to_frontends():
    panel = Panel(demo_client())
    sent = []
    panel.banner.key_field._send = lambda message, buffers=None: sent.append(message)
    panel.banner.key_field.set_state({"value": TEST_KEY})  # what a frontend sends on Enter
    assert TEST_KEY not in json.dumps(sent) and panel.banner.key_field.value == ""
    assert not panel.client.demo


def test_a_double_click_submits_once(panel):
    panel.form.prompt.value = "a fox"
    panel.form.generate_button.click()
    panel.form.generate_button.click()  # the second click of a double click, a moment later
    assert len(panel.gallery.cards) == 1
    panel._last_click -= 1.0  # as if a second had passed
    panel.form.generate_button.click()  # a deliberate second generation
    assert len(panel.gallery.cards) == 2
    for card in panel.gallery.cards:
        card.future.result(30)
    assert panel.client.simulator.count("POST") == 2


# -- Compare mode: a sweep from the panel ---------------------------------------------------------


def test_compare_mode_runs_a_sweep_over_prompt_lines_and_sizes(panel):
    panel.form.compare.value = True
    assert panel.form.compare_row.layout.display is None and panel.form.single_row.children == (panel.form.n,)
    panel.form.prompt.value = "a fox\n\na wolf\n"
    panel.form.sizes.value = ("1:1", "16:9")
    panel.form.n.value = 2
    assert panel.form.sweep_fields()["prompt"] == ["a fox", "a wolf"]
    assert panel.form.output_size.value == "Compare: 4 tasks, 8 images"
    assert panel.form.generate_button.description == "Compare: 4 tasks"  # says what it will run
    panel.form.generate_button.click()
    grid = panel.gallery.children[0]
    sweep = grid.sweep
    assert [dict(c.labels) for c in sweep.cells] == [
        {"prompt": p, "size": s} for p in ("a fox", "a wolf") for s in ("1:1", "16:9")]
    sweep.wait(60)
    wait_until(lambda: len(panel.results) == 4)
    assert {(t.request.prompt, t.request.size, t.request.n) for t in panel.results} == {
        (p, s, 2) for p in ("a fox", "a wolf") for s in ("1:1", "16:9")}


def test_compare_mode_refuses_three_axes_and_too_many_images(panel):
    panel.form.compare.value = True
    panel.form.prompt.value = "a\nb"
    panel.form.models.value = qw.MODELS
    panel.form.sizes.value = ("1:1", "4:3")
    assert panel.form.generate_button.disabled and "at most two things" in panel.form.errors["generate"].value
    panel.form.models.value = qw.MODELS[:1]
    panel.form.sizes.value = qw.SIZES  # 2 prompts x 7 sizes x 2 images = 28 > 24
    panel.form.n.value = 2
    assert panel.form.generate_button.disabled and "28 images" in panel.form.errors["generate"].value
    panel.form.max_images = 28
    panel.form.n.value = 1
    panel.form.n.value = 2  # any change re-checks the plan
    assert not panel.form.generate_button.disabled
    assert panel.client.simulator.count("POST") == 0


def test_leaving_compare_mode_restores_the_single_form(panel):
    panel.form.size.value = "3:2"
    panel.form.compare.value = True
    assert panel.form.sizes.value == ("3:2",)  # starts from the single choice
    panel.form.compare.value = False
    panel.form.prompt.value = "a fox"
    assert panel.request.size == "3:2" and panel.form.output_size.value.startswith("3:2 1K")


# -- viewing, actions and their feedback ----------------------------------------------------------


def finished_card(panel, **fields):
    panel.request = qw.ImageRequest("a fox", **fields)
    card = panel.generate()
    card.future.result(30)
    return card


def sent(bridge) -> list[tuple[dict, list]]:
    """What the views' browser helper sends (messages and their buffers), recorded."""
    seen: list[tuple[dict, list]] = []
    bridge.widget.send = lambda content, buffers=None: seen.append((content, buffers or []))
    return seen


def test_clicking_a_thumbnail_opens_the_large_view_in_its_place(tmp_path):
    card = Card(demo_client(), request=qw.ImageRequest("a fox", size="3:2", n=3), save_dir=tmp_path)
    card.start_generation(card.request).result(30)
    assert card.viewer is None and card.tiles in card.children
    opener = card.tiles.children[1].children[2]  # the transparent button over thumbnail #2
    assert isinstance(opener, widgets.Button) and "Image 2" in opener.tooltip
    opener.click()
    viewer = card.viewer
    wait_until(lambda: len(viewer.picture.value) > 0)
    assert viewer in card.children and card.tiles not in card.children  # where the user looked
    assert card.layout.grid_column == "1 / -1"  # the whole width of the gallery
    assert "Image 2 of 3" in viewer.caption.value and "1248x832" in viewer.caption.value
    assert viewer.picture.layout.max_height == "75vh"  # sized to the window
    with Image.open(io.BytesIO(viewer.picture.value)) as large:
        assert large.size == (1248, 832)  # under the screen edge: shown at full size
    viewer.next_button.click()
    wait_until(lambda: "Image 3 of 3" in viewer.caption.value and viewer.picture.value)
    viewer.step(1).result(10)  # wraps around
    assert "Image 1 of 3" in viewer.caption.value
    viewer.previous_button.click()
    assert "Image 3 of 3" in viewer.caption.value
    viewer.close_button.click()
    assert viewer.picture.value == b"" and card.tiles in card.children and viewer not in card.children
    assert card.layout.grid_column is None


def test_the_newest_card_shows_its_first_image_large_and_older_ones_shrink(panel):
    first = finished_card(panel, n=4)
    wait_until(lambda: first.viewer is not None and first.viewer.picture.value)
    assert first.mode == "featured" and first.viewer in first.children and first.tiles in first.children
    assert first.children.index(first.viewer) < first.children.index(first.tiles)  # large above
    assert "Image 1 of 4" in first.viewer.caption.value
    assert '<span class="qw-alt" hidden>Image 1 of 4: a fox</span>' in first.viewer.caption.value  # its alt text
    assert [b.description for b in first.viewer.bar.children] == [
        "Previous", "Next", "Download", "Save this image", "Save all 4", "Use as reference", "Close"]
    assert not any(b.description.startswith("Save") for b in first.actions.children)  # one row of saves
    panel._last_click -= 1.0
    second = finished_card(panel)
    wait_until(lambda: first.mode == "compact" and len(first.tiles.children) == 1)
    assert first.viewer is None and first.layout.grid_column is None
    sheet, caption, opener = first.tiles.children[0].children
    with Image.open(io.BytesIO(sheet.value)) as picture:  # one contact sheet of the four
        assert picture.size[0] > 256 and picture.format == "JPEG"
    assert caption.value.startswith("4 images") and '<span class="qw-alt" hidden>4 images of: a fox' in caption.value
    menu, = first.actions.children  # an older card: one menu of its actions, not five buttons
    assert [label for label, _ in menu.options] == [
        "Actions…", "Load into the form", "More like this", "Star", "Save all", "Copy prompt", "Copy settings",
        "Delete…"]
    menu.value = "Load into the form"
    assert menu.value == "" and panel.form.prompt.value == "a fox" and "loaded into the form" in first.feedback.value
    opener.click()
    assert "Image 1 of 4" in first.viewer.caption.value
    assert second.mode == "featured"
    entry = first.static_entry()
    assert entry.images == 4 and len(entry.thumbnails) == 1


def test_viewer_keys_move_close_and_give_focus_back(panel):
    pytest.importorskip("anywidget")
    messages = sent(panel.bridge)
    card = finished_card(panel, n=3)
    card.tiles.children[1].children[2].click()  # thumbnail #2
    viewer = card.viewer
    assert {"cmd": "focus", "selector": f".{viewer.dom_class}"} in [m for m, _ in messages]
    press = lambda key: panel.bridge._handle({"event": "viewer", "viewer": viewer.dom_class, "key": key})  # noqa: E731
    press("next")
    assert "Image 3 of 3" in viewer.caption.value
    press("previous")
    press("previous")
    assert "Image 1 of 3" in viewer.caption.value
    press("close")
    assert viewer not in card.children
    assert messages[-1][0] == {"cmd": "restore", "selector": f".qw-open-{card.id}-1"}


def test_viewer_download_is_one_click_with_the_receipt_inside(panel, tmp_path):
    pytest.importorskip("anywidget")
    messages = sent(panel.bridge)
    card = finished_card(panel, n=2)
    card.open_viewer(1).result(10)
    viewer = card.viewer
    viewer.download().result(10)
    (message, (data,)), = [(m, b) for m, b in messages if m.get("cmd") == "download"]
    name = f"{card.task.task_id}_1.png"
    assert message["filename"] == name and message["mime"] == "image/png"
    assert qw.read_receipt(data).task_id == card.task.task_id  # the receipt travels with it
    assert pixels(data) == pixels(card.full_images[1])  # the full-resolution original
    assert "Sending" in viewer.feedback.value and "base64" not in widget_states(panel)
    panel.bridge._handle({"event": "downloaded", "token": message["token"], "ok": True})
    assert f"Downloaded {name}" in viewer.feedback.value
    viewer.save().result(10)
    saved = tmp_path / "saved" / name
    assert saved.exists() and "Saved on the server" in viewer.feedback.value
    assert str(saved) in viewer.feedback.value and "download=" not in viewer.feedback.value


def test_without_the_browser_helper_downloads_are_links(tmp_path):
    card = Card(demo_client(), request=qw.ImageRequest("a fox", n=2), save_dir=tmp_path / "saved")
    card.start_generation(card.request).result(30)
    card.open_viewer(1).result(10)
    viewer = card.viewer
    viewer.download().result(10)
    link = viewer.feedback.value
    name = f"{card.task.task_id}_1.png"
    assert f'download="{name}"' in link and 'href="data:image/png;base64,' in link
    data = base64.b64decode(link.split("base64,", 1)[1].split('"', 1)[0])
    assert qw.read_receipt(data).image_index == 1 and pixels(data) == pixels(card.full_images[1])
    viewer.save().result(10)
    assert f'download="{name}"' in viewer.feedback.value  # a Binder user gets the file too


def test_load_into_the_form_keeps_a_reference_just_added_brings_the_form_and_can_be_undone(panel):
    card = finished_card(panel, size="3:2", n=2)
    panel.form.negative_prompt.value = "blurry"
    panel.request = qw.ImageRequest("something else", model="qwen-image-2.0-pro")
    card.open_viewer(0).result(10)
    card.viewer.reference_button.click()
    reference = card.task.images[0].url
    before = panel.form.snapshot()
    panel.tabs.selected_index = 1
    buttons = {b.description: b for b in card.actions.children if isinstance(b, widgets.Button)}
    assert set(buttons) == {"Load into the form", "More like this", "Star", "More…"}  # one row per card
    scrolls = sent(panel.bridge) if panel.bridge.available else []
    buttons["Load into the form"].click()
    assert panel.request == qw.ImageRequest("a fox", size="3:2", n=2, image_urls=(reference,))
    assert "loaded into the form" in card.feedback.value and "keeping your 1 reference" in card.feedback.value
    assert card.feedback in card.children  # next to the button that was clicked
    assert panel.tabs.selected_index == 0 and panel.loaded_box.layout.display is None
    if panel.bridge.available:
        assert scrolls == [({"cmd": "scroll", "selector": ".qw-prompt"}, [])]  # the form comes into view
    panel.undo_button.click()
    assert panel.form.snapshot() == before and panel.loaded_box.layout.display == "none"


def test_card_save_writes_every_image_with_its_receipt(panel, tmp_path):
    card = finished_card(panel, n=2)
    card.compact().result(10)  # its large view closed: "Save all" is in its row
    card.save_all().result(10)
    for index in range(2):
        saved = tmp_path / "saved" / f"{card.task.task_id}_{index}.png"
        with Image.open(saved) as copy:
            assert copy.text["prompt"] == "a fox"
        assert json.loads(saved.with_suffix(".json").read_text())["image_index"] == index
        assert qw.read_receipt(saved).task_id == card.task.task_id
    assert card.feedback.value.count("Saved on the server") == 2


def test_card_outside_a_panel_has_no_panel_actions():
    client = demo_client()
    card = Card(client, request=qw.ImageRequest("a fox"))
    card.start_generation(card.request).result(30)
    assert [b.description for b in card.actions.children] == ["Star", "Save", "More…"]
    card.open_viewer(0).result(10)
    assert card.viewer.reference_button not in card.viewer.bar.children


def test_a_failed_card_offers_retry_and_edit(tmp_path):
    panel = Panel(demo_client(failure_rate=1.0))
    panel.form.prompt.value = "a fox that fails"
    card = panel.generate()
    card.future.result(30)
    buttons = {b.description: b for b in card.actions.children if isinstance(b, widgets.Button)}
    panel.form.prompt.value = "something else"
    buttons["Edit"].click()
    assert panel.form.prompt.value == "a fox that fails" and "loaded into the form" in card.feedback.value
    panel.client.simulator.failure_rate = 0.0
    retried = card.retry()
    assert retried.result(30).status is qw.TaskStatus.COMPLETED
    assert card.message not in card.children and len(card.tiles.children) == 1
    assert panel.client.simulator.count("POST") == 2


def test_empty_parts_of_a_card_take_no_room(panel):
    card = finished_card(panel)
    assert "feedback" not in card._extras and "message" not in card._extras  # made only when needed
    assert card.message not in card.children and card.progress not in card.children
    assert card.buttons not in card.children  # nothing to stop or re-attach
    assert card.task.task_id in card.status.value and "took" in card.status.value
    assert "here · " in card.status.value and "on the server" in card.status.value  # which is which
    assert re.search(r"made \d{4}-\d\d-\d\d \d\d:\d\d UTC", card.status.value)


# -- messages: only after a touch, in words for the panel user, `$` shown as typed ---------------


def test_no_message_before_a_field_is_touched_only_a_quiet_hint(panel):
    assert all(label.value == "" for label in panel.form.errors.values())
    assert panel.form.generate_button.disabled and panel.form.hint.value == "Write a prompt to generate."
    panel.form.prompt.value = "a fox"
    panel.form.prompt.value = ""  # touched, then emptied: now it is said next to the field
    assert panel.form.errors["prompt"].value == "Write a prompt to generate." and panel.form.hint.value == ""
    assert panel.form.errors["prompt"].style.text_color == ERROR_COLOR


def test_messages_speak_to_the_panel_user():
    from qwen_widgets.widgets._format import friendly_error

    panel = Panel(demo_client())
    panel.form.compare.value = True
    panel.form.prompt.value = "\n".join(f"fox {i}" for i in range(13))
    panel.form.n.value = 2
    message = plain_text(panel.form.errors["generate"].value)
    assert "26 images" in message and "at most 24" in message
    assert "max_images" not in message and "pass " not in message
    panel.form.prompt.value = "a\nb"
    panel.form.models.value = qw.MODELS
    panel.form.sizes.value = ("1:1", "4:3")
    message = plain_text(panel.form.errors["generate"].value)
    assert message.startswith("Compare can vary at most two things") and "generate:" not in message
    assert friendly_error("prompt", "prompt: must not be empty or only whitespace (got '')") == \
        "Write a prompt to generate."
    assert "got" not in friendly_error("n", "n: must be from 1 to 6 (got 7)")


def test_dollar_signs_are_shown_as_typed_never_as_latex(panel):
    panel.form.prompt.value = "a sign saying $0.12 at $0.03"
    card = panel.generate()
    card.future.result(30)
    texts = [w for w in walk(panel) if isinstance(w, (widgets.Label, widgets.HTMLMath))]
    assert not any("$" in w.value for w in texts)  # Labels typeset $...$ as LaTeX
    assert "$0.12 at $0.03" in card.title.value and isinstance(card.title, widgets.HTML)
    grid = SweepGrid(Sweep(panel.client, SweepPlan.of({"prompt": ["$1 fox", "$2 fox"]}), price_per_image=0.03))
    assert "$0.06 at $0.03" in grid.summary.value and isinstance(grid.summary, widgets.HTML)
    assert not any(isinstance(w, widgets.Label) and "$" in w.value for w in walk(grid))


# -- the copy saved with the notebook ------------------------------------------------------------


def test_the_static_copy_shows_every_finished_generation(panel, published):
    panel._ipython_display_()
    (live,) = published[0][0]
    (copy,), copy_kw = published[1][0], published[1][1]
    mirror = panel._mirror
    assert "application/vnd.jupyter.widget-view+json" in live and copy_kw["display_id"] == mirror.id
    assert mirror.live_class in panel._dom_classes  # the live view hides the copy while mounted
    assert f".jp-OutputArea:has(.qw-live-{mirror.id})" in copy["text/html"]
    panel.form.prompt.value = "a fox <b>not bold</b> for $5"
    panel.form.n.value = 2
    card = panel.generate()
    card.future.result(30)
    wait_until(lambda: mirror.updates >= 1, timeout=30)
    update = [obj for (obj,), kw in published if kw.get("update")][-1]["text/html"]
    assert update.count('src="data:image/jpeg;base64,') == 2
    assert "a fox &lt;b&gt;not bold&lt;/b&gt; for $5" in update and card.task.task_id in update
    assert "qwen-image-2.0 · 1:1 · 1K · n=2" in update
    thumbs = [base64.b64decode(part.split('"', 1)[0]) for part in update.split("base64,")[1:]]
    assert all(len(t) < 30_000 for t in thumbs)  # small JPEGs: the notebook stays light
    assert thumbs[0] == bytes(card.tiles.children[0].children[0].value)


def test_demo_notice_is_one_line_and_right_about_why(monkeypatch):
    panel = Panel(demo_client())
    assert plain_text(panel.banner.message.value) == "Simulated images: no API key set (APIMART_API_KEY)."
    assert panel.banner.key_row.layout.display == "none"  # the key field is there, but quiet
    panel.banner.key_toggle.click()
    assert panel.banner.key_row.layout.display is None
    monkeypatch.setenv("APIMART_API_KEY", TEST_KEY)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", qw.DemoModeWarning)
        explicit = Panel(qw.QwenClient(simulator=Simulator(time_scale=TIME_SCALE)))
    assert "no API key" not in explicit.banner.message.value and "given a simulator" in explicit.banner.message.value
    monkeypatch.setenv("QWEN_WIDGETS_DEMO", "1")
    forced = Panel(demo_client())
    assert "QWEN_WIDGETS_DEMO=1" in forced.banner.message.value
    assert forced.banner.key_toggle.layout.display == "none"  # a key would not help
    assert TEST_KEY not in widget_states(explicit)


def test_in_a_kernel_the_demo_notice_is_a_printed_line_not_a_warning_box(monkeypatch, capsys):
    from qwen_widgets.engine import settings as _config

    monkeypatch.setattr(_config, "_demo_announced", False)
    monkeypatch.setattr(_config, "_in_kernel", lambda: True)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no warning may be raised
        warnings.filterwarnings("default", category=qw.DemoModeWarning)
        qw.QwenClient()
    out = capsys.readouterr()
    assert out.err == "" and out.out.count("\n") == 1
    assert out.out.startswith("qwen_widgets: Simulated images") and "no API key set" in out.out
    monkeypatch.setattr(_config, "_demo_announced", False)
    Panel()  # the panel says it in its own line: nothing printed
    assert capsys.readouterr().out == ""


# -- Download all ---------------------------------------------------------------------------------


def test_download_all_writes_one_zip_beside_the_notebook_and_links_it(panel, tmp_path, monkeypatch):
    """The zip is streamed to the kernel's disk and reaches the browser from the Jupyter
    server's /files/ route through a relative link in an output: never through widget state."""
    monkeypatch.chdir(tmp_path)  # the kernel's working folder: where the notebook is
    assert panel.download_button.layout.display == "none"  # nothing to download yet
    first = finished_card(panel, n=2)
    panel.form.prompt.value = "a wolf"
    second = panel.generate()
    second.future.result(30)
    assert panel.download_button.layout.display is None
    messages = sent(panel.bridge) if panel.bridge.available else None
    panel.download_all().result(30)
    written = list((tmp_path / "saved").glob("qwen_images_*.zip"))
    assert len(written) == 1 and f"Saved on the server: {written[0]}" in plain_text(panel.download_note.value)
    output, = panel.download_link.outputs
    link = output["data"]["text/html"]
    assert f'href="saved/{written[0].name}"' in link and f'download="{written[0].name}"' in link
    state = json.dumps([w.get_state() for w in walk(panel)], default=repr)
    assert len(state) < 100_000 and "base64" not in state  # the zip is not in widget state
    archive = zipfile.ZipFile(written[0])
    if messages is not None:  # one click: the helper clicks the link the page shows
        assert messages == [({"cmd": "click", "selector": ".qw-download-all a"}, [])]
    names = set(archive.namelist())
    for task in (first.task, second.task):
        for image in task.images:
            assert {f"{task.task_id}_{image.index}.png", f"{task.task_id}_{image.index}.json"} <= names
    assert archive.read(f"{first.task.task_id}_1.png")[:8] == b"\x89PNG\r\n\x1a\n"
    rows = len(first.task.images) + len(second.task.images)
    assert "results.csv" in names and archive.read("results.csv").decode().count("\n") == 1 + rows


# -- the comparison grid ---------------------------------------------------------------------------


def test_compare_grid_names_both_axes_shows_none_and_whole_headers(panel):
    long_prompt = "A lighthouse on a rocky coast at dusk, dramatic clouds, oil painting"
    sweep = Sweep(panel.client, SweepPlan.of({"prompt": [long_prompt, "a wolf"],
                                              "negative_prompt": [None, "people"]}))
    grid = SweepGrid(sweep, on_use_reference=panel.add_reference)
    texts = [plain_text(w.value) for w in grid.grid.children[:3]]
    assert texts[0] == "prompt ↓" and texts[1] == "(none)" and "people" in texts[2]
    assert plain_text(grid.constant.value) == "held constant: model: qwen-image-2.0 · size: 1:1 · resolution: 1K · n=1"
    assert "Columns: negative_prompt →" in grid.children[4].value
    assert long_prompt in plain_text(grid.grid.children[3].value)  # whole, not cut at 40
    assert grid.table.layout.overflow == "auto"  # scrolls inside its own box
    cell = grid.tiles[0]
    assert cell.children[0].layout.display == "none"  # no broken-image icon before the thumbnail
    assert isinstance(cell.children[3], widgets.FloatProgress)  # its own progress
    sweep.start().wait(60)
    wait_until(lambda: all(c.children[0].layout.display is None for c in grid.tiles))
    assert all(c.children[3].value == 100 for c in grid.tiles)


def test_compare_cells_offer_view_save_and_reference_for_every_image(panel, tmp_path):
    sweep = Sweep(panel.client, SweepPlan.of({"prompt": ["a fox", "a wolf"], "size": ["1:1", "9:16"], "n": 2}))
    grid = SweepGrid(sweep, on_use_reference=panel.add_reference, save_dir=tmp_path / "grid")
    sweep.start().wait(60)
    wait_until(lambda: all(c.children[4].children for c in grid.tiles))
    view, save, reference = grid.tiles[1].children[4].children
    assert [view.description, save.description, reference.description] == ["View", "Save", "Use"]
    assert "reference" in reference.tooltip and "1 of 2" in grid.tiles[1].children[1].value
    cells = list(grid.grid.children)
    view.click()
    viewer = grid.viewer
    assert viewer not in grid.grid.children and list(grid.grid.children) == cells  # no cell moves
    assert grid.children.index(viewer) == grid.children.index(grid.table) - 1  # the same viewer, above
    assert "Image 3 of 8" in viewer.caption.value  # cell 2's first image; all 8 reachable
    for _ in range(8):
        viewer.step(1)
    assert "Image 3 of 8" in viewer.caption.value
    viewer.hide()
    assert viewer not in grid.children
    save.click()
    task = sweep.results[1]
    wait_until(lambda: (tmp_path / "grid" / f"{task.task_id}_1.png").exists())
    reference.click()
    assert panel.references.image_urls.value == task.images[0].url
    assert "Added as reference" in grid.tiles[1].children[1].value


def test_ctrl_enter_in_the_prompt_generates_the_prompt_as_shown(panel):
    pytest.importorskip("anywidget")
    assert panel.shortcut in panel.children and "qw-prompt" in panel.form.prompt._dom_classes
    panel.form.prompt.value = "a fox"
    # the browser sends the text it shows: its own sync of the last keys may come later
    panel.shortcut._handle_custom_msg({"event": "submit", "prompt": "a fox at night"}, [])
    card = panel.gallery.cards[0]
    assert card.future.result(30).request.prompt == "a fox at night"
    assert panel.form.prompt.value == "a fox at night"
    panel.shortcut._handle_custom_msg({"event": "submit", "prompt": "   "}, [])
    assert len(panel.gallery.cards) == 1  # an empty prompt: Generate is disabled, so is this


# -- your own images as references ------------------------------------------------------------


def png_bytes(color="blue", size=(80, 60)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, color).save(buffer, "PNG")
    return buffer.getvalue()


def choose_files(panel, *files):
    """What a browser sends when files are chosen in "Add image…" (name, bytes) pairs."""
    panel.references.add_image_button.value = tuple(
        {"name": name, "type": "image/png", "size": len(data), "content": memoryview(data),
         "last_modified": datetime.now(timezone.utc)} for name, data in files)


def uploads(panel) -> int:
    return panel.client.simulator.count("POST", "/v1/uploads")


def test_add_image_uploads_once_and_the_request_carries_its_url(panel):
    panel.form.prompt.value = "the same scene, as a watercolour"
    choose_files(panel, ("cat.png", png_bytes()))
    assert panel.references.add_image_button.value == ()  # the bytes left widget state at once
    (photo,) = panel.references.photos
    assert photo in panel.references.previews.children and "cat.png" in widget_states(photo)
    photo.future.result(10)
    assert photo.url.startswith("https://") and "uploaded" in plain_text(photo.note.value)
    with Image.open(io.BytesIO(photo.picture.value)) as thumb:  # made in the kernel
        assert thumb.format == "JPEG" and max(thumb.size) <= 96
    assert panel.request.image_urls == (photo.url,)
    first = panel.generate().future.result(30)
    assert first.request.image_urls == (photo.url,)
    assert panel.client.simulator.tasks[first.task_id].request.image_urls == (photo.url,)
    with Image.open(io.BytesIO(panel.client.fetch_image(first.images[0]))) as made:
        red, _, blue = ImageStat.Stat(made.convert("RGB")).mean
    assert blue > red + 80  # the simulator drew the blue reference into the picture
    choose_files(panel, ("same-cat-again.png", png_bytes()))  # the same image: added once
    panel._last_click -= 1.0
    second = panel.generate().future.result(30)
    assert second.request.image_urls == (photo.url,) and len(panel.references.photos) == 1
    assert uploads(panel) == 1
    assert '"content"' not in widget_states(panel)


def test_generate_waits_for_an_image_still_uploading(panel):
    arrived, release = hold_posts(panel.client.simulator, "/v1/uploads")
    panel.form.prompt.value = "a fox"
    photo = panel.add_image(png_bytes("green"), name="fox.png")
    assert arrived.wait(10)
    assert panel.form.hint.value == "1 image is still uploading: Generate waits for it."
    assert not panel.form.generate_button.disabled and panel.request.image_urls == ()
    card = panel.generate()
    wait_until(lambda: "waiting for your images to upload" in card.status.value)
    assert panel.client.simulator.count("POST", "/v1/images") == 0  # nothing sent without it
    release.set()
    task = card.future.result(30)
    assert task.request.image_urls == (photo.url,) and card.request == task.request
    assert "1 reference image(s)" in card.params.value
    wait_until(lambda: panel.form.hint.value == "")


def test_an_upload_that_ends_while_generate_reads_the_form_is_not_lost(panel):
    panel.form.prompt.value = "a fox"
    photo = panel.add_image(png_bytes(), name="fox.png")
    photo.future.result(10)
    read_before = qw.ImageRequest("a fox")  # the form as read a moment before the upload ended
    prepare = panel.references.prepare_for(read_before)
    assert prepare is not None
    assert _runner.run(prepare()).image_urls == (photo.url,)
    assert panel.references.prepare_for(panel.request) is None  # nothing to wait for


def test_compare_waits_until_the_images_are_uploaded(panel):
    arrived, release = hold_posts(panel.client.simulator, "/v1/uploads")
    panel.form.compare.value = True
    panel.form.prompt.value = "a fox\na wolf"
    photo = panel.add_image(png_bytes(), name="ref.png")
    assert arrived.wait(10)
    assert panel.form.generate_button.disabled and "Compare is ready once it has uploaded" in panel.form.hint.value
    release.set()
    photo.future.result(10)
    wait_until(lambda: not panel.form.generate_button.disabled)
    sweep = panel.run_sweep()
    assert all(cell.request.image_urls == (photo.url,) for cell in sweep.cells)
    sweep.wait(60)


def test_a_comparison_started_from_code_waits_for_an_image_still_uploading(panel):
    """The Compare button waits by staying disabled; `run_sweep()` called in a cell right after
    `add_image()` waits for the upload instead of comparing without the image."""
    arrived, release = hold_posts(panel.client.simulator, "/v1/uploads")
    panel.form.compare.value = True
    panel.form.prompt.value = "a fox\na wolf"
    photo = panel.add_image(png_bytes(), name="ref.png")
    assert arrived.wait(10)
    calling = threading.Thread(target=lambda: started.append(panel.run_sweep()))
    started: list[Sweep] = []
    calling.start()
    calling.join(0.3)
    assert calling.is_alive() and panel.client.simulator.count("POST", "/v1/images") == 0
    release.set()
    calling.join(30)
    sweep = started[0]
    assert photo.url is not None
    assert all(cell.request.image_urls == (photo.url,) for cell in sweep.cells)
    sweep.wait(60)
    assert all(task.request.image_urls == (photo.url,) for task in sweep.results)


def test_a_comparison_from_code_whose_image_cannot_upload_names_it_and_sends_nothing(panel):
    simulator = panel.client.simulator
    simulator.inject(SimResponse(400, {"Content-Type": "application/json"},
                                 b'{"error": {"message": "storage is full"}}'),
                     method="POST", path_prefix="/v1/uploads", count=2)
    panel.form.compare.value = True
    panel.form.prompt.value = "a fox\na wolf"
    panel.add_image(png_bytes(), name="ref.png")
    with pytest.raises(qw.ImageUploadError, match="ref.png"):
        panel.run_sweep()
    assert simulator.count("POST", "/v1/images") == 0 and panel.gallery.children == ()


def test_a_file_that_is_no_image_is_refused_next_to_add_image(panel):
    choose_files(panel, ("notes.txt", b"just some text"), ("empty.png", b""))
    message = plain_text(panel.references.photo_note.value)
    assert message == "empty.png was not added: it is empty."  # the last one said
    choose_files(panel, ("notes.txt", b"just some text"))
    assert plain_text(panel.references.photo_note.value) == ("notes.txt was not added: it is not a JPEG, PNG, "
                                                 "GIF or WebP image.")
    assert panel.references.photo_note.value.count(ERROR_COLOR) == 1
    assert panel.references.photos == [] and uploads(panel) == 0
    panel.add_image(png_bytes(), name="ok.png")
    assert panel.references.photo_note.value == ""  # the next good one clears it


def test_a_failed_upload_is_said_under_the_image_and_generate_tries_again(panel):
    simulator = panel.client.simulator
    simulator.inject(SimResponse(400, {"Content-Type": "application/json"},
                                 b'{"error": {"message": "storage is full"}}'),
                     method="POST", path_prefix="/v1/uploads")
    panel.form.prompt.value = "a fox"
    photo = panel.add_image(png_bytes(), name="fox.png")
    with pytest.raises(qw.ImageUploadError):
        photo.future.result(10)
    wait_until(lambda: "could not be uploaded" in panel.form.hint.value)
    assert "fox.png could not be uploaded" in plain_text(photo.note.value)
    assert "storage is full" in plain_text(photo.note.value) and ERROR_COLOR in photo.note.value
    task = panel.generate().future.result(30)  # uploads again, then generates
    assert task.status is qw.TaskStatus.COMPLETED and task.request.image_urls == (photo.url,)
    assert uploads(panel) == 2 and "uploaded" in plain_text(photo.note.value)


def test_an_image_can_be_removed(panel):
    panel.form.prompt.value = "a fox"
    panel.references.image_urls.value = "https://example.com/a.png"
    photo = panel.add_image(png_bytes(), name="fox.png")
    photo.future.result(10)
    assert panel.request.image_urls == ("https://example.com/a.png", photo.url)
    assert "Remove fox.png" in photo.remove_button.tooltip
    photo.remove_button.click()
    assert panel.references.photos == [] and photo not in panel.references.previews.children
    assert panel.request.image_urls == ("https://example.com/a.png",)


def test_use_as_reference_on_an_expiring_link_uploads_the_kept_copy(tmp_path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", qw.DemoModeWarning)
        simulator = Simulator(seed=5, time_scale=TIME_SCALE, url_lifetime=1200.0)  # links live 20 minutes
        client = qw.QwenClient(simulator=simulator, keep_images=True, **fast_options())
    panel = Panel(client, save_dir=tmp_path / "saved")
    card = finished_card(panel, n=2)
    image = card.task.images[1]
    assert image.local_path is not None and image.local_path.is_file()
    card.open_viewer(1).result(10)
    card.viewer.reference_button.click()
    said = plain_text(card.viewer.feedback.value)
    assert re.match(r"Its link expires in (20|19) min, so the copy kept on this machine is uploaded", said)
    assert "reference image 1 of 1 in the form above" in said
    assert panel.references.image_urls.value == ""  # not the link that is about to die
    (photo,) = panel.references.photos
    assert photo.source == image.local_path
    photo.future.result(10)
    panel.form.prompt.value = "the same fox, at night"
    task = panel.generate().future.result(30)
    assert task.request.image_urls == (photo.url,) and image.url not in task.request.image_urls
    assert simulator.uploads.bytes_of(photo.url) == image.local_path.read_bytes()


def test_use_as_reference_on_a_dead_link_without_a_copy_says_so(panel):
    card = finished_card(panel)
    dead = dataclasses.replace(card.task.images[0],
                               expires_at=datetime.now(timezone.utc) - timedelta(hours=2))
    said = panel.add_reference(dead)
    assert said == ("Its link has expired and no copy of it was kept on this machine, so it cannot "
                    "be a reference any more.")
    assert panel.references.image_urls.value == "" and panel.references.photos == []
    alive = card.task.images[0]  # a link with a day to live is used as it is
    assert panel.add_reference(alive).startswith("Added as reference image 1 of 1")
    assert panel.references.image_urls.value == alive.url


# -- cost, balance and spending limits ---------------------------------------------------------


def shown(panel):
    """Start the account line, as displaying the panel does."""
    return panel.account.start().result(10)


def test_a_finished_card_shows_its_cost(panel):
    card = finished_card(panel, n=2)
    assert card.task.cost == pytest.approx(0.042)
    assert "cost\u00a0$0.042" in card.status.value and "cost\u00a0$0.042" in card.timings
    assert "cost\u00a0$0.042" in card.static_entry().note  # and in the copy saved with the notebook
    sweep = Sweep(panel.client, SweepPlan.of({"prompt": ["a fox", "a wolf"]}))
    grid = SweepGrid(sweep)
    sweep.start().wait(60)
    assert all("cost\u00a0$0.021" in tile.children[1].value for tile in grid.tiles)


def test_the_balance_is_asked_for_once_shown_and_after_each_finished_task(panel, monkeypatch):
    simulator = panel.client.simulator
    assert panel.account.line.value == "" and simulator.count("GET", "/v1/balance") == 0
    monkeypatch.setattr("IPython.display.display", lambda *objs, **kw: None)
    monkeypatch.setattr("IPython.display.update_display", lambda *objs, **kw: None)
    panel._ipython_display_()  # shown in a notebook: from now on the balance is worth asking for
    panel.account.future.result(10)
    assert panel.account.line.value == "Balance $10.00 (simulated)"
    finished_card(panel, n=2)
    wait_until(lambda: panel.account.line.value == "Balance $9.96 ($0.04 used) (simulated)", timeout=30)
    assert simulator.count("GET", "/v1/balance") == 2
    panel.form.prompt.value = "a wolf"
    panel.generate().future.result(30)
    wait_until(lambda: panel.account.line.value == "Balance $9.92 ($0.08 used) (simulated)", timeout=30)
    wait_until(lambda: not panel._mirror._pending)  # the saved copy is sent while display is patched


def test_a_balance_that_cannot_be_read_is_said_quietly(panel):
    panel.client.simulator.inject(SimResponse(503, {}, b"{}"), method="GET", path_prefix="/v1/balance",
                                  count=100)
    shown(panel)
    assert plain_text(panel.account.line.value).startswith("Balance not available:")
    assert panel.account.line.style.text_color == MUTED_COLOR  # information, not an error


def test_the_plan_line_states_the_cost_and_where_the_price_came_from(panel):
    panel.form.prompt.value = "a fox"
    panel.form.n.value = 4
    assert panel.form.cost_line.value == ""  # not shown yet: no price asked for
    assert panel.client.simulator.count("GET", "/api/") == 0
    shown(panel)
    wait_until(lambda: panel.form.cost_line.value != "")
    assert plain_text(panel.form.cost_line.value) == (
        "about $0.08 at $0.021 per image (APIMart's pricing endpoint, simulated)")
    panel.form.model.value = "qwen-image-2.0-pro"
    wait_until(lambda: "$0.053" in panel.form.cost_line.value)
    assert plain_text(panel.form.cost_line.value).startswith("about $0.21 at $0.053 per image")
    panel.form.compare.value = True
    panel.form.models.value = qw.MODELS
    panel.form.n.value = 2
    assert plain_text(panel.form.cost_line.value) == (
        "about $0.15 at $0.021 per qwen-image-2.0 image, $0.053 per qwen-image-2.0-pro image "
        "(APIMart's pricing endpoint, simulated)")
    assert panel.client.simulator.count("GET", "/api/") == 2  # once per model


def test_the_users_price_needs_no_request_and_an_unknown_price_is_said():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", qw.DemoModeWarning)
        simulator = Simulator(seed=5, time_scale=TIME_SCALE)
        mine = Panel(qw.QwenClient(simulator=simulator, price_per_image=0.03, **fast_options()))
    mine.form.prompt.value = "a fox"
    mine.form.n.value = 2
    assert plain_text(mine.form.cost_line.value) == "about $0.06 at $0.03 per image (your price, simulated)"
    unknown = Panel(demo_client())
    unknown.client.simulator.inject(SimResponse(404, {}, b"{}"), method="GET", path_prefix="/api/")
    unknown.form.prompt.value = "a fox"
    shown(unknown)
    wait_until(lambda: unknown.form.cost_line.value == "price unknown")
    assert simulator.count("GET", "/api/") == 0


def limited_panel(journal=None, **limits) -> Panel:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", qw.DemoModeWarning)
        simulator = Simulator(seed=5, time_scale=TIME_SCALE)
        return Panel(qw.QwenClient(simulator=simulator, journal=journal, **limits, **fast_options()))


def test_limits_are_counted_next_to_generate_which_stops_with_the_reason():
    panel = limited_panel(max_images_per_day=3)
    assert panel.account.line.value == "0 of 3 images today"  # from the start, no display needed
    panel.request = qw.ImageRequest("a fox", n=2)
    panel.generate().future.result(30)
    wait_until(lambda: panel.account.line.value == "2 of 3 images today", timeout=30)
    wait_until(lambda: panel.form.generate_button.disabled)  # 2 + 2 would pass 3
    reason = plain_text(panel.form.errors["generate"].value)
    assert reason.startswith("Daily limit: 2 of 3 images made in the last 24 hours; this needs 2. "
                             "Ask for at most 1 image, or wait: room frees up in 24 h (")
    assert reason.endswith(" UTC).") and panel.form.errors["generate"].style.text_color == ERROR_COLOR
    assert panel.form.generate_button.tooltip == reason and panel.form.hint.value == ""
    panel.form.n.value = 1
    assert not panel.form.generate_button.disabled and panel.form.errors["generate"].value == ""
    panel.form.generate_button.click()
    panel.gallery.cards[0].future.result(30)
    wait_until(lambda: panel.account.line.value == "3 of 3 images today", timeout=30)
    wait_until(lambda: panel.form.generate_button.disabled)
    assert "Daily limit: 3 of 3 images" in panel.form.errors["generate"].value and "Wait: room" in \
        panel.form.errors["generate"].value
    assert panel.client.simulator.count("POST") == 2


def test_a_spend_limit_is_counted_in_money():
    panel = limited_panel(max_spend_per_day=0.05, price_per_image=0.021)
    assert panel.account.line.value == "$0.00 of $0.05 spent today"
    panel.request = qw.ImageRequest("a fox", n=2)
    panel.generate().future.result(30)
    wait_until(lambda: panel.account.line.value == "$0.042 of $0.05 spent today", timeout=30)
    wait_until(lambda: panel.form.generate_button.disabled)
    assert plain_text(panel.form.errors["generate"].value).startswith(
        "Daily spending limit: $0.042 of $0.05 spent in the last 24 hours; this needs about $0.042.")


def test_a_limit_reached_from_another_kernel_is_said_next_to_generate(tmp_path):
    journal = Journal(tmp_path / "shared.sqlite")  # the home folder two kernels share
    panel = limited_panel(journal, max_images_per_day=2)
    other = qw.QwenClient(simulator=panel.client.simulator, journal=journal, max_images_per_day=2,
                          **fast_options())
    other.generate("the other kernel's fox", n=2)
    panel.form.prompt.value = "a fox"
    assert not panel.form.generate_button.disabled  # this panel has not looked again yet
    posts = panel.client.simulator.count("POST")
    panel.form.generate_button.click()
    assert panel.gallery.cards == [] and panel.client.simulator.count("POST") == posts  # nothing sent
    assert plain_text(panel.form.errors["generate"].value).startswith(
        "Daily limit: 2 of 2 images made in the last 24 hours; this needs 1. Wait: room frees up")
    wait_until(lambda: panel.form.generate_button.disabled and panel.account.line.value == "2 of 2 images today")
    with pytest.raises(qw.SpendingLimitError):
        panel.generate()


def test_every_dollar_is_shown_as_typed(panel):
    shown(panel)
    panel.form.prompt.value = "a fox"
    card = finished_card(panel, n=2)
    wait_until(lambda: "used" in panel.account.line.value and panel.form.cost_line.value, timeout=30)
    money_texts = [panel.form.cost_line, panel.account.line, card.status]
    assert all("$" in widget.value and isinstance(widget, widgets.HTML)
               and not isinstance(widget, widgets.HTMLMath) for widget in money_texts)
    assert not any(isinstance(w, widgets.Label) and "$" in w.value for w in walk(panel))


# -- Resume: what earlier sessions left open -----------------------------------------------------


def lose_one_submission(server) -> qw.SubmitOutcomeUnknownError:
    """A submission whose answer is lost after the server made its task (reset mid-answer),
    with no attempt left to send it again: journaled `unknown`, with its idempotency key."""
    server.simulator.inject(SimResponse(action="drop"), method="POST", path_prefix="/v1/images", process=True)
    first = qw.QwenClient(TEST_KEY, base_url=server.url, **fast_options(retry=qw.RetryPolicy(max_attempts=1)))
    with pytest.raises(qw.SubmitOutcomeUnknownError) as lost:
        first.submit(qw.ImageRequest("a fox whose answer was lost"))
    first.close()
    assert len(server.simulator.tasks) == 1  # the server made it; the client never heard
    return lost.value


def test_a_new_panel_offers_a_lost_submission_and_its_resume_resends_it_with_its_key(server):
    lost = lose_one_submission(server)
    later = qw.QwenClient(TEST_KEY, base_url=server.url, **fast_options())  # after a restart
    panel = Panel(later)
    assert panel.resume_box.layout.display is None
    assert "1 submission(s) whose answer was lost" in panel.resume_note.value
    card, = panel.resume()
    task = card.future.result(30)
    assert task.status is qw.TaskStatus.COMPLETED and card.task.task_id == task.task_id
    assert len(server.simulator.tasks) == 1  # the server replayed its task: not a second one
    keys = [entry["idempotency_key"] for entry in server.simulator.log if entry["method"] == "POST"]
    assert keys == [lost.idempotency_key] * 2
    assert later.open_work().waiting == 0 and panel.resume_box.layout.display == "none"


def test_the_panel_resume_and_qw_resume_see_the_same_open_work(server, monkeypatch):
    lose_one_submission(server)
    pending = qw.QwenClient(TEST_KEY, base_url=server.url, **fast_options())
    server.simulator.duration = 1000  # a task still running when its kernel "restarts"
    unfinished = pending.submit(qw.ImageRequest("a fox still running"))
    monkeypatch.setenv("APIMART_API_KEY", TEST_KEY)
    monkeypatch.setenv("APIMART_BASE_URL", server.url)
    from qwen_widgets._magics import unfinished_notice

    work = pending.open_work()
    assert [e.task.task_id for e in work.unfinished] == [unfinished.task_id] and len(work.lost) == 1
    assert unfinished_notice().startswith("qwen_widgets: 2 unfinished task(s) or lost submission(s)")
    panel = Panel(qw.QwenClient(TEST_KEY, base_url=server.url, **fast_options()))
    assert "1 submission(s) whose answer was lost" in panel.resume_note.value
    assert "1 unfinished task(s)" in panel.resume_note.value


# -- the models the service offers, with their rules ----------------------------------------------------

from qwen_widgets.simulator import DEFAULT_MODELS, SimModel  # noqa: E402

WIDE = {("21:9", "1K"): (1344, 576), ("21:9", "2K"): (2688, 1152), ("1:1", "1K"): (1024, 1024)}
NEW_MODELS = {**DEFAULT_MODELS,
              "qwen-image-3.0": SimModel(0.04, output_sizes=WIDE, default_size="21:9", max_images=4,
                                         max_prompt_chars=2000, max_negative_prompt_chars=300),
              "flux-kontext": SimModel(0.03)}


def panel_offering(tmp_path, **simulator_options) -> Panel:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", qw.DemoModeWarning)
        simulator = Simulator(seed=5, time_scale=TIME_SCALE, models=NEW_MODELS, **simulator_options)
        return Panel(qw.QwenClient(simulator=simulator, **fast_options()), save_dir=tmp_path / "saved")


def show(panel, monkeypatch):
    """Display the panel as a notebook does, and wait for what it asks in the background."""
    monkeypatch.setattr("IPython.display.display", lambda *objs, **kw: None)
    monkeypatch.setattr("IPython.display.update_display", lambda *objs, **kw: None)
    panel._ipython_display_()
    panel.form.models_future.result(10)
    panel.account.future.result(10)


def test_once_shown_the_panel_offers_the_services_models_with_their_sizes_and_limits(tmp_path, monkeypatch):
    panel = panel_offering(tmp_path)
    form, simulator = panel.form, panel.client.simulator
    assert form.model.options == qw.MODELS and simulator.count("GET", "/v1/model") == 0  # not shown: not asked
    show(panel, monkeypatch)
    offered = ("qwen-image-2.0", "qwen-image-2.0-pro", "qwen-image-3.0")  # the Qwen-Image family only
    assert form.model.options == offered and form.models.options == offered
    assert "21:9" in form.sizes.options and form.size.options == qw.SIZES
    form.model.value = "qwen-image-3.0"
    assert (form.size.options, form.resolution.options, form.n.max) == (("21:9", "1:1"), ("1K", "2K"), 4)
    form.size.value = "21:9"
    form.prompt.value = "a wide fox " * 150
    assert (form.prompt_count.value, form.negative_count.value) == ("1650 / 2000", "0 / 300")
    assert form.errors["prompt"].value == "" and not form.generate_button.disabled
    assert form.output_size.value == "21:9 1K -> 1344x576, 1 image"
    form.n.value = 4
    task = panel.generate().future.result(30)
    assert task.status is qw.TaskStatus.COMPLETED and task.request.model == "qwen-image-3.0" and len(task.images) == 4
    form.model.value = "qwen-image-2.0"  # back to a model without 21:9: its own sizes, 1 to 6 images
    assert (form.size.options, form.size.value, form.n.max) == (qw.SIZES, "1:1", 6)
    assert simulator.count("GET", "/v1/models") == 1


def test_compare_mode_follows_every_ticked_models_rules(tmp_path, monkeypatch):
    panel = panel_offering(tmp_path)
    show(panel, monkeypatch)
    form = panel.form
    form.prompt.value = "a fox"
    form.compare.value = True
    form.models.value = ("qwen-image-2.0", "qwen-image-3.0")
    assert form.n.max == 4  # the smallest range of those ticked
    form.sizes.value = ("21:9",)
    assert "Not every ticked model offers 21:9" in form.hint.value and form.generate_button.disabled
    form.sizes.value = ("1:1",)
    assert form.hint.value == "" and form.generate_button.description == "Compare: 2 tasks"
    tasks = panel.run_sweep().wait(60)
    assert sorted(task.request.model for task in tasks) == ["qwen-image-2.0", "qwen-image-3.0"]
    assert all(task.status is qw.TaskStatus.COMPLETED for task in tasks)


def test_a_service_without_a_list_keeps_the_documented_pair(tmp_path, monkeypatch):
    panel = panel_offering(tmp_path)
    panel.client.simulator.inject(SimResponse(404, {}, b"{}"), path_prefix="/v1/models", count=10)
    show(panel, monkeypatch)
    assert panel.form.model.options == qw.MODELS and panel.form.size.options == qw.SIZES
    assert panel.form.prompt_count.value == "0 / 800"


def test_a_request_of_a_model_not_on_offer_is_loaded_with_its_rules(panel):
    from qwen_widgets.model.request import ModelRules

    rules = ModelRules("qwen-image-3.0", sizes=("21:9",), output_sizes={}, max_images=4, default_size="21:9")
    panel.request = qw.ImageRequest("a fox", model="qwen-image-3.0", n=3, rules=rules)
    assert panel.form.model.options[-1] == "qwen-image-3.0" and panel.form.size.options == ("21:9",)
    assert panel.request.rules == rules and panel.form.output_size.value == "21:9 1K, 3 images"  # pixels unknown


def test_the_account_line_says_the_services_unit_and_the_keys_balance_apart(tmp_path, monkeypatch):
    panel = panel_offering(tmp_path, balance_unit="CNY", starting_balance=50.0, key_quota=5.0)
    show(panel, monkeypatch)
    assert plain_text(panel.account.line.value) == (
        "Balance 5.00 CNY for this key · 50.00 CNY for the account (simulated)")
