"""The journal (written before the network) and the images kept on disk, against the loopback server."""

from __future__ import annotations

import hashlib
import io
import json
import os
import secrets
import sqlite3
import stat
import subprocess
import sys
import textwrap
import time
import warnings
from datetime import datetime, timedelta, timezone
from pathlib import Path

import httpx
import pytest
from PIL import Image

import qwen_widgets as qw
from qwen_widgets.model.frame import HISTORY_COLUMNS
from qwen_widgets.store.home import home_dir
from qwen_widgets.model.submission import EntryState
from qwen_widgets.store.journal import Journal
from qwen_widgets.store.schema import SCHEMA_VERSION
from qwen_widgets._magics import unfinished_notice
from qwen_widgets.model.images import png_with_text
from qwen_widgets.store.images import disk_usage, prune
from qwen_widgets.simulator import SimResponse, Simulator, serve

from ..conftest import TEST_KEY, TIME_SCALE, fast_options

pytestmark = pytest.mark.anyio

REPO = Path(__file__).resolve().parents[2]


# -- helpers -------------------------------------------------------------------------------------


def home() -> Path:
    return Path(os.environ["QWEN_WIDGETS_HOME"])


def journal_file() -> Path:
    return home() / "journal.sqlite"


def raw_rows(sql: str, args: tuple = (), path: Path | None = None) -> list[tuple]:
    """Read the journal through a connection of its own, as another process would."""
    db = sqlite3.connect(str(path or journal_file()))
    try:
        return db.execute(sql, args).fetchall()
    finally:
        db.close()


def raw_execute(sql: str, args: tuple = ()) -> None:
    db = sqlite3.connect(str(journal_file()), isolation_level=None)
    try:
        db.execute(sql, args)
    finally:
        db.close()


def states() -> list[tuple[str, str | None, str | None]]:
    return raw_rows("SELECT state, task_id, error FROM submissions ORDER BY created_at")


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def run_child(script: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", textwrap.dedent(script), *args], cwd=REPO,
                          capture_output=True, text=True, timeout=60, env=os.environ.copy())


def quiet_demo_client(**simulator_options) -> qw.AsyncQwenClient:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", qw.DemoModeWarning)
        return qw.AsyncQwenClient(simulator=Simulator(time_scale=TIME_SCALE, **simulator_options),
                                  **fast_options())


class SpyTransport(httpx.AsyncBaseTransport):
    """On every POST, looks at the journal file through a separate connection, then sends."""

    def __init__(self, path: Path):
        self.path = path
        self.inner = httpx.AsyncHTTPTransport()
        self.seen_at_post: list[list[tuple]] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if request.method == "POST":
            self.seen_at_post.append(raw_rows(
                "SELECT state, request, task_id, pid, base_url FROM submissions", path=self.path))
        return await self.inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self.inner.aclose()


# -- 1. journal before network -------------------------------------------------------------------


async def test_row_is_written_before_the_post_and_followed_to_the_end(server, make_client):
    request = qw.ImageRequest("a journaled fox", size="16:9", n=2)
    spy = SpyTransport(home() / "journal.sqlite")
    async with make_client(transport=spy) as client:
        task = await client.submit(request)
        assert len(spy.seen_at_post) == 1
        (state, stored, task_id, pid, base_url), = spy.seen_at_post[0]
        assert state == "submitting" and task_id is None
        assert json.loads(stored) == request.to_payload()
        assert pid == os.getpid() and base_url == server.url

        assert states() == [("submitted", task.task_id, None)]
        finished = await client.wait(task)
    assert finished.status is qw.TaskStatus.COMPLETED
    (state, task_id, error), = states()
    assert (state, task_id, error) == ("finished", task.task_id, None)
    (stored_task,) = raw_rows("SELECT task FROM submissions")
    data = json.loads(stored_task[0])
    assert data["status"] == "completed" and len(data["images"]) == 2
    assert [i["url"] for i in data["images"]] == finished.urls
    assert server.simulator.count("POST") == 1


async def test_journal_entries_read_back_the_request_and_task(make_client):
    request = qw.ImageRequest("read me back", negative_prompt="blur", n=2, resolution="2K")
    async with make_client() as client:
        task = await client.generate(request)
    entry, = Journal(journal_file()).entries()
    assert entry.state is EntryState.FINISHED and entry.request == request
    assert entry.task.task_id == task.task_id and entry.task.request == request
    assert entry.task.urls == task.urls and entry.task.status is qw.TaskStatus.COMPLETED
    assert [i.local_path for i in entry.task.images] == [i.local_path for i in task.images]
    assert entry.created_at.tzinfo is not None
    assert abs(entry.created_at.timestamp() - time.time()) < 60


async def test_waiting_twice_or_on_a_foreign_task_keeps_one_row_per_task(server, make_client, tmp_path):
    async with make_client(journal=Journal(tmp_path / "elsewhere.sqlite")) as other:
        foreign = await other.submit(qw.ImageRequest("submitted elsewhere"))
    async with make_client() as client:
        await client.wait(foreign.task_id)
        await client.wait(foreign.task_id)
    assert states() == [("finished", foreign.task_id, None)]
    (request,) = raw_rows("SELECT request FROM submissions")
    assert request == (None,)  # a bare id carries no request; nothing is invented


# -- 2. the other states -------------------------------------------------------------------------


