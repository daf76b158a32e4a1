"""A real browser: JupyterLab on loopback, Debian's Chromium driven by Playwright (DESIGN 5.5).

The quick start notebook is opened in JupyterLab, its cells are run up to the `%qwen` panel,
and the panel is used the way a person uses it: type a prompt, set the number of images,
press Generate. While the (simulated, demo-mode) generation runs, another cell is executed to
show that the kernel stays free; then the gallery must show the thumbnails.

Text is only ever matched inside output areas (`.jp-OutputArea-output`): the notebook's own
source contains the same words ("Generate", "the kernel answered at").

`playwright install` is not used: the test drives `/usr/bin/chromium` (`apt-get install -y
chromium`). A screenshot lands in `artifacts/browser-quickstart.png`, the browser console's
errors in `artifacts/browser-console.log`.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import re
import secrets
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e  # slow: a real kernel, browser, venv or killed process (pytest -m 'not e2e' skips them)

REPO = Path(__file__).resolve().parents[2]
NOTEBOOK = REPO / "notebooks" / "quickstart.ipynb"
ARTIFACTS = REPO / "artifacts"
SCREENSHOT = ARTIFACTS / "browser-quickstart.png"
CONSOLE_LOG = ARTIFACTS / "browser-console.log"
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    # without these Chromium keeps calling home, which a closed network answers with refusals
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--no-proxy-server",
]
PROMPT = "A lighthouse on a cliff at dusk, watercolor"
IMAGES = 2  # set through the slider's editable readout
KERNEL_CELL_TEXT = "the kernel answered at"
SERVER_START_TIMEOUT = 60.0
GENERATION_TIMEOUT_MS = 60_000
# Cells of quickstart.ipynb up to and including `%qwen`: markdown, client, markdown,
# %load_ext, %qwen.
CELLS_UP_TO_PANEL = 5

# Lab settings that keep the UI deterministic and offline: every cell stays in the DOM
# (no windowing), and no news or update checks (no toast asking about them either).
LAB_SETTINGS = {
    "@jupyterlab/notebook-extension/tracker.jupyterlab-settings": {"windowingMode": "none"},
    "@jupyterlab/apputils-extension/notification.jupyterlab-settings": {
        "fetchNews": "false", "checkForUpdates": False,
    },
}

# Thumbnails are the <img> of each card tile: the tile is a grid whose next child is the
# caption "#<i> · <w>x<h>". The panel's other Image widgets (the large view, reference
# previews) have no such caption and never count.
_THUMBNAILS_JS = r"""
(root) => {
  const tiles = Array.from(root.querySelectorAll('img')).filter((img) => {
    const box = img.parentElement;
    if (!box) return false;
    return Array.from(box.children).some(
      (el) => el !== img && el.classList.contains('widget-html')
        && /^#\d+ /.test(el.textContent.trim()));
  });
  const loaded = tiles.filter((img) => img.complete && img.naturalWidth > 0);
  return {
    tiles: tiles.length,
    loaded: loaded.length,
    sizes: loaded.map((img) => [img.naturalWidth, img.naturalHeight]),
  };
}
"""
# An IPython startup file for the kernel: the demo simulator's clock stands still until the
# test creates the release file beside its notebook (a kernel starts in its notebook's
# folder), so the generation cannot end before the kernel has answered another cell, however
# slowly a loaded machine runs the browser. Nothing else changes.
RELEASE = "release-demo-clock"
HOLD_DEMO_CLOCK = f"""
import time
from pathlib import Path
from qwen_widgets.simulator import Simulator

_release = Path.cwd() / {RELEASE!r}
_for_demo = Simulator.for_demo


def _held_demo(cls):
    simulator = _for_demo()
    held_at = time.time()
    simulator.clock = lambda: time.time() if _release.exists() else held_at
    return simulator


Simulator.for_demo = classmethod(_held_demo)
"""
_STATUS_RE = re.compile(r"^\S+ · (submitted|pending|processing|completed|failed|cancelled|unknown)\b")
_LABELS_JS = ("(root) => Array.from(root.querySelectorAll('.widget-label, .widget-html'))"
              ".map((el) => el.textContent.trim())")


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _require_chromium() -> None:
    if CHROMIUM.exists():
        return
    message = (f"{CHROMIUM} is missing: the browser test drives Debian's Chromium "
               "(install it with `apt-get install -y chromium`; `playwright install` is not used)")
    if os.environ.get("CI") is None:
        pytest.skip(message)
    pytest.fail(message)


def _server_env(home: Path) -> dict[str, str]:
    """The server's (and so the kernel's) environment: no key, nothing of the developer's."""
    env = dict(os.environ)
    for name in ("APIMART_API_KEY", "APIMART_BASE_URL", "QWEN_WIDGETS_DEMO",
                 "JUPYTER_PATH", "JUPYTER_CONFIG_PATH", "JUPYTER_TOKEN", "JUPYTER_PREFER_ENV_PATH"):
        env.pop(name, None)
    dirs = {
        "JUPYTER_CONFIG_DIR": home / "config",
        "JUPYTER_DATA_DIR": home / "data",
        "JUPYTER_RUNTIME_DIR": home / "runtime",
        "JUPYTERLAB_SETTINGS_DIR": home / "lab-settings",
        "JUPYTERLAB_WORKSPACES_DIR": home / "lab-workspaces",
        "IPYTHONDIR": home / "ipython",
        "QWEN_WIDGETS_HOME": home / "qwen_home",
    }
    for name, path in dirs.items():
        path.mkdir(parents=True, exist_ok=True)
        env[name] = str(path)
    startup = dirs["IPYTHONDIR"] / "profile_default" / "startup"
    startup.mkdir(parents=True)
    (startup / "00-hold-demo-clock.py").write_text(HOLD_DEMO_CLOCK)
    env["JUPYTER_PLATFORM_DIRS"] = "1"
    env["NO_PROXY"] = env["no_proxy"] = "127.0.0.1,localhost"
    _write_settings(dirs["JUPYTERLAB_SETTINGS_DIR"], LAB_SETTINGS)
    return env


def _write_settings(folder: Path, settings: dict) -> None:
    for name, values in settings.items():
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(values))


def _wait_for_server(url: str, token: str, process: subprocess.Popen) -> bool:
    """True once /api/status answers with the token; False if the server exited first."""
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # loopback, no proxy
    request = urllib.request.Request(f"{url}/api/status", headers={"Authorization": f"token {token}"})
    deadline = time.monotonic() + SERVER_START_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            return False
        try:
            with opener.open(request, timeout=2) as response:
                if response.status == 200:
                    json.load(response)
                    return True
        except (urllib.error.URLError, OSError, ValueError):
            pass
        time.sleep(0.25)
    pytest.fail(f"jupyter lab did not answer /api/status within {SERVER_START_TIMEOUT:.0f} s")


def _stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.terminate()  # the server shuts its kernels down on SIGTERM
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


def _tail(path: Path, lines: int = 60) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


@pytest.fixture
def chromium():
    """Debian's Chromium, checked before anything is started."""
    _require_chromium()
    return CHROMIUM


@dataclass
class Lab:
    """A running JupyterLab: where it listens, and its folders."""

    url: str
    token: str
    root: Path
    home: Path
    log: Path


