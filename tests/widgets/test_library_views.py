"""The library in the panel, driven from Python (button.click()): the History tab (search,
filters, pages, star, hide, delete, load, more like this, the chain), a card's star, copy and
delete, recent prompts, templates in Compare mode, receipts dropped on "Add image…", and the
copy saved with the notebook."""

from __future__ import annotations


import ipywidgets as widgets
import pytest

import qwen_widgets as qw
from qwen_widgets.widgets import Panel
from qwen_widgets.widgets._theme import plain_text

from ..conftest import TEST_KEY, demo_client, fast_options, wait_until, walk


@pytest.fixture
def panel(tmp_path):
    return Panel(demo_client(), save_dir=tmp_path / "saved")


def generate(panel, prompt, **fields):
    panel._last_click -= 1.0
    panel.request = qw.ImageRequest(prompt, **fields)
    card = panel.generate()
    card.future.result(30)
    return card


def buttons(box) -> dict[str, widgets.Button]:
    return {b.description: b for b in walk(box) if isinstance(b, widgets.Button) and b.description}


def shown(view) -> list[str]:
    return [item.prompt for item in view.items]


def test_history_tab_searches_filters_and_pages(panel):
    for prompt, fields in (("a lighthouse at dusk", {}), ("a red fox in snow", {"size": "16:9"}),
                           ("an owl, lighthouse behind", {"model": "qwen-image-2.0-pro"})):
        generate(panel, prompt, **fields)
    view = panel.history
    assert panel.tabs.titles == ("Generate", "History")
    panel.show_history().result(10)
    assert panel.tabs.selected_index == 1
    assert shown(view) == ["an owl, lighthouse behind", "a red fox in snow", "a lighthouse at dusk"]
    assert "1–3 of 3 generations, newest first" in plain_text(view.summary.value)
    assert "this session's work" in plain_text(view.note.value)  # demo mode: the journal is in memory
    view.search.value = "LIGHTHOUSE"
    wait_until(lambda: shown(view) == ["an owl, lighthouse behind", "a lighthouse at dusk"])
    assert "searched with full-text index" in plain_text(view.summary.value)
    view.model.value = "qwen-image-2.0-pro"
    wait_until(lambda: shown(view) == ["an owl, lighthouse behind"])
    view.search.value, view.model.value = "", ""
    view.size.value = "16:9"
    wait_until(lambda: shown(view) == ["a red fox in snow"])
    view.size.value = ""
    view.status.value = "failed"
    wait_until(lambda: view.items == [] and "Nothing matches" in view.summary.value)
    view.status.value = ""
    view.since.value = "1h"
    wait_until(lambda: len(view.items) == 3)
    view.page_size = 2
    view.refresh(0).result(10)
    assert len(view.items) == 2 and view.newer_button.disabled and not view.older_button.disabled
    old_items = view.items
    view.older_button.click()
    wait_until(lambda: shown(view) == ["a lighthouse at dusk"])
    assert "page 2 of 2" in plain_text(view.summary.value)
    assert all(item.comm is None for item in old_items)  # a page's widgets leave with it


def test_history_items_show_when_and_thumbnails_and_open_the_large_view(panel):
    card = generate(panel, "a lighthouse at dusk", n=2)
    panel.show_history().result(10)
    item, = panel.history.items
    wait_until(lambda: item.picture.value)
    assert "made " in item.details.value and "UTC" in item.details.value and card.task.task_id in item.details.value
    assert item.caption.value == '2 images<span class="qw-alt" hidden>Image 1 of 2: a lighthouse at dusk</span>'
    item.opener.click()
    viewer = panel.history.viewer
    assert viewer in panel.history.children and "Image 1 of 2" in viewer.caption.value
    viewer.close_button.click()
    assert panel.history.viewer is None