async def test_dropped_post_without_resending_is_unknown_with_a_reason(server, make_client):
    server.simulator.inject(SimResponse(action="drop"), method="POST", process=True)
    async with make_client(resend_with_key=False) as client:
        with pytest.raises(qw.SubmitOutcomeUnknownError) as caught:
            await client.generate("a dropped fox")
    (state, task_id, error), = states()
    assert state == "unknown" and task_id is None
    assert error and error == caught.value.reason
    assert server.simulator.count("POST") == 1 and len(server.simulator.tasks) == 1


async def test_gateway_answer_after_processing_without_resending_is_unknown(server, make_client):
    server.simulator.inject(SimResponse(504, {}, b"gateway timeout"), method="POST", process=True)
    async with make_client(resend_with_key=False) as client:
        with pytest.raises(qw.SubmitOutcomeUnknownError):
            await client.submit(qw.ImageRequest("a fox"))
    assert [s for s, _, _ in states()] == ["unknown"]
    assert server.simulator.count("POST") == 1


async def test_401_is_refused(server, make_client):
    server.simulator.api_keys = {"other"}
    async with make_client() as client:
        with pytest.raises(qw.AuthenticationError):
            await client.submit(qw.ImageRequest("a fox"))
    (state, task_id, error), = states()
    assert state == "refused" and task_id is None
    assert "Invalid or missing API key" in error
    assert server.simulator.tasks == {}


async def test_400_is_refused_with_the_server_message(server, make_client):
    body = b'{"error": {"code": 400, "message": "prompt rejected by policy", "type": "invalid_request_error"}}'
    server.simulator.inject(SimResponse(400, {"Content-Type": "application/json"}, body), method="POST")
    async with make_client() as client:
        with pytest.raises(qw.APIError):
            await client.submit(qw.ImageRequest("a fox"))
    (state, task_id, error), = states()
    assert (state, task_id) == ("refused", None) and "prompt rejected by policy" in error


async def test_connection_refused_before_sending_is_refused():
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    async with qw.AsyncQwenClient(TEST_KEY, base_url=f"http://127.0.0.1:{port}", **fast_options()) as client:
        with pytest.raises(qw.TransportError):
            await client.submit(qw.ImageRequest("a fox"))
    (state, task_id, error), = states()
    assert (state, task_id) == ("refused", None) and "ConnectError" in error


async def test_failed_task_is_finished_with_status_and_error(server, make_client):
    server.simulator.failure_rate = 1.0
    async with make_client() as client:
        with pytest.raises(qw.TaskFailedError) as caught:
            await client.generate("a doomed fox")
    (state, task_id, error), = states()
    assert state == "finished" and task_id == caught.value.task.task_id and error is None
    entry, = Journal(journal_file()).entries()
    assert entry.task.status is qw.TaskStatus.FAILED
    assert entry.task.error == caught.value.task.error and entry.task.error
    assert entry.task.images == () and raw_rows("SELECT * FROM images") == []


# -- 3. the key never reaches the journal --------------------------------------------------------


def files_under(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file()]


async def test_the_key_never_reaches_any_file_in_the_home_folder(server, make_client):
    key = "sk-PLANTED-" + secrets.token_hex(16)
    marker = "marker-" + secrets.token_hex(8)
    sim = server.simulator
    echo = json.dumps({"error": {"message": f"bad key {key}", "type": "invalid_request_error"}}).encode()
    retry = qw.RetryPolicy(max_attempts=2, backoff_base=0.01, backoff_cap=0.02)  # lost twice: unknown
    async with make_client(api_key=key, retry=retry) as client:
        await client.generate(f"{marker} ok", n=2)                           # finished, kept
        sim.inject(SimResponse(502, {}, f"proxy saw {key}".encode()), method="GET")
        await client.generate(f"{marker} after a 502")                       # a retried poll
        sim.inject(SimResponse(action="drop"), method="POST", process=True, count=2)
        with pytest.raises(qw.SubmitOutcomeUnknownError):                   # unknown
            await client.submit(qw.ImageRequest(f"{marker} dropped"))
        sim.inject(SimResponse(200, {}, f"<html>{key}</html>".encode()), method="POST", process=True, count=2)
        with pytest.raises(qw.SubmitOutcomeUnknownError):                   # unknown, malformed
            await client.submit(qw.ImageRequest(f"{marker} malformed"))
        sim.inject(SimResponse(400, {"Content-Type": "application/json"}, echo), method="POST")
        with pytest.raises(qw.APIError):                                     # refused, echoed
            await client.submit(qw.ImageRequest(f"{marker} echoed"))
        sim.inject(SimResponse(500, {}, f"boom {key}".encode()), method="POST", count=2)
        with pytest.raises(qw.SubmitOutcomeUnknownError):                   # unknown, 5xx
            await client.submit(qw.ImageRequest(f"{marker} 500"))
        sim.failure_rate = 1.0
        with pytest.raises(qw.TaskFailedError):                              # finished, failed
            await client.generate(f"{marker} failed")
        sim.failure_rate, sim.api_keys = 0.0, {"someone-else"}
        with pytest.raises(qw.AuthenticationError):                          # refused, 401
            await client.submit(qw.ImageRequest(f"{marker} 401"))
        history = qw.history(client.journal)

    assert sorted(s for s, _, _ in states()) == ["finished"] * 3 + ["refused"] * 2 + ["unknown"] * 3
    assert all(e["authorization"] for e in sim.log if e["path"].startswith("/v1/"))
    files = files_under(home())
    assert journal_file() in files and len(list((home() / "images").iterdir())) == 3
    everything = b"".join(p.read_bytes() for p in files)
    assert marker.encode() in everything  # the search does see what the journal holds
    assert key.encode() not in everything
    assert key[len("sk-PLANTED-"):].encode() not in everything
    assert key not in history.to_csv()