@dataclass
class Served:
    """One test's notebooks in their own folder of the shared JupyterLab."""

    url: str
    token: str
    folder: Path
    """On disk: the notebooks, and the release file of the demo clock."""
    where: str
    """The folder's path in the server's URLs."""

    @property
    def release(self) -> Path:
        """Its creation lets the demo simulator of this folder's kernels run."""
        return self.folder / RELEASE

    def page(self, name: str, app: str = "lab/tree") -> str:
        """The address of notebook `name` in `app` (JupyterLab's `lab/tree` or Notebook 7's
        `notebooks`)."""
        return f"{self.url}/{app}/{self.where}/{name}?token={self.token}"


@contextlib.contextmanager
def _lab(home: Path):
    """JupyterLab on loopback, with no key and nothing of the developer's; yields a Lab."""
    root = home / "root"
    root.mkdir(parents=True)
    env = _server_env(home / "home")  # no key: the kernels run in demo mode
    token = secrets.token_hex(24)
    log = home / "jupyter-lab.log"
    process = None
    try:
        for _attempt in range(3):  # the free port may be taken between probe and bind
            port = _free_port()
            command = [
                sys.executable, "-m", "jupyter", "lab", "--no-browser", "--allow-root",
                "--ip=127.0.0.1", f"--port={port}", "--ServerApp.port_retries=0",
                f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={root}",
                "--LabApp.news_url=None",
                "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
                "--LanguageServerManager.autodetect=False",
            ]
            with log.open("ab") as out:
                process = subprocess.Popen(command, cwd=root, env=env, stdin=subprocess.DEVNULL,
                                           stdout=out, stderr=subprocess.STDOUT)
            url = f"http://127.0.0.1:{port}"
            if _wait_for_server(url, token, process):
                break
        else:
            pytest.fail(f"jupyter lab did not start (exit {process.returncode}):\n{_tail(log)}")
        yield Lab(url, token, root, home / "home", log)
    finally:
        if process is not None:
            _stop(process)
        print(f"\n--- jupyter lab log (tail) ---\n{_tail(log, 25)}")


def _one_cell_notebook(source: str):
    """A notebook of one code cell on the python3 kernel."""
    import nbformat

    return nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(source)], metadata={
        "kernelspec": {"name": "python3", "display_name": "Python 3 (ipykernel)", "language": "python"}})


def _theme_settings(theme: str) -> dict:
    """JupyterLab's settings choosing `theme` ("light" or "dark"), for `_serve`."""
    return {"@jupyterlab/apputils-extension/themes.jupyterlab-settings": {"theme": THEMES[theme]}}


@contextlib.contextmanager
def _serve(lab: Lab, name: str, notebooks: dict[str, object], settings: dict | None = None):
    """`notebooks` (name: source path or nbformat node) in a folder of their own; `settings`
    for this test only. JupyterLab starts fresh for it: no workspace of an earlier test (it
    would reopen that test's notebooks), and no kernel of an earlier test left running."""
    folder = lab.root / name
    folder.mkdir()
    for file_name, source in notebooks.items():
        if isinstance(source, Path):
            shutil.copy(source, folder / file_name)
        else:
            import nbformat

            nbformat.write(source, folder / file_name)
    settings_dir = lab.home / "lab-settings"
    shutil.rmtree(lab.home / "lab-workspaces", ignore_errors=True)
    (lab.home / "lab-workspaces").mkdir()
    _write_settings(settings_dir, settings or {})
    try:
        yield Served(lab.url, lab.token, folder, name)
    finally:
        for path in settings or {}:
            (settings_dir / path).unlink(missing_ok=True)
        try:
            for session in _api(lab.url, lab.token, "/api/sessions"):
                _api(lab.url, lab.token, f"/api/sessions/{session['id']}", method="DELETE")
            for kernel in _api(lab.url, lab.token, "/api/kernels"):
                _api(lab.url, lab.token, f"/api/kernels/{kernel['id']}", method="DELETE")
        except OSError as error:  # the server is gone: the session fixture reports why
            print(f"could not shut this test's kernels down: {error}")


@pytest.fixture
def jupyter_lab(lab, chromium):
    """The shared JupyterLab serving a copy of the quick start."""
    with _serve(lab, "quickstart", {NOTEBOOK.name: NOTEBOOK}) as served:
        yield served


@pytest.mark.browser
@pytest.mark.timeout(300)
def test_quickstart_panel_generates_in_a_real_browser(chromium, jupyter_lab):
    from playwright.sync_api import Error as PlaywrightError
    from playwright.sync_api import expect, sync_playwright

    served = jupyter_lab
    ARTIFACTS.mkdir(exist_ok=True)
    problems: list[str] = []  # console errors and uncaught exceptions: they fail the test
    warnings: list[str] = []
    marks: dict[str, float] = {}
    started = time.monotonic()

    def mark(name: str) -> None:
        marks[name] = round(time.monotonic() - started, 2)

    reopened, in_notebook7 = [False], [False]

    def on_page_error(error) -> None:
        text = f"pageerror: {error}"
        (warnings if in_notebook7[0] and _NOTEBOOK7_OWN.search(str(error)) else problems).append(text)

    def on_console(message) -> None:
        if message.type == "error":
            text = f"console.error: {message.text} ({message.location.get('url', '')})"
            # reopened without the kernel that made them, widget outputs have no model: the
            # widget manager says so, and that is exactly the case the saved copy is for
            (warnings if reopened[0] and _MODEL_GONE.search(message.text) else problems).append(text)
        elif message.type == "warning":
            warnings.append(f"console.warning: {message.text}")

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(chromium), args=CHROMIUM_ARGS,
                                             headless=True)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1400})
            page.set_default_timeout(30_000)
            page.on("console", on_console)
            page.on("pageerror", on_page_error)
            try:
                panel = _drive(page, expect, served, mark)
                if SHORTCUT:
                    _ctrl_enter_generates(page, expect, panel)
                    mark("ctrl+enter generated")
                _view_large(page, expect, panel)
                mark("large view checked")
                page.screenshot(path=str(ARTIFACTS / "browser-light-1400-viewer.png"))
                _save_and_shut_down(page, served, served.folder / NOTEBOOK.name)
                mark("saved, kernel shut down")
                reopened[0] = True
                _reopen(page, expect, served)
                mark("reopened")
                page.screenshot(path=str(ARTIFACTS / "browser-light-1400-reopened.png"))
                in_notebook7[0] = True
                _reopen(page, expect, served, app="notebooks")  # Notebook 7, same saved file
                mark("reopened in Notebook 7")
                page.screenshot(path=str(ARTIFACTS / "browser-light-1400-reopened-notebook7.png"))
                _nbconvert_shows_the_thumbnails(served.folder / NOTEBOOK.name)
                mark("nbconvert checked")
            finally:
                try:
                    page.screenshot(path=str(SCREENSHOT))
                except PlaywrightError as error:  # the screenshot must not hide the real failure
                    print(f"screenshot failed: {error}")
                CONSOLE_LOG.write_text("".join(f"{line}\n" for line in problems + warnings))
                print(f"\ntimings (s since the browser opened): {marks}")
                print(f"browser console: {len(problems)} errors, {len(warnings)} warnings")
                for line in problems + warnings:
                    print("  " + line[:400])
        finally:
            browser.close()
    assert not problems, "errors in the browser console:\n" + "\n".join(problems)


