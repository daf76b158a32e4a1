"""Hostile text, URLs and task ids: intact in the data, inert in every view, refused where due.

"Intact" means the text round-trips unchanged through the data (the request, the task,
the DataFrames). "Inert" means it never becomes live markup: in HTML widgets it appears
escaped, and the only tags are the package's own (no script, no event handler, no link or
image to anything but http(s)). Lengths are counted in code points, as Python counts them.
"""

from __future__ import annotations

import html
import json
from html.parser import HTMLParser

import ipywidgets as widgets
import pytest

import qwen_widgets as qw
from qwen_widgets.model.request import MAX_PROMPT_CHARS
from qwen_widgets.model.urls import is_http_url
from qwen_widgets.engine.sweep import Sweep
from qwen_widgets.model.plan import SweepPlan
from qwen_widgets.simulator import SimResponse
from qwen_widgets.widgets._theme import STYLESHEET
from qwen_widgets.widgets import Card, Panel
from qwen_widgets.widgets._format import safe_link
from qwen_widgets.widgets.grid import SweepGrid

from ..conftest import TEST_KEY, fast_options, demo_client, walk

FOX = "\N{FOX FACE}"  # one code point
FAMILY = "\N{MAN}\u200d\N{WOMAN}\u200d\N{GIRL}\u200d\N{BOY}"  # one glyph, 7 code points (4 + 3 ZWJ)

PROMPTS = {
    "html-img": "a fox <img src=x onerror=alert(1)> in snow",
    "script": "<script>alert(document.cookie)</script> a fox",
    "attribute-breakout": "\"><svg/onload=alert(1)> & &amp; 'single' \"double\"",
    "javascript-text": "javascript:alert(1)// a fox",
    "rtl-override": "a fox \u202egnp.exe and more",
    "zero-width": "a\u200bfox\u200d with\u200b\u200d joiners\u200b",
    "emoji-800": FOX * 800,
    "family-emoji": FAMILY * 114,  # 798 code points
    "newlines": "line one\nline two <b>bold?</b>\r\n\n  line four  ",
}
URLS = {
    "javascript": "javascript:alert(1)",
    "javascript-mixed-case": "JaVaScRiPt:alert(document.domain)",
    "javascript-leading-space": "  javascript:alert(1)",
    "javascript-with-tab": "java\tscript:alert(1)",  # browsers drop the tab and run it
    "vbscript": "vbscript:msgbox(1)",
    "data-png": "data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk",
    "data-html": "data:text/html,<script>alert(1)</script>",
    "file": "file:///etc/passwd",
    "credentials": "https://user:s3cret@example.com/a.png",
    "username-only": "https://user@example.com/a.png",
    "very-long": "https://example.com/" + "a" * 3000,
}
SAFE_TAGS = {"div", "b", "bdi", "code", "span", "a", "br", "table", "thead", "tbody", "tr", "th", "td",
             "textarea"}  # a read-only box holding text to copy
BIDI_PUSH = {"\u202a", "\u202b", "\u202d", "\u202e"}  # LRE RLE LRO RLO, closed by PDF
ISOLATE_PUSH = {"\u2066", "\u2067", "\u2068"}  # LRI RLI FSI, closed by PDI


# -- helpers -------------------------------------------------------------------------------------






class _Markup(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.text: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))

    handle_startendtag = handle_starttag

    def handle_data(self, data):
        self.text.append(data)


def inert_text(markup: str) -> str:
    """The text an HTML fragment shows, after checking it holds no live markup of its own."""
    parser = _Markup()
    parser.feed(markup)
    parser.close()
    for tag, attrs in parser.tags:
        assert tag in SAFE_TAGS, f"<{tag}> in {markup[:200]!r}"
        for name, value in attrs.items():
            assert not name.startswith("on"), f"{name}= in {markup[:200]!r}"
            if name in ("href", "src", "action", "formaction"):
                assert value and is_http_url(value), f"{name}={value!r}"
    return "".join(parser.text)


def check_widgets_inert(root) -> list[str]:
    """Every widget below `root` is inert; returns the text of its HTML widgets."""
    shown = []
    for widget in walk(root):
        assert not getattr(widget, "description_allow_html", False), widget
        if isinstance(widget, (widgets.HTML, widgets.HTMLMath)) and widget.value != STYLESHEET:
            shown.append(inert_text(widget.value))  # (the views' one stylesheet is fixed text)
    return shown


def shown_by_pandas(prompt: str, markup: str) -> bool:
    """The prompt is in a DataFrame's to_html() text. pandas shows a line break as the two
    characters '\\n', pads leading spaces with &nbsp; and drops trailing ones; only then is
    the comparison word by word."""
    text = inert_text(markup)
    if prompt in text:
        return True
    return any(c in prompt for c in "\r\n") and all(word in text for word in prompt.split())


