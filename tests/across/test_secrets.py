"""One planted key, every path, every sink: the key must never come back out (DESIGN.md 3).

A recognisable key ("sk-PLANTED-" + 32 random hex digits) goes to the clients (as `api_key=`
and as APIMART_API_KEY), to the panel's key field and to a real notebook kernel, all talking
to the simulator on loopback. Every path runs: submit, poll, generate, fetch_image, sweep,
resume, and every kind of error, including servers that echo the key back. Then every place
the key could end up is searched for the whole key, for its hex part alone, and for any run
of 12 of its hex digits (a truncated echo is still a leak).

Result URLs point at a second loopback server that records every request; no request to it
(direct, or through a redirect from the API's own origin) may carry Authorization or the key.
"""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
import threading
import traceback
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import ipywidgets as widgets
import ipywidgets.widgets.widget as widget_module
import nbformat
import pytest
from IPython.core.ultratb import FormattedTB, VerboseTB
from nbclient import NotebookClient

import qwen_widgets as qw
from qwen_widgets.engine.sweep import Sweep
from qwen_widgets.model.plan import SweepPlan
from qwen_widgets.simulator import SimResponse, Simulator
from qwen_widgets.widgets import Card, Panel
from qwen_widgets.widgets.grid import SweepGrid

from ..conftest import TIME_SCALE, fast_options, demo_client, walk

WIDGET_STATE = "application/vnd.jupyter.widget-state+json"
FRAGMENT = 12  # hex digits: a run this long of the key's secret part counts as a leak


def planted_key() -> tuple[str, str]:
    hex_part = secrets.token_hex(16)
    return "sk-PLANTED-" + hex_part, hex_part


# -- loopback helpers ----------------------------------------------------------------------------


class RecordingSimulator(Simulator):
    """The simulator, also keeping every request's headers (the positive control: the API
    itself does receive the key)."""

    def __init__(self, **options: Any):
        super().__init__(**options)
        self.headers_seen: list[tuple[str, str, dict[str, str]]] = []

    def handle(self, method, target, headers, body):
        self.headers_seen.append((method, target, dict(headers)))
        return super().handle(method, target, headers, body)


class RecordingHost:
    """A second loopback server, on another origin (`localhost`, the API is on 127.0.0.1):
    records every request's headers and answers it from the API's simulator (its images)."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, str, dict[str, str]]] = []
        self.backend: Simulator | None = None
        host = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _answer(self) -> None:
                headers = dict(self.headers.items())
                host.requests.append((self.command, self.path, headers))
                answer = host.backend.handle(self.command, self.path, headers, b"")
                self.send_response(answer.status)
                for name, value in answer.headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(answer.body)))
                self.end_headers()
                self.wfile.write(answer.body)

            do_GET = do_POST = do_HEAD = _answer

            def log_message(self, *args: Any) -> None:
                pass

        self._http = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._http.daemon_threads = True
        self.url = f"http://localhost:{self._http.server_address[1]}"
        self._thread = threading.Thread(target=self._http.serve_forever, kwargs={"poll_interval": 0.05},
                                        daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._http.shutdown()
        self._http.server_close()
        self._thread.join(5)


@pytest.fixture
def image_host():
    host = RecordingHost()
    yield host
    host.close()


@pytest.fixture
def simulator(image_host):
    """Overrides conftest's: result URLs point at the recording host."""
    sim = RecordingSimulator(seed=7, time_scale=TIME_SCALE, image_base_url=image_host.url)
    image_host.backend = sim
    return sim


# -- sinks ---------------------------------------------------------------------------------------




def widget_state_json(roots) -> str:
    states = [w.get_state() for root in roots for w in walk(root)]
    return json.dumps(states, default=lambda b: bytes(b).decode("latin-1"))


def error_chain(error: BaseException) -> list[BaseException]:
    seen: list[BaseException] = []
    todo = [error]
    while todo:
        current = todo.pop()
        if current is None or any(current is s for s in seen):
            continue
        seen.append(current)
        todo += [current.__cause__, current.__context__]
    return seen