def _drive(page, expect, served: Served, mark):
    page.goto(served.page(NOTEBOOK.name))
    notebook = page.locator(".jp-NotebookPanel:not(.lm-mod-hidden) .jp-Notebook")
    expect(notebook.locator(".jp-Cell").first).to_be_visible(timeout=60_000)
    # The toolbar's execution indicator says "idle" before the kernel exists; the status
    # bar's kernel item goes from "Initializing" to "Idle" once the kernel really answered.
    kernel_status = page.locator('.jp-StatusBar-TextItem[title^="Change kernel"]')
    expect(kernel_status).to_have_text(re.compile(r"\| Idle$"), timeout=60_000)
    expect(page.locator('.jp-Notebook-ExecutionIndicator[data-status="idle"]')).to_have_count(1)
    mark("kernel idle")

    cells = notebook.locator(".jp-Cell")
    outputs = notebook.locator(".jp-OutputArea-output")
    # select the first (markdown) cell in command mode, then run the cells one at a time,
    # each code cell until its prompt shows an execution count
    cells.first.click()
    for index in range(CELLS_UP_TO_PANEL):
        cell = cells.nth(index)
        page.keyboard.press("Shift+Enter")
        if "jp-CodeCell" in (cell.get_attribute("class") or ""):
            expect(cell.locator(".jp-InputPrompt")).to_have_text(re.compile(r"\[\d+\]"),
                                                                 timeout=60_000)
    mark("cells run")

    # (by text, not by role: the accessible name also holds the icon font's glyph)
    generate_button = page.locator("button", has_text=re.compile(r"^\s*Generate\s*$"))
    panel = outputs.filter(has=generate_button)
    generate = panel.locator("button", has_text=re.compile(r"^\s*Generate\s*$"))
    expect(generate).to_be_visible(timeout=60_000)
    expect(panel).to_have_count(1)
    mark("panel shown")
    expect(panel).to_contain_text("Simulated images: no API key set")  # demo mode, no key leaked

    prompt = panel.get_by_role("textbox", name="Prompt")
    prompt.click()
    prompt.fill(PROMPT)
    expect(generate).to_be_enabled()

    # the number of images, through the slider's editable readout (Enter commits it)
    slider = panel.locator(".widget-slider").filter(has_text="Images")
    readout = slider.locator(".widget-readout")
    readout.click()
    page.keyboard.press("ControlOrMeta+A")
    page.keyboard.type(str(IMAGES))
    page.keyboard.press("Enter")
    expect(readout).to_have_text(str(IMAGES))
    # the kernel answered the new value: the output-size line says so
    expect(panel.locator(".widget-label").filter(has_text=re.compile(rf"\b{IMAGES} images$"))) \
        .to_have_count(1)
    expect(generate).to_be_enabled()

    generate.click()
    mark("generate clicked")
    status = panel.locator(".widget-html").filter(has_text=_STATUS_RE)
    expect(status).to_have_count(1, timeout=30_000)
    mark("card status shown")

    # the kernel is free while the generation runs: another cell answers before any image
    kernel_cell = notebook.locator(".jp-CodeCell").filter(
        has=page.locator(".jp-InputArea-editor", has_text=KERNEL_CELL_TEXT))
    expect(kernel_cell).to_have_count(1)
    kernel_cell.locator(".jp-InputArea-editor").click()
    page.keyboard.press("Shift+Enter")
    answer = kernel_cell.locator(".jp-OutputArea-output").filter(has_text=KERNEL_CELL_TEXT)
    expect(answer).to_have_count(1, timeout=30_000)
    mark("kernel answered")
    thumbnails = panel.evaluate(_THUMBNAILS_JS)
    status_text = status.inner_text()
    print(f"\nwhen the kernel answered: status {status_text!r}, thumbnails {thumbnails}")
    assert thumbnails["tiles"] == 0 and thumbnails["loaded"] == 0, (
        f"the kernel only answered after the images arrived ({thumbnails}, status {status_text!r})")
    assert "completed" not in status_text
    served.release.touch()  # now the generation may run and finish

    # then the images: exactly n loaded thumbnails, and the card says completed
    deadline = time.monotonic() + GENERATION_TIMEOUT_MS / 1000
    while True:
        thumbnails = panel.evaluate(_THUMBNAILS_JS)
        status_text = status.inner_text() if status.count() == 1 else "(no status)"
        if thumbnails["loaded"] >= IMAGES and "completed" in status_text:
            break
        if time.monotonic() > deadline:
            labels = panel.evaluate(_LABELS_JS)
            pytest.fail(f"no {IMAGES} thumbnails within {GENERATION_TIMEOUT_MS / 1000:.0f} s: "
                        f"{thumbnails}, status {status_text!r}, labels {labels}")
        page.wait_for_timeout(200)
    mark("thumbnails loaded")
    # what it cost, what the next one will cost (and whose price that is), what is left
    expect(panel.locator(".qw-card").first).to_contain_text(f"cost ${0.021 * IMAGES:.3f}")
    expect(panel).to_contain_text(re.compile(r"Balance \$\d+\.\d\d \(\$0\.04 used\) \(simulated\)"),
                                  timeout=30_000)
    expect(panel).to_contain_text("at $0.021 per image (APIMart's pricing endpoint, simulated)")
    assert thumbnails["tiles"] == IMAGES and thumbnails["loaded"] == IMAGES, thumbnails
    assert all(w > 0 and h > 0 for w, h in thumbnails["sizes"]), thumbnails
    print(f"thumbnails {thumbnails}, status {status_text!r}")
    expect(status).to_contain_text("completed")

    # the screenshot: the gallery's thumbnails and, below them, the kernel's answer
    answer.scroll_into_view_if_needed()
    page.wait_for_timeout(300)  # let the scroll settle
    page.screenshot(path=str(ARTIFACTS / "browser-light-1400-live.png"))
    return panel


SHORTCUT = importlib.util.find_spec("anywidget") is not None
"""Ctrl+Enter in the prompt needs the optional anywidget package (widgets/_keys.py)."""
SAVED_IMAGES = IMAGES + (1 if SHORTCUT else 0)
"""Pictures in the saved copy: the newest card's thumbnails, and the first card (when Ctrl+Enter
made a second) as one contact sheet of its images."""
_MODEL_GONE = re.compile(r"model not found|Could not find model|widget model", re.I)
# Notebook 7.6's own frontend raises these on opening any notebook, with or without this
# package (checked in a bare environment with notebook and ipywidgets alone)
_NOTEBOOK7_OWN = re.compile(r"reading 'schema'|Command 'filebrowser:open-path' not registered")
# The saved copy of a view: hidden while its live view is on the page, shown otherwise.
_STATIC_JS = r"""
(root) => Array.from(root.querySelectorAll('.qw-static')).map((copy) => ({
  visible: copy.offsetParent !== null,
  text: copy.textContent,
  images: Array.from(copy.querySelectorAll('img')).map((img) => ({
    data: img.src.startsWith('data:image/jpeg;base64,'),
    loaded: img.complete && img.naturalWidth > 0,
  })),
}))
"""


# The text a reader sees in the notebook's outputs (hidden elements left out).
_VISIBLE_TEXT_JS = r"""
(root) => Array.from(root.querySelectorAll('.jp-OutputArea-output'))
  .filter((el) => el.offsetParent !== null).map((el) => el.innerText).join('\n')
"""