def overrides_open_at(text: str, position: int) -> int:
    """How many bidi embeddings, overrides or isolates are still open at `position`."""
    stack: list[str] = []
    for char in text[:position]:
        if char in BIDI_PUSH:
            stack.append("E")
        elif char == "\u202c" and stack and stack[-1] == "E":
            stack.pop()
        elif char in ISOLATE_PUSH:
            stack.append("I")
        elif char == "\u2069" and "I" in stack:
            while stack.pop() != "I":
                pass
    return len(stack)


# -- prompts ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("prompt", PROMPTS.values(), ids=PROMPTS.keys())
def test_hostile_prompt_is_intact_in_the_data_and_inert_in_every_view(prompt, tmp_path):
    negative = prompt[:500]
    panel = Panel(demo_client(), save_dir=tmp_path)
    panel.request = qw.ImageRequest(prompt, negative_prompt=negative)
    assert panel.form.prompt.value == prompt and panel.request.prompt == prompt  # the form round-trips
    assert panel.form.prompt_count.value == f"{len(prompt)} / {MAX_PROMPT_CHARS}"
    assert not panel.form.generate_button.disabled
    card = panel.generate()
    task = card.future.result(30)
    assert task.status is qw.TaskStatus.COMPLETED
    assert task.request.prompt == prompt and task.request.negative_prompt == negative

    # the card: the title shows exactly the prompt, escaped; the params Label, the negative prompt
    assert html.escape(prompt) in card.title.value
    assert inert_text(card.title.value) == prompt
    # the negative prompt sits in a bidi isolate (FSI ... PDI), intact inside it
    assert f"avoid: \u2068{negative}\u2069" in inert_text(card.params.value)
    shown = check_widgets_inert(panel)
    assert prompt in shown  # the card's title, inside the panel's gallery
    # the history tab and a box to copy the prompt from: the same text, as inert
    panel.show_history().result(30)
    panel.bridge.widget = None
    card.toggle_more()
    card.copy_prompt()
    card.copy_settings()
    shown = check_widgets_inert(panel)
    assert prompt in shown and any(prompt in text for text in shown if "press Ctrl+C" in text)
    assert shown.count(prompt) >= 2  # the card and the history item

    # the frames: escaped by to_html, intact in the data
    frame = panel.frame()
    assert frame["prompt"][0] == prompt and frame["negative_prompt"][0] == negative
    assert shown_by_pandas(prompt, frame.to_html())
    history = qw.history(panel.client.aio.journal)
    assert history["prompt"].tolist() == [prompt]
    assert shown_by_pandas(prompt, history.to_html())

    # a sweep over it: grid labels are plain Labels; the tooltip keeps the whole prompt
    sweep = Sweep(panel.client, SweepPlan.of({"prompt": [prompt, "a plain wolf"], "size": ["1:1", "16:9"]}))
    grid = SweepGrid(sweep)
    sweep.start().wait(60)
    assert [t.request.prompt for t in sweep.tasks][:2] == [prompt, prompt]
    row_label = grid.grid.children[3]
    assert isinstance(row_label, widgets.HTML) and row_label.tooltip == prompt
    # the whole prompt (escaped HTML, wrapping), isolated so it cannot reorder its neighbours
    assert inert_text(row_label.value) == f"\u2068{prompt}\u2069"
    check_widgets_inert(grid)
    sweep_frame = sweep.frame()
    assert sweep_frame["axis_prompt"].tolist()[0] == prompt == sweep_frame["prompt"].tolist()[0]
    assert shown_by_pandas(prompt, sweep_frame.to_html())


def test_lengths_are_counted_in_code_points():
    """The 800-character limit counts code points (Python's len): one fox emoji is one; a
    family emoji is one glyph but 7 code points (4 people joined by 3 U+200D)."""
    assert len(FOX * 800) == 800 and len((FOX * 800).encode("utf-16-le")) // 2 == 1600
    assert qw.ImageRequest(FOX * 800).prompt == FOX * 800
    with pytest.raises(qw.RequestValidationError, match="this one has 801") as caught:
        qw.ImageRequest(FOX * 801)
    assert caught.value.field == "prompt"
    assert len(FAMILY) == 7 and len(FAMILY * 114) == 798
    assert qw.ImageRequest(FAMILY * 114).prompt == FAMILY * 114
    with pytest.raises(qw.RequestValidationError, match="this one has 805"):
        qw.ImageRequest(FAMILY * 115)
    panel = Panel(demo_client())
    panel.form.prompt.value = FAMILY * 115
    assert panel.form.prompt_count.value == "805 / 800" and panel.form.generate_button.disabled
    assert "this one has 805" in panel.form.errors["prompt"].value