class Sinks:
    """Every text or byte string the key could have reached, by label."""

    def __init__(self, key: str, hex_part: str):
        self.needles = [key, hex_part] + [hex_part[i:i + FRAGMENT]
                                          for i in range(len(hex_part) - FRAGMENT + 1)]
        self.items: list[tuple[str, str | bytes]] = []

    def add(self, label: str, value: str | bytes) -> None:
        assert isinstance(value, (str, bytes)), label
        self.items.append((label, value))

    def add_object(self, label: str, obj: Any) -> None:
        self.add(f"str({label})", str(obj))
        self.add(f"repr({label})", repr(obj))

    def add_error(self, label: str, error: BaseException) -> None:
        for depth, link in enumerate(error_chain(error)):
            name = f"{label}[{depth}:{type(link).__name__}]"
            self.add_object(name, link)
            self.add(f"vars({name})", repr(getattr(link, "__dict__", {})))
        exc_type, tb = type(error), error.__traceback__
        self.add(f"format_exception({label})", "".join(traceback.format_exception(error)))
        self.add(f"VerboseTB({label})", VerboseTB(theme_name="nocolor").text(exc_type, error, tb))
        self.add(f"FormattedTB-Verbose({label})",
                 FormattedTB(mode="Verbose", theme_name="nocolor").text(exc_type, error, tb))

    def add_frame(self, label: str, frame) -> None:
        self.add(f"repr({label})", repr(frame))
        self.add(f"{label}.to_string", frame.to_string())
        self.add(f"{label}.to_html", frame.to_html())
        self.add(f"{label}.to_csv", frame.to_csv())
        self.add(f"{label}._repr_html_", frame._repr_html_() or "")

    def add_tree(self, root: Path) -> int:
        files = [p for p in sorted(root.rglob("*")) if p.is_file()]
        for path in files:
            self.add(f"file {path.relative_to(root)}", path.read_bytes())
        return len(files)

    def leaks(self) -> list[str]:
        found = []
        for label, value in self.items:
            for needle in self.needles:
                if (needle if isinstance(value, str) else needle.encode()) in value:
                    found.append(f"{label}: contains {needle!r}")
                    break
        return found


def echo(status: int, key: str, *, content_type: str = "application/json", **headers: str) -> SimResponse:
    """An error answer whose message quotes the key back, as a careless server might."""
    if content_type == "application/json":
        body = json.dumps({"error": {"code": status, "type": "echo",
                                     "message": f"key Bearer {key} was: {key}"}}).encode()
    else:
        body = f"echo {key}".encode()
    return SimResponse(status, {"Content-Type": content_type, **headers}, body)




NOTEBOOK_CELLS = [
    "import logging\nlogging.basicConfig(level=logging.DEBUG, force=True)\nimport qwen_widgets as qw",
    "%load_ext qwen_widgets",
    "%qwen",
    "t = %qwen a fox -n 1\nt",
    "qw.history()",
    "%xmode Verbose",
    "qw.QwenClient().get_task('task_01MISSING')",  # raises: a verbose traceback in the notebook
]


def run_notebook(path: Path) -> str:
    notebook = nbformat.v4.new_notebook()
    notebook.cells = [nbformat.v4.new_code_cell(source) for source in NOTEBOOK_CELLS]
    notebook.cells[-1].metadata["tags"] = ["raises-exception"]
    client = NotebookClient(notebook, timeout=120, kernel_name="python3", store_widget_state=True,
                            resources={"metadata": {"path": str(path.parent)}})
    client.execute()
    nbformat.write(notebook, path)
    return path.read_text()


# -- the test ------------------------------------------------------------------------------------