def _api(url: str, token: str, path: str, method: str = "GET"):
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # loopback, no proxy
    request = urllib.request.Request(f"{url}{path}", method=method,
                                     headers={"Authorization": f"token {token}"})
    with opener.open(request, timeout=30) as response:
        body = response.read()
    return json.loads(body) if body else None


def _ctrl_enter_generates(page, expect, panel) -> None:
    """Ctrl+Enter in the prompt presses Generate, and only that: the cell is not run again."""
    prompt_cell = page.locator(".jp-CodeCell").filter(has=page.locator(".qw-panel"))
    count_before = prompt_cell.locator(".jp-InputPrompt").inner_text()
    prompt = panel.get_by_placeholder("Describe the image…")
    prompt.click()
    page.keyboard.press("End")
    page.keyboard.type(", at night")
    page.keyboard.press("Control+Enter")
    expect(panel.locator(".qw-card")).to_have_count(2, timeout=30_000)
    expect(panel.locator(".qw-card").first).to_contain_text(f"{PROMPT}, at night")
    expect(panel.locator(".qw-card").first).to_contain_text("completed", timeout=60_000)
    assert prompt_cell.locator(".jp-InputPrompt").inner_text() == count_before


def _view_large(page, expect, panel) -> None:
    """The newest result is shown large above its thumbnails; a click on a thumbnail shows it
    there, within the window, numbered; the keyboard moves through it and closes it, focus
    going in and coming back; Download saves the file (its receipt inside) in one click."""
    newest = panel.locator(".qw-card").first
    viewer = newest.locator(".qw-viewer")
    expect(viewer).to_be_visible(timeout=30_000)  # the newest result, large, by itself
    expect(viewer).to_contain_text(f"Image 1 of {IMAGES}")
    newest.get_by_title(f"Image 2 of {IMAGES}: open it large").click()
    expect(viewer).to_contain_text(f"Image 2 of {IMAGES}")
    picture = viewer.locator("img")
    page.wait_for_function("(img) => img.complete && img.naturalWidth > 0", arg=picture.element_handle())
    assert picture.get_attribute("alt", timeout=5_000) or picture.get_attribute("title")
    box = picture.bounding_box()
    window = page.viewport_size
    assert box["height"] <= 0.75 * window["height"] + 2, (box, window)  # sized to the window
    viewer.scroll_into_view_if_needed()
    for name in ("Previous", "Next", "Download", "Save this image", "Use as reference", "Close"):
        expect(viewer.get_by_role("button", name=name, exact=True)).to_be_visible()
    if SHORTCUT:  # the keyboard needs the browser helper (anywidget)
        page.wait_for_function("() => document.activeElement && document.activeElement.closest('.qw-viewer')")
        page.keyboard.press("ArrowRight")
        expect(viewer).to_contain_text(f"Image 1 of {IMAGES}")  # wraps around
        with page.expect_download() as caught:
            viewer.get_by_role("button", name="Download", exact=True).click()  # one click
        download = caught.value
        assert download.suggested_filename.endswith("_0.png")
        data = Path(download.path()).read_bytes()
        assert b"qwen_widgets" in data and PROMPT.encode() in data  # the receipt travels with it
        page.keyboard.press("Escape")
        expect(viewer).to_have_count(0)
        page.wait_for_function("() => (document.activeElement.title || '').startsWith('Image 2 of')")
    else:
        viewer.get_by_role("button", name="Next", exact=True).click()
        expect(viewer).to_contain_text(f"Image 1 of {IMAGES}")  # wraps around
        viewer.get_by_role("button", name="Download", exact=True).click()
        link = viewer.locator("a[download]")
        expect(link).to_have_count(1)
        assert link.get_attribute("href").startswith("data:image/png;base64,")
    page.wait_for_timeout(300)


def _notebook_on_disk(path: Path) -> str:
    """The saved notebook's text, or '' while it is being written (not JSON yet)."""
    try:
        text = path.read_text()
        json.loads(text)
    except (OSError, ValueError):
        return ""
    return text


def _save_and_shut_down(page, served: Served, path: Path) -> None:
    """Close the large view, wait until the saved copy holds the thumbnails, save the
    notebook, and shut its kernel down."""
    close = page.locator(".qw-viewer button", has_text="Close")
    if close.count():
        close.first.click()
    deadline = time.monotonic() + 30
    while True:
        copies = page.locator(".jp-Notebook").evaluate(_STATIC_JS)
        panel_copy = [c for c in copies if "Results saved with the notebook" in c["text"]]
        if panel_copy and sum(i["data"] for i in panel_copy[0]["images"]) == SAVED_IMAGES:
            break
        assert time.monotonic() < deadline, f"the saved copy never got the thumbnails: {copies}"
        page.wait_for_timeout(200)
    assert not any(c["visible"] for c in panel_copy), "the copy shows beside its live view"
    page.locator(".jp-Notebook .jp-MarkdownCell").first.click()
    save = page.locator('.jp-NotebookPanel:not(.lm-mod-hidden) [data-command="docmanager:save"]')
    dirty = page.locator(".lm-TabBar-tab.jp-mod-current.jp-mod-dirty")
    deadline, pressed = time.monotonic() + 90, None
    while True:
        # Save once, and again only if the notebook changed after that save. Never two saves
        # at once, and never the contents API while one writes: Jupyter's "atomic" save
        # writes the file in place after a backup copy, and a read that finds it half written
        # restores the backup over it, breaking the save (the file on disk is read instead)
        if pressed is None or (dirty.count() and time.monotonic() - pressed > 10):
            save.first.click()
            pressed = time.monotonic()
        saved = _notebook_on_disk(path)
        if saved.count("data:image/jpeg;base64,") >= SAVED_IMAGES and PROMPT in saved:
            break
        assert time.monotonic() < deadline, (
            f"the notebook was not saved with the copy: {saved.count('data:image/jpeg;base64,')} "
            f"thumbnails, prompt {'in' if PROMPT in saved else 'missing'}, {len(saved)} bytes")
        page.wait_for_timeout(250)
    for session in _api(served.url, served.token, "/api/sessions"):
        _api(served.url, served.token, f"/api/sessions/{session['id']}", method="DELETE")  # and its kernel
    assert _api(served.url, served.token, "/api/kernels") == []


def _reopen(page, expect, served: Served, app: str = "lab/tree") -> None:
    """The saved notebook, opened again with none of the widget models it refers to, in
    JupyterLab (`lab/tree`) or Notebook 7 (`notebooks`): every finished generation is still
    there, from the saved copy."""
    page.goto(served.page(NOTEBOOK.name, app))
    notebook = page.locator(".jp-NotebookPanel:not(.lm-mod-hidden) .jp-Notebook")
    expect(notebook.locator(".jp-Cell").first).to_be_visible(timeout=60_000)
    copy = notebook.locator(".qw-static").filter(has_text="Results saved with the notebook")
    expect(copy).to_be_visible(timeout=30_000)
    expect(copy).to_contain_text(PROMPT)
    expect(copy).to_contain_text(f"n={IMAGES}")
    page.wait_for_function(
        "(copy) => Array.from(copy.querySelectorAll('img')).filter((img) => img.naturalWidth > 0).length"
        f" >= {SAVED_IMAGES}", arg=copy.element_handle())
    copy.scroll_into_view_if_needed()
    page.wait_for_timeout(300)
    # one notice: the copy's heading; the widget output that cannot be shown is hidden
    shown = notebook.evaluate(_VISIBLE_TEXT_JS)
    assert "Error displaying widget" not in shown and "needs a running kernel" not in shown, shown[:400]
    assert shown.count("Results saved with the notebook") == 1
    # never folded into a scrolled box (Notebook 7 does that to long outputs)
    folded = copy.evaluate("(el) => { for (let n = el; n; n = n.parentElement) {"
                           " const style = getComputedStyle(n);"
                           " if (/(auto|scroll)/.test(style.overflowY) && n.scrollHeight > n.clientHeight + 2"
                           " && !n.classList.contains('jp-WindowedPanel-outer') && n.clientHeight < 600)"
                           " return n.className + ' ' + n.clientHeight; } return ''; }")
    assert not folded, f"the saved copy is folded into a scrolled box: {folded}"