@pytest.mark.parametrize("view", ["grid-row-label", "card-params"])
def test_an_rtl_override_cannot_reorder_the_text_that_follows_it(view):
    spoof = "a fox \u202egnp.exe"
    if view == "grid-row-label":
        sweep = Sweep(demo_client(), SweepPlan.of({"prompt": [spoof, "a wolf"], "model": list(qw.MODELS),
                               "size": ["1:1", "16:9"]}))
        text = SweepGrid(sweep).grid.children[3].value
        follows = text.index(qw.MODELS[0], text.index(spoof))
    else:
        request = qw.ImageRequest("a fox", negative_prompt=spoof,
                                  image_urls=("https://example.com/ref.png",))
        text = Card(demo_client(), request=request).params.value
        follows = text.index("reference image")
    while follows and text[follows - 1] in ISOLATE_PUSH:  # the following text's own isolate
        follows -= 1
    assert spoof in text  # intact...
    assert overrides_open_at(text, follows) == 0, repr(text)  # ...and contained


# -- URLs -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("url", URLS.values(), ids=URLS.keys())
def test_hostile_reference_url_is_refused_by_request_validation(url):
    with pytest.raises(qw.RequestValidationError) as caught:
        qw.ImageRequest("a fox", image_urls=[url])
    assert caught.value.field == "image_urls[0]"
    assert "s3cret" not in str(caught.value)  # credentials are never quoted back


def _loopback(url: str, base: str) -> str:
    """The URL with https://example.com replaced by the loopback server (plain http), so
    nothing leaves the machine and whatever is sent shows in the simulator's log."""
    return url.replace("https://", "http://").replace("example.com", base.removeprefix("http://"))


_NOT_REFUSED = {
    "credentials": "BUG: fetch_image only checks the scheme and host: a URL with user:password@ "
                   "is fetched, httpx turns its userinfo into an 'Authorization: Basic' header sent "
                   "to that host, and the ImageFetchError message quotes the password (ImageRequest "
                   "refuses such URLs; server result URLs and direct calls are not checked)",
    "username-only": "BUG: fetch_image sends a request for a URL with user@ (and a Basic "
                     "Authorization header), where ImageRequest refuses it",
    "very-long": "BUG: fetch_image sends a request for a URL over MAX_URL_CHARS (2048), where "
                 "ImageRequest refuses it",
}


@pytest.mark.parametrize("url", [
    pytest.param(url, id=name)
    for name, url in URLS.items()])
@pytest.mark.anyio
async def test_hostile_url_is_refused_by_fetch_image_before_any_request(url, server, make_client):
    url = _loopback(url, server.url)
    async with make_client() as client:
        with pytest.raises(qw.ImageFetchError) as caught:
            await client.fetch_image(url)
    assert "s3cret" not in str(caught.value)
    assert server.simulator.log == []  # refused, not fetched and failed


_LINKED = {
    "credentials": "BUG: safe_link makes a live <a href> of an http(s) URL with user:password@, "
                   "so a click sends the credentials (ImageRequest refuses such URLs)",
    "username-only": "BUG: safe_link makes a live <a href> of an http(s) URL with user@",
    "very-long": "BUG: safe_link makes a live <a href> of a URL over MAX_URL_CHARS (2048)",
}


@pytest.mark.parametrize("url", [
    pytest.param(url, id=name)
    for name, url in URLS.items()])
def test_safe_link_renders_a_hostile_url_inert(url):
    for text in (None, "image URL"):
        markup = safe_link(url, text)
        assert "<a" not in markup and "href" not in markup
        assert inert_text(markup) == (url if text is None else text)


@pytest.mark.parametrize("url", URLS.values(), ids=URLS.keys())
def test_hostile_reference_url_in_the_panel_is_refused_without_a_preview(url):
    panel = Panel(demo_client())
    panel.form.prompt.value = "a fox"
    panel.references.image_urls.value = url
    assert panel.form.errors["image_urls"].value.startswith("line 1: ")
    assert "s3cret" not in panel.form.errors["image_urls"].value
    assert panel.references.previews.children == () and panel.form.generate_button.disabled
    with pytest.raises(qw.RequestValidationError):
        panel.generate()
    check_widgets_inert(panel)
    assert panel.client.simulator.log == [] and panel.gallery.cards == []


BAD_RESULT_URLS = ["javascript:alert(1)", "JAVASCRIPT:alert(document.cookie)", "file:///etc/passwd",
                   "data:text/html,<script>alert(1)</script>"]


def completed_with(urls: list[str]) -> SimResponse:
    body = {"code": 200, "data": {"status": "completed", "progress": 100, "actual_time": 1.0,
                                  "result": {"images": [{"url": url} for url in urls]}}}
    return SimResponse(200, {"Content-Type": "application/json"}, json.dumps(body).encode())