def test_the_planted_key_reaches_no_sink(server, simulator, image_host, make_client, monkeypatch,
                                         tmp_path, caplog, capfd, recwarn):
    key, hex_part = planted_key()
    home = tmp_path / "qwen_home"
    caplog.set_level(logging.DEBUG)
    for name in ("httpx", "httpcore", "qwen_widgets", "asyncio", "traitlets"):
        caplog.set_level(logging.DEBUG, logger=name)
    qw.set_default_client(None)
    sinks = Sinks(key, hex_part)
    errors: dict[str, BaseException] = {}
    retried: list[qw.QwenError] = []
    objects: dict[str, Any] = {}
    frames: dict[str, Any] = {}
    widget_roots: list[widgets.Widget] = []

    def on_retry(error, delay):
        retried.append(error)

    def expect(label: str, kind: type[BaseException], call, *args, **kwargs):
        with pytest.raises(kind) as caught:
            call(*args, **kwargs)
        errors[label] = caught.value
        return caught.value

    client = qw.QwenClient(key, base_url=server.url, **fast_options())
    objects["client"], objects["client.aio"] = client, client.aio
    objects["journal"] = client.aio.journal

    # -- the happy paths: submit, poll, generate, fetch_image ---------------------------------
    updates: list[qw.Task] = []
    task = client.generate("a red fox in snow", n=2, on_update=updates.append, on_retry=on_retry)
    assert task.status is qw.TaskStatus.COMPLETED and all(i.local_path for i in task.images)
    submitted = client.submit(qw.ImageRequest("a wolf"))
    polled = client.get_task(submitted.task_id)
    finished = client.wait(submitted)
    png = client.fetch_image(task.urls[1])  # a download from the recording host
    assert png.startswith(b"\x89PNG")
    assert client.fetch_image(task.images[0]).startswith(b"\x89PNG")  # the local copy
    # an image URL on the API's own origin that redirects to the recording host
    image_path = task.urls[0].removeprefix(image_host.url)
    hits_before = sum(p == image_path for _, p, _ in image_host.requests)
    simulator.inject(SimResponse(302, {"Location": image_host.url + image_path}),
                     path_prefix="/redirect/")
    assert client.fetch_image(f"{server.url}/redirect/{task.task_id}.png").startswith(b"\x89PNG")
    redirect_hop = [e for e in simulator.log if e["path"].startswith("/redirect/")]
    assert len(redirect_hop) == 1 and not redirect_hop[0]["authorization"]
    assert sum(p == image_path for _, p, _ in image_host.requests) == hits_before + 1
    objects.update({"task": task, "submitted": submitted, "polled": polled, "finished": finished,
                    "request": task.request, "image": task.images[0], "updates": updates})

    async def with_async_client():
        async with make_client(api_key=key) as aio:
            objects["async client"] = aio
            done = await aio.generate("an async fox", on_retry=on_retry)
            simulator.api_keys = {"other"}
            try:
                await aio.submit(qw.ImageRequest("refused"))  # raised inside _call
            except qw.AuthenticationError as error:
                errors["async 401"] = error
            finally:
                simulator.api_keys = None
            return done

    objects["async task"] = asyncio.run(with_async_client())
    assert isinstance(errors["async 401"], qw.AuthenticationError)

    # -- errors of every kind -----------------------------------------------------------------
    simulator.api_keys = {"other"}
    expect("401", qw.AuthenticationError, client.generate, "a fox")
    simulator.api_keys = None
    simulator.inject(echo(401, key), method="POST")
    expect("401 echo", qw.AuthenticationError, client.generate, "a fox")
    simulator.inject(echo(429, key, **{"Retry-After": "0"}), method="POST", count=2)
    objects["after 429s"] = client.generate("a fox after 429s", on_retry=on_retry)
    simulator.inject(echo(429, key, **{"Retry-After": "0"}), method="POST", count=10)
    expect("429 persistent", qw.RateLimitError, client.submit, qw.ImageRequest("a fox"), on_retry=on_retry)
    simulator.faults.clear()
    simulator.inject(echo(503, key), method="GET", count=2)
    objects["after 503s"] = client.generate("a fox after 503s", on_retry=on_retry)
    # every attempt of a submission loses its answer (each resent with its key): unknown
    simulator.inject(echo(500, key), method="POST", count=100)
    expect("500 submit", qw.SubmitOutcomeUnknownError, client.submit, qw.ImageRequest("a fox"))
    simulator.faults.clear()
    simulator.inject(echo(502, key, content_type="text/plain"), method="POST", process=True, count=100)
    expect("502 submit", qw.SubmitOutcomeUnknownError, client.submit, qw.ImageRequest("a fox"))
    simulator.faults.clear()
    simulator.inject(echo(400, key, content_type="text/plain"), method="POST")
    expect("400 text", qw.APIError, client.submit, qw.ImageRequest("a fox"))
    probe = client.submit(qw.ImageRequest("a fox polled through errors"))
    simulator.inject(echo(500, key), method="GET", count=10)
    expect("500 poll persistent", qw.ServerError, client.get_task, probe.task_id, on_retry=on_retry)
    simulator.faults.clear()
    simulator.inject(SimResponse(action="drop"), method="POST", process=True, count=100)
    expect("dropped POST", qw.SubmitOutcomeUnknownError, client.submit, qw.ImageRequest("dropped"))
    simulator.faults.clear()
    # malformed answers that do not echo the key (those that do: the tests below)
    simulator.inject(SimResponse(200, {"Content-Type": "application/json"}, b'{"code": 200, "data": ['),
                     method="POST", process=True, count=100)
    expect("malformed submit", qw.SubmitOutcomeUnknownError, client.submit, qw.ImageRequest("odd"))
    simulator.faults.clear()
    wrong_id = json.dumps({"code": 200, "data": {"id": "task_01OTHER", "status": "completed"}}).encode()
    simulator.inject(SimResponse(200, {"Content-Type": "application/json"}, wrong_id),
                     method="GET", count=10)
    expect("malformed poll", qw.MalformedResponseError, client.get_task, probe.task_id, on_retry=on_retry)
    simulator.faults.clear()
    expect("404", qw.NotFoundError, client.get_task, "task_01MISSING")
    failed = json.dumps({"code": 200, "data": {"status": "failed", "error": {
        "code": "moderation", "message": f"the prompt was refused for key {key} (Bearer {key})"}}})
    simulator.inject(SimResponse(200, {"Content-Type": "application/json"}, failed.encode()),
                     method="GET", path_prefix="/v1/tasks/")
    failure = expect("failed task", qw.TaskFailedError, client.generate, "a forbidden fox")
    assert "***" in failure.task.error  # the echo arrived, and was masked
    objects["failed task"] = failure.task
    expect("invalid request", qw.RequestValidationError, client.generate, "   ")
    expect("fetch refused", qw.ImageFetchError, client.fetch_image, "javascript:alert(1)")
    expect("fetch 404", qw.ImageFetchError, client.fetch_image, f"{image_host.url}/sim-images/none/0.png")

    slow = qw.QwenClient(key, base_url=server.url, timeout=0.2, **fast_options())
    objects["slow client"] = slow
    # answers 30 s late, far beyond the 0.2 s read timeout and the 0.6 s deadline
    simulator.inject(delay=30.0, method="POST", count=100)
    expect("timeout submit", qw.SubmitOutcomeUnknownError, slow.submit, qw.ImageRequest("slow"))
    simulator.faults.clear()
    late = slow.submit(qw.ImageRequest("a fox watched too briefly"))
    simulator.inject(delay=30.0, method="GET", count=100)
    expect("timeout wait", qw.TaskTimeoutError, slow.wait, late, timeout=0.6, on_retry=on_retry)
    simulator.faults.clear()
    assert errors["timeout submit"].__cause__ is not None

    # -- a sweep, with one cell refused by an echoing server -----------------------------------
    simulator.inject(echo(400, key), method="POST")
    sweep = Sweep(client, SweepPlan.of({"prompt": ["a fox", "a wolf"], "size": ["1:1", "16:9"]}))
    grid = SweepGrid(sweep)
    sweep.start().wait(60)
    assert sweep.done_count == 4 and sweep.failed_count == 1
    objects.update({"sweep": sweep, "grid": grid, "sweep cells": sweep.cells,
                    "sweep errors": sweep.errors, "sweep report": sweep.cancel_report()})
    widget_roots.append(grid)
    frames["sweep.frame"] = sweep.frame()

    # -- the key from the environment: qw.generate and the default client ---------------------
    monkeypatch.setenv("APIMART_API_KEY", key)
    monkeypatch.setenv("APIMART_BASE_URL", server.url)
    objects["qw.generate"] = qw.generate("a fox from the environment")
    objects["default client"] = qw.default_client()

    # -- resume: an unfinished task picked up by a new client --------------------------------
    pending = client.submit(qw.ImageRequest("a fox to resume"))
    later = qw.QwenClient(key, base_url=server.url, **fast_options())
    resumed = later.resume()
    assert pending.task_id in [t.task_id for t in resumed]
    objects.update({"resumed": resumed, "later client": later})

    # -- the panel: a key pasted into the demo panel's field ----------------------------------
    panel = Panel(demo_client(), save_dir=tmp_path / "saved")
    assert panel.client.demo
    panel.banner.key_field.value = key
    assert panel.banner.key_field.value == "" and not panel.client.demo
    assert panel.client.base_url == server.url
    panel.form.prompt.value = "a fox from the panel"
    card = panel.generate()
    assert card.future.result(30).status is qw.TaskStatus.COMPLETED
    simulator.inject(echo(400, key), method="POST")
    refused = panel.generate()
    assert refused.future.result(30) is None and "***" in refused.message.value
    lone = Card(client, request=qw.ImageRequest("a card on its own"))
    lone.start_generation(lone.request).result(30)
    widget_roots += [panel, lone]
    objects.update({"panel": panel, "card": card, "refused card": refused, "lone card": lone,
                    "gallery": panel.gallery, "panel client": panel.client})
    frames["panel.frame"] = panel.frame()

    # -- a real kernel: env key, %qwen, a direct generation, history, a verbose traceback ------
    notebook_text = run_notebook(tmp_path / "executed.ipynb")
    notebook = nbformat.reads(notebook_text, as_version=4)
    state = notebook.metadata["widgets"][WIDGET_STATE]["state"]
    assert len(state) > 20  # the panel and the card really were stored
    assert any("HTTP 404" in json.dumps(o) for o in notebook.cells[-1].outputs)
    assert "Task(task_id=" in json.dumps(notebook.cells[3].outputs)
    sinks.add("executed notebook (.ipynb)", notebook_text)
    sinks.add("notebook widget state", json.dumps(state))

    # -- the data -----------------------------------------------------------------------------
    all_tasks = [task, finished, objects["async task"], objects["after 429s"], objects["after 503s"],
                 failure.task, objects["qw.generate"], *resumed, *sweep.tasks]
    frames["to_frame"] = qw.to_frame(all_tasks)
    frames["history"] = qw.history(client.aio.journal)
    frames["history(default)"] = qw.history()
    assert "***" in " ".join(frames["history"]["error"].dropna())  # echoes kept, masked
    objects["journal entries"] = client.aio.journal.entries()

    # -- positive controls: the key did reach the API, and only the API -----------------------
    api_auth = [h.get("Authorization") or h.get("authorization") for m, p, h in simulator.headers_seen
                if p.startswith("/v1/")]
    assert api_auth.count(f"Bearer {key}") > 40
    image_requests = image_host.requests
    assert len(image_requests) >= 10  # kept copies, downloads, the redirect's target, the kernel's
    for method, path, headers in image_requests:
        assert "authorization" not in {name.lower() for name in headers}, (method, path)
        assert not any(key in v or hex_part in v for v in headers.values()), (method, path)
        assert hex_part not in path
    non_api = [h for m, p, h in simulator.headers_seen if not p.startswith("/v1/")]
    assert non_api and not any("authorization" in {n.lower() for n in h} for h in non_api)
    assert len(retried) >= 10  # the retries really happened (and their errors are searched)
    assert any(r.levelno == logging.DEBUG and r.name.startswith("httpcore") for r in caplog.records)

    verbose = VerboseTB(theme_name="nocolor").text(type(errors["async 401"]), errors["async 401"],
                                                   errors["async 401"].__traceback__)
    assert "_call" in verbose and "path='/v1/images/generations'" in verbose  # it shows arguments

    # -- collect every sink -------------------------------------------------------------------
    for label, error in errors.items():
        sinks.add_error(label, error)
    for number, error in enumerate(retried):
        sinks.add_error(f"on_retry #{number}", error)
    for label, obj in objects.items():
        sinks.add_object(label, obj)
    for label, frame in frames.items():
        sinks.add_frame(label, frame)
    sinks.add("widget state (trees)", widget_state_json(widget_roots))
    sinks.add("widget state (every live widget)", json.dumps(
        [w.get_state() for w in list(widget_module._instances.values())],
        default=lambda b: bytes(b).decode("latin-1")))
    files = sinks.add_tree(home)
    assert files >= 10 and any(name.endswith("-wal") for name, _ in sinks.items if name.startswith("file"))
    records = caplog.records
    sinks.add("caplog.text", caplog.text)
    for number, record in enumerate(records):
        sinks.add(f"log #{number} {record.name}", logging.Formatter().format(record))
        sinks.add(f"log #{number} args", repr(record.args))
    for number, warning in enumerate(recwarn.list):
        sinks.add(f"warning #{number}", f"{warning.category.__name__}: {warning.message}")
    out, err = capfd.readouterr()
    sinks.add("stdout", out)
    sinks.add("stderr", err)

    leaks = sinks.leaks()
    print(f"\nsinks searched: {len(sinks.items)} ({files} files under QWEN_WIDGETS_HOME, "
          f"{len(records)} log records, {len(errors) + len(retried)} errors)")
    assert len(sinks.items) > 500
    assert not leaks, "\n".join(leaks)