def _nbconvert_shows_the_thumbnails(path: Path) -> None:
    """What nbviewer and GitHub show: the HTML export holds the thumbnails and the prompt."""
    out = path.parent / "export"
    subprocess.run([sys.executable, "-m", "jupyter", "nbconvert", "--to", "html", str(path),
                    "--output-dir", str(out)], check=True, capture_output=True, timeout=120)
    exported = (out / path.with_suffix(".html").name).read_text()
    assert exported.count("data:image/jpeg;base64,") >= SAVED_IMAGES
    assert "Results saved with the notebook" in exported and PROMPT in exported
    assert "needs a running kernel" not in exported and "panel above" not in exported  # one notice
    notebook = json.loads(path.read_text())
    growth = len(json.dumps([c.get("outputs", []) for c in notebook["cells"]]))
    print(f"saved outputs: {growth / 1024:.1f} KiB for {SAVED_IMAGES} images in the panel "
          "(and their copies in the static output)")



# -- themes, widths and the comparison grid ----------------------------------------------------

GRID_CELL = """\
import qwen_widgets as qw
from PIL import Image, ImageDraw

sketch = Image.new("RGB", (160, 120), "#fff8e1")  # a small drawing of our own, as a reference
draw = ImageDraw.Draw(sketch)
draw.rectangle((30, 60, 130, 115), fill="#6d4c41")
draw.polygon([(15, 62), (80, 12), (145, 62)], fill="#c62828")
sketch.save("sketch.png")

# a teacher's limits (and the price they count with); demo mode: no key, simulated images
panel = qw.Panel(qw.QwenClient(max_images_per_day=20, max_spend_per_day=2.0, price_per_image=0.021))
panel.add_image("sketch.png")
panel.request = qw.ImageRequest("A lighthouse on a rocky coast at dusk, dramatic clouds", size="16:9", n=3)
panel.generate()  # waits for the sketch to upload
panel.form.compare.value = True
panel.form.prompt.value = ("A lighthouse on a rocky coast at dusk, dramatic clouds\\n"
                      "An oil painting of a lighthouse on a rocky coast at dusk, dramatic clouds")
panel.form.sizes.value = ("1:1", "16:9", "9:16", "4:3")
panel.form.n.value = 2
panel.run_sweep()
panel.form.negative_prompt.value = "blurry " * 80  # too long: an error to see, and to measure
panel
"""
THEMES = {"light": "JupyterLab Light", "dark": "JupyterLab Dark"}
# Elements that scroll sideways although nobody asked them to (the grid's own box may).
_STRAY_SCROLL_JS = r"""
(root) => Array.from(root.querySelectorAll('*')).filter((el) => {
  if (el.closest('.qw-grid-scroll')) return false;
  const overflow = getComputedStyle(el).overflowX;
  return (overflow === 'auto' || overflow === 'scroll') && el.scrollWidth > el.clientWidth + 1;
}).map((el) => el.className + ' ' + el.scrollWidth + '>' + el.clientWidth)
"""
_GRID_JS = r"""
(root) => {
  const box = root.querySelector('.qw-grid-scroll');
  const images = Array.from(box.querySelectorAll('img')).filter((img) => img.naturalWidth > 0);
  return {scrolls: box.scrollWidth > box.clientWidth + 1, width: box.clientWidth,
          content: box.scrollWidth, images: images.length, text: box.parentElement.textContent};
}
"""
# WCAG contrast of an element's text against the first opaque background behind it.
_CONTRAST_JS = r"""
(el) => {
  const rgb = (text) => text.match(/[\d.]+/g).map(Number);
  const lum = ([r, g, b]) => {
    const f = (c) => { c /= 255; return c <= 0.03928 ? c / 12.92 : ((c + 0.055) / 1.055) ** 2.4; };
    return 0.2126 * f(r) + 0.7152 * f(g) + 0.0722 * f(b);
  };
  const target = el.querySelector('.widget-html-content') || el;
  const color = rgb(getComputedStyle(target).color);
  let node = target, background = null;
  while (node && !background) {
    const value = rgb(getComputedStyle(node).backgroundColor);
    if (value.length < 4 || value[3] > 0.99) background = value.slice(0, 3);
    if (value.length === 4 && value[3] === 0) background = null;
    node = node.parentElement;
  }
  background = background || [255, 255, 255];
  const [a, b] = [lum(color), lum(background)].sort((x, y) => y - x);
  return {ratio: (a + 0.05) / (b + 0.05), color, background};
}
"""


@pytest.mark.browser
@pytest.mark.timeout(300)
@pytest.mark.parametrize("theme", THEMES)
def test_panel_and_compare_grid_in_both_themes_at_1400_and_800_px(chromium, lab, tmp_path, theme):
    from playwright.sync_api import expect, sync_playwright

    notebook, settings = _one_cell_notebook(GRID_CELL), _theme_settings(theme)
    problems: list[str] = []
    ARTIFACTS.mkdir(exist_ok=True)
    with _serve(lab, f"grid-{theme}", {"gallery.ipynb": notebook}, settings) as served, \
            sync_playwright() as playwright:
        served.release.touch()  # nothing here races the kernel: the simulator's clock runs freely
        browser = playwright.chromium.launch(executable_path=str(chromium), args=CHROMIUM_ARGS,
                                             headless=True)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1400})
            page.set_default_timeout(30_000)
            page.on("console", lambda m: m.type == "error" and problems.append(m.text))
            page.on("pageerror", lambda error: problems.append(f"pageerror: {error}"))
            page.goto(served.page("gallery.ipynb"))
            kernel_status = page.locator('.jp-StatusBar-TextItem[title^="Change kernel"]')
            expect(kernel_status).to_have_text(re.compile(r"\| Idle$"), timeout=60_000)
            if theme == "dark":
                expect(page.locator("body[data-jp-theme-light='false']")).to_have_count(1)
            page.locator(".jp-CodeCell .jp-InputArea-editor").first.click()
            page.keyboard.press("Shift+Enter")
            panel = page.locator(".jp-OutputArea-output").filter(has=page.locator(".qw-panel"))
            expect(panel.locator(".qw-grid-scroll")).to_be_visible(timeout=60_000)
            expect(panel).to_contain_text("8/8 done", timeout=60_000)
            deadline = time.monotonic() + 30
            while panel.evaluate(_GRID_JS)["images"] < 8:
                assert time.monotonic() < deadline, panel.evaluate(_GRID_JS)
                page.wait_for_timeout(200)
            _add_image_in_the_browser(page, expect, panel, tmp_path)
            _check_account(expect, panel)
            _check_panel(page, expect, panel, theme, width=1400)
            page.keyboard.press("Escape")
            page.keyboard.press("ControlOrMeta+B")  # a narrow window: the file browser folded away
            page.set_viewport_size({"width": 800, "height": 1400})
            page.wait_for_timeout(500)
            _check_panel(page, expect, panel, theme, width=800)
            _check_limit_reached(page, expect, panel, theme)
        finally:
            browser.close()
    assert not problems, "errors in the browser console:\n" + "\n".join(problems)