def test_history_star_hide_and_delete_with_a_question(server, tmp_path):
    client = qw.QwenClient(TEST_KEY, base_url=server.url, **fast_options())
    panel = Panel(client, save_dir=tmp_path / "saved")
    keep, drop = generate(panel, "a keeper", n=2), generate(panel, "a mistake")
    panel.show_history().result(10)
    view = panel.history
    mistake, keeper = view.items
    buttons(keeper)["Star"].click()
    wait_until(lambda: "Starred" in buttons(keeper))
    view.starred.value = True
    wait_until(lambda: shown(view) == ["a keeper"])
    view.starred.value = False
    wait_until(lambda: len(view.items) == 2)
    mistake = view.items[0]
    buttons(mistake)["More…"].click()
    buttons(mistake)["Hide"].click()
    wait_until(lambda: shown(view) == ["a keeper"])
    view.hidden.value = True
    wait_until(lambda: shown(view) == ["a mistake"])
    view.hidden.value = False
    wait_until(lambda: shown(view) == ["a keeper"])
    keeper = view.items[0]
    buttons(keeper)["More…"].click()
    buttons(keeper)["Delete…"].click()
    question = next(w for w in walk(keeper) if isinstance(w, widgets.HTML) and "Delete it?" in w.value)
    assert "2 kept image(s)" in plain_text(question.value) and "cannot be undone" in question.value
    assert all(image.local_path.exists() for image in keep.task.images)  # nothing before the answer
    buttons(keeper)["Delete"].click()
    wait_until(lambda: "Deleted ‘a keeper’: 2 kept image(s)" in plain_text(view.summary.value))
    assert not any(image.local_path.exists() for image in keep.task.images) and view.items == []
    assert "KB freed on this machine" in plain_text(view.summary.value)
    assert qw.history(client=client).empty  # the keeper is deleted, the mistake hidden
    assert qw.history(client=client, hidden=True)["task_id"].tolist() == [drop.task.task_id]
    client.close()


def test_history_load_into_the_form_and_more_like_this(panel):
    generate(panel, "a lighthouse at dusk", size="3:2", negative_prompt="blurry")
    panel.form.prompt.value = "my own words"
    panel.show_history().result(10)
    item, = panel.history.items
    buttons(item)["Load into the form"].click()
    assert panel.tabs.selected_index == 0
    assert panel.request == qw.ImageRequest("a lighthouse at dusk", size="3:2", negative_prompt="blurry")
    assert "Loaded the prompt and settings from task_" in panel.loaded_note.value
    panel.undo_button.click()
    assert panel.form.prompt.value == "my own words"
    panel.tabs.selected_index = 1
    posts = panel.client.simulator.count("POST")
    buttons(item)["More like this"].click()
    assert panel.tabs.selected_index == 0 and "Sent again" in item.feedback.value
    card = panel.gallery.cards[0]
    task = card.future.result(30)
    assert task.request == qw.ImageRequest("a lighthouse at dusk", size="3:2", negative_prompt="blurry")
    assert panel.client.simulator.count("POST") == posts + 1


def test_lineage_shows_on_the_card_and_as_a_chain_in_the_history(panel):
    sketch = generate(panel, "a sketch of a lighthouse")
    panel.references.add_reference(sketch.task.images[0])
    refined = generate(panel, "a lighthouse at dusk", image_urls=[sketch.task.images[0].url], size="16:9")
    said = plain_text(refined.origin.value)
    assert said == (f"made from {sketch.task.task_id} image 1 (size 1:1 -> 16:9, prompt - 'a sketch of' + "
                    "'at dusk', references +1)")
    assert refined.origin in refined.children
    panel.show_history().result(10)
    item = panel.history.items[0]
    assert f"made from {sketch.task.task_id} image 1" in plain_text(item.details.value)
    buttons(item)["More…"].click()
    buttons(item)["Chain"].click()
    wait_until(lambda: "Made from:" in item.feedback.value)
    assert f"← {sketch.task.task_id} ‘a sketch of a lighthouse’ (then size 1:1 -> 16:9" in plain_text(item.feedback.value)


def test_a_card_stars_copies_and_deletes_with_a_question(server, tmp_path):
    client = qw.QwenClient(TEST_KEY, base_url=server.url, **fast_options())
    panel = Panel(client, save_dir=tmp_path / "saved")
    card = generate(panel, "a fox to keep, then not")
    buttons(card.actions)["Star"].click()
    wait_until(lambda: "Starred" in buttons(card.actions))
    assert client.find(card.task).starred
    assert panel.form.recent.options[1] == ("★ a fox to keep, then not", "a fox to keep, then not")
    buttons(card.actions)["More…"].click()
    panel.bridge.widget = None  # no browser helper: the text is offered to select and copy
    buttons(card)["Copy settings"].click()
    assert "Select the settings and press Ctrl+C" in card.feedback.value
    assert "model: qwen-image-2.0" in card.feedback.value and "<textarea" in card.feedback.value
    buttons(card)["Delete…"].click()
    assert "Its 1 kept image(s)" in plain_text(card._extras["confirm"].children[0].value)
    buttons(card)["Keep"].click()
    assert "confirm" not in card._extras and card.task.images[0].local_path.exists()
    buttons(card)["Delete…"].click()
    buttons(card)["Delete"].click()
    wait_until(lambda: "Deleted: 1 kept image(s)" in card.feedback.value)
    assert not card.task.images[0].local_path.exists() and card.tiles.children == ()
    assert "deleted" in card.status.value and qw.history(client=client).empty
    client.close()