def test_server_result_urls_that_are_not_http_never_become_links_or_fetches(tmp_path):
    panel = Panel(demo_client(), save_dir=tmp_path)
    simulator = panel.client.simulator
    simulator.inject(completed_with(BAD_RESULT_URLS), method="GET", path_prefix="/v1/tasks/")
    panel.request = qw.ImageRequest("a fox", n=len(BAD_RESULT_URLS))  # no more images than asked for
    card = panel.generate()
    task = card.future.result(30)
    assert task.status is qw.TaskStatus.COMPLETED and task.urls == BAD_RESULT_URLS  # intact data
    assert len(card.tiles.children) == len(BAD_RESULT_URLS)
    for index, tile in enumerate(card.tiles.children):
        picture, caption = tile.children[:2]
        assert picture.value == b""
        assert inert_text(caption.value).startswith("Image not loaded") and "http(s)" in caption.value
        assert "color: var(--jp-error-color1" in caption.value  # a per-image error, in red
        card.open_viewer(index).result(10)  # the large view names the URL, inert
        link = card.viewer.caption.value
        assert "<a" not in link and "href" not in link and "image URL" in inert_text(link)
    check_widgets_inert(panel)
    assert card.full_images == {}
    assert [e for e in simulator.log if not e["path"].startswith("/v1/")] == []  # nothing fetched
    card.open_viewer(0).result(10)
    card.viewer.reference_button.click()  # the URL goes into the form, where it is refused
    assert panel.form.errors["image_urls"].value.startswith("line 1: ") and panel.references.previews.children == ()
    frame_html = panel.frame().to_html()
    assert "<a" not in frame_html and "javascript:alert(1)" in inert_text(frame_html)


def test_a_live_client_neither_keeps_nor_fetches_non_http_result_urls(server, make_client, caplog):
    import asyncio

    server.simulator.inject(completed_with(BAD_RESULT_URLS), method="GET", path_prefix="/v1/tasks/")

    async def run():
        async with make_client(keep_images=True) as client:
            task = await client.generate("a fox", n=len(BAD_RESULT_URLS))
            for image in task.images:
                with pytest.raises(qw.ImageFetchError):
                    await client.fetch_image(image)
            return task

    task = asyncio.run(run())
    assert task.urls == BAD_RESULT_URLS and all(i.local_path is None for i in task.images)
    assert [e["path"] for e in server.simulator.log if not e["path"].startswith("/v1/")] == []
    assert all(i.error is not None and "cannot be fetched" in i.error for i in task.images)


# -- task ids ---------------------------------------------------------------------------------------

TASK_IDS = {
    "slash": "a/b",
    "traversal": "../images/generations",
    "dot-dot": "..",
    "query": "task_01?x=1",
    "fragment": "task_01#x",
    "space": "task 01",
    "newline": "task_01\n",
    "unicode": "täsk_01",
    "rtl": "task_\u202e10",
    "zero-width": "task_\u200b01",
    "percent": "%2e%2e%2fx",
    "empty": "",
    "very-long": "t" * 129,
    "not-a-string": 12345,
}


@pytest.mark.parametrize("task_id", TASK_IDS.values(), ids=TASK_IDS.keys())
def test_hostile_task_ids_are_refused_before_they_reach_a_url(task_id, server, make_client):
    import asyncio

    async def attempts():
        async with make_client() as client:
            for call in (client.get_task, client.wait):
                with pytest.raises(qw.RequestValidationError) as caught:
                    await call(task_id)
                assert caught.value.field == "task_id"

    asyncio.run(attempts())
    client = qw.QwenClient(TEST_KEY, base_url=server.url, **fast_options())
    for call in (client.get_task, client.wait):
        with pytest.raises(qw.RequestValidationError):
            call(task_id)
    panel = Panel(client)
    with pytest.raises(qw.RequestValidationError):
        panel.attach(task_id)
    assert panel.gallery.cards == []
    if isinstance(task_id, str):
        card = Card(client)
        assert card.start_attach(task_id).result(10) is None
        assert "Invalid task_id" in card.message.value
    assert server.simulator.log == []


@pytest.mark.parametrize("task_id", ["../images/generations", "a/b", "task_01?x=1"],
                         ids=["traversal", "slash", "query"])
def test_a_task_object_with_a_hostile_id_is_refused_before_it_reaches_a_url(task_id, server):
    client = qw.QwenClient(TEST_KEY, base_url=server.url, **fast_options())
    with pytest.raises(qw.RequestValidationError):
        client.wait(qw.Task(task_id, qw.TaskStatus.SUBMITTED), timeout=1.0)
    assert server.simulator.log == []