def _add_image_in_the_browser(page, expect, panel, tmp_path: Path) -> None:
    """"Add image…" with a file chosen in the browser: its thumbnail (made in the kernel) and
    its upload show under the URL box, beside the image the cell added by path."""
    from PIL import Image

    path = tmp_path / "my photo.png"
    Image.new("RGB", (120, 90), "#1565c0").save(path)
    with page.expect_file_chooser() as chooser:  # ipywidgets keeps its <input> out of the page
        panel.locator(".widget-upload", has_text="Add image").click()
    chooser.value.set_files(str(path))
    photos = panel.locator(".qw-photo")
    expect(photos).to_have_count(2, timeout=30_000)
    expect(photos.last).to_contain_text("my photo.png")
    for photo in (photos.first, photos.last):
        expect(photo).to_contain_text("uploaded", timeout=30_000)
        page.wait_for_function("(el) => { const img = el.querySelector('img'); "
                               "return img && img.complete && img.naturalWidth > 0; }",
                               arg=photo.element_handle())
    expect(panel.locator(".widget-upload")).to_contain_text("Add image")


def _check_account(expect, panel) -> None:
    """The card's cost, the plan's cost, the balance and today's usage, every `$` as typed."""
    card = panel.locator(".qw-card").first
    expect(card).to_contain_text("1 reference image(s)")  # the sketch, uploaded and used
    expect(card).to_contain_text("cost $0.063")
    expect(panel).to_contain_text("Balance $", timeout=30_000)
    expect(panel).to_contain_text(re.compile(r"19 of 20 images today · \$0\.399 of \$2\.00 spent today"),
                                  timeout=30_000)
    assert panel.locator("mjx-container, .MathJax, .katex").count() == 0  # no `$...$` typeset


def _check_limit_reached(page, expect, panel, theme: str) -> None:
    """With the form valid again, the next comparison would pass the day's 20 images: Compare
    is disabled, the reason is next to it (readable in both themes), and the plan's cost is
    said with its price. Screenshots at 800 and 1400 px."""
    panel.get_by_role("textbox", name="Avoid").fill("")
    reason = panel.locator(".widget-html", has_text="Daily limit: 19 of 20 images made in the last 24 hours")
    expect(reason).to_contain_text("this needs 16. Ask for at most 1 image, or wait: room frees up in")
    expect(panel.locator("button", has_text="Compare: 8 tasks")).to_be_disabled()
    expect(panel).to_contain_text("about $0.34 at $0.021 per image (your price, simulated)")
    contrast = reason.last.evaluate(_CONTRAST_JS)
    assert contrast["ratio"] >= 4.5, contrast
    assert panel.locator("mjx-container, .MathJax, .katex").count() == 0
    for width in (800, 1400):
        page.set_viewport_size({"width": width, "height": 1400})
        page.wait_for_timeout(300)
        panel.locator(".qw-photo").first.evaluate("(el) => el.scrollIntoView({block: 'start'})")
        page.wait_for_timeout(300)
        page.screenshot(path=str(ARTIFACTS / f"browser-{theme}-{width}-limit.png"))


def _check_panel(page, expect, panel, theme: str, width: int) -> None:
    """Both axes named, the grid scrolls (only) inside its own box when too wide, no other
    row scrolls sideways, error text reads at 4.5:1 or better; then a screenshot."""
    grid = panel.evaluate(_GRID_JS)
    assert "prompt ↓" in grid["text"] and "Columns: size →" in grid["text"], grid["text"][:300]
    assert "An oil painting of a lighthouse on a rocky coast at dusk, dramatic clouds" in grid["text"]
    assert "held constant: model: qwen-image-2.0 · resolution: 1K · n=2" in grid["text"]
    if width == 1400:  # the columns share the card's width: no empty half of the card
        used = panel.locator(".qw-grid-scroll").evaluate(
            "(box) => { const cells = Array.from(box.querySelectorAll('img')).map((i) => i.getBoundingClientRect());"
            " const frame = box.getBoundingClientRect(); return (Math.max(...cells.map((c) => c.right)) - frame.left)"
            " / frame.width; }")
        assert used > 0.85, f"the grid leaves {100 - 100 * used:.0f}% of its width empty"
    if width == 800 and grid["scrolls"]:  # four columns may not fit: the table scrolls inside its box
        assert "the table scrolls sideways" in grid["text"]
        last = panel.locator(".qw-grid-scroll").evaluate(
            "(box) => { box.scrollLeft = box.scrollWidth; const cell = Array.from(box.querySelectorAll("
            "'.widget-html')).find((el) => el.textContent.includes('4:3')).getBoundingClientRect();"
            " const frame = box.getBoundingClientRect(); return cell.right <= frame.right + 1 && "
            "cell.left >= frame.left - 1; }")
        assert last, "the last column cannot be scrolled into view"
    else:
        assert not grid["scrolls"], f"four columns fit at 1400 px: {grid}"
    stray = panel.evaluate(_STRAY_SCROLL_JS)
    assert not stray, f"stray horizontal scrollbars at {width} px: {stray}"
    error = panel.locator(".widget-html", has_text="The negative prompt is too long").first
    expect(error).to_be_visible()
    contrast = error.evaluate(_CONTRAST_JS)
    print(f"{theme} {width}px: error text contrast {contrast}")
    assert contrast["ratio"] >= 4.5, contrast
    panel.locator(".qw-grid-scroll").scroll_into_view_if_needed()
    page.wait_for_timeout(300)
    page.screenshot(path=str(ARTIFACTS / f"browser-{theme}-{width}-compare.png"))
    panel.locator(".qw-grid-scroll").evaluate("(box) => { box.scrollLeft = 0; }")
    panel.evaluate("(el) => el.scrollIntoView({block: 'start'})")  # the form, from its first line
    page.wait_for_timeout(300)
    page.screenshot(path=str(ARTIFACTS / f"browser-{theme}-{width}-panel.png"))
    card = panel.locator(".qw-card").first
    card.evaluate("(el) => el.scrollIntoView({block: 'center'})")
    page.wait_for_timeout(300)
    page.screenshot(path=str(ARTIFACTS / f"browser-{theme}-{width}-card.png"))


# -- the library: a dozen generations, the history, keyboard and screen readers ------------------