def test_copy_prompt_through_the_browser_helper(panel):
    pytest.importorskip("anywidget")
    messages = []
    panel.bridge.widget.send = lambda content, buffers=None: messages.append(content)
    card = generate(panel, "a fox to copy")
    buttons(card.actions)["More…"].click()
    buttons(card)["Copy prompt"].click()
    (message,) = messages[-1:]
    assert message["cmd"] == "copy" and message["text"] == "a fox to copy"
    panel.bridge._handle({"event": "copied", "token": message["token"], "ok": True})
    assert "Copied the prompt." in card.feedback.value


def test_recent_prompts_are_one_click_away(panel):
    generate(panel, "the first fox")
    generate(panel, "the second fox")
    options = [label for label, _ in panel.form.recent.options]
    assert options == ["Recent and starred prompts…", "the second fox", "the first fox"]
    panel.form.prompt.value = ""
    panel.form.recent.value = "the first fox"
    assert panel.form.prompt.value == "the first fox" and panel.form.recent.value == ""


def test_compare_mode_expands_a_template_into_labelled_axes(panel):
    panel.form.compare.value = True
    panel.form.prompt.value = "a {animal: fox|owl} in {place: snow|rain}"
    assert panel.form.generate_button.description == "Compare: 4 tasks"
    plan = panel.plan()
    assert plan.axes == [("animal", ["fox", "owl"]), ("place", ["snow", "rain"])]
    assert [cell.request.prompt for cell in plan.cells] == ["a fox in snow", "a fox in rain", "a owl in snow",
                                                            "a owl in rain"]
    panel.form.sizes.value = ("1:1", "16:9")
    assert "Compare can vary at most two things" in plain_text(panel.form.errors["generate"].value)


def test_qw_sweep_takes_slots():
    client = demo_client()
    sweep = qw.sweep(prompt="a {animal} in {place}", animal=["fox", "owl"], place=["snow", "rain"], client=client)
    tasks = sweep.wait()
    assert [task.request.prompt for task in tasks] == ["a fox in snow", "a fox in rain", "a owl in snow",
                                                       "a owl in rain"]
    assert list(sweep.frame()["axis_animal"]) == ["fox", "fox", "owl", "owl"]
    with pytest.raises(qw.RequestValidationError, match="slot {place} has no values"):
        qw.sweep(prompt="a {animal} in {place}", animal=["fox"], client=client)
    with pytest.raises(qw.RequestValidationError, match="colour: is not a slot of the prompt"):
        qw.sweep(prompt="a {animal}", animal=["fox"], colour=["red"], client=client)


def test_an_image_with_a_receipt_dropped_on_add_image_offers_rerun(panel, tmp_path):
    card = generate(panel, "a lighthouse to run again", size="16:9")
    saved, = qw.save(card.task, tmp_path / "mine", client=panel.client)
    from .test_panel import choose_files

    choose_files(panel, ("lighthouse.png", saved.read_bytes()))
    (photo,) = panel.references.photos
    words = plain_text(panel.receipt_box.children[0].value)
    assert f"carries the receipt of {card.task.task_id}" in words and "a reference image now" in words
    assert [b.description for b in panel.receipt_box.children[1:]] == [
        "Re-run its request", "Load its settings", "Keep as reference"]
    panel._last_click -= 1.0
    panel.receipt_box.children[1].click()
    assert panel.references.photos == [] and panel.receipt_box.children == ()
    again = panel.gallery.cards[0].future.result(30)
    assert again.request == card.task.request and again.task_id != card.task.task_id


def test_the_saved_copy_lists_newest_first_with_comparisons_and_one_notice(panel, published):
    panel._ipython_display_()
    (live,) = published[0][0]
    assert live["text/plain"] == ""  # an export shows the copy's heading only
    generate(panel, "the older fox")
    panel.form.compare.value = True
    panel.form.prompt.value = "a compared fox\na compared owl"
    panel._last_click -= 1.0
    panel.run_sweep().wait(60)
    panel.form.compare.value = False
    generate(panel, "the newest fox")
    wait_until(lambda: [obj for (obj,), kw in published if kw.get("update")]
               and [obj for (obj,), kw in published if kw.get("update")][-1]["text/html"].count("data:image") >= 4,
               timeout=30)
    page = [obj for (obj,), kw in published if kw.get("update")][-1]["text/html"]
    assert page.index("the newest fox") < page.index("a compared owl") < page.index("the older fox")
    assert "4 generations, newest first (run the cell for the live panel)" in page
    assert "needs a running kernel" not in page and "above" not in page
    assert ":not(:has(.qw-live-" in page and "max-height: none" in page  # one notice; never folded