async def test_a_key_echoed_in_a_failed_tasks_error_is_not_journaled(server, make_client):
    key = "sk-PLANTED-" + secrets.token_hex(16)
    async with make_client(api_key=key) as client:
        task = await client.submit(qw.ImageRequest("a fox"))
        body = json.dumps({"code": 200, "data": {
            "id": task.task_id, "status": "failed",
            "error": {"message": f"quota of key {key} exhausted"}}}).encode()
        server.simulator.inject(SimResponse(200, {"Content-Type": "application/json"}, body), method="GET")
        final = await client.wait(task)
    assert final.status is qw.TaskStatus.FAILED
    everything = b"".join(p.read_bytes() for p in files_under(home()))
    assert key.encode() not in everything


# -- 4. permissions ------------------------------------------------------------------------------


async def test_home_folder_journal_and_kept_images_are_private(make_client):
    assert not home().exists()
    async with make_client() as client:
        task = await client.generate("a private fox")
    assert mode(home()) == 0o700
    assert mode(journal_file()) == 0o600
    assert mode(home() / "images") == 0o700
    assert all(mode(image.local_path) == 0o600 for image in task.images)


def test_journal_wal_is_as_private_as_the_journal(tmp_path, monkeypatch):
    shared = tmp_path / "existing_home"
    shared.mkdir(mode=0o755)
    shared.chmod(0o755)
    monkeypatch.setenv("QWEN_WIDGETS_HOME", str(shared))
    journal = Journal.default()
    journal.begin(qw.ImageRequest("a fox"), "http://api.example")
    wal = shared / "journal.sqlite-wal"
    assert wal.exists() and mode(shared / "journal.sqlite") == 0o600
    assert mode(wal) & 0o077 == 0


def test_home_dir_is_created_private_even_when_nested(tmp_path, monkeypatch):
    monkeypatch.setenv("QWEN_WIDGETS_HOME", str(tmp_path / "a" / "b" / "home"))
    path = home_dir()
    assert path == tmp_path / "a" / "b" / "home" and mode(path) == 0o700


@pytest.mark.parametrize("where", ["the home itself", "a folder above it"])
def test_a_home_that_is_a_file_names_the_setting_and_what_to_do(tmp_path, monkeypatch, where):
    (tmp_path / "a_file").write_text("")
    home = tmp_path / "a_file" if where == "the home itself" else tmp_path / "a_file" / "home"
    monkeypatch.setenv("QWEN_WIDGETS_HOME", str(home))
    with pytest.raises(qw.RequestValidationError) as caught:
        qw.QwenClient("sk-test-0123456789abcdef", base_url="http://127.0.0.1:9")
    message = str(caught.value)
    assert caught.value.field == "QWEN_WIDGETS_HOME" and str(home) in message
    assert "is a file, not a folder" in message and "set QWEN_WIDGETS_HOME to a folder" in message


def _newer_journal(path: Path, *, unreadable_schema: bool) -> None:
    """A journal as a future version might write it: a higher format, and perhaps a table this
    version's SQL does not fit."""
    if not unreadable_schema:
        Journal(path).close()  # today's tables
    db = sqlite3.connect(path, isolation_level=None)
    if unreadable_schema:
        db.execute("CREATE TABLE submissions (local_id TEXT PRIMARY KEY, payload BLOB) STRICT")
    db.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 2}")
    db.close()


@pytest.mark.parametrize("unreadable_schema", [False, True], ids=["same-tables", "changed-tables"])
def test_a_journal_from_a_newer_version_says_so_and_is_left_untouched(tmp_path, monkeypatch, unreadable_schema):
    monkeypatch.setenv("QWEN_WIDGETS_HOME", str(tmp_path))
    path = tmp_path / "journal.sqlite"
    _newer_journal(path, unreadable_schema=unreadable_schema)
    before = path.read_bytes()
    with pytest.raises(qw.JournalError) as caught:
        Journal.default()
    message = str(caught.value)
    assert f"written by a newer qwen_widgets (journal format {SCHEMA_VERSION + 2}" in message
    assert "pip install -U qwen_widgets" in message and "Do not move it aside" in message
    assert "damaged" not in message and caught.value.newer == (SCHEMA_VERSION + 2, SCHEMA_VERSION)
    assert path.read_bytes() == before
    with pytest.raises(qw.JournalError, match="newer qwen_widgets"):
        qw.history()


# -- 5. two processes at once --------------------------------------------------------------------

WRITER = """
    import os, sys, time
    from qwen_widgets import ImageRequest, Task, TaskStatus
    from qwen_widgets.store.journal import Journal
    path, tag, go = sys.argv[1:4]
    journal = Journal(path)
    print("ready", flush=True)
    deadline = time.time() + 30
    while not os.path.exists(go) and time.time() < deadline:
        time.sleep(0.001)
    request = ImageRequest(f"writer {tag}")
    for i in range(100):
        local_id = journal.begin(request, "http://api.example")
        journal.submitted(local_id, Task(f"task_{tag}_{i}", TaskStatus.SUBMITTED, request=request))
    print("done")
"""


