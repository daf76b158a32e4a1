"""JupyterHub mode against a small fake Hub API on loopback, with jupyterhub's own HubAuth/HubOAuth.

The fake Hub answers the two calls a service makes: `GET /hub/api/user` (whose token is this?)
and `POST /hub/api/oauth2/token` (the last step of a sign-in). The gateway's side is the real
thing: HubOAuth, HubOAuthenticated and HubOAuthCallbackHandler from the installed jupyterhub.
"""

from __future__ import annotations

import asyncio
import json
import re
import threading
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

pytest.importorskip("jupyterhub", reason="Hub mode needs jupyterhub (pip install jupyterhub)")

import tornado.httpserver  # noqa: E402
import tornado.netutil  # noqa: E402
import tornado.web  # noqa: E402

from qwen_widgets.gateway import start  # noqa: E402

from .conftest import Running, add_class, finish, make_simulator, submit, task_id  # noqa: E402

SERVICE = "class-gateway"
PREFIX = f"/services/{SERVICE}/"
SERVICE_TOKEN = "service-api-token-0123"
ACCESS = f"access:services!service={SERVICE}"
USERS = {  # token -> the Hub's user model for it
    "server-token-ada": {"kind": "user", "name": "ada", "scopes": []},
    "server-token-bo": {"kind": "user", "name": "bo", "scopes": []},
    "oauth-token-teacher": {"kind": "user", "name": "ms-lee", "scopes": [ACCESS]},
    "oauth-token-pupil": {"kind": "user", "name": "ada", "scopes": []},
    "service-token-other": {"kind": "service", "name": "other", "scopes": []},
}
CODES = {"code-teacher": "oauth-token-teacher", "code-pupil": "oauth-token-pupil"}


class _User(tornado.web.RequestHandler):
    def get(self) -> None:
        scheme, _, token = self.request.headers.get("Authorization", "").partition(" ")
        self.application.settings["calls"].append(token)
        if scheme.lower() != "token" or token not in USERS:
            self.set_status(403)
            self.finish({"status": 403, "message": "Missing or invalid credentials."})
            return
        self.finish(USERS[token])


class _Token(tornado.web.RequestHandler):
    def post(self) -> None:
        form = {key: values[0] for key, values in parse_qs(self.request.body.decode()).items()}
        if form.get("client_secret") != SERVICE_TOKEN or form.get("code") not in CODES:
            self.set_status(400)
            self.finish({"error": "invalid_grant"})
            return
        self.finish({"access_token": CODES[form["code"]], "token_type": "Bearer"})


@pytest.fixture
def fake_hub():
    sockets = tornado.netutil.bind_sockets(0, "127.0.0.1")
    calls: list[str] = []
    loop = asyncio.new_event_loop()
    ready = threading.Event()

    def run() -> None:
        asyncio.set_event_loop(loop)
        app = tornado.web.Application([("/hub/api/user", _User), ("/hub/api/oauth2/token", _Token)], calls=calls)
        tornado.httpserver.HTTPServer(app).add_sockets(sockets)
        ready.set()
        loop.run_forever()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    ready.wait()
    yield {"url": f"http://127.0.0.1:{sockets[0].getsockname()[1]}", "calls": calls}
    loop.call_soon_threadsafe(loop.stop)
    thread.join(10)


@pytest.fixture
def hub_gateway(data, clock, fake_hub, monkeypatch):
    add_class(data, "hub-class", students=0, images_per_day=2, class_images_per_day=50)
    environment = {
        "JUPYTERHUB_API_TOKEN": SERVICE_TOKEN, "JUPYTERHUB_API_URL": fake_hub["url"] + "/hub/api",
        "JUPYTERHUB_SERVICE_PREFIX": PREFIX, "JUPYTERHUB_SERVICE_NAME": SERVICE,
        "JUPYTERHUB_CLIENT_ID": f"service-{SERVICE}", "JUPYTERHUB_OAUTH_CALLBACK_URL": PREFIX + "oauth_callback",
        "JUPYTERHUB_OAUTH_ACCESS_SCOPES": json.dumps([ACCESS]), "JUPYTERHUB_HOST": "", "JUPYTERHUB_BASE_URL": "/",
    }
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    simulator = make_simulator(clock)
    with start(data, simulator=simulator, clock=clock, hub_class="hub-class", prefix=PREFIX) as server:
        yield Running(server, simulator, clock)


