"""The teacher's page and the teacher's API, behind the teacher token.

The token is accepted three ways: as the link printed at start (`/teacher?token=...`), which
sets an HttpOnly, SameSite=Strict cookie and redirects to the same page without the token
(so it leaves the address bar, the history and any Referer); as `Authorization: Bearer
TOKEN` (scripts); and, in JupyterHub mode, a Hub user with access to this service signs in
through the Hub. Forms carry a CSRF field derived from the token, checked on every
cookie-authenticated POST.

The page is server-rendered HTML with one inline stylesheet: no JavaScript, no build step.
Templates are tornado's, which escape every `{{ value }}`; image addresses are shown only when
they are http(s). Colours follow `prefers-color-scheme`; tables scroll sideways on a narrow
screen rather than squeezing the prompt column.
"""

from __future__ import annotations

import hmac
import html
import json
import math
from datetime import datetime, timezone
from typing import Any
from urllib.parse import quote, urlencode

import tornado.template
import tornado.web

from .limits import day_of
from .store import ClassInfo, FieldError

__all__ = ["teacher_routes", "TEMPLATES"]

COOKIE = "qwg_teacher"
CLASS = r"([A-Za-z0-9][A-Za-z0-9._-]{0,63})"
GALLERY_SIZE = 200
NOTICES = {
    "revoked": "{student}: access revoked. Their code no longer works.",
    "already": "{student} was already revoked.",
    "rules": "Prompt rules saved.",
}