# -- bugs found by the search above, each with its smallest input ------------------------------


def test_a_key_echoed_in_a_malformed_poll_answer_is_masked_in_the_error(server, simulator):
    key, hex_part = planted_key()
    client = qw.QwenClient(key, base_url=server.url, **fast_options())
    task = client.submit(qw.ImageRequest("a fox"))
    body = json.dumps({"code": 200, "data": {"id": key, "status": "completed"}}).encode()
    simulator.inject(SimResponse(200, {"Content-Type": "application/json"}, body), method="GET", count=10)
    with pytest.raises(qw.MalformedResponseError) as caught:
        client.get_task(task.task_id)
    assert "***" in str(caught.value) and key not in str(caught.value)  # str() is masked...
    sinks = Sinks(key, hex_part)
    sinks.add_error("malformed poll", caught.value)
    assert not sinks.leaks(), sinks.leaks()  # ...repr() and the verbose tracebacks are not


def test_a_key_echoed_in_an_unparseable_answer_stays_out_of_verbose_tracebacks(server, simulator):
    key, hex_part = planted_key()
    client = qw.QwenClient(key, base_url=server.url, **fast_options())
    body = b'{"echo": "' + key.encode() + b'", "data": ['
    simulator.inject(SimResponse(200, {"Content-Type": "application/json"}, body),
                     method="POST", process=True, count=100)
    with pytest.raises(qw.SubmitOutcomeUnknownError) as caught:
        client.submit(qw.ImageRequest("a fox"))
    assert "***" in str(caught.value)  # the message is masked
    text = VerboseTB(theme_name="nocolor").text(type(caught.value), caught.value, caught.value.__traceback__)
    assert key not in text and hex_part not in text


