"""One view in every frontend that runs here, and the saved copy where no live view shows.

Each panel, card and grid is two outputs: the live widget, and a plain HTML copy saved with
the notebook (widgets/_static). The copy must hide while its live view is on the page, show
when it is not, and keep its dollar amounts away from the math typesetter. What runs here:

- JupyterLab and Notebook 7 in Chromium: a live panel hides its copy; a copy with no live view
  shows with "$0.021 ... $0.021" as typed, while the same words outside the copy are typeset
  (the positive control: the typesetter was there); Download all's link, a relative link in an
  output, becomes a download from the Jupyter server's /files/ route.
- A page with VS Code's notebook-webview structure (every output in one document, inside
  `#container > .cell_container > .output_container > .output`, none of JupyterLab's classes),
  as docs/README describe: the copy hides beside its live view and shows without it.

VS Code itself and Colab do not run here (README, "Known limits").
"""

from __future__ import annotations

import io
import re
import zipfile

import nbformat
import pytest

from qwen_widgets.widgets._static import Entry, page_html

from .test_browser import ARTIFACTS, CHROMIUM_ARGS, _api, _require_chromium, _serve

pytestmark = [pytest.mark.e2e, pytest.mark.browser]

MONEY = "cost $0.021 · at $0.021 per image"
CELLS = [
    """\
import qwen_widgets as qw

panel = qw.Panel(qw.QwenClient(price_per_image=0.021), save_dir="saved")
panel.request = qw.ImageRequest("a fox")
panel.generate().future.result(60)
panel.download_all().result(60)
panel""",
    f"""\
from IPython.display import HTML, display
from qwen_widgets.widgets._static import Entry, page_html

money = {MONEY!r}
display(HTML(page_html("nolive", "Saved with the notebook", [Entry("a fox", money)])))  # no live view
display(HTML(f'<div class="typeset-control">{{money}}</div>'))  # the same words, not marked""",
]
_COPIES_JS = r"""
(root) => Array.from(root.querySelectorAll('.qw-static')).map((copy) => ({
  id: Array.from(copy.classList).find((name) => name.startsWith('qw-static-')),
  visible: copy.offsetParent !== null,
  typeset: copy.querySelectorAll('mjx-container, .MathJax, .katex').length,
  text: copy.textContent,
}))
"""


def _notebook():
    return nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(source) for source in CELLS], metadata={
        "kernelspec": {"name": "python3", "display_name": "Python 3 (ipykernel)", "language": "python"}})


def _run_all(page, expect, app: str) -> None:
    cells = page.locator(".jp-Notebook .jp-CodeCell")
    expect(cells.first).to_be_visible(timeout=60_000)
    if app == "lab/tree":
        status = page.locator('.jp-StatusBar-TextItem[title^="Change kernel"]')
        expect(status).to_have_text(re.compile(r"\| Idle$"), timeout=60_000)
    else:  # Notebook 7 says the kernel is idle in its toolbar
        expect(page.locator(".jp-Notebook-ExecutionIndicator[data-status='idle']").first).to_be_attached(timeout=60_000)
    for index in range(len(CELLS)):
        prompt = cells.nth(index).locator(".jp-InputPrompt")
        for _attempt in range(3):
            # a key pressed while the page is still settling (a busy machine) can be dropped:
            # the cell would show neither queued ([*]) nor run, so it is asked again
            cells.nth(index).locator(".jp-InputArea-editor").click()
            page.keyboard.press("Shift+Enter")
            try:
                expect(prompt).to_have_text(re.compile(r"\[(\d+|\*)\]"), timeout=20_000)
                break
            except AssertionError:
                continue
        expect(prompt).to_have_text(re.compile(r"\[\d+\]"), timeout=90_000)