def when(timestamp: float | None) -> str:
    if timestamp is None:
        return "-"
    return datetime.fromtimestamp(timestamp, timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


def amount(value: float | None) -> str:
    """A cost as the account counts it: up to 4 decimals, no currency (it may not be dollars)."""
    if value is None:
        return "-"
    return f"{value:.4f}".rstrip("0").rstrip(".") or "0"


def images(count: float) -> str:
    return f"{count:g} image" + ("" if count == 1 else "s")


def _safe_url(url: str) -> str | None:
    return url if url.startswith(("https://", "http://")) else None


class TeacherBase(tornado.web.RequestHandler):
    """Who is the teacher on this request: `self.who` ('token' or 'hub:NAME') or None."""

    def initialize(self, context: Any) -> None:
        self.context = context
        self.who: str | None = None
        self.bearer = False
        self.hub_user: str | None = None
        """A Hub user signed in to the page, teacher or not."""

    def set_default_headers(self) -> None:
        self.set_header("Cache-Control", "no-store")
        self.set_header("X-Content-Type-Options", "nosniff")
        self.set_header("X-Frame-Options", "DENY")
        self.set_header("Referrer-Policy", "no-referrer")
        self.set_header("Content-Security-Policy",
                        "default-src 'none'; img-src http: https: data:; style-src 'unsafe-inline'; "
                        "form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
        self.clear_header("Server")

    async def prepare(self) -> None:
        token = self.context.token
        scheme, _, given = self.request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() == "bearer" and given.strip():
            if hmac.compare_digest(given.strip().encode(), token.encode()):
                self.who, self.bearer = "token", True
            return  # a wrong bearer token is not rescued by a cookie
        cookie = self.get_cookie(COOKIE, "")
        if cookie and hmac.compare_digest(cookie.encode(), self.context.secret("session").encode()):
            self.who = "token"
        elif self.context.hub is not None and self.context.hub.oauth_enabled:
            name, allowed = await self.context.hub.teacher(self)
            if allowed:
                self.who = f"hub:{name}"
            self.hub_user = name

    @property
    def prefix(self) -> str:
        return self.context.prefix

    @property
    def public_base(self) -> str:
        return f"{self.request.protocol}://{self.request.host}{self.prefix.rstrip('/')}"

    def csrf_value(self) -> str:
        return self.context.secret(f"csrf:{self.who}")

    def csrf_ok(self) -> bool:
        if self.bearer:
            return True  # a script with the token in a header cannot be a forged browser request
        given = self.get_body_argument("csrf", None) or self.request.headers.get("X-CSRF-Token", "")
        return hmac.compare_digest(given.encode(), self.csrf_value().encode())

    def csrf_fields(self) -> str:
        fields = f'<input type="hidden" name="csrf" value="{html.escape(self.csrf_value())}">'
        if self.who and self.who.startswith("hub:"):
            fields += self.xsrf_form_html()  # the Hub's own check for its cookie
        return fields

    def page(self, name: str, status: int = 200, **values: Any) -> None:
        self.set_status(status)
        upstream = self.context.upstream
        self.render(name, prefix=self.prefix, who=self.who, mode=upstream.describe(),
                    demo=upstream.simulated_mode, amount=amount, when=when, quote=quote, images=images,
                    csrf_fields=self.csrf_fields() if self.who else "", css=CSS, **values)

    def refuse(self) -> None:
        """No teacher here: the Hub's sign-in when it is on, else the page that explains the link."""
        if self.who is None and self.hub_user is not None:
            self.page("login.html", 403, reason="not a teacher", user=self.hub_user)
            return
        if self.who is None and self.context.hub is not None and self.context.hub.oauth_enabled \
                and self.request.method == "GET":
            self.redirect(self.get_login_url())
            return
        self.page("login.html", 401 if self.who is None else 403,
                  reason="signed out" if self.who is None else "form expired")

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        self.clear()
        self.set_default_headers()
        self.page("error.html", status_code, code=status_code, message=None)

    # -- what the pages and the API show ----------------------------------------------------------

    def class_summary(self, info: ClassInfo) -> dict[str, Any]:
        store = self.context.store
        students = store.students(info.name)
        totals = store.totals(info.name)
        now = self.context.clock()
        window = info.policy.window
        return {
            "name": info.name,
            "students": sum(not s["revoked"] for s in students),
            "revoked": sum(s["revoked"] for s in students),
            "images_per_day": info.policy.images_per_day,
            "class_images_per_day": info.policy.class_images_per_day,
            "spend_per_day": info.policy.spend_per_day,
            "total_images": info.policy.total_images,
            "window": None if window is None else str(window),
            "open_now": window is None or window.is_open(now),
            "price_per_image": info.price_per_image,
            "requests_per_minute": info.requests_per_minute,
            "rules": list(info.rules),
            "today": {"images": totals["images_today"], "cost": round(totals["spend_today"], 6)},
            "all_time": {"images": totals["images_total"], "cost": round(totals["spend_total"], 6)},
        }

    def gallery(self, class_name: str) -> list[dict[str, Any]]:
        now = self.context.clock()
        upstream = self.context.upstream
        items = []
        for task in self.context.store.gallery(class_name, GALLERY_SIZE):
            images = []
            for image in task["result"]:
                url = _safe_url(upstream.public(image["urls"][0].encode(), self.public_base).decode())
                expired = image["expires_at"] is not None and image["expires_at"] < now
                images.append({"url": url, "expires_at": image["expires_at"], "expired": expired})
            items.append({"task_id": task["task_id"], "student": task["student"], "prompt": task["prompt"],
                          "model": task["model"], "size": task["size"], "resolution": task["resolution"],
                          "cost": task["cost"], "created": task["created"], "images": images})
        return items

    def add_class(self, values: dict[str, Any]) -> list[tuple[str, str]]:
        return self.context.store.add_class(
            values["name"], students=values["students"], images_per_day=values["images_per_day"],
            class_images_per_day=values.get("class_images_per_day"), spend_per_day=values.get("spend_per_day"),
            total_images=values.get("total_images"), window=values.get("window"),
            price_per_image=values.get("price_per_image"), rules=values.get("rules") or ())


def _form_number(field: str, text: str, kind: type) -> Any:
    text = text.strip()
    if not text:
        return None
    try:
        value = kind(text)
    except ValueError:
        raise FieldError(field, f"must be {'a whole number' if kind is int else 'a number'} (got {text!r})") from None
    if kind is float and not math.isfinite(value):
        raise FieldError(field, f"must be a number (got {text!r})")
    return value


class Overview(TeacherBase):
    """`GET /teacher`: every class, today's totals, and the form to add a class."""

    def get(self) -> None:
        token = self.get_query_argument("token", None)
        if token is not None:
            if hmac.compare_digest(token.encode(), self.context.token.encode()):
                self.set_cookie(COOKIE, self.context.secret("session"), path=self.prefix + "teacher",
                                httponly=True, samesite="Strict", secure=self.request.protocol == "https")
                self.redirect(self.prefix + "teacher", status=303)  # the token leaves the address bar
                return
            self.page("login.html", 401, reason="wrong token")
            return
        if self.who is None:
            self.refuse()
            return
        self.overview()

    def overview(self, status: int = 200, error: str | None = None, form: dict[str, str] | None = None) -> None:
        store = self.context.store
        classes = [self.class_summary(store.class_info(name)) for name in store.class_names()]
        self.page("overview.html", status, classes=classes, totals=store.totals(), error=error, form=form or {})


class AddClass(Overview):
    """`POST /teacher/classes`: the form's class, and its codes shown once."""

    def post(self) -> None:
        if self.who is None or not self.csrf_ok():
            self.refuse()
            return
        form = {name: self.get_body_argument(name, "") for name in (
            "name", "students", "images_per_day", "class_images_per_day", "spend_per_day", "price_per_image",
            "total_images", "window", "rules")}
        try:
            values: dict[str, Any] = {"name": form["name"].strip(), "window": form["window"].strip() or None,
                                      "rules": form["rules"].splitlines()}
            for field in ("students", "images_per_day", "class_images_per_day", "total_images"):
                values[field] = _form_number(field.replace("_", "-"), form[field], int)
            for field in ("spend_per_day", "price_per_image"):
                values[field] = _form_number(field.replace("_", "-"), form[field], float)
            codes = self.add_class(values)
        except FieldError as exc:
            self.overview(400, error=f"Not added. {exc.field}: {exc.rule}", form=form)
            return
        self.page("codes.html", class_name=values["name"], codes=codes, base=self.public_base, replaced=False)


class ClassPage(TeacherBase):
    """`GET /teacher/class/NAME`: students and their use, the gallery, the log, the rules."""

    def get(self, name: str) -> None:
        if self.who is None:
            self.refuse()
            return
        store = self.context.store
        try:
            info = store.class_info(name)
        except FieldError:
            raise tornado.web.HTTPError(404) from None
        notice = None
        key = self.get_query_argument("notice", "")
        if key in NOTICES:
            notice = NOTICES[key].format(student=self.get_query_argument("student", ""))
        self.page("class.html", info=info, summary=self.class_summary(info), students=store.students(name),
                  gallery=self.gallery(name), events=store.events(name), notice=notice,
                  today=day_of(self.context.clock()))


class ClassAction(TeacherBase):
    """`POST /teacher/class/NAME/(revoke|new-code|rules)`."""

    def post(self, name: str, action: str) -> None:
        if self.who is None or not self.csrf_ok():
            self.refuse()
            return
        store = self.context.store
        back = f"{self.prefix}teacher/class/{quote(name)}"
        try:
            if action == "rules":
                store.set_rules(name, self.get_body_argument("rules", "").splitlines())
                self.redirect(f"{back}?notice=rules", status=303)
                return
            student = self.get_body_argument("student", "")
            if action == "revoke":
                done = store.revoke(name, student)
                self.redirect(f"{back}?{urlencode({'notice': 'revoked' if done else 'already', 'student': student})}",
                              status=303)
                return
            code = store.reissue(name, student)
        except FieldError as exc:
            self.page("error.html", 400, code=400, message=f"{exc.field}: {exc.rule}")
            return
        self.page("codes.html", class_name=name, codes=[(student, code)], base=self.public_base, replaced=True)


class SignOut(TeacherBase):
    def post(self) -> None:
        if self.who is not None and self.csrf_ok():
            self.clear_cookie(COOKIE, path=self.prefix + "teacher")
            if self.who.startswith("hub:"):
                self.context.hub.auth.clear_cookie(self)
        self.redirect(self.prefix, status=303)


class TeacherApi(TeacherBase):
    """The same, as JSON, for scripts: `Authorization: Bearer TOKEN`."""

    def send(self, status: int, payload: Any) -> None:
        self.set_status(status)
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps(payload))

    def refuse(self) -> None:
        self.send(401 if self.who is None else 403, {"error": {
            "code": 401 if self.who is None else 403, "type": "authentication_error",
            "message": "send the teacher token as Authorization: Bearer TOKEN" if self.who is None
            else "missing or wrong X-CSRF-Token"}})

    def field_error(self, exc: FieldError) -> None:
        self.send(400, {"error": {"code": 400, "type": "invalid_request_error", "param": exc.field,
                                  "message": f"{exc.field}: {exc.rule}"}})

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        self.clear()
        self.set_default_headers()
        self.send(status_code, {"error": {"code": status_code, "type": "invalid_request_error"
                                          if status_code < 500 else "server_error", "message": self._reason}})


class ClassesApi(TeacherApi):
    def get(self) -> None:
        if self.who is None:
            self.refuse()
            return
        store = self.context.store
        self.send(200, {"upstream": self.context.upstream.describe(), "totals": store.totals(),
                        "classes": [self.class_summary(store.class_info(name)) for name in store.class_names()]})

    def post(self) -> None:
        if self.who is None or not self.csrf_ok():
            self.refuse()
            return
        try:
            values = json.loads(self.request.body or b"null")
        except ValueError:
            values = None
        if not isinstance(values, dict):
            self.field_error(FieldError("body", "must be a JSON object"))
            return
        try:
            for required in ("name", "students", "images_per_day"):
                if required not in values:
                    raise FieldError(required.replace("_", "-"), "is required")
            codes = self.add_class(values)
        except FieldError as exc:
            self.field_error(exc)
            return
        except TypeError as exc:  # a rules value that is not a list of strings
            self.field_error(FieldError("rules", f"must be a list of strings ({exc})"))
            return
        self.send(201, {"class": values["name"], "codes": [{"name": n, "code": c} for n, c in codes]})


class ClassApi(TeacherApi):
    def get(self, name: str) -> None:
        if self.who is None:
            self.refuse()
            return
        store = self.context.store
        try:
            info = store.class_info(name)
        except FieldError as exc:
            self.send(404, {"error": {"code": 404, "type": "not_found", "message": exc.rule}})
            return
        self.send(200, {"class": self.class_summary(info), "students": store.students(name),
                        "events": store.events(name), "gallery": self.gallery(name)})


class RevokeApi(TeacherApi):
    def post(self, name: str) -> None:
        if self.who is None or not self.csrf_ok():
            self.refuse()
            return
        try:
            body = json.loads(self.request.body or b"{}")
            student = body.get("student") if isinstance(body, dict) else None
            if not isinstance(student, str):
                raise FieldError("student", "is required: the student's name, such as student-3")
            done = self.context.store.revoke(name, student)
        except ValueError as exc:
            self.field_error(exc if isinstance(exc, FieldError) else FieldError("body", "must be a JSON object"))
            return
        self.send(200, {"class": name, "student": student, "revoked": True, "already": not done})


def teacher_routes(context: Any) -> list[Any]:
    """The teacher's routes under the gateway's prefix; Hub sign-in mixed in when it is on."""
    prefix = context.prefix + "teacher"
    routes: list[tuple[str, type]] = [
        (prefix, Overview),
        (prefix + "/classes", AddClass),
        (prefix + f"/class/{CLASS}", ClassPage),
        (prefix + f"/class/{CLASS}/(revoke|new-code|rules)", ClassAction),
        (prefix + "/logout", SignOut),
        (prefix + "/api/classes", ClassesApi),
        (prefix + f"/api/classes/{CLASS}", ClassApi),
        (prefix + f"/api/classes/{CLASS}/revoke", RevokeApi),
    ]
    hub = context.hub
    if hub is not None and hub.oauth_enabled:
        routes = [(pattern, hub.teacher_handler(handler)) for pattern, handler in routes]
        routes.append((context.prefix + "oauth_callback", hub.callback_handler()))
    return [(pattern, handler, {"context": context}) if issubclass(handler, TeacherBase) else (pattern, handler)
            for pattern, handler in routes]


CSS = """
:root { --bg: #f6f7f9; --card: #ffffff; --text: #1b1f24; --muted: #5b6570; --line: #d8dde3;
  --accent: #2457c5; --accent-text: #ffffff; --danger: #b3261e; --ok: #1e7a3c; --warn-bg: #fff4d6;
  --warn-text: #5c4400; --code-bg: #eef1f5; color-scheme: light dark; }
@media (prefers-color-scheme: dark) {
  :root { --bg: #14171b; --card: #1d2227; --text: #e7eaee; --muted: #9aa5b1; --line: #333b44;
    --accent: #7aa7ff; --accent-text: #0b1020; --danger: #ff8a80; --ok: #7bd88f; --warn-bg: #3a3010;
    --warn-text: #ffe08a; --code-bg: #262c33; }
}
* { box-sizing: border-box; }
body { margin: 0; background: var(--bg); color: var(--text);
  font: 15px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, "Noto Sans", sans-serif; }
a { color: var(--accent); }
header.top { display: flex; align-items: center; gap: 12px; flex-wrap: wrap; padding: 10px 24px;
  background: var(--card); border-bottom: 1px solid var(--line); }
header.top .brand { font-weight: 700; font-size: 17px; color: var(--text); text-decoration: none; }
header.top .mode { font-size: 13px; color: var(--muted); }
header.top .mode.demo { background: var(--warn-bg); color: var(--warn-text); padding: 2px 8px; border-radius: 10px; }
header.top form { margin-left: auto; }
main { max-width: 1280px; margin: 0 auto; padding: 16px 24px 48px; }
h1 { font-size: 24px; margin: 8px 0 12px; }
h2 { font-size: 18px; margin: 0 0 10px; }
section { background: var(--card); border: 1px solid var(--line); border-radius: 8px; padding: 16px; margin: 16px 0; }
.crumbs { font-size: 14px; color: var(--muted); margin-top: 4px; }
.totals { display: flex; flex-wrap: wrap; gap: 12px 56px; }
.stat { display: flex; flex-direction: column; }
.stat .label { font-size: 13px; color: var(--muted); }
.stat .value { font-size: 22px; font-weight: 650; font-variant-numeric: tabular-nums; }
.scroll { overflow-x: auto; }
table { border-collapse: collapse; width: 100%; font-variant-numeric: tabular-nums; }
th, td { text-align: left; padding: 7px 10px; border-bottom: 1px solid var(--line); vertical-align: middle; }
th { font-size: 13px; color: var(--muted); font-weight: 600; white-space: nowrap; }
td.num, th.num { text-align: right; white-space: nowrap; }
td.actions { white-space: nowrap; text-align: right; }
td.name { white-space: nowrap; }
td.detail { overflow-wrap: anywhere; min-width: 16em; }
td.actions form { display: inline; }
tr.revoked td { color: var(--muted); }
.tag { display: inline-block; font-size: 12px; padding: 1px 7px; border-radius: 9px; border: 1px solid var(--line); }
.tag.ok { color: var(--ok); border-color: currentColor; }
.tag.off { color: var(--danger); border-color: currentColor; }
button { font: inherit; padding: 5px 12px; border-radius: 6px; border: 1px solid var(--line);
  background: var(--card); color: var(--text); cursor: pointer; }
button.primary { background: var(--accent); color: var(--accent-text); border-color: var(--accent); }
button.danger { color: var(--danger); border-color: var(--danger); }
button.link { border: none; background: none; color: var(--accent); padding: 0; text-decoration: underline; }
button:focus-visible, input:focus-visible, textarea:focus-visible, a:focus-visible {
  outline: 2px solid var(--accent); outline-offset: 2px; }
.grid-form { display: grid; grid-template-columns: repeat(auto-fit, minmax(220px, 1fr)); gap: 12px 16px; }
.grid-form label { display: flex; flex-direction: column; gap: 4px; font-size: 14px; }
.grid-form .wide { grid-column: 1 / -1; }
.grid-form .submit { grid-column: 1 / -1; }
small, .hint { color: var(--muted); font-size: 13px; }
::placeholder { color: var(--muted); opacity: 0.7; font-style: italic; }
input, textarea { font: inherit; padding: 6px 8px; border-radius: 6px; border: 1px solid var(--line);
  background: var(--bg); color: var(--text); width: 100%; }
textarea { font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; font-size: 14px; }
code, pre { font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; font-size: 13.5px;
  background: var(--code-bg); border-radius: 4px; }
code { padding: 1px 5px; }
pre { padding: 10px 12px; overflow-x: auto; }
.notice { padding: 10px 14px; border-radius: 6px; background: var(--warn-bg); color: var(--warn-text); }
.notice.error { border-left: 4px solid var(--danger); }
.settings { display: grid; grid-template-columns: repeat(auto-fit, minmax(200px, 1fr)); gap: 8px 16px; margin: 0; }
.settings div { display: flex; flex-direction: column; }
.settings dt { font-size: 13px; color: var(--muted); }
.settings dd { margin: 0; font-weight: 600; }
.gallery { display: grid; grid-template-columns: repeat(auto-fill, minmax(220px, 1fr)); gap: 14px; }
.gallery figure { margin: 0; border: 1px solid var(--line); border-radius: 8px; overflow: hidden; background: var(--bg); }
.gallery .thumbs { display: grid; grid-template-columns: repeat(auto-fit, minmax(90px, 1fr)); gap: 2px; }
.gallery img { display: block; width: 100%; aspect-ratio: 1 / 1; object-fit: cover; background: var(--code-bg); }
.gallery .gone { display: flex; align-items: center; justify-content: center; aspect-ratio: 1 / 1;
  background: var(--code-bg); color: var(--muted); font-size: 13px; }
.gallery figcaption { padding: 8px 10px; font-size: 13.5px; }
.gallery .who { font-weight: 650; }
.gallery .prompt { margin: 4px 0; overflow-wrap: anywhere; }
.gallery .meta { color: var(--muted); font-size: 12.5px; }
.empty { color: var(--muted); }
meter { width: 70px; height: 10px; vertical-align: middle; margin-left: 6px; }
.totals .wide { flex-basis: 100%; margin: 0; }
@media (max-width: 900px) {
  main { padding: 8px 14px 32px; }
  header.top { padding: 10px 14px; }
  th, td { padding: 6px 7px; }
  meter { display: none; }
}
"""

_TEMPLATES = {
    "base.html": """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="color-scheme" content="light dark">
<title>{% block title %}Class gateway{% end %}</title>
<style>{% raw css %}</style>
</head>
<body>
<header class="top">
  <a class="brand" href="{{ prefix }}teacher">Class gateway</a>
  {% if demo %}<span class="mode demo">Demo mode: simulated images, nothing is billed</span>
  {% else %}<span class="mode">Images from {{ mode }}</span>{% end %}
  {% if who %}<form method="post" action="{{ prefix }}teacher/logout">{% raw csrf_fields %}
    <button class="link" type="submit">Sign out</button></form>{% end %}
</header>
<main>
{% block main %}{% end %}
</main>
</body>
</html>""",

    "overview.html": """{% extends "base.html" %}
{% block main %}
{% if error %}<p class="notice error" role="alert">{{ error }}</p>{% end %}
<section class="totals" aria-label="Totals">
  <div class="stat"><span class="label">Images today</span><span class="value">{{ totals["images_today"] }}</span></div>
  <div class="stat"><span class="label">Cost today</span><span class="value">{{ amount(totals["spend_today"]) }}</span></div>
  <div class="stat"><span class="label">Images, all time</span><span class="value">{{ totals["images_total"] }}</span></div>
  <div class="stat"><span class="label">Cost, all time</span><span class="value">{{ amount(totals["spend_total"]) }}</span></div>
  <p class="hint wide">Costs are what the image service reports, in your account's unit; a task still running counts at its reserved price.</p>
</section>
<section>
  <h2>Classes</h2>
  {% if not classes %}
  <p class="empty">No class yet. Add one below, or from a terminal:
    <code>python -m qwen_widgets.gateway add-class NAME --students 20 --images-per-day 10 --data DIR</code></p>
  {% else %}
  <div class="scroll"><table>
    <thead><tr><th>Class</th><th class="num">Students</th><th class="num">Images today</th>
      <th class="num">Cost today</th><th>Window (UTC)</th><th class="num">All time</th></tr></thead>
    <tbody>
    {% for c in classes %}
    <tr>
      <td class="name"><a href="{{ prefix }}teacher/class/{{ quote(c['name']) }}">{{ c["name"] }}</a></td>
      <td class="num">{{ c["students"] }}{% if c["revoked"] %} <small>(+{{ c["revoked"] }} revoked)</small>{% end %}</td>
      <td class="num">{{ c["today"]["images"] }} of {{ c["class_images_per_day"] }}
        <meter min="0" max="{{ c['class_images_per_day'] }}" value="{{ c['today']['images'] }}"></meter></td>
      <td class="num">{{ amount(c["today"]["cost"]) }}{% if c["spend_per_day"] is not None %} of {{ amount(c["spend_per_day"]) }}{% end %}</td>
      <td class="name">{% if c["window"] %}{{ c["window"] }} <span class="tag {{ 'ok' if c['open_now'] else 'off' }}">{{ "open" if c["open_now"] else "closed" }}</span>{% else %}any time{% end %}</td>
      <td class="num">{{ c["all_time"]["images"] }}{% if c["total_images"] is not None %} of {{ c["total_images"] }}{% end %} image{{ "" if c["all_time"]["images"] == 1 and c["total_images"] is None else "s" }} · {{ amount(c["all_time"]["cost"]) }}</td>
    </tr>
    {% end %}
    </tbody>
  </table></div>
  {% end %}
</section>
<section>
  <h2>Add a class</h2>
  <form method="post" action="{{ prefix }}teacher/classes" class="grid-form">
    {% raw csrf_fields %}
    <label>Name <input name="name" required maxlength="64" placeholder="e.g. art-monday" value="{{ form.get('name', '') }}"></label>
    <label>Students <input name="students" type="number" min="0" max="1000" required value="{{ form.get('students', '') }}"></label>
    <label>Images per student per day <input name="images_per_day" type="number" min="1" required value="{{ form.get('images_per_day', '') }}"></label>
    <label>Class images per day
      <input name="class_images_per_day" type="number" min="1" value="{{ form.get('class_images_per_day', '') }}"><small>empty: students &times; images per student</small></label>
    <label>Spend per day
      <input name="spend_per_day" type="number" step="any" min="0" value="{{ form.get('spend_per_day', '') }}"><small>optional, in your account's unit</small></label>
    <label>Price per image
      <input name="price_per_image" type="number" step="any" min="0" value="{{ form.get('price_per_image', '') }}"><small>empty: the provider's pricing</small></label>
    <label>Total images
      <input name="total_images" type="number" min="1" value="{{ form.get('total_images', '') }}"><small>optional, over the class's life</small></label>
    <label>Window, UTC
      <input name="window" placeholder="e.g. 10:00-11:00" value="{{ form.get('window', '') }}"><small>optional; outside it requests are refused</small></label>
    <label class="wide">Prompt rules <small>one per line: a word or phrase, or <code>re:</code> and a regular expression</small>
      <textarea name="rules" rows="3">{{ form.get('rules', '') }}</textarea></label>
    <div class="submit"><button class="primary" type="submit">Add the class and make its codes</button></div>
  </form>
</section>
{% end %}""",

    "class.html": """{% extends "base.html" %}
{% block title %}{{ info.name }} · Class gateway{% end %}
{% block main %}
<nav class="crumbs"><a href="{{ prefix }}teacher">Classes</a> / {{ info.name }}</nav>
<h1>{{ info.name }}</h1>
{% if notice %}<p class="notice" role="status">{{ notice }}</p>{% end %}
<section>
  <dl class="settings">
    <div><dt>Images per student per day</dt><dd>{{ info.policy.images_per_day }}</dd></div>
    <div><dt>Class images per day</dt><dd>{{ summary["today"]["images"] }} of {{ info.policy.class_images_per_day }} used today</dd></div>
    <div><dt>Cost today</dt><dd>{{ amount(summary["today"]["cost"]) }}{% if info.policy.spend_per_day is not None %} of {{ amount(info.policy.spend_per_day) }}{% end %}</dd></div>
    <div><dt>Images, all time</dt><dd>{{ summary["all_time"]["images"] }}{% if info.policy.total_images is not None %} of {{ info.policy.total_images }}{% end %} (cost {{ amount(summary["all_time"]["cost"]) }})</dd></div>
    <div><dt>Window (UTC)</dt><dd>{% if summary["window"] %}{{ summary["window"] }} · {{ "open now" if summary["open_now"] else "closed now" }}{% else %}any time{% end %}</dd></div>
    <div><dt>Price per image</dt><dd>{% if info.price_per_image is not None %}{{ amount(info.price_per_image) }}{% else %}the provider's{% end %}</dd></div>
  </dl>
</section>
<section>
  <h2>Students</h2>
  {% if not students %}<p class="empty">No students yet.</p>{% else %}
  <div class="scroll"><table>
    <thead><tr><th>Student</th><th>Access</th><th class="num">Today</th><th class="num">All time</th>
      <th class="num"><span class="hint">Actions</span></th></tr></thead>
    <tbody>
    {% for s in students %}
    <tr class="{{ 'revoked' if s['revoked'] else '' }}">
      <td class="name">{{ s["name"] }}{% if s["hub_user"] %} <span class="tag">Hub user</span>{% end %}</td>
      <td>{% if s["revoked"] %}<span class="tag off">revoked</span>{% else %}<span class="tag ok">active</span>{% end %}</td>
      <td class="num">{{ s["images_today"] }} of {{ images(info.policy.images_per_day) }} · {{ amount(s["spend_today"]) }}</td>
      <td class="num">{{ images(s["images_total"]) }} · {{ amount(s["spend_total"]) }}</td>
      <td class="actions">
        {% if not s["revoked"] %}
        <form method="post" action="{{ prefix }}teacher/class/{{ quote(info.name) }}/revoke">{% raw csrf_fields %}
          <input type="hidden" name="student" value="{{ s['name'] }}">
          <button class="danger" type="submit" aria-label="Revoke {{ s['name'] }}">Revoke</button></form>
        {% end %}
        {% if not s["hub_user"] %}
        <form method="post" action="{{ prefix }}teacher/class/{{ quote(info.name) }}/new-code">{% raw csrf_fields %}
          <input type="hidden" name="student" value="{{ s['name'] }}">
          <button type="submit" aria-label="New code for {{ s['name'] }}">New code</button></form>
        {% end %}
      </td>
    </tr>
    {% end %}
    </tbody>
  </table></div>
  {% end %}
</section>
<section>
  <h2>Gallery</h2>
  {% if not gallery %}<p class="empty">No finished images yet. They appear here when a student's client sees its task complete.</p>{% else %}
  <div class="gallery">
    {% for item in gallery %}
    <figure>
      <div class="thumbs">
        {% for image in item["images"] %}
          {% if image["url"] and not image["expired"] %}
          <a href="{{ image['url'] }}" target="_blank" rel="noopener noreferrer"><img src="{{ image['url'] }}" loading="lazy" alt="{{ item['prompt'][:120] }}"></a>
          {% else %}<div class="gone">link expired</div>{% end %}
        {% end %}
      </div>
      <figcaption>
        <div class="who">{{ item["student"] }}</div>
        <p class="prompt">{{ item["prompt"] }}</p>
        <div class="meta">{{ when(item["created"]) }} · {{ item["model"] or "" }} {{ item["size"] or "" }} {{ item["resolution"] or "" }} · {{ images(len(item["images"])) }} · cost {{ amount(item["cost"]) }}</div>
      </figcaption>
    </figure>
    {% end %}
  </div>
  {% end %}
</section>
<section>
  <h2>Log</h2>
  <p class="hint">Refusals (budget, window, prompt rules, with the rule that matched) and your changes, newest first.</p>
  {% if not events %}<p class="empty">Nothing yet.</p>{% else %}
  <div class="scroll"><table>
    <thead><tr><th>Time</th><th>Student</th><th>What</th><th>Detail</th></tr></thead>
    <tbody>
    {% for e in events %}
    <tr><td class="name">{{ when(e["time"]) }}</td><td class="name">{{ e["student"] or "" }}</td><td class="name">{{ e["kind"] }}</td><td class="detail">{{ e["detail"] }}</td></tr>
    {% end %}
    </tbody>
  </table></div>
  {% end %}
</section>
<section>
  <h2>Prompt rules</h2>
  <form method="post" action="{{ prefix }}teacher/class/{{ quote(info.name) }}/rules" class="grid-form">{% raw csrf_fields %}
    <label class="wide"><span class="hint">One per line: a word or phrase (whole words, any case), or <code>re:</code>
      and a regular expression. A student whose prompt matches reads "this prompt is not allowed in this class";
      the log above shows which rule matched.</span>
      <textarea name="rules" rows="4">{{ "\\n".join(info.rules) }}</textarea></label>
    <div class="submit"><button type="submit">Save the rules</button></div>
  </form>
</section>
{% end %}""",

    "codes.html": """{% extends "base.html" %}
{% block title %}Codes for {{ class_name }} · Class gateway{% end %}
{% block main %}
<nav class="crumbs"><a href="{{ prefix }}teacher">Classes</a> / <a href="{{ prefix }}teacher/class/{{ quote(class_name) }}">{{ class_name }}</a></nav>
<h1>{% if replaced %}A new code{% else %}Codes for {{ class_name }}{% end %}</h1>
<p class="notice" role="status"><strong>Copy {{ "it" if len(codes) == 1 else "them" }} now: codes are shown only once.</strong>
  The gateway keeps a hash, not the code.{% if replaced %} The student's old code no longer works.{% end %}</p>
<section>
  {% if codes %}
  <div class="scroll"><table>
    <thead><tr><th>Student</th><th>Code</th></tr></thead>
    <tbody>{% for name, code in codes %}<tr><td>{{ name }}</td><td><code>{{ code }}</code></td></tr>{% end %}</tbody>
  </table></div>
  {% else %}<p class="empty">This class has no codes (its students sign in through JupyterHub).</p>{% end %}
</section>
<section>
  <h2>What each student does</h2>
  <p>Each student sets these two values before starting Jupyter (nothing else changes), or sets only
    <code>APIMART_BASE_URL</code> and types their code into the panel's key field, which is never saved in the notebook:</p>
  <pre>APIMART_BASE_URL={{ base }}
APIMART_API_KEY=&lt;their code&gt;</pre>
</section>
<p><a href="{{ prefix }}teacher/class/{{ quote(class_name) }}">Go to the class</a></p>
{% end %}""",

    "login.html": """{% extends "base.html" %}
{% block title %}Sign in · Class gateway{% end %}
{% block main %}
<section>
  <h1>{% if reason == "wrong token" %}This link's token is not right{% elif reason == "form expired" %}This form is out of date{% elif reason == "not a teacher" %}No access to the teacher page{% else %}The teacher page needs the teacher link{% end %}</h1>
  {% if reason == "form expired" %}
  <p>Go back to <a href="{{ prefix }}teacher">the teacher page</a> and try again.</p>
  {% elif reason == "not a teacher" %}
  <p>You are signed in to JupyterHub as {{ user }}, who has no access to this service.
    A Hub administrator grants it with a role holding <code>access:services!service=...</code>.</p>
  {% else %}
  <p>Open the link the gateway printed when it started, <code>http://HOST:PORT{{ prefix }}teacher?token=...</code>.
    The token is also in the file <code>teacher-token</code> in the gateway's data folder.</p>
  <p>Students do not need this page: they use their code as their API key.</p>
  {% end %}
</section>
{% end %}""",

    "error.html": """{% extends "base.html" %}
{% block main %}
<section><h1>{{ "Not found" if code == 404 else "Not done" if code == 400 else "Something went wrong" }}</h1>
{% if message %}<p>{{ message }}</p>{% end %}
<p><a href="{{ prefix }}teacher">Back to the teacher page</a></p></section>
{% end %}""",

    "home.html": """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="color-scheme" content="light dark"><title>Class gateway</title>
<style>body { font: 15px/1.5 system-ui, sans-serif; max-width: 640px; margin: 40px auto; padding: 0 20px; }
pre { padding: 10px; border: 1px solid #8884; border-radius: 6px; overflow-x: auto; }</style></head>
<body><h1>Class gateway</h1>
<p>This address serves image generation for a class. In qwen_widgets, set:</p>
<pre>APIMART_BASE_URL={{ base }}
APIMART_API_KEY=&lt;the code your teacher gave you&gt;</pre>
<p>Teachers: open the link printed when the gateway started (<code>{{ prefix }}teacher?token=...</code>).</p>
</body></html>""",
}

TEMPLATES = tornado.template.DictLoader(_TEMPLATES, autoescape="xhtml_escape")
"""The page's templates; every `{{ value }}` is HTML-escaped."""
