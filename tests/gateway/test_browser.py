"""The teacher page in a real browser: Debian's Chromium driven by Playwright (DESIGN 5.5).

A teacher opens the printed link, sees the classes, opens one, and revokes a student's code;
the code then answers 401. Screenshots in light and dark, 800 and 1400 px wide, land in
`artifacts/gateway/` for a person to look at (the page must read well in all four).
"""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import pytest

from qwen_widgets.gateway import start

from .conftest import Running, add_class, finish, make_simulator, submit, task_id

pytestmark = pytest.mark.browser

REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO / "artifacts" / "gateway"
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]
PAGE_TIMEOUT_MS = 30_000
PROMPTS = [
    "A lighthouse on a cliff at dusk, watercolor",
    "A fox reading a newspaper in a cafe, ink drawing with a lot of small details in the background, "
    "warm afternoon light through tall windows, people at other tables",
    '<b>bold?</b> a "quoted" prompt & an ampersand',
    "Koi fish in a pond seen from above",
]


@pytest.fixture
def classroom(data, clock):
    """Two classes, some finished images, a refusal for each log."""
    art = add_class(data, "art-monday", students=4, images_per_day=3, window="10:00-11:00", rules=["blood"])
    photo = add_class(data, "photo-club", students=2, images_per_day=5, spend_per_day=1.0)
    simulator = make_simulator(clock)
    with start(data, simulator=simulator, clock=clock) as server:
        running = Running(server, simulator, clock)
        for number, prompt in enumerate(PROMPTS):
            student = running.student(art[f"student-{number % 3 + 1}"])
            finish(running, student, task_id(submit(student, prompt=prompt, n=1 + number % 2)))
        refused = running.student(art["student-1"])
        assert submit(refused, prompt="blood moon").status_code == 400
        assert submit(refused, n=3).status_code == 403
        other = running.student(photo["student-1"])
        finish(running, other, task_id(submit(other, prompt="A street at night in the rain", n=2)))
        yield running, art


def all_images_loaded(page) -> None:
    # polled from here: wait_for_function evaluates a string, which the page's CSP forbids
    deadline = time.monotonic() + PAGE_TIMEOUT_MS / 1000
    while not page.locator("img").evaluate_all("images => images.every(i => i.complete && i.naturalWidth > 0)"):
        assert time.monotonic() < deadline, "the gallery's images did not load"
        page.wait_for_timeout(100)


def test_teacher_page_in_chromium(classroom):
    if not CHROMIUM.exists():
        pytest.skip("needs Debian's Chromium at /usr/bin/chromium (apt-get install -y chromium)")
    sync_api = pytest.importorskip("playwright.sync_api", reason="needs the playwright Python package")
    running, codes = classroom
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        try:
            context = browser.new_context(viewport={"width": 1400, "height": 900})
            page = context.new_page()
            page.set_default_timeout(PAGE_TIMEOUT_MS)
            page.goto(running.server.teacher_url)
            assert page.url == running.url + "/teacher"  # the token left the address bar
            assert page.get_by_role("link", name="art-monday").is_visible()
            assert page.get_by_role("link", name="photo-club").is_visible()

            for scheme in ("light", "dark"):
                for width in (1400, 800):
                    page.emulate_media(color_scheme=scheme)
                    page.set_viewport_size({"width": width, "height": 900})
                    page.goto(running.url + "/teacher")
                    page.screenshot(path=str(ARTIFACTS / f"overview-{scheme}-{width}.png"), full_page=True)
                    page.goto(running.url + "/teacher/class/art-monday")
                    all_images_loaded(page)
                    page.screenshot(path=str(ARTIFACTS / f"class-{scheme}-{width}.png"), full_page=True)
                    # nothing may stick out sideways except inside the scrolling tables
                    assert page.evaluate("document.documentElement.scrollWidth") <= width

            page.emulate_media(color_scheme="light")
            page.set_viewport_size({"width": 1400, "height": 900})
            gallery = page.locator(".gallery figure")
            assert gallery.count() == len(PROMPTS)
            assert gallery.first.locator(".prompt").inner_text() == "Koi fish in a pond seen from above"
            assert page.locator("text=<b>bold?</b> a \"quoted\" prompt & an ampersand").count() == 1
            assert page.locator("td", has_text="rule 'blood' matched").count() == 1

            page.get_by_role("button", name="Revoke student-2").click()
            page.wait_for_url("**/teacher/class/art-monday?**")
            assert page.get_by_role("status").inner_text() == "student-2: access revoked. Their code no longer works."
            row = page.locator("tr", has=page.locator("td", has_text="student-2"))
            assert row.locator(".tag.off").inner_text() == "revoked"
            assert row.get_by_role("button", name="Revoke student-2").count() == 0
            page.screenshot(path=str(ARTIFACTS / "class-after-revoke-light-1400.png"), full_page=True)

            page.goto(running.url + "/teacher")
            page.get_by_label("Name", exact=True).fill("poetry-club")
            page.get_by_label("Students", exact=True).fill("3")
            page.get_by_label("Images per student per day").fill("4")
            page.get_by_label("Window, UTC").fill("09:00-12:00")
            page.get_by_role("button", name="Add the class and make its codes").click()
            page.wait_for_url("**/teacher/classes")
            new_codes = page.locator("td code").all_inner_texts()
            assert len(new_codes) == 3 and all(code.startswith("qwg_") for code in new_codes)
            page.screenshot(path=str(ARTIFACTS / "codes-light-1400.png"), full_page=True)
            page.emulate_media(color_scheme="dark")
            page.set_viewport_size({"width": 800, "height": 900})
            page.screenshot(path=str(ARTIFACTS / "codes-dark-800.png"), full_page=True)
        finally:
            browser.close()
    assert httpx.get(running.url + "/v1/balance",
                     headers={"Authorization": f"Bearer {codes['student-2']}"}).status_code == 401
    assert httpx.get(running.url + "/v1/balance",
                     headers={"Authorization": f"Bearer {codes['student-3']}"}).status_code == 200
    added = httpx.get(running.url + "/v1/balance", headers={"Authorization": f"Bearer {new_codes[2]}"}).json()
    assert (added["class"], added["student"], added["window"]) == ("poetry-club", "student-3", "09:00-12:00")