def test_two_processes_writing_at_once_lose_nothing(tmp_path):
    path = tmp_path / "shared.sqlite"
    go = tmp_path / "go"
    Journal(path).close()  # the file exists, as it would once any kernel used it
    children = [subprocess.Popen([sys.executable, "-c", textwrap.dedent(WRITER), str(path), tag, str(go)],
                                 cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                for tag in ("A", "B")]
    for child in children:  # both wait on the start line, however long their imports took
        assert child.stdout.readline() == "ready\n", child.communicate(timeout=60)
    go.touch()
    outputs = [child.communicate(timeout=60) for child in children]
    assert [child.returncode for child in children] == [0, 0], outputs
    rows = raw_rows("SELECT local_id, task_id, state, pid FROM submissions", path=path)
    assert len(rows) == 200
    assert len({r[0] for r in rows}) == 200
    assert {r[1] for r in rows} == {f"task_{t}_{i}" for t in "AB" for i in range(100)}
    assert {r[2] for r in rows} == {"submitted"}
    assert {r[3] for r in rows} == {child.pid for child in children}
    assert raw_rows("PRAGMA integrity_check", path=path) == [("ok",)]
    assert len(Journal(path).open_work("http://api.example").unfinished) == 200



def test_open_work_reads_only_the_completed_tasks_with_an_image_neither_kept_nor_failed(tmp_path):
    journal = Journal(tmp_path / "journal.sqlite")
    request = qw.ImageRequest("a keeper fox", n=2)

    def finished(task_id: str, status: qw.TaskStatus = qw.TaskStatus.COMPLETED, error: str | None = None) -> str:
        images = tuple(qw.GeneratedImage(f"https://img.example/{task_id}/{i}.png", i, error=error if i else None)
                       for i in range(2)) if status is qw.TaskStatus.COMPLETED else ()
        return journal.record(qw.Task(task_id, status, images=images, request=request), "http://api.example")

    unkept = finished("task_unkept")
    half_kept = finished("task_half_kept")
    journal.add_image_copy(half_kept, 0, tmp_path / "0.png", "0" * 64)
    kept = finished("task_kept")
    for index in (0, 1):
        journal.add_image_copy(kept, index, tmp_path / f"{index}.png", "1" * 64)
    one_failed = finished("task_one_failed", error="the URL answered 404")
    journal.add_image_copy(one_failed, 0, tmp_path / "2.png", "2" * 64)  # the other image failed
    finished("task_failed", qw.TaskStatus.FAILED)
    journal.record(qw.Task("task_elsewhere", qw.TaskStatus.COMPLETED, request=request,
                           images=(qw.GeneratedImage("https://img.example/x.png", 0),)), "http://other.example")

    work = journal.open_work("http://api.example")
    assert sorted(entry.task.task_id for entry in work.unkept) == ["task_half_kept", "task_unkept"]
    assert not work.unfinished and not work.lost
    half, = (entry for entry in work.unkept if entry.local_id == half_kept)
    assert [image.local_path for image in half.task.images] == [tmp_path / "0.png", None]
    journal.add_image_copy(unkept, 0, tmp_path / "3.png", "3" * 64)
    journal.add_image_copy(unkept, 1, tmp_path / "4.png", "4" * 64)
    journal.add_image_copy(half_kept, 1, tmp_path / "5.png", "5" * 64)
    assert not journal.open_work("http://api.example")  # every image kept or failed: nothing left


# -- 6. orphans ----------------------------------------------------------------------------------

CRASHER = """
    import os, sys
    from qwen_widgets import ImageRequest
    from qwen_widgets.store.journal import Journal
    journal = Journal(sys.argv[1])
    journal.begin(ImageRequest("cut off mid-POST"), "http://api.example")
    print(os.getpid())
    os._exit(0)  # the kernel dies with the POST in flight
"""


def test_settle_orphans_marks_dead_processes_unknown_and_spares_the_living():
    journal = Journal.default()
    result = run_child(CRASHER, str(journal_file()))
    assert result.returncode == 0, result.stderr
    dead_pid = int(result.stdout)
    mine = journal.begin(qw.ImageRequest("still in flight here"), "http://api.example")

    assert journal.settle_orphans() == 1
    by_pid = {pid: (state, error) for pid, state, error in raw_rows("SELECT pid, state, error FROM submissions")}
    assert by_pid[dead_pid][0] == "unknown" and "died" in by_pid[dead_pid][1]
    assert by_pid[os.getpid()] == ("submitting", None)
    assert journal.settle_orphans() == 0  # settled once
    assert [e.local_id for e in journal.entries(states=(EntryState.SUBMITTING,))] == [mine]


# -- 7. keeping images ---------------------------------------------------------------------------


async def test_completed_images_are_kept_with_the_journaled_sha256(make_client):
    async with make_client() as client:
        task = await client.generate("a kept fox", n=3)
        fresh = [await client.fetch_image(url) for url in task.urls]
    images_folder = home() / "images"
    assert [image.local_path.parent for image in task.images] == [images_folder] * 3
    assert all(image.local_path.name.startswith(f"{task.task_id}_{i}-") for i, image in enumerate(task.images))
    assert all(image.local_path.suffix == ".png" for image in task.images)
    copies = {(c.task_id, c.index): (c.path, c.sha256) for c in Journal(journal_file()).image_copies()}
    assert set(copies) == {(task.task_id, i) for i in range(3)}
    for image, data in zip(task.images, fresh):
        path, digest = copies[task.task_id, image.index]
        assert path == image.local_path
        on_disk = image.local_path.read_bytes()
        assert hashlib.sha256(on_disk).hexdigest() == digest
        assert on_disk == data
    assert len(set(fresh)) == 3  # three different images, not one copied thrice


async def test_keep_images_env_zero_keeps_nothing(make_client, monkeypatch):
    monkeypatch.setenv("QWEN_WIDGETS_KEEP_IMAGES", "0")
    async with make_client() as client:
        assert client.keep_images is False
        task = await client.generate("an unkept fox", n=2)
    assert all(image.local_path is None for image in task.images)
    assert Journal(journal_file()).image_copies() == []
    assert not (home() / "images").exists() or not any((home() / "images").iterdir())
    assert states()[0][0] == "finished"  # still journaled


async def test_keep_images_false_keeps_nothing(make_client):
    async with make_client(keep_images=False) as client:
        task = await client.generate("an unkept fox", n=2)
    assert all(image.local_path is None for image in task.images)
    assert Journal(journal_file()).image_copies() == []
    assert not (home() / "images").exists() or not any((home() / "images").iterdir())


async def test_demo_mode_keeps_nothing_on_disk_and_journals_in_memory():
    async with quiet_demo_client() as client:
        assert client.demo and client.keep_images is False
        assert client.journal.path == ":memory:"
        task = await client.generate("a demo fox", n=2)
        entry, = client.journal.entries()
    assert entry.state is EntryState.FINISHED and entry.task.task_id == task.task_id
    assert all(image.local_path is None for image in task.images)
    assert not home().exists()


# -- 8. an expired URL with a saved copy ---------------------------------------------------------


async def test_expired_url_still_serves_the_kept_copy(server, make_client):
    # the simulator's clock jumps past the URL's lifetime once the image was kept: the URL
    # expires on cue, without waiting real seconds that a loaded machine could stretch
    ahead = 0.0
    server.simulator.clock = lambda: time.time() + ahead
    async with make_client() as client:
        task = await client.generate("a fleeting fox")
        image = task.images[0]
        assert image.local_path is not None
        assert await client.fetch_image(image.url) == image.local_path.read_bytes()  # still alive
        ahead = server.simulator.url_lifetime + 60
        with pytest.raises(qw.ImageFetchError, match="403"):
            await client.fetch_image(image.url)
        data = await client.fetch_image(image)
        assert data == image.local_path.read_bytes() and data.startswith(b"\x89PNG")
        with pytest.raises(qw.ImageFetchError):
            await client.fetch_image(image.url)
    simulated_now = datetime.fromtimestamp(server.simulator.clock(), timezone.utc)
    assert image.expiry_warning(simulated_now) is None  # expired, but saved
    assert "expired" in qw.GeneratedImage(image.url, 0, image.expires_at).expiry_warning(simulated_now)


# -- 9. resume -----------------------------------------------------------------------------------


async def test_resume_picks_up_a_task_left_by_a_closed_client(server, make_client):
    server.simulator.duration = 60  # 0.6 s at this scale
    async with make_client() as first:
        submitted = await first.submit(qw.ImageRequest("a fox left behind", n=2))
    assert states() == [("submitted", submitted.task_id, None)]

    async with make_client() as second:  # a new session: same home, same base URL
        resumed = await second.resume()
    task, = resumed
    assert task.task_id == submitted.task_id and task.status is qw.TaskStatus.COMPLETED
    assert task.request == qw.ImageRequest("a fox left behind", n=2)
    assert len(task.images) == 2
    assert all(i.local_path is not None and i.local_path.parent == home() / "images" for i in task.images)
    assert all(i.local_path.read_bytes().startswith(b"\x89PNG") for i in task.images)
    assert states() == [("finished", submitted.task_id, None)]
    assert server.simulator.count("POST") == 1
    async with make_client() as third:
        assert await third.resume() == []  # nothing left to pick up


async def test_resume_warns_about_unknown_submissions_sent_without_resending(server, make_client):
    server.simulator.inject(SimResponse(action="drop"), method="POST", process=True)
    async with make_client(resend_with_key=False) as first:
        with pytest.raises(qw.SubmitOutcomeUnknownError):
            await first.submit(qw.ImageRequest("a lost fox"))
    gets = server.simulator.count("GET")
    async with make_client() as second:
        with pytest.warns(UserWarning, match="unknown") as caught:
            resumed = await second.resume()
    assert resumed == []
    said, = (str(w.message) for w in caught if w.category is UserWarning)  # not another test's ResourceWarning
    assert "1 submission" in said
    assert server.simulator.count("POST") == 1 and server.simulator.count("GET") == gets
    assert [s for s, _, _ in states()] == ["unknown"]


async def test_resume_settles_orphans_of_dead_processes_as_unknown(server, make_client):
    home_dir()
    result = run_child(CRASHER.replace('"http://api.example"', repr(server.url)), str(journal_file()))
    assert result.returncode == 0, result.stderr
    async with make_client() as client:
        with pytest.warns(UserWarning, match="unknown"):
            assert await client.resume() == []
    assert [s for s, _, _ in states()] == ["unknown"]
    assert server.simulator.count("POST") == 0


async def test_resume_sends_nothing_for_work_older_than_a_day(server, make_client):
    server.simulator.duration = 60
    server.simulator.inject(SimResponse(action="drop"), method="POST", process=True, count=100)
    async with make_client(retry=qw.RetryPolicy(max_attempts=2, backoff_base=0.01)) as first:
        with pytest.raises(qw.SubmitOutcomeUnknownError):
            await first.submit(qw.ImageRequest("an old lost fox"))
        server.simulator.faults.clear()
        await first.submit(qw.ImageRequest("an old fox"))
    raw_execute("UPDATE submissions SET created_at = created_at - 25 * 3600")
    gets, posts = server.simulator.count("GET"), server.simulator.count("POST")
    async with make_client() as second:
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # no warning about a stale unknown either
            assert await second.resume() == []
    assert server.simulator.count("GET") == gets
    assert server.simulator.count("POST") == posts  # a key that old may be forgotten: never resent
    # the task id is forgotten by now: journaled expired; the lost answer stays unknown (history)
    assert sorted(s for s, _, _ in states()) == ["expired", "unknown"]


async def test_resume_only_touches_its_own_base_url(server, make_client):
    server.simulator.duration = 60
    async with make_client() as first:
        mine = await first.submit(qw.ImageRequest("mine"))
    foreign = qw.Task("task_from_elsewhere", qw.TaskStatus.SUBMITTED)
    Journal(journal_file()).record(foreign, "https://api.other.example")
    async with make_client() as second:
        resumed = await second.resume()
    assert [t.task_id for t in resumed] == [mine.task_id]
    assert dict((t, s) for s, t, _ in states()) == {mine.task_id: "finished", foreign.task_id: "submitted"}


# -- 10. history ---------------------------------------------------------------------------------


async def test_history_has_one_row_per_image_and_per_unsent_submission(server, make_client):
    sim = server.simulator
    async with make_client() as client:
        done = await client.generate("a finished fox", n=2)
        sim.inject(SimResponse(action="drop"), method="POST", process=True)
        async with make_client(resend_with_key=False) as old_gateway:
            with pytest.raises(qw.SubmitOutcomeUnknownError):
                await old_gateway.submit(qw.ImageRequest("a lost fox", size="16:9"))
        sim.api_keys = {"other"}
        with pytest.raises(qw.AuthenticationError):
            await client.submit(qw.ImageRequest("a refused fox"))
        sim.api_keys = None
        sim.failure_rate = 1.0
        with pytest.raises(qw.TaskFailedError):
            await client.generate("a failed fox")
        frame = qw.history(client.journal)

    assert list(frame.columns) == list(HISTORY_COLUMNS)
    assert list(frame.columns) == ["local_id", "journal_state", "submitted_at", *qw.to_frame(done).columns,
                                   "starred", "hidden"]
    assert len(frame) == 5
    finished = frame[frame.prompt == "a finished fox"]
    assert list(finished.journal_state) == ["finished"] * 2
    assert list(finished.image_index) == [0, 1] and list(finished.url) == done.urls
    assert list(finished.local_path) == [str(i.local_path) for i in done.images]
    assert finished.local_id.nunique() == 1 and finished.submitted_at.notna().all()
    assert str(finished.submitted_at.dt.tz) == "UTC"

    lost = frame[frame.prompt == "a lost fox"].iloc[0]
    assert lost.journal_state == "unknown" and lost["size"] == "16:9"
    assert lost.error and pd_missing(lost.url) and pd_missing(lost.task_id)
    refused = frame[frame.prompt == "a refused fox"].iloc[0]
    assert refused.journal_state == "refused" and "API key" in refused.error and pd_missing(refused.url)
    failed = frame[frame.prompt == "a failed fox"].iloc[0]
    assert failed.journal_state == "finished" and failed.status == "failed" and failed.error
    assert pd_missing(failed.url)
    assert frame.local_id.nunique() == 4


def pd_missing(value) -> bool:
    import pandas as pd

    return value is None or bool(pd.isna(value))


def test_history_settles_orphans_first():
    journal = Journal.default()
    result = run_child(CRASHER, str(journal_file()))
    assert result.returncode == 0, result.stderr
    frame = qw.history(journal)
    assert list(frame.journal_state) == ["unknown"]
    assert list(frame.prompt) == ["cut off mid-POST"] and "died" in frame.error[0]


# -- 11. exports ---------------------------------------------------------------------------------


def pixels(data: bytes) -> tuple:
    with Image.open(io.BytesIO(data)) as image:
        return image.size, image.mode, image.tobytes()


def test_save_writes_png_and_sidecar_once_with_the_prompt_inside(server, tmp_path):
    prompt = "un renard roux — 雪の狐"
    with qw.QwenClient(TEST_KEY, base_url=server.url, **fast_options()) as client:
        task = client.generate(prompt, n=2)
        originals = [client.fetch_image(url) for url in task.urls]
        folder = tmp_path / "export"
        paths = qw.save(task, folder, client=client)
        first = {p.name: p.read_bytes() for p in folder.iterdir()}
        again = qw.save([task], folder, client=client)
    assert paths == again == [folder / f"{task.task_id}_{i}.png" for i in range(2)]
    assert sorted(first) == sorted([f"{task.task_id}_{i}.{ext}" for i in range(2) for ext in ("png", "json")])
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == first  # same files, no extras
    for path, original, image in zip(paths, originals, task.images):
        assert pixels(path.read_bytes()) == pixels(original)
        with Image.open(path) as saved:
            assert saved.text["prompt"] == prompt
            embedded = json.loads(saved.text["qwen_widgets"])
        record = json.loads(path.with_suffix(".json").read_text())
        assert record == embedded
        assert record["task_id"] == task.task_id and record["image_index"] == image.index
        assert record["request"]["prompt"] == prompt and record["url"] == image.url
        assert record["status"] == "completed" and record["width"] == image.width


def test_save_uses_the_local_copy_without_downloading(server, tmp_path):
    with qw.QwenClient(TEST_KEY, base_url=server.url, **fast_options()) as client:
        task = client.generate("a fox saved from disk")
        downloads = server.simulator.count("GET", "/sim-images/")
        path, = qw.save(task, tmp_path / "out", client=client)
    assert server.simulator.count("GET", "/sim-images/") == downloads
    assert pixels(path.read_bytes()) == pixels(task.images[0].local_path.read_bytes())


def test_task_save_uses_the_default_client(server, tmp_path, monkeypatch):
    client = qw.QwenClient(TEST_KEY, base_url=server.url, **fast_options(), keep_images=False)
    qw.set_default_client(client)
    with client:
        task = client.generate("a fox saved by the task", n=2)
        assert all(i.local_path is None for i in task.images)  # so save() must download
        paths = qw.save(task, tmp_path / "by_task")
        original = client.fetch_image(task.urls[1])
    assert [p.name for p in paths] == [f"{task.task_id}_0.png", f"{task.task_id}_1.png"]
    assert all(p.with_suffix(".json").exists() for p in paths)
    assert pixels(paths[1].read_bytes()) == pixels(original)
    with Image.open(paths[0]) as saved:
        assert saved.text["prompt"] == "a fox saved by the task"


def test_png_with_text_keeps_pixels_and_leaves_other_formats_alone():
    buffer = io.BytesIO()
    Image.new("RGB", (7, 5), (10, 200, 30)).save(buffer, "PNG")
    png = buffer.getvalue()
    tagged = png_with_text(png, {"prompt": "ünïcode ☃", "other": "x"})
    assert tagged != png and tagged.startswith(png[:33])
    with Image.open(io.BytesIO(tagged)) as image:
        assert image.text == {"prompt": "ünïcode ☃", "other": "x"}
        image.load()  # CRCs are checked while reading
    assert pixels(tagged) == pixels(png)

    jpeg = io.BytesIO()
    Image.new("RGB", (7, 5)).save(jpeg, "JPEG")
    for data in (jpeg.getvalue(), b"", b"not an image", b"\x89PNG\r\n\x1a\n" + b"\0" * 30):
        assert png_with_text(data, {"prompt": "p"}) == data


# -- 12. disk usage and pruning ------------------------------------------------------------------


async def test_disk_usage_and_prune(make_client):
    async with make_client() as client:
        task = await client.generate("a fox to prune", n=2)
        journal = client.journal
        sizes = [i.local_path.stat().st_size for i in task.images]
        usage = disk_usage(journal)
        assert usage == {"folder": str(home() / "images"), "images": 2, "bytes": sum(sizes),
                         "temporary_files": 0, "temporary_bytes": 0}

        assert prune(older_than_days=1, journal=journal)["removed"] == 0  # too young
        assert all(i.local_path.exists() for i in task.images)

        freed = prune(older_than_days=0, journal=journal)
        assert freed == {"removed": 2, "bytes_freed": sum(sizes), "temporary_files_removed": 0}
        assert not any(i.local_path.exists() for i in task.images)
        assert journal.image_copies() == []
        assert disk_usage(journal)["images"] == 0 and disk_usage(journal)["bytes"] == 0
        entry, = journal.entries()
        assert all(i.local_path is None for i in entry.task.images)

        # the in-memory task still names the deleted copy: fetching falls back to the URL
        data = await client.fetch_image(task.images[0])
        assert data == await client.fetch_image(task.urls[0]) and data.startswith(b"\x89PNG")


async def test_disk_usage_ignores_copies_removed_by_hand(make_client):
    async with make_client() as client:
        task = await client.generate("a fox", n=2)
        task.images[0].local_path.unlink()
        usage = disk_usage(client.journal)
    assert usage["images"] == 1 and usage["bytes"] == task.images[1].local_path.stat().st_size


# -- 13. expiry warnings -------------------------------------------------------------------------


def test_expiry_warning_and_the_frames_warning_column():
    now = datetime.now(timezone.utc)
    soon = qw.GeneratedImage("https://x.example/a.png", 0, now + timedelta(minutes=30))
    saved = qw.GeneratedImage("https://x.example/b.png", 1, now + timedelta(minutes=30),
                              local_path=Path("/tmp/b.png"))
    expired = qw.GeneratedImage("https://x.example/c.png", 2, now - timedelta(minutes=1))
    later = qw.GeneratedImage("https://x.example/d.png", 3, now + timedelta(hours=5))
    assert "30 min" in soon.expiry_warning(now) and "not saved" in soon.expiry_warning(now)
    assert saved.expiry_warning(now) is None
    assert "expired" in expired.expiry_warning(now)
    assert later.expiry_warning(now) is None

    frame = qw.to_frame(qw.Task("task_warn", qw.TaskStatus.COMPLETED,
                                images=(soon, saved, expired, later)))
    warnings_column = list(frame.warning)
    assert "min" in warnings_column[0] and "expired" in warnings_column[2]
    assert pd_missing(warnings_column[1]) and pd_missing(warnings_column[3])
    assert list(frame.local_path)[1] == "/tmp/b.png"


# -- 14. the notice on %load_ext and the panel's Resume ------------------------------------------


def submit_slow(server, *prompts: str) -> list[qw.Task]:
    server.simulator.duration = 60  # 0.6 s at this scale
    with qw.QwenClient(TEST_KEY, base_url=server.url, **fast_options()) as client:
        return [client.submit(qw.ImageRequest(p)) for p in prompts]


def test_unfinished_notice_counts_tasks_of_the_configured_api(server, monkeypatch):
    submit_slow(server, "one fox", "two foxes")
    Journal(journal_file()).record(qw.Task("task_other_api", qw.TaskStatus.SUBMITTED), "https://other.example")
    monkeypatch.setenv("APIMART_API_KEY", TEST_KEY)
    monkeypatch.setenv("APIMART_BASE_URL", server.url + "/")
    notice = unfinished_notice()
    assert notice is not None and "\n" not in notice
    assert "2 unfinished" in notice and "resume" in notice
    assert TEST_KEY not in notice

    # without a key the on-disk journal still tells, and says how to pick the tasks up
    monkeypatch.setenv("QWEN_WIDGETS_DEMO", "1")
    assert "2 unfinished" in unfinished_notice() and "APIMART_API_KEY" in unfinished_notice()
    monkeypatch.delenv("QWEN_WIDGETS_DEMO")
    monkeypatch.delenv("APIMART_API_KEY")
    assert "2 unfinished" in unfinished_notice() and "APIMART_API_KEY" in unfinished_notice()


def test_unfinished_notice_is_silent_without_a_journal_or_unfinished_work(server, monkeypatch):
    monkeypatch.setenv("APIMART_API_KEY", TEST_KEY)
    monkeypatch.setenv("APIMART_BASE_URL", server.url)
    assert unfinished_notice() is None
    assert not journal_file().exists()  # nothing created just to look
    with qw.QwenClient(TEST_KEY, base_url=server.url, **fast_options()) as client:
        client.generate("a finished fox")
    assert unfinished_notice() is None


def test_panel_offers_resume_and_its_cards_complete(server):
    from qwen_widgets.widgets import Panel

    left = submit_slow(server, "a fox from before the restart")
    with qw.QwenClient(TEST_KEY, base_url=server.url, **fast_options()) as client:
        panel = Panel(client)
        assert panel.resume_box.layout.display is None
        assert "1 unfinished" in panel.resume_note.value
        cards = panel.resume()
        assert panel.resume_box.layout.display == "none"
        assert len(cards) == 1 and panel.gallery.cards == cards
        task = cards[0].future.result(timeout=20)
    assert task.task_id == left[0].task_id and task.status is qw.TaskStatus.COMPLETED
    assert task.request.prompt == "a fox from before the restart"
    assert all(i.local_path is not None for i in task.images)
    assert states() == [("finished", task.task_id, None)]
    assert server.simulator.count("POST") == 1


def test_panel_hides_resume_when_nothing_is_unfinished(server):
    from qwen_widgets.widgets import Panel

    with qw.QwenClient(TEST_KEY, base_url=server.url, **fast_options()) as client:
        client.generate("a finished fox")
        panel = Panel(client)
        assert panel.resume_box.layout.display == "none"
        assert panel.resume() == []


# -- robustness -----------------------------------------------------------------------------------


async def test_a_reissued_task_id_keeps_both_submissions(tmp_path):
    """A restarted server that hands out the same ids again: nothing breaks."""
    journal = Journal(tmp_path / "journal.sqlite")
    ids = []
    for _ in range(2):
        with serve(Simulator(seed=1, time_scale=TIME_SCALE, task_id_seed="restarted")) as fresh:
            async with qw.AsyncQwenClient(TEST_KEY, base_url=fresh.url, journal=journal,
                                          **fast_options()) as client:
                ids.append((await client.generate("the same fox")).task_id)
    assert ids[0] == ids[1]
    entries = journal.entries()
    assert len(entries) == 2 and entries[-1].task.task_id == ids[1]


async def test_a_journal_failure_after_the_post_never_loses_the_task(make_client, monkeypatch, caplog):
    async with make_client() as client:
        def broken(*args):
            raise qw.JournalError(client.journal.path, sqlite3.OperationalError("disk I/O error"))

        monkeypatch.setattr(client.journal, "submitted", broken)
        task = await client.submit(qw.ImageRequest("a fox"))
    assert task.task_id and "could not update the journal" in caplog.text


async def test_no_journal_no_submission(make_client, monkeypatch, server):
    async with make_client() as client:
        def broken(*args, **kwargs):
            raise qw.JournalError(client.journal.path, sqlite3.OperationalError("database is locked"))

        monkeypatch.setattr(client.journal, "begin", broken)
        with pytest.raises(qw.JournalError, match="nothing was sent") as caught:
            await client.submit(qw.ImageRequest("a fox"))
    assert caught.value.path in str(caught.value)
    assert server.simulator.count("POST") == 0