def test_a_key_echoed_across_the_shortening_cut_is_masked(server, simulator):
    key, hex_part = planted_key()
    client = qw.QwenClient(key, base_url=server.url, **fast_options())
    body = ("x" * 40 + key + "y" * 100).encode()  # the key straddles the 80-character cut
    simulator.inject(SimResponse(200, {"Content-Type": "text/plain"}, body), method="POST", process=True,
                     count=100)
    with pytest.raises(qw.SubmitOutcomeUnknownError) as caught:
        client.submit(qw.ImageRequest("a fox"))
    sinks = Sinks(key, hex_part)
    sinks.add_object("error", caught.value)
    sinks.add_frame("history", qw.history(client.aio.journal))
    assert "not valid JSON" in str(caught.value)
    assert not sinks.leaks(), sinks.leaks()


def _unknown_option(key, tmp_path, monkeypatch):
    qw.QwenClient(key, base_url="http://127.0.0.1:9", bogus_option=1)


def _stray_character(key, tmp_path, monkeypatch):
    qw.AsyncQwenClient(key + "\u200b", base_url="http://127.0.0.1:9")  # pasted with a zero-width space


def _unusable_home(key, tmp_path, monkeypatch):
    (tmp_path / "a_file").write_text("")
    monkeypatch.setenv("QWEN_WIDGETS_HOME", str(tmp_path / "a_file" / "home"))
    qw.QwenClient(key, base_url="http://127.0.0.1:9")