def test_a_hub_users_server_token_is_their_key(hub_gateway, fake_hub):
    ada = hub_gateway.student("server-token-ada")
    assert hub_gateway.url.endswith(PREFIX.rstrip("/"))
    done = finish(hub_gateway, ada, task_id(submit(ada, n=2)))
    assert done["status"] == "completed"
    balance = ada.get("/v1/balance").json()
    assert (balance["class"], balance["student"], balance["remain_balance"]) == ("hub-class", "ada", 0)
    assert "server-token-ada" in fake_hub["calls"]
    bo = hub_gateway.student("server-token-bo")
    assert bo.get(f"/v1/tasks/{done['id']}").status_code == 404  # Hub users are isolated like codes
    for stranger in ("not-a-hub-token", "service-token-other"):
        answer = hub_gateway.student(stranger).get("/v1/balance")
        assert answer.status_code == 401 and answer.json()["error"]["type"] == "authentication_error"


def test_a_revoked_hub_user_is_refused(hub_gateway):
    ada = hub_gateway.student("server-token-ada")
    assert ada.get("/v1/balance").status_code == 200
    teacher = hub_gateway.teacher()
    revoked = teacher.post("/teacher/api/classes/hub-class/revoke", json={"student": "ada"})
    assert revoked.json()["revoked"] is True
    assert ada.get("/v1/balance").status_code == 401
    assert hub_gateway.student("server-token-bo").get("/v1/balance").status_code == 200


def sign_in_through_the_hub(gateway, code: str) -> tuple[httpx.Client, httpx.Response]:
    browser = httpx.Client(base_url=gateway.url.removesuffix(PREFIX.rstrip("/")), timeout=30)
    sent = browser.get(PREFIX + "teacher")
    assert sent.status_code == 302
    location = urlsplit(sent.headers["location"])
    assert location.path == "/hub/api/oauth2/authorize"
    query = parse_qs(location.query)
    assert query["client_id"] == [f"service-{SERVICE}"] and query["redirect_uri"] == [PREFIX + "oauth_callback"]
    # the Hub signs the user in and sends the browser back with a code
    back = browser.get(PREFIX + "oauth_callback", params={"code": code, "state": query["state"][0]})
    assert back.status_code == 302 and back.headers["location"] == PREFIX + "teacher"
    return browser, browser.get(PREFIX + "teacher")


def test_a_teacher_signs_in_through_the_hub(hub_gateway):
    browser, page = sign_in_through_the_hub(hub_gateway, "code-teacher")
    assert page.status_code == 200 and "hub-class" in page.text
    ada = hub_gateway.student("server-token-ada")
    assert ada.get("/v1/balance").status_code == 200
    page = browser.get(PREFIX + "teacher/class/hub-class")
    form = page.text[page.text.index('action="' + PREFIX + 'teacher/class/hub-class/revoke"'):]
    fields = dict(re.findall(r'name="(csrf|_xsrf)" value="([^"]+)"', form)[:2])
    assert set(fields) == {"csrf", "_xsrf"}  # the Hub's own form check, besides the gateway's
    without_hub_check = browser.post(PREFIX + "teacher/class/hub-class/revoke",
                                     data={"student": "ada", "csrf": fields["csrf"]})
    assert without_hub_check.status_code in (401, 403)
    assert ada.get("/v1/balance").status_code == 200
    done = browser.post(PREFIX + "teacher/class/hub-class/revoke", data={"student": "ada", **fields})
    assert done.status_code == 303
    assert ada.get("/v1/balance").status_code == 401


def test_a_hub_user_without_access_is_not_a_teacher(hub_gateway):
    _, page = sign_in_through_the_hub(hub_gateway, "code-pupil")
    assert page.status_code == 403 and "signed in to JupyterHub as ada" in page.text
    assert "hub-class" not in page.text