LIBRARY_PROMPTS = [
    "A lighthouse on a cliff at dusk, watercolor", "A red fox in fresh snow", "An owl in the rain, ink",
    "A lighthouse in a storm, oil painting", "A city street at night, neon", "A cat asleep on a windowsill",
    "A mountain lake at dawn", "A lighthouse keeper's cottage, pencil sketch", "A forest path in autumn",
    "A portrait of a robot, studio light", "A river delta seen from above", "A fox and an owl, picture book style",
]
LIBRARY_CELL = f"""\
import qwen_widgets as qw

panel = qw.Panel()  # demo mode: no key, simulated images
for index, prompt in enumerate({LIBRARY_PROMPTS!r}):
    panel.request = qw.ImageRequest(prompt, size=("1:1", "16:9", "3:2")[index % 3], n=3 if index == 11 else 1,
                                    negative_prompt="blurry" if index % 4 == 0 else None)
    panel.generate()
panel
"""
_PRIVATE_USE = re.compile("[\\ue000-\\uf8ff]")
# A role and name for every node of the panel's part of Chromium's accessibility tree.
_NODES_JS = r"""
(root) => Array.from(root.querySelectorAll('button, textarea, input, select, img, [role=slider]'))
  .filter((el) => el.offsetParent !== null || el.getAttribute('role') === 'slider')
  .map((el) => ({tag: el.tagName, role: el.getAttribute('role') || '', label: el.getAttribute('aria-label') || '',
                 title: el.title || '', alt: el.getAttribute('alt'), text: (el.innerText || '').trim(),
                 placeholder: el.getAttribute('placeholder') || ''}))
"""
# WCAG contrast of a text field's placeholder against the field's background.
_PLACEHOLDER_JS = r"""
(field) => {
  const rgb = (text) => text.match(/[\d.]+/g).map(Number);
  const lum = ([r, g, b]) => {
    const f = (c) => { c /= 255; return c <= 0.03928 ? c / 12.92 : ((c + 0.055) / 1.055) ** 2.4; };
    return 0.2126 * f(r) + 0.7152 * f(g) + 0.0722 * f(b);
  };
  const style = getComputedStyle(field, '::placeholder');
  let color = rgb(style.color);
  const opacity = Number(style.opacity || 1);
  let node = field, background = null;
  while (node && !background) {
    const value = rgb(getComputedStyle(node).backgroundColor);
    if (value.length < 4 || value[3] > 0.99) background = value.slice(0, 3);
    node = node.parentElement;
  }
  background = background || [255, 255, 255];
  if (color.length === 4) color = color.slice(0, 3).map((c, i) => c * color[3] + background[i] * (1 - color[3]));
  color = color.slice(0, 3).map((c, i) => c * opacity + background[i] * (1 - opacity));
  const [a, b] = [lum(color), lum(background)].sort((x, y) => y - x);
  return {ratio: (a + 0.05) / (b + 0.05), color, background};
}
"""


@pytest.mark.browser
@pytest.mark.timeout(420)
@pytest.mark.parametrize("theme", THEMES)
def test_the_library_in_a_real_browser(chromium, lab, theme):
    """A dozen generations, then the History tab: search, star, filter, delete one; the
    keyboard in the large view; every control named; placeholders readable; screenshots at
    1400 and 800 px; reopened without the kernel (light theme): newest first, one notice."""
    from playwright.sync_api import expect, sync_playwright

    notebook, settings = _one_cell_notebook(LIBRARY_CELL), _theme_settings(theme)
    problems: list[str] = []
    ARTIFACTS.mkdir(exist_ok=True)
    with _serve(lab, f"library-{theme}", {"library.ipynb": notebook}, settings) as served, \
            sync_playwright() as playwright:
        served.release.touch()
        browser = playwright.chromium.launch(executable_path=str(chromium), args=CHROMIUM_ARGS, headless=True)
        reopened = [False]

        def on_console(message) -> None:
            if message.type == "error" and not (reopened[0] and _MODEL_GONE.search(message.text)):
                problems.append(message.text)

        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1400}, accept_downloads=True)
            page.set_default_timeout(30_000)
            page.on("console", on_console)
            page.on("pageerror", lambda error: None if reopened[0] and _NOTEBOOK7_OWN.search(str(error))
                    else problems.append(f"pageerror: {error}"))
            page.goto(served.page("library.ipynb"))
            expect(page.locator('.jp-StatusBar-TextItem[title^="Change kernel"]')).to_have_text(
                re.compile(r"\| Idle$"), timeout=60_000)
            page.locator(".jp-CodeCell .jp-InputArea-editor").first.click()
            page.keyboard.press("Shift+Enter")
            panel = page.locator(".jp-OutputArea-output").filter(has=page.locator(".qw-panel"))
            expect(panel.locator(".qw-card")).to_have_count(12, timeout=60_000)
            expect(panel.locator(".qw-card", has_text=" · completed")).to_have_count(12, timeout=90_000)
            newest = panel.locator(".qw-card").first
            try:
                expect(newest.locator(".qw-viewer img")).to_have_count(1, timeout=30_000)
            except AssertionError:
                page.screenshot(path=str(ARTIFACTS / f"browser-{theme}-library-failure.png"), full_page=True)
                print(newest.inner_text())
                raise
            _accessible_names(page, panel)
            _placeholders_readable(panel, theme)
            _keyboard_in_the_large_view(page, expect, newest)
            for width in (1400, 800):
                page.set_viewport_size({"width": width, "height": 1400})
                page.wait_for_timeout(400)
                panel.evaluate("(el) => el.scrollIntoView({block: 'start'})")
                page.wait_for_timeout(300)
                page.screenshot(path=str(ARTIFACTS / f"browser-{theme}-{width}-library-generate.png"))
            page.set_viewport_size({"width": 1400, "height": 1400})
            _history_tab(page, expect, panel, theme)
            if theme == "light":
                _narrow_with_the_file_browser(page, panel)
                _save_reopen_library(page, expect, served, reopened)
        finally:
            browser.close()
    assert not problems, "errors in the browser console:\n" + "\n".join(problems)


def _accessible_names(page, panel) -> None:
    """Every control has a name a screen reader reads, none begins with an icon's glyph, the
    text fields and the slider are named by their labels, images carry alternative text."""
    page.wait_for_timeout(500)  # the helper names controls on the next frame
    nodes = panel.evaluate(_NODES_JS)
    # Chromium's own accessibility tree, under the panel (what a screen reader is given)
    cdp = page.context.new_cdp_session(page)
    found = cdp.send("Runtime.evaluate", {"expression": "document.querySelector('.qw-panel')"})
    named: list[tuple[str, str]] = []
    for role in ("textbox", "slider", "button", "image", "combobox", "tab"):
        answer = cdp.send("Accessibility.queryAXTree", {"objectId": found["result"]["objectId"], "role": role})
        named += [(role if role != "image" else "img", (node.get("name") or {}).get("value", ""))
                  for node in answer["nodes"] if not node.get("ignored")]
    roles = {(role, name) for role, name in named}
    for name in ("Prompt", "Avoid", "References"):
        assert ("textbox", name) in roles, (name, [n for n in named if n[0] == "textbox"])
    assert ("slider", "Images") in roles, [n for n in named if n[0] == "slider"]
    buttons = [name for role, name in named if role == "button"]
    assert buttons and all(name.strip() for name in buttons), buttons
    assert not any(_PRIVATE_USE.match(name) for name in buttons), buttons
    images = [name for role, name in named if role in ("img", "image")]
    assert images and all(name for name in images), images
    assert any(name.startswith("Image 1 of 3: A fox and an owl") for name in images), images
    unnamed = [n for n in nodes if n["tag"] in ("TEXTAREA", "SELECT") and not (n["label"] or n["title"])]
    assert not unnamed, unnamed
    print(f"accessibility: {len(buttons)} buttons, {len(images)} images, all named")