@pytest.mark.parametrize("build", [_unknown_option, _stray_character, _unusable_home],
                         ids=["unknown-option", "stray-character", "unusable-home"])
def test_an_error_while_building_a_client_keeps_the_key_out_of_verbose_tracebacks(
        build, tmp_path, monkeypatch):
    key, hex_part = planted_key()
    with pytest.raises(Exception) as caught:
        build(key, tmp_path, monkeypatch)
    error = caught.value
    assert key not in "".join(traceback.format_exception(error))  # the plain traceback is clean
    tb = error.__traceback__
    while tb is not None and tb.tb_frame.f_code.co_filename == __file__:
        tb = tb.tb_next  # the test's own frames hold the key it passed in; the package's must not
    text = VerboseTB(theme_name="nocolor").text(type(error), error, tb)
    assert "__init__" in text
    assert hex_part not in text


def test_a_traceback_with_locals_of_a_failed_construction_can_be_formatted():
    key, _ = planted_key()
    with pytest.raises(qw.RequestValidationError) as caught:
        qw.AsyncQwenClient(key + " x")
    text = "".join(traceback.TracebackException.from_exception(caught.value, capture_locals=True).format())
    assert "api_key" in text


def test_a_malformed_key_pasted_into_the_panel_is_reported_not_raised(monkeypatch):
    qw.set_default_client(None)
    key, hex_part = planted_key()
    panel = Panel(demo_client())
    raised = None
    try:
        panel.banner.key_field.value = key + "\u200b"
    except Exception as error:  # noqa: BLE001 -- whatever a frontend's comm message would hit
        raised = error
    assert panel.banner.key_field.value == "" and panel.client.demo
    text = VerboseTB(theme_name="nocolor").text(type(raised), raised, raised.__traceback__) if raised else ""
    assert hex_part not in text
    assert raised is None and "api_key" in widget_state_json([panel])