def _check_page(page, expect, label: str, where: str) -> None:
    panel = page.locator(".jp-OutputArea-output").filter(has=page.locator(".qw-panel"))
    expect(panel.locator(".qw-card")).to_contain_text("completed", timeout=60_000)
    control = page.locator(".typeset-control")
    expect(control.locator("mjx-container")).not_to_have_count(0, timeout=60_000)  # the typesetter ran
    copies = page.locator(".jp-Notebook").evaluate(_COPIES_JS)
    live = [c for c in copies if c["id"] != "qw-static-nolive"]
    alone, = [c for c in copies if c["id"] == "qw-static-nolive"]
    assert live and not any(c["visible"] for c in live), f"{label}: a copy shows beside its live view: {copies}"
    assert alone["visible"] and alone["typeset"] == 0 and MONEY in alone["text"], f"{label}: {alone}"
    # Download all: the relative link became the server's own download of the zip on disk
    link = panel.locator("a[download]")
    expect(link).to_have_count(1)
    href = link.get_attribute("href")
    assert re.search(rf"/files/{where}/saved/qwen_images_\d{{8}}-\d{{6}}\.zip", href), href
    with page.expect_download() as caught:
        link.click()
    download = caught.value
    assert re.fullmatch(r"qwen_images_\d{8}-\d{6}\.zip", download.suggested_filename)
    names = zipfile.ZipFile(io.BytesIO(open(download.path(), "rb").read())).namelist()
    assert "results.csv" in names and any(name.endswith(".png") for name in names), names
    page.screenshot(path=str(ARTIFACTS / f"frontends-{label}.png"))


@pytest.mark.timeout(300)
def test_one_view_money_as_typed_and_download_all_in_jupyterlab_and_notebook_7(lab):
    from playwright.sync_api import expect, sync_playwright

    ARTIFACTS.mkdir(exist_ok=True)
    with _serve(lab, "frontends", {"frontends.ipynb": _notebook()}) as served, \
            sync_playwright() as playwright:
        served.release.touch()  # nothing races the kernel here: the simulator's clock runs freely
        browser = playwright.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS,
                                             headless=True)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1400}, accept_downloads=True)
            page.set_default_timeout(30_000)
            for app, label in (("lab/tree", "jupyterlab"), ("notebooks", "notebook7")):
                page.goto(served.page("frontends.ipynb", app))
                _run_all(page, expect, app)
                _check_page(page, expect, label, served.where)
                for session in _api(served.url, served.token, "/api/sessions"):  # the next app starts afresh
                    _api(served.url, served.token, f"/api/sessions/{session['id']}", method="DELETE")
        finally:
            browser.close()


VS_CODE_PAGE = """<!doctype html><html><head><meta charset="utf-8"></head><body>
<div id="container">
  <div class="cell_container"><div class="output_container">
    {live}
    <div class="output"><div class="output_html">{copy}</div></div>
  </div></div>
  <div class="cell_container"><div class="output_container">
    <div class="output"><div class="output_html">{other}</div></div>
  </div></div>
</div></body></html>"""
LIVE = '<div class="output"><div class="widget-vbox qw-panel qw-live-{id}">the live panel</div></div>'


@pytest.mark.timeout(120)
def test_the_copy_hides_beside_its_live_view_in_a_page_built_like_vs_codes():
    """VS Code's notebook renders every output into one webview document, without
    JupyterLab's classes; a widget view keeps its DOM classes (vscode-jupyter's renderer)."""
    from playwright.sync_api import sync_playwright

    _require_chromium()
    copy = page_html("abc", "Saved with the notebook", [Entry("a fox", MONEY)])
    other = page_html("xyz", "Another panel's copy", [Entry("a wolf", MONEY)])
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS,
                                             headless=True)
        try:
            page = browser.new_page()
            seen = {}
            for case, live in (("live", LIVE.format(id="abc")), ("kernel gone", "")):
                page.set_content(VS_CODE_PAGE.format(live=live, copy=copy, other=other))
                seen[case] = {c["id"]: c["visible"] for c in page.evaluate(_COPIES_JS.replace("(root)", "()")
                                                                             .replace("root.", "document."))}
        finally:
            browser.close()
    assert seen["live"] == {"qw-static-abc": False, "qw-static-xyz": True}  # only its own copy hides
    assert seen["kernel gone"] == {"qw-static-abc": True, "qw-static-xyz": True}