def _placeholders_readable(panel, theme: str) -> None:
    for placeholder in ("Describe the image…", "e.g. blurry, text (optional)"):
        contrast = panel.get_by_placeholder(placeholder).evaluate(_PLACEHOLDER_JS)
        print(f"{theme}: placeholder {placeholder!r} contrast {contrast['ratio']:.2f}")
        assert contrast["ratio"] >= 4.5, (placeholder, contrast)


def _keyboard_in_the_large_view(page, expect, newest) -> None:
    if not SHORTCUT:
        return
    viewer = newest.locator(".qw-viewer")
    newest.get_by_title("Image 2 of 3: open it large").click()
    expect(viewer).to_contain_text("Image 2 of 3")
    page.wait_for_function("() => document.activeElement && document.activeElement.closest('.qw-viewer')")
    page.keyboard.press("ArrowRight")
    expect(viewer).to_contain_text("Image 3 of 3")
    page.keyboard.press("ArrowLeft")
    page.keyboard.press("ArrowLeft")
    expect(viewer).to_contain_text("Image 1 of 3")
    page.keyboard.press("Escape")
    expect(viewer).to_have_count(0)
    page.wait_for_function("() => (document.activeElement.title || '').startsWith('Image 2 of 3')")


def _history_tab(page, expect, panel, theme: str) -> None:
    panel.get_by_role("tab", name="History").click()
    history = panel.locator(".qw-history")
    expect(history).to_contain_text("1–12 of 12 generations, newest first", timeout=30_000)
    items = history.locator(".qw-history-item")
    expect(items).to_have_count(12)
    expect(items.first).to_contain_text(LIBRARY_PROMPTS[-1])
    expect(items.first).to_contain_text(re.compile(r"made \d{4}-\d\d-\d\d \d\d:\d\d UTC"))
    page.wait_for_function("(el) => Array.from(el.querySelectorAll('.qw-history-item img'))"
                           ".filter((img) => img.naturalWidth > 0).length >= 12", arg=history.element_handle())
    for width in (1400, 800):
        page.set_viewport_size({"width": width, "height": 1400})
        page.wait_for_timeout(400)
        history.evaluate("(el) => el.scrollIntoView({block: 'start'})")
        page.wait_for_timeout(300)
        page.screenshot(path=str(ARTIFACTS / f"browser-{theme}-{width}-history.png"))
    page.set_viewport_size({"width": 1400, "height": 1400})
    search = history.get_by_role("textbox", name="Search")
    search.fill("lighthouse")
    expect(items).to_have_count(3, timeout=30_000)
    expect(history).to_contain_text("1–3 of 3 generations")
    first = items.first
    expect(first).to_contain_text("A lighthouse keeper's cottage")
    first.get_by_role("button", name="Star", exact=True).click()
    expect(first.get_by_role("button", name="Starred", exact=True)).to_have_count(1, timeout=30_000)
    search.fill("")
    history.get_by_text("Starred only").click()
    expect(items).to_have_count(1, timeout=30_000)
    expect(items.first).to_contain_text("A lighthouse keeper's cottage")
    history.get_by_text("Starred only").click()
    expect(items).to_have_count(12, timeout=30_000)
    doomed = items.filter(has_text="A city street at night")
    doomed.get_by_role("button", name="More…").click()
    doomed.get_by_role("button", name="Delete…").click()
    expect(doomed).to_contain_text("cannot be undone")
    page.screenshot(path=str(ARTIFACTS / f"browser-{theme}-1400-history-delete.png"))
    doomed.get_by_role("button", name="Delete", exact=True).click()
    expect(history).to_contain_text("Deleted ‘A city street at night, neon’", timeout=30_000)
    expect(items).to_have_count(11)
    expect(history).to_contain_text("1–11 of 11 generations")
    panel.get_by_role("tab", name="Generate").click()


def _narrow_with_the_file_browser(page, panel) -> None:
    """At 600 px with the file browser open, the model menu and Add image… stay within the
    output (they wrap rather than being cut off)."""
    page.set_viewport_size({"width": 600, "height": 1200})
    if not page.locator("#filebrowser").is_visible():
        page.keyboard.press("ControlOrMeta+B")
    page.wait_for_timeout(600)
    frame = page.locator(".jp-NotebookPanel:not(.lm-mod-hidden)").bounding_box()  # what can be seen
    model = panel.get_by_role("combobox", name="Model").first
    for control in (model, panel.locator(".widget-upload"), panel.get_by_role("tab", name="History")):
        control.scroll_into_view_if_needed()
        box = control.bounding_box()
        assert box is not None and box["x"] + box["width"] <= frame["x"] + frame["width"] + 1, (box, frame)
    panel.evaluate("(el) => el.scrollIntoView({block: 'start'})")
    page.wait_for_timeout(300)
    page.screenshot(path=str(ARTIFACTS / "browser-light-600-filebrowser.png"))
    page.set_viewport_size({"width": 1400, "height": 1400})


def _save_reopen_library(page, expect, served: Served, reopened: list[bool]) -> None:
    path = served.folder / "library.ipynb"
    page.locator(".jp-Notebook .jp-CodeCell").first.click()
    page.keyboard.press("Escape")
    save = page.locator('.jp-NotebookPanel:not(.lm-mod-hidden) [data-command="docmanager:save"]')
    deadline = time.monotonic() + 90
    while True:
        save.first.click()
        page.wait_for_timeout(1500)
        saved = _notebook_on_disk(path)
        if saved.count("data:image/jpeg;base64,") >= 12 and LIBRARY_PROMPTS[-1] in saved:
            break
        assert time.monotonic() < deadline, "the notebook was not saved with the copy"
    for session in _api(served.url, served.token, "/api/sessions"):
        _api(served.url, served.token, f"/api/sessions/{session['id']}", method="DELETE")
    reopened[0] = True
    for app in ("lab/tree", "notebooks"):
        page.goto(served.page("library.ipynb", app))
        copy = page.locator(".qw-static").filter(has_text="Results saved with the notebook")
        expect(copy).to_be_visible(timeout=60_000)
        titles = copy.evaluate("(el) => Array.from(el.children).slice(1).map((e) => e.firstChild.textContent)")
        assert titles[0] == LIBRARY_PROMPTS[-1] and titles[-1] == LIBRARY_PROMPTS[0], titles  # newest first
        shown = page.locator(".jp-Notebook").first.evaluate(_VISIBLE_TEXT_JS)
        assert "Error displaying widget" not in shown and shown.count("Results saved with the notebook") == 1
        folded = copy.evaluate("(el) => { for (let n = el; n; n = n.parentElement) {"
                               " const s = getComputedStyle(n); if (/(auto|scroll)/.test(s.overflowY)"
                               " && n.scrollHeight > n.clientHeight + 2 && n.clientHeight < 600)"
                               " return n.className + ' ' + n.clientHeight; } return ''; }")
        assert not folded, f"{app}: the saved copy is folded into a scrolled box: {folded}"
        page.wait_for_timeout(500)
        page.screenshot(path=str(ARTIFACTS / f"browser-light-1400-reopened-library-{app.split('/')[0]}.png"))