def _php_json(value) -> bytes:
    """JSON as PHP writes it by default: every `/` escaped as `\\/`."""
    return json.dumps(value).replace("/", "\\/").encode()


def test_a_key_with_a_slash_echoed_json_escaped_is_masked_everywhere(server, simulator):
    """Masking the raw text missed `\\/`, and decoding turned it back into the key: the error,
    the journal and history() showed it."""
    _, hex_part = planted_key()
    key = f"sk-{hex_part[:16]}/{hex_part[16:]}"
    client = qw.QwenClient(key, base_url=server.url, **fast_options())
    refusal = _php_json({"error": {"code": 400, "type": "invalid", "message": f"bad key {key}"}})
    simulator.inject(SimResponse(400, {"Content-Type": "application/json"}, refusal), method="POST")
    with pytest.raises(qw.APIError) as refused:
        client.submit(qw.ImageRequest("a fox"))
    task = client.submit(qw.ImageRequest("a wolf"))
    failed = _php_json({"code": 200, "data": {"id": task.task_id, "status": "failed",
                                              "error": {"message": f"quota of {key} used"}}})
    simulator.inject(SimResponse(200, {"Content-Type": "application/json"}, failed), method="GET")
    seen = client.wait(task)
    every_spelling = "".join(f"\\u{ord(char):04X}" for char in key)
    simulator.inject(SimResponse(401, {"Content-Type": "application/json"},
                                 b'{"error": {"message": "' + every_spelling.encode() + b'"}}'), method="GET")
    with pytest.raises(qw.AuthenticationError) as unicode_escaped:
        client.get_task(task.task_id)
    assert "***" in str(refused.value) and "***" in seen.error and "***" in str(unicode_escaped.value)
    sinks = Sinks(key, hex_part)
    sinks.needles += [key.replace("/", "\\/")]
    sinks.add_error("refused submit", refused.value)
    sinks.add_error("unicode-escaped refusal", unicode_escaped.value)
    sinks.add_object("failed task", seen)
    sinks.add_frame("history", qw.history(client.aio.journal))
    sinks.add("journal", Path(client.aio.journal.path).read_bytes())
    assert not sinks.leaks(), sinks.leaks()
