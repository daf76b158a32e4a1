"""The teacher's page and API over HTTP: the token link, the cookie, CSRF, revoke, add, escaping."""

from __future__ import annotations

import re

import httpx

from .conftest import add_class, finish, submit, task_id


def sign_in(gateway) -> httpx.Client:
    """A browser-like client that opened the printed link."""
    browser = httpx.Client(base_url=gateway.url, timeout=30)
    opened = browser.get(gateway.server.teacher_url)
    assert opened.status_code == 303 and opened.headers["location"] == "/teacher"
    return browser


def csrf_of(page: str) -> str:
    return re.search(r'name="csrf" value="([^"]+)"', page).group(1)


def test_the_link_sets_a_strict_cookie_and_drops_the_token(data, gateway):
    add_class(data, "art-1")
    browser = httpx.Client(base_url=gateway.url, timeout=30)
    opened = browser.get(gateway.server.teacher_url)
    cookie = opened.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Path=/teacher" in cookie
    assert gateway.server.token not in cookie and gateway.server.token not in opened.headers["location"]
    page = browser.get("/teacher")
    assert page.status_code == 200 and "art-1" in page.text and gateway.server.token not in page.text
    assert page.headers["referrer-policy"] == "no-referrer"


def test_no_or_wrong_token_shows_how_to_get_in(data, gateway):
    add_class(data, "art-1")
    stranger = httpx.Client(base_url=gateway.url, timeout=30)
    page = stranger.get("/teacher")
    assert page.status_code == 401 and "art-1" not in page.text and "teacher-token" in page.text
    wrong = stranger.get("/teacher", params={"token": gateway.server.token[:-1] + "x"})
    assert wrong.status_code == 401 and "not right" in wrong.text and "set-cookie" not in wrong.headers
    api = stranger.get("/teacher/api/classes", headers={"Authorization": "Bearer nope"})
    assert api.status_code == 401 and api.json()["error"]["type"] == "authentication_error"
    assert stranger.get("/teacher/class/art-1").status_code == 401


def test_revoke_from_the_page_needs_the_csrf_field(data, gateway):
    codes = add_class(data, "art-1", students=2)
    browser = sign_in(gateway)
    page = browser.get("/teacher/class/art-1")
    forged = browser.post("/teacher/class/art-1/revoke", data={"student": "student-1"})
    assert forged.status_code == 403
    assert gateway.student(codes["student-1"]).get("/v1/balance").status_code == 200
    done = browser.post("/teacher/class/art-1/revoke", data={"student": "student-1", "csrf": csrf_of(page.text)})
    assert done.status_code == 303
    shown = browser.get(done.headers["location"])
    assert "student-1: access revoked" in shown.text
    assert gateway.student(codes["student-1"]).get("/v1/balance").status_code == 401
    assert gateway.student(codes["student-2"]).get("/v1/balance").status_code == 200
    nobody = browser.post("/teacher/class/art-1/revoke", data={"student": "student-9", "csrf": csrf_of(page.text)})
    assert nobody.status_code == 400 and "class &#x27;art-1&#x27; has no student named &#x27;student-9&#x27;" in nobody.text
    assert browser.get("/teacher/class/no-such-class").status_code == 404


def test_add_a_class_from_the_page_shows_its_codes_once(data, gateway):
    browser = sign_in(gateway)
    csrf = csrf_of(browser.get("/teacher").text)
    bad = browser.post("/teacher/classes", data={"csrf": csrf, "name": "bio", "students": "3",
                                                 "images_per_day": "2", "window": "9-10"})
    assert bad.status_code == 400 and "window: expected HH:MM-HH:MM" in bad.text
    made = browser.post("/teacher/classes", data={"csrf": csrf, "name": "bio", "students": "3",
                                                  "images_per_day": "2", "rules": "blood\nre:gore"})
    assert made.status_code == 200
    codes = re.findall(r"<code>(qwg_[^<]+)</code>", made.text)
    assert len(codes) == 3
    assert gateway.student(codes[0]).get("/v1/balance").json()["class"] == "bio"
    again = browser.get("/teacher/class/bio")
    assert not any(code in again.text for code in codes)
    assert "re:gore" in again.text


def test_the_teacher_api_with_the_bearer_token(data, gateway):
    teacher = gateway.teacher()
    made = teacher.post("/teacher/api/classes", json={"name": "chem", "students": 2, "images_per_day": 3,
                                                      "window": "10:00-11:00"})
    assert made.status_code == 201
    body = made.json()
    assert body["class"] == "chem" and [c["name"] for c in body["codes"]] == ["student-1", "student-2"]
    refused = teacher.post("/teacher/api/classes", json={"name": "x", "students": 2, "images_per_day": 0})
    assert refused.status_code == 400 and refused.json()["error"]["param"] == "images-per-day"
    student = gateway.student(body["codes"][0]["code"])
    finish(gateway, student, task_id(submit(student, n=2)))
    listed = teacher.get("/teacher/api/classes").json()
    assert listed["totals"]["images_today"] == 2
    assert listed["classes"][0]["window"] == "10:00-11:00" and listed["classes"][0]["open_now"] is True
    revoked = teacher.post("/teacher/api/classes/chem/revoke", json={"student": "student-1"})
    assert revoked.json() == {"class": "chem", "student": "student-1", "revoked": True, "already": False}
    detail = teacher.get("/teacher/api/classes/chem").json()
    assert [s["revoked"] for s in detail["students"]] == [True, False]
    assert detail["gallery"][0]["student"] == "student-1" and len(detail["gallery"][0]["images"]) == 2


def test_every_student_string_is_escaped_on_the_page(data, gateway):
    codes = add_class(data, "art-1", students=1)
    student = gateway.student(codes["student-1"])
    hostile = '<script>alert("x")</script><img src=x onerror=alert(1)>'
    finish(gateway, student, task_id(submit(student, prompt=hostile)))
    page = sign_in(gateway).get("/teacher/class/art-1")
    assert "<script>alert" not in page.text and "<img src=x" not in page.text
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;" in page.text
    assert "script-src" not in page.headers["content-security-policy"]  # so no script runs at all


def test_the_gallery_shows_newest_first_with_names_and_prompts(data, gateway):
    codes = add_class(data, "art-1", students=2)
    alice, bob = gateway.student(codes["student-1"]), gateway.student(codes["student-2"])
    finish(gateway, alice, task_id(submit(alice, prompt="first: a quiet harbour")))
    finish(gateway, bob, task_id(submit(bob, prompt="second: a busy market", n=2)))
    page = sign_in(gateway).get("/teacher/class/art-1").text
    gallery = page[page.index("<h2>Gallery</h2>"):]
    assert gallery.index("second: a busy market") < gallery.index("first: a quiet harbour")
    assert gallery.count("<img ") == 3 and "student-2" in gallery
