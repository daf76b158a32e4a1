"""Adversarial fault suite: the client against servers that misbehave on a real socket.

Two kinds of server: the simulator on loopback with scripted faults (`inject`), and, where
the simulator cannot misbehave enough, `Hostile`, a raw-socket HTTP server of our own whose
behaviour each test scripts connection by connection (resets with SO_LINGER 0, stalls,
drip-fed bodies, garbage status lines).

Every case ends in a typed QwenError or a correct recovery, within a measured bound; a
submission whose answer was lost is sent again only with its own idempotency key, and ends
with exactly one task at the server and all its images (with `resend_with_key=False`: never
sent again); and the journal row of a submission is never left `submitting` once the call
returned. To let a hostile server lose an answer after the task exists, it can forward the
request to a real simulator first (`upstream`) and relay later connections.
"""

from __future__ import annotations

import asyncio
import email.utils
import io
import json
import socket
import struct
import threading
import time
from dataclasses import dataclass, field

import httpx
import pytest
from PIL import Image

import qwen_widgets as qw
from qwen_widgets.model.submission import EntryState
from qwen_widgets.simulator import SimResponse

from ..conftest import TEST_KEY, FakeClock, fast_options

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(60)]

MAX_ATTEMPTS = qw.RetryPolicy().max_attempts
# Slack for elapsed-time bounds, for a loaded machine: each bound it widens stays well
# below the time the failure it guards against would take (a per-call cap, a day, forever).
SLACK = 3.0
JSON = {"Content-Type": "application/json"}


def _png() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (8, 6), (200, 30, 30)).save(buffer, "PNG")
    return buffer.getvalue()


PNG = _png()


# -- a hostile HTTP server of our own ---------------------------------------------------------


@dataclass
class Seen:
    """One request as the hostile server read it."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes = b""
    body_read: bool = False


@dataclass
class Hostile:
    """A raw-socket server on 127.0.0.1; `script(server, conn)` runs for each connection, in
    its own thread. Counts connections and the requests it actually read."""

    script: object
    upstream: str | None = None
    """A simulator's URL: forward() sends requests there, so tasks really get created."""
    connections: int = 0
    requests: list[Seen] = field(default_factory=list)

    def __post_init__(self):
        self.stopped = threading.Event()
        self._lock = threading.Lock()
        self._open: list[socket.socket] = []
        self.listener = socket.create_server(("127.0.0.1", 0), backlog=64)
        self.listener.settimeout(0.05)
        self.port = self.listener.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self._thread = threading.Thread(target=self._accept, daemon=True, name="hostile-accept")
        self._thread.start()

    def _accept(self):
        while not self.stopped.is_set():
            try:
                conn, _ = self.listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            with self._lock:
                self.connections += 1
                number = self.connections
                self._open.append(conn)
            threading.Thread(target=self._run, args=(conn, number), daemon=True).start()

    def _run(self, conn, number):
        conn.settimeout(15)
        try:
            self.script(self, conn, number)
        except OSError:
            pass
        finally:
            try:
                conn.close()
            except OSError:
                pass

    def read_request(self, conn, *, body=True) -> Seen | None:
        """Read one request head (and its body, when asked); None if the client hung up."""
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = conn.recv(65536)
            if not chunk:
                return None
            data += chunk
        head, _, rest = data.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        method, path, _ = lines[0].split(" ", 2)
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        seen = Seen(method, path, headers)
        with self._lock:
            self.requests.append(seen)
        if body:
            length = int(headers.get("content-length") or 0)
            while len(rest) < length:
                chunk = conn.recv(65536)
                if not chunk:
                    break
                rest += chunk
            seen.body, seen.body_read = rest, len(rest) >= length
        return seen

    def forward(self, seen: Seen) -> httpx.Response:
        """Send `seen` to the upstream simulator (the task is created there) and return its answer."""
        headers = {k: v for k, v in seen.headers.items() if k not in ("host", "content-length", "connection")}
        return httpx.request(seen.method, self.upstream + seen.path, headers=headers, content=seen.body)

    def relay(self, conn) -> None:
        """Answer one request with the upstream's own answer."""
        seen = self.read_request(conn)
        if seen is None:
            return
        answer = self.forward(seen)
        kept = {k: v for k, v in answer.headers.items() if k in ("content-type", "idempotency-replayed")}
        conn.sendall(http(answer.status_code, answer.content, kept))

    def count(self, method: str) -> int:
        with self._lock:
            return sum(1 for r in self.requests if r.method == method)

    def close(self):
        self.stopped.set()
        self.listener.close()
        self._thread.join(2)
        with self._lock:
            for conn in self._open:
                try:
                    conn.close()
                except OSError:
                    pass


def rst(conn: socket.socket) -> None:
    """Close with a TCP RST (SO_LINGER 0), as a crashed proxy would."""
    conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    conn.close()


def http(status: int, body: bytes = b"", headers: dict | None = None, *, length: int | None = None,
         reason: str = "OK") -> bytes:
    lines = [f"HTTP/1.1 {status} {reason}"]
    lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
    lines += [f"Content-Length: {len(body) if length is None else length}", "Connection: close"]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def task_json(status: str, *, progress: int = 0, images: list | None = None, **extra) -> bytes:
    data = {"status": status, "progress": progress, "estimated_time": 1, **extra}
    if images is not None:
        data["result"] = {"images": [{"url": u, "expires_at": int(time.time()) + 86_400} for u in images]}
    return json.dumps({"code": 200, "data": data}).encode()


@pytest.fixture
def hostile():
    """start(script) -> a running Hostile; all are closed at the end of the test."""
    servers = []

    def start(script, upstream=None):
        server = Hostile(script, upstream)
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.close()


def client_for(url: str, **overrides) -> qw.AsyncQwenClient:
    return qw.AsyncQwenClient(TEST_KEY, base_url=url, **fast_options(**overrides))


def journal_row(client: qw.AsyncQwenClient):
    """The one journal row of this test's one submission; never left `submitting`."""
    entries = client.journal.entries()
    assert len(entries) == 1, entries
    assert entries[0].state is not EntryState.SUBMITTING
    return entries[0]


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


# -- connection refused --------------------------------------------------------------------------


async def test_refused_submit_is_retried_then_transport_error_and_journaled_refused():
    retries = []
    started = time.monotonic()
    async with client_for(f"http://127.0.0.1:{closed_port()}") as client:
        with pytest.raises(qw.TransportError, match="ConnectError"):
            await client.submit(qw.ImageRequest("a fox"), on_retry=lambda e, d: retries.append(e))
        row = journal_row(client)
    assert time.monotonic() - started < 5.0  # six attempts with 10-50 ms backoff, not 0.5-20 s
    # every attempt failed to connect, so none could have carried the POST: retrying was safe
    assert len(retries) == MAX_ATTEMPTS - 1
    assert all(isinstance(e, qw.TransportError) and "ConnectError" in str(e) for e in retries)
    assert row.state is EntryState.REFUSED and row.task is None
    assert "ConnectError" in row.error and TEST_KEY not in row.error


async def test_refused_port_while_watching_ends_at_the_deadline():
    started = time.monotonic()
    async with client_for(f"http://127.0.0.1:{closed_port()}") as client:
        with pytest.raises(qw.TaskTimeoutError) as caught:
            await client.wait("task_01REFUSED", timeout=0.5)
    elapsed = time.monotonic() - started
    assert 0.4 <= elapsed < 0.5 + SLACK
    assert isinstance(caught.value.__cause__, qw.TransportError)
    assert caught.value.task is None and "never seen" in str(caught.value)


# -- resets ---------------------------------------------------------------------------------------


def _reset_at_once(server, conn, number):
    rst(conn)


def _reset_with_request_unread(server, conn, number):
    """Reset as soon as the request starts to arrive, reading none of it.

    Not at accept: a reset there races the client's own check that its connect completed,
    so it surfaces either as a ConnectError (nothing sent, a resend is correct) or as a read
    error (outcome unknown), by timing alone. Once a byte has arrived the client has
    provably connected and sent, so it can only see the request die in flight.
    """
    conn.recv(1, socket.MSG_PEEK)
    rst(conn)


def _reset_after_head(server, conn, number):
    server.read_request(conn, body=False)
    rst(conn)


def _reset_after_body(server, conn, number):
    server.read_request(conn)
    rst(conn)


def _fin_after_body(server, conn, number):
    server.read_request(conn)
    conn.shutdown(socket.SHUT_WR)  # a clean close, without a word


def _garbage_status_line(server, conn, number):
    server.read_request(conn)
    conn.sendall(b"HELLO THERE\r\n\r\n")


def _truncated_answer(server, conn, number):
    server.read_request(conn)
    conn.sendall(http(200, b'{"code": 200, "data": [{"sta', JSON, length=500))
    conn.shutdown(socket.SHUT_WR)


def _half_status_then_reset(server, conn, number):
    server.read_request(conn)
    conn.sendall(b"HTTP/1.1 20")
    time.sleep(0.05)
    rst(conn)


POST_BREAKS = {
    "rst_at_accept": _reset_with_request_unread,
    "rst_after_head": _reset_after_head,
    "rst_after_body": _reset_after_body,
    "fin_after_body": _fin_after_body,
    "garbage_status_line": _garbage_status_line,
    "truncated_body_then_fin": _truncated_answer,
    "half_status_line_then_rst": _half_status_then_reset,
}


@pytest.mark.parametrize("script", POST_BREAKS.values(), ids=POST_BREAKS.keys())
async def test_broken_connection_during_submit_without_resending_is_unknown_and_never_resent(hostile, script):
    server = hostile(script)
    request = qw.ImageRequest("a fox", n=2)
    retries = []
    started = time.monotonic()
    async with client_for(server.url, resend_with_key=False) as client:
        with pytest.raises(qw.SubmitOutcomeUnknownError) as caught:
            await client.submit(request, on_retry=lambda e, d: retries.append(e))
        row = journal_row(client)
    assert time.monotonic() - started < 5.0
    # the server accepted a connection, so the bytes may have arrived: no second attempt
    assert server.connections == 1 and retries == []
    assert server.count("POST") <= 1
    assert caught.value.request == request and "NOT resent" in str(caught.value)
    assert row.state is EntryState.UNKNOWN and row.error


def lose_first_answer(script):
    """`script` on the first connection (after forwarding what it read); a faithful relay after."""
    def lose(server, conn, number):
        if number > 1:
            server.relay(conn)
            return
        real_read = server.read_request

        def read_and_forward(conn, *, body=True):
            seen = real_read(conn, body=body)
            if seen is not None and body and seen.body_read:
                server.forward(seen)  # the task now exists upstream; only its answer is lost
            return seen

        server.read_request = read_and_forward
        try:
            script(server, conn, number)
        finally:
            server.read_request = real_read
    return lose


async def assert_one_task_with_every_image(client, server, simulator, request):
    task = await client.generate(request)
    assert task.status is qw.TaskStatus.COMPLETED and len(task.images) == request.n
    assert all(image.local_path is not None and image.local_path.exists() for image in task.images)
    assert list(simulator.tasks) == [task.task_id]  # exactly one task at the server
    keys = {seen.headers.get("idempotency-key") for seen in server.requests if seen.method == "POST"}
    assert len(keys) == 1 and None not in keys  # every attempt carried the one key
    row = journal_row(client)
    assert row.state is EntryState.FINISHED and row.attempts >= 2 and row.idempotency_key in keys


@pytest.mark.parametrize("script", POST_BREAKS.values(), ids=POST_BREAKS.keys())
async def test_broken_connection_during_submit_ends_with_one_task_and_its_images(hostile, server, script):
    proxy = hostile(lose_first_answer(script), upstream=server.url)
    async with client_for(proxy.url) as client:
        await assert_one_task_with_every_image(client, proxy, server.simulator, qw.ImageRequest("a fox", n=2))


@pytest.mark.parametrize("script", [_reset_at_once, _reset_after_body, _garbage_status_line],
                         ids=["rst_at_accept", "rst_after_request", "garbage_status_line"])
async def test_broken_connection_on_every_poll_retries_then_transport_error(hostile, script):
    server = hostile(script)
    started = time.monotonic()
    async with client_for(server.url) as client:
        with pytest.raises(qw.TransportError):
            await client.get_task("task_01RESET")
    assert time.monotonic() - started < 5.0
    assert server.connections == MAX_ATTEMPTS  # GET is idempotent: every attempt was made


async def test_one_reset_poll_then_a_good_answer_recovers(hostile):
    def script(server, conn, number):
        seen = server.read_request(conn)
        if number == 1:
            rst(conn)
        else:
            conn.sendall(http(200, task_json("processing", progress=30, id=seen.path.rsplit("/", 1)[1]), JSON))

    server = hostile(script)
    retries = []
    async with client_for(server.url) as client:
        task = await client.get_task("task_01ONCE", on_retry=lambda e, d: retries.append(e))
    assert task.status is qw.TaskStatus.PROCESSING and task.progress == 30
    assert [type(e) for e in retries] == [qw.TransportError] and server.connections == 2


# -- answers that stall mid-body ----------------------------------------------------------------


def _silent_mid_body(server, conn, number):
    server.read_request(conn)
    conn.sendall(http(200, b'{"code": 200, "data"', JSON, length=10_000))
    server.stopped.wait(30)


def _drip_mid_body(interval):
    def script(server, conn, number):
        server.read_request(conn)
        conn.sendall(http(200, b'{"code": 200, "data"', JSON, length=1_000_000))  # under the answer cap
        while not server.stopped.wait(interval):
            conn.sendall(b" ")  # JSON whitespace: the body never ends, no read ever times out
    return script


STALLS = {"silence": _silent_mid_body, "byte_every_0.25s": _drip_mid_body(0.25)}


@pytest.mark.parametrize("script", STALLS.values(), ids=STALLS.keys())
async def test_submit_answer_stalling_mid_body_ends_within_twice_the_timeout(hostile, script):
    server = hostile(script)
    timeout = 0.6
    started = time.monotonic()
    async with client_for(server.url, timeout=timeout, resend_with_key=False) as client:
        with pytest.raises(qw.SubmitOutcomeUnknownError):
            await client.submit(qw.ImageRequest("a fox"))
        row = journal_row(client)
    assert time.monotonic() - started < 2 * timeout + SLACK
    assert server.count("POST") == 1 and server.connections == 1
    assert row.state is EntryState.UNKNOWN


@pytest.mark.parametrize("script", STALLS.values(), ids=STALLS.keys())
async def test_a_stalled_submit_answer_is_resent_and_ends_with_one_task(hostile, server, script):
    proxy = hostile(lose_first_answer(script), upstream=server.url)
    async with client_for(proxy.url, timeout=0.6) as client:
        await assert_one_task_with_every_image(client, proxy, server.simulator, qw.ImageRequest("a fox"))


@pytest.mark.parametrize("script", STALLS.values(), ids=STALLS.keys())
async def test_poll_answer_stalling_mid_body_ends_wait_at_its_deadline(hostile, script):
    server = hostile(script)
    started = time.monotonic()
    async with client_for(server.url, timeout=10.0) as client:  # per-call cap far beyond the deadline
        with pytest.raises(qw.TaskTimeoutError) as caught:
            await client.wait("task_01STALL", timeout=0.8)
    elapsed = time.monotonic() - started
    assert 0.7 <= elapsed < 0.8 + SLACK
    assert isinstance(caught.value.__cause__, qw.TransportError)


async def test_drip_fed_poll_without_deadline_is_capped_per_attempt(hostile):
    server = hostile(_drip_mid_body(0.2))
    timeout = 0.4
    started = time.monotonic()
    async with client_for(server.url, timeout=timeout,
                          retry=qw.RetryPolicy(max_attempts=2, backoff_base=0.01)) as client:
        with pytest.raises(qw.TransportError, match="no complete answer"):
            await client.get_task("task_01DRIP")
    assert time.monotonic() - started < 2 * (2 * timeout) + SLACK
    assert server.count("GET") == 2


# -- 200 answers that break the contract -----------------------------------------------------

MALFORMED = {
    "html": b"<html><body>502 Bad Gateway</body></html>",
    "truncated_json": b'{"code": 200, "data": [{"status": "submitted", "task_id": "task_01',
    "empty": b"",
    "json_array": b'[{"task_id": "task_01X"}]',
    "ok_true": b'{"ok": true}',
    "data_string": b'{"data": "x"}',
    "data_status_number": b'{"data": {"status": 5}}',
    "data_null": b'{"code": 200, "data": null}',
    "data_empty_list": b'{"code": 200, "data": []}',
    "no_task_id": b'{"code": 200, "data": [{"status": "submitted"}]}',
    "path_task_id": b'{"code": 200, "data": [{"status": "submitted", "task_id": "../../admin"}]}',
    "numeric_task_id": b'{"code": 200, "data": [{"status": "submitted", "task_id": 12345}]}',
    "json_null": b"null",
    "binary_garbage": b"\xff\xfe\x00garbage",
}


@pytest.mark.parametrize("body", MALFORMED.values(), ids=MALFORMED.keys())
async def test_malformed_submit_answer_without_resending_is_unknown_never_resent(server, make_client, body):
    sim = server.simulator
    sim.inject(SimResponse(200, JSON, body), method="POST", process=True)
    async with make_client(resend_with_key=False) as client:
        with pytest.raises(qw.SubmitOutcomeUnknownError) as caught:
            await client.submit(qw.ImageRequest("a fox"))
        row = journal_row(client)
    assert isinstance(caught.value.__cause__, (ValueError, qw.MalformedResponseError))
    assert sim.count("POST") == 1 and len(sim.tasks) == 1  # it was created: one bill, not two
    assert row.state is EntryState.UNKNOWN


@pytest.mark.parametrize("body", MALFORMED.values(), ids=MALFORMED.keys())
async def test_malformed_submit_answer_is_resent_and_ends_with_one_task(server, make_client, body):
    sim = server.simulator
    sim.inject(SimResponse(200, JSON, body), method="POST", process=True)
    async with make_client() as client:
        task = await client.generate(qw.ImageRequest("a fox", n=2))
        row = journal_row(client)
    assert list(sim.tasks) == [task.task_id] and len(task.images) == 2
    assert len({e["idempotency_key"] for e in sim.log if e["method"] == "POST"}) == 1
    assert row.state is EntryState.FINISHED and row.attempts == 2 and row.replayed


MALFORMED_POLLS = {
    **{k: v for k, v in MALFORMED.items() if k != "data_status_number"},  # given below
    "data_list": b'{"code": 200, "data": [{"id": "task_01X", "status": "completed"}]}',
    "no_status": b'{"code": 200, "data": {"id": "task_01MAL", "progress": 5}}',
    "other_task": b'{"code": 200, "data": {"id": "task_01OTHER", "status": "completed"}}',
}
MALFORMED_POLL_PARAMS = [pytest.param(v, id=k) for k, v in MALFORMED_POLLS.items()] + [
    pytest.param(b'{"data": {"status": 5}}', id="data_status_number"),
    pytest.param(b'{"data": {"status": null}}', id="data_status_null"),
    pytest.param(b'{"data": {"status": ["completed"]}}', id="data_status_list"),
]


@pytest.mark.parametrize("body", MALFORMED_POLL_PARAMS)
async def test_persistently_malformed_poll_is_retried_then_malformed_error(server, make_client, body):
    sim = server.simulator
    sim.inject(SimResponse(200, JSON, body), method="GET", count=100)
    retries = []
    async with make_client() as client:
        with pytest.raises(qw.MalformedResponseError) as caught:
            await client.get_task("task_01MAL", on_retry=lambda e, d: retries.append(e))
    assert caught.value.status_code == 200 and caught.value.task_id in (None, "task_01MAL")
    assert sim.count("GET") == MAX_ATTEMPTS and len(retries) == MAX_ATTEMPTS - 1
    assert all(isinstance(e, qw.MalformedResponseError) for e in retries)


async def test_persistently_malformed_poll_ends_wait_at_the_deadline(server, make_client):
    sim = server.simulator
    async with make_client() as client:
        task = await client.submit(qw.ImageRequest("a fox"))
        sim.inject(SimResponse(200, JSON, b'{"ok": true}'), method="GET", count=10_000)
        started = time.monotonic()
        with pytest.raises(qw.TaskTimeoutError) as caught:
            await client.wait(task, timeout=0.5)
        row = journal_row(client)
    assert time.monotonic() - started < 0.5 + SLACK
    assert isinstance(caught.value.__cause__, qw.MalformedResponseError)
    assert caught.value.task == task  # the last state seen: the submit answer
    assert row.state is EntryState.SUBMITTED and sim.count("POST") == 1


# -- tasks that never finish, or go backwards ------------------------------------------------


async def test_task_processing_forever_times_out_with_its_last_state(server, make_client):
    sim = server.simulator
    sim.inject(SimResponse(200, JSON, task_json("processing", progress=42)), method="GET",
               count=100_000)
    updates = []
    started = time.monotonic()
    async with make_client() as client:
        with pytest.raises(qw.TaskTimeoutError) as caught:
            await client.generate("a fox", timeout=0.6, on_update=updates.append)
        row = journal_row(client)
    elapsed = time.monotonic() - started
    assert 0.55 <= elapsed < 0.6 + SLACK
    last = caught.value.task
    assert last is not None and last.status is qw.TaskStatus.PROCESSING and last.progress == 42
    assert last.task_id == caught.value.task_id and last == updates[-1]
    assert "processing at 42%" in str(caught.value)
    assert row.state is EntryState.SUBMITTED and row.task.task_id == last.task_id
    assert sim.count("POST") == 1


async def test_task_going_back_from_processing_to_pending_is_followed_to_completion(
        server, make_client):
    sim = server.simulator
    for status, progress in [("processing", 60), ("pending", 0), ("processing", 10), ("pending", 0)]:
        sim.inject(SimResponse(200, JSON, task_json(status, progress=progress)), method="GET")
    updates = []
    async with make_client() as client:
        task = await client.generate("a fox", n=2, on_update=updates.append, timeout=10)
        row = journal_row(client)
    seen = [(u.status, u.progress) for u in updates]
    P, Q = qw.TaskStatus.PROCESSING, qw.TaskStatus.PENDING
    assert seen[1:5] == [(P, 60), (Q, 0), (P, 10), (Q, 0)]
    assert task.status is qw.TaskStatus.COMPLETED and len(task.images) == 2
    assert row.state is EntryState.FINISHED and row.task.status is qw.TaskStatus.COMPLETED
    assert sim.count("POST") == 1


# -- completed tasks with missing or bad images ----------------------------------------------


def _image_host(server, conn, number):
    seen = server.read_request(conn)
    if seen is None:
        return
    if seen.path.startswith("/ok"):
        conn.sendall(http(200, PNG, {"Content-Type": "image/png"}))
    elif seen.path.startswith("/html"):
        conn.sendall(http(200, b"<html><body>Access denied</body></html>", {"Content-Type": "text/html"}))
    else:
        conn.sendall(http(404, b"Not Found", {"Content-Type": "text/plain"}, reason="Not Found"))


DNS_FAIL = "http://no-such-host.invalid/x.png"


@pytest.fixture
def image_host(hostile):
    return hostile(_image_host)


def _bad_images_completion(image_host) -> tuple[bytes, list[str]]:
    urls = [f"{image_host.url}/ok.png", f"{image_host.url}/missing.png",
            f"{image_host.url}/html.png", DNS_FAIL]
    return task_json("completed", progress=100, images=urls), urls


@pytest.mark.parametrize("body", [
    task_json("completed", progress=100, images=[]),
    json.dumps({"code": 200, "data": {"status": "completed"}}).encode(),
    json.dumps({"code": 200, "data": {"status": "completed", "result": {"images": None}}}).encode(),
], ids=["empty_images", "no_result", "images_null"])
async def test_completed_with_zero_images_returns_the_task_as_it_is(server, make_client, body):
    sim = server.simulator
    sim.inject(SimResponse(200, JSON, body), method="GET")
    async with make_client() as client:
        task = await client.generate("a fox", n=3)
        row = journal_row(client)
    assert task.status is qw.TaskStatus.COMPLETED and task.images == ()
    assert row.state is EntryState.FINISHED and row.task.images == ()
    assert sim.count("POST") == 1


async def test_completed_with_fewer_and_broken_images_returns_what_came_back(
        server, make_client, image_host):
    body, urls = _bad_images_completion(image_host)
    server.simulator.inject(SimResponse(200, JSON, body), method="GET")
    async with make_client() as client:
        started = time.monotonic()
        task = await client.generate("a fox", n=6)  # keeps images: the bad ones must not break it
        assert time.monotonic() - started < 5.0
        row = journal_row(client)
        assert task.status is qw.TaskStatus.COMPLETED and list(task.urls) == urls
        assert [i.index for i in task.images] == [0, 1, 2, 3]
        # only the good one was kept locally; the others stay URLs
        assert task.images[0].local_path is not None and task.images[0].local_path.exists()
        assert all(i.local_path is None for i in task.images[1:])
        assert await client.fetch_image(task.images[0]) == PNG
        reasons = []
        for image in task.images[1:]:
            with pytest.raises(qw.ImageFetchError) as caught:
                await client.fetch_image(image.url)  # the URL itself, not a local copy
            assert caught.value.url == image.url
            reasons.append(caught.value.reason)
    assert "HTTP 404" in reasons[0] and "expired" in reasons[0]
    assert "not an image" in reasons[1] and "text/html" in reasons[1]
    assert "ConnectError" in reasons[2]
    assert row.state is EntryState.FINISHED and len(row.task.images) == 4
    # the image host never saw the key
    assert image_host.requests and not any("authorization" in r.headers for r in image_host.requests)
    assert server.simulator.count("POST") == 1


def test_panel_shows_each_bad_image_and_keeps_the_task(server, image_host, tmp_path):
    body, _ = _bad_images_completion(image_host)
    server.simulator.inject(SimResponse(200, JSON, body), method="GET")
    client = qw.QwenClient(TEST_KEY, base_url=server.url, **fast_options(keep_images=False))
    panel = qw.Panel(client, save_dir=tmp_path / "saved")
    panel.request = qw.ImageRequest("a fox", n=6)
    card = panel.generate()
    task = card.future.result(30)
    assert task is not None and task.status is qw.TaskStatus.COMPLETED
    assert panel.results == [task] and len(task.images) == 4
    captions = [tile.children[1].value for tile in card.tiles.children]
    assert len(captions) == 4
    assert "Image not loaded" not in captions[0] and card.tiles.children[0].children[0].value
    assert "HTTP 404" in captions[1]
    assert "not an image" in captions[2]
    assert "could not connect to the image host" in captions[3]  # words, not the library's
    assert "4 of 6 images returned" in card.timings
    assert set(card.full_images) == {0}
    client.close()


def test_panel_shows_a_task_with_no_images_as_such(server, tmp_path):
    server.simulator.inject(SimResponse(200, JSON, task_json("completed", progress=100, images=[])),
                            method="GET")
    client = qw.QwenClient(TEST_KEY, base_url=server.url, **fast_options())
    panel = qw.Panel(client, save_dir=tmp_path / "saved")
    panel.request = qw.ImageRequest("a fox", n=2)
    task = panel.generate().future.result(30)
    card = panel.gallery.cards[0]
    assert task.status is qw.TaskStatus.COMPLETED and panel.results == [task]
    assert card.tiles.children == () and "0 of 2 images returned" in card.timings
    client.close()


# -- Retry-After, in every form, on 429 and 503, for GET and POST ----------------------------

HUGE = 100_000


def _retry_after(kind: str, now: float) -> str:
    """The header's value, a date relative to the client's wall clock `now` (whole seconds)."""
    if kind == "http_date":
        return email.utils.formatdate(now + 1, usegmt=True)
    if kind == "http_date_past":
        return email.utils.formatdate(now - 3600, usegmt=True)
    return {"zero": "0", "negative": "-5", "fractional": "0.05", "huge": str(HUGE),
            "inf": "inf", "nan": "nan", "garbage": "soon"}[kind]


# (kind, lowest and highest acceptable delay; None: give up at once)
RETRY_AFTER_CASES = {
    "zero": (0.0, 0.0),
    "negative": (0.0, 0.0),
    "fractional": (0.05, 0.055),
    "http_date": (1.0, 1.1),
    "http_date_past": (0.0, 0.0),
    "nan": (0.0, 0.05),  # unreadable: plain backoff
    "garbage": (0.0, 0.05),
    "huge": None,
    "inf": None,
}


@pytest.mark.parametrize("kind", RETRY_AFTER_CASES)
@pytest.mark.parametrize("status", [429, 503])
@pytest.mark.parametrize("method", ["GET", "POST"])
async def test_retry_after_is_honoured_within_bounds(server, make_client, method, status, kind):
    # on a fake clock the wait is exact: the date is a whole second ahead of the client's
    # wall time, and what the client slept is the time that passed
    sim, clock = server.simulator, FakeClock()
    expected_error = qw.RateLimitError if status == 429 else qw.ServerError
    retries = []
    on_retry = lambda e, d: retries.append((e, d))
    fault = SimResponse(status, {"Retry-After": _retry_after(kind, clock.time()), **JSON},
                        b'{"error": {"message": "busy"}}')
    bounds = RETRY_AFTER_CASES[kind]
    async with make_client(clock=clock) as client:
        if method == "GET":
            submitted = await client.submit(qw.ImageRequest("a fox"))
        sim.inject(fault, method=method)
        started = clock.monotonic()
        if bounds is None:
            with pytest.raises(expected_error) as caught:
                if method == "GET":
                    await client.get_task(submitted.task_id, on_retry=on_retry)
                else:
                    await client.submit(qw.ImageRequest("a fox"), on_retry=on_retry)
            assert clock.monotonic() - started < 0.01  # gave up rather than sleep
            assert retries == [] and caught.value.retry_after >= HUGE
        else:
            if method == "GET":
                task = await client.get_task(submitted.task_id, on_retry=on_retry)
                assert task.task_id == submitted.task_id
            else:
                task = await client.submit(qw.ImageRequest("a fox"), on_retry=on_retry)
                assert task.status is qw.TaskStatus.SUBMITTED
            [(error, delay)] = retries
            assert isinstance(error, expected_error)
            low, high = bounds
            assert low <= delay <= high
            # it slept the delay it reported (plus the request budget's 1 ms slots), no more
            assert delay - 1e-6 <= clock.monotonic() - started < delay + 0.01
        if method == "POST":
            row = journal_row(client)
    if method == "POST":
        # a refusal created nothing; the retry (when there was one) created exactly one task
        assert len(sim.tasks) == (0 if bounds is None else 1)
        assert row.state is (EntryState.REFUSED if bounds is None else EntryState.SUBMITTED)
        assert sim.count("POST") == (1 if bounds is None else 2)


@pytest.mark.parametrize("status", [429, 503])
async def test_huge_retry_after_while_watching_is_bounded_by_the_deadline(server, make_client, status):
    sim = server.simulator
    sim.duration = 100_000
    async with make_client() as client:
        task = await client.submit(qw.ImageRequest("a fox"))
        sim.inject(SimResponse(status, {"Retry-After": str(HUGE)}, b"{}"), method="GET", count=1000)
        started = time.monotonic()
        # a deadline far beyond the first poll (at 0.01 s), so that the poll is answered
        # before it however loaded the machine: the answer's wait then crosses it at once
        with pytest.raises(qw.TaskTimeoutError) as caught:
            await client.wait(task, timeout=5.0)
    assert time.monotonic() - started < 5.0 + SLACK
    cause = caught.value.__cause__
    assert isinstance(cause, qw.RateLimitError if status == 429 else qw.ServerError)
    assert cause.retry_after == HUGE


# -- 429 storms -----------------------------------------------------------------------------


STORM = SimResponse(429, {"Retry-After": "0.01", **JSON}, b'{"error": {"message": "slow down"}}')


async def test_429_storm_longer_than_the_retry_budget_ends_get_task(server, make_client):
    sim = server.simulator
    async with make_client() as client:
        task = await client.submit(qw.ImageRequest("a fox"))
        sim.inject(STORM, method="GET", count=10_000)
        started = time.monotonic()
        with pytest.raises(qw.RateLimitError) as caught:
            await client.get_task(task.task_id)
    assert time.monotonic() - started < 5.0  # five waits of 0.01 s, not a backoff of seconds
    assert sim.count("GET") == MAX_ATTEMPTS
    assert caught.value.status_code == 429 and caught.value.task_id == task.task_id


async def test_429_storm_while_watching_ends_at_the_deadline_with_the_cause(server, make_client):
    sim, clock = server.simulator, FakeClock()
    # Retry-After 0.25 s (0.2625 with the fake clock's jitter): polls at 0.01, 0.27 and
    # 0.54 s, and the third 429 asks for a wait that crosses the 0.7 s deadline. On a fake
    # clock, so that how fast the machine answers cannot move a poll across the deadline.
    sim.inject(SimResponse(429, {"Retry-After": "0.25", **JSON}, b'{"error": {"message": "slow down"}}'),
               method="GET", count=100_000)
    started = clock.monotonic()
    async with make_client(retry=qw.RetryPolicy(max_attempts=2, backoff_base=0.01), clock=clock) as client:
        with pytest.raises(qw.TaskTimeoutError) as caught:
            await client.generate("a fox", timeout=0.7)
        row = journal_row(client)
    assert clock.monotonic() - started < 0.7 + 0.01  # gave up rather than sleep past the deadline
    assert isinstance(caught.value.__cause__, qw.RateLimitError)
    assert sim.count("GET") == 3  # watching outlasts the per-call budget of two attempts
    assert caught.value.task.status is qw.TaskStatus.SUBMITTED  # the last state seen
    assert row.state is EntryState.SUBMITTED and sim.count("POST") == 1


async def test_slow_429_storm_while_watching_keeps_rate_limit_as_the_cause(server, make_client):
    sim = server.simulator
    # every 429 takes 0.3 s to arrive: attempts start near 0.01, 0.32, 0.63, ... 1.87 s, and
    # the last has 0.13 s left before the 2 s deadline; the first answer comes long before it
    # even on a loaded machine, so there is a rate-limit error to report
    sim.inject(SimResponse(429, {"Retry-After": "0", **JSON}, b'{"error": {"message": "slow down"}}',
                           delay=0.3), method="GET", count=100_000)
    started = time.monotonic()
    async with make_client() as client:
        with pytest.raises(qw.TaskTimeoutError) as caught:
            await client.generate("a fox", timeout=2.0)
    assert time.monotonic() - started < 2.0 + SLACK  # this part holds
    assert isinstance(caught.value.__cause__, qw.RateLimitError), repr(caught.value.__cause__)


async def test_429_storm_on_submit_gives_up_and_creates_nothing(server, make_client):
    sim = server.simulator
    sim.inject(STORM, method="POST", count=10_000)
    started = time.monotonic()
    async with make_client() as client:
        with pytest.raises(qw.RateLimitError):
            await client.submit(qw.ImageRequest("a fox"))
        row = journal_row(client)
    assert time.monotonic() - started < 5.0  # five waits of 0.01 s, not a backoff of seconds
    assert sim.count("POST") == MAX_ATTEMPTS and sim.tasks == {}  # refused each time
    assert row.state is EntryState.REFUSED


# -- image host that cannot be resolved, or that stalls --------------------------------------


class RecordingTransport(httpx.AsyncBaseTransport):
    """The real transport, noting every request the image client makes."""

    def __init__(self):
        self.inner = httpx.AsyncHTTPTransport()
        self.requests: list[httpx.Request] = []

    async def handle_async_request(self, request):
        self.requests.append(request)
        return await self.inner.handle_async_request(request)

    async def aclose(self):
        await self.inner.aclose()


async def test_unresolvable_image_host_is_image_fetch_error_quickly_without_credentials(server):
    transport = RecordingTransport()
    started = time.monotonic()
    async with client_for(server.url, image_transport=transport) as client:
        with pytest.raises(qw.ImageFetchError) as caught:
            await client.fetch_image(DNS_FAIL)
    assert time.monotonic() - started < 4.0  # three attempts, 0.25-1 s apart
    assert caught.value.url == DNS_FAIL and "ConnectError" in caught.value.reason
    assert TEST_KEY not in str(caught.value)
    assert transport.requests and all(r.url.host == "no-such-host.invalid" for r in transport.requests)
    assert not any("authorization" in r.headers for r in transport.requests)
    assert server.simulator.log == []  # the API was never involved


def _silent_image(server, conn, number):
    server.read_request(conn)
    conn.sendall(http(200, PNG[:16], {"Content-Type": "image/png"}, length=len(PNG)))
    server.stopped.wait(30)


def _drip_image(server, conn, number):
    server.read_request(conn)
    conn.sendall(http(200, PNG[:16], {"Content-Type": "image/png"}, length=10_000_000))
    while not server.stopped.wait(0.1):
        conn.sendall(b"\x00")


async def test_silent_image_body_is_image_fetch_error_within_the_retries(server, hostile):
    host = hostile(_silent_image)
    timeout = 0.4
    started = time.monotonic()
    async with client_for(server.url, timeout=timeout) as client:
        with pytest.raises(qw.ImageFetchError, match="ReadTimeout"):
            await client.fetch_image(f"{host.url}/x.png")
    # three read timeouts and two backoffs of at most 0.5 and 1 s
    assert time.monotonic() - started < 3 * timeout + 1.5 + SLACK
    assert host.connections == 3


async def test_drip_fed_image_is_cut_off(server, hostile):
    host = hostile(_drip_image)
    timeout = 0.2
    async with client_for(server.url, timeout=timeout) as client:
        fetch = client.fetch_image(f"{host.url}/x.png")
        with pytest.raises(qw.ImageFetchError):
            # generous: three attempts each capped at 2x the timeout, plus backoff
            await asyncio.wait_for(fetch, 3 * 2 * timeout + 1.5 + SLACK)


async def test_keeping_images_does_not_hold_wait_past_its_deadline(server, make_client, hostile):
    host = hostile(_silent_image)
    server.simulator.inject(
        SimResponse(200, JSON, task_json("completed", progress=100, images=[f"{host.url}/x.png"])),
        method="GET")
    # a per-call cap of 20 s, so that a keep which ignored the deadline would take 20 s,
    # far beyond the slack allowed here
    async with make_client(timeout=20.0) as client:
        started = time.monotonic()
        generate = client.generate("a fox", timeout=1.0)
        try:
            task = await asyncio.wait_for(generate, 1.0 + 2 * SLACK)
        except asyncio.TimeoutError:
            task = None
        elapsed = time.monotonic() - started
    assert task is not None and elapsed < 1.0 + 2 * SLACK


# -- answers too large, images too many, redirects to other schemes ------------------------


def _endless_answer(sent: dict):
    """A 200 whose chunked JSON body never ends (bounded at 64 MB so a failing test ends too)."""

    def script(server, conn, number):
        if server.read_request(conn) is None:
            return
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                     b"Transfer-Encoding: chunked\r\n\r\n")
        piece = b" " * 65536
        conn.sendall(b'10\r\n{"code": 200, "d\r\n')
        while sent.get(number, 0) < 64 * 2**20:
            conn.sendall(b"10000\r\n" + piece + b"\r\n")
            sent[number] = sent.get(number, 0) + len(piece)

    return script


def _declared_enormous(server, conn, number):
    if server.read_request(conn) is not None:
        conn.sendall(http(200, b"{}", JSON, length=10 * 2**30))


async def test_an_endless_poll_answer_is_cut_at_the_cap_with_a_clear_error(hostile):
    sent: dict[int, int] = {}
    server = hostile(_endless_answer(sent))
    async with client_for(server.url, retry=qw.RetryPolicy(max_attempts=1)) as client:
        with pytest.raises(qw.MalformedResponseError, match="over 4 MB") as caught:
            await client.get_task("task_01ENDLESS")
    assert caught.value.task_id == "task_01ENDLESS"
    # the client stopped reading at the cap: the server could not send much beyond it (socket
    # buffers hold a few MB), where reading it all would have taken 64 MB
    assert max(sent.values()) < 24 * 2**20


async def test_a_declared_enormous_answer_is_refused_before_reading(hostile):
    server = hostile(_declared_enormous)
    async with client_for(server.url, retry=qw.RetryPolicy(max_attempts=1)) as client:
        with pytest.raises(qw.MalformedResponseError, match="over 4 MB"):
            await client.get_task("task_01HUGE")


async def test_an_endless_submit_answer_is_an_unknown_outcome_never_a_memory_error(hostile):
    server = hostile(_endless_answer({}))
    async with client_for(server.url, resend_with_key=False) as client:
        with pytest.raises(qw.SubmitOutcomeUnknownError, match="over 4 MB"):
            await client.submit(qw.ImageRequest("a fox"))
        assert journal_row(client).state is EntryState.UNKNOWN


def _many_images_host(server, conn, number):
    if server.read_request(conn) is not None:
        conn.sendall(http(200, PNG, {"Content-Type": "image/png"}))


async def test_two_thousand_images_for_one_asked_keeps_one_and_says_so(server, make_client, hostile, caplog):
    host = hostile(_many_images_host)
    urls = [f"{host.url}/{index}.png" for index in range(2000)]
    server.simulator.inject(SimResponse(200, JSON, task_json("completed", progress=100, images=urls)),
                            method="GET")
    async with make_client() as client:
        with caplog.at_level("WARNING", logger="qwen_widgets"):
            task = await client.generate("a fox", n=1, timeout=15)
        row = journal_row(client)
    assert [image.url for image in task.images] == urls[:1]
    assert task.images[0].local_path is not None  # the one asked for was kept
    assert len(host.requests) == 1  # and nothing else was downloaded
    assert len(row.task.images) == 1
    assert any("2000 images where 1 were asked for" in r.getMessage() for r in caplog.records)


def _slow_image_counting(state: dict):
    """An image host that holds each answer a moment and records how many it serves at once."""

    def script(server, conn, number):
        if server.read_request(conn) is None:
            return
        with state["lock"]:
            state["now"] += 1
            state["most"] = max(state["most"], state["now"])
        time.sleep(0.05)
        with state["lock"]:
            state["now"] -= 1
        conn.sendall(http(200, PNG, {"Content-Type": "image/png"}))

    return script


async def test_downloads_run_a_bounded_number_at_a_time(hostile):
    from qwen_widgets.engine.fetch import MAX_CONCURRENT

    state = {"lock": threading.Lock(), "now": 0, "most": 0}
    host = hostile(_slow_image_counting(state))
    async with client_for(f"http://127.0.0.1:{closed_port()}") as client:
        images = await asyncio.gather(*(client.fetch_image(f"{host.url}/{i}.png") for i in range(4 * MAX_CONCURRENT)))
    assert all(image == PNG for image in images)
    assert 1 <= state["most"] <= MAX_CONCURRENT


def _redirect_to(location: str):
    def script(server, conn, number):
        if server.read_request(conn) is not None:
            conn.sendall(http(302, b"", {"Location": location}, reason="Found"))

    return script


ODD_SCHEMES = ["data:text/html,<script>alert(1)</script>", "javascript:alert(1)", "view-source:http://x/"]


@pytest.mark.parametrize("location", ODD_SCHEMES, ids=["data", "javascript", "view-source"])
async def test_a_redirect_to_another_scheme_is_a_typed_error_on_every_path(hostile, location):
    server = hostile(_redirect_to(location))
    async with client_for(server.url, retry=qw.RetryPolicy(max_attempts=2, backoff_base=0.01)) as client:
        with pytest.raises(qw.SubmitOutcomeUnknownError) as submit:
            await client.submit(qw.ImageRequest("a fox"))
        assert journal_row(client).state is EntryState.UNKNOWN
        with pytest.raises(qw.TransportError, match="InvalidURL") as poll:
            await client.get_task("task_01REDIRECTED")
        with pytest.raises(qw.ImageFetchError, match="not a public http") as fetch:
            await client.fetch_image(f"{server.url}/image.png")
    for caught in (submit, poll, fetch):
        assert not isinstance(caught.value, httpx.HTTPError)


@pytest.mark.parametrize("location", ODD_SCHEMES, ids=["data", "javascript", "view-source"])
async def test_an_image_redirected_to_another_scheme_never_loses_the_task(server, make_client, hostile, location):
    host = hostile(_redirect_to(location))
    server.simulator.inject(
        SimResponse(200, JSON, task_json("completed", progress=100, images=[f"{host.url}/a.png"])), method="GET")
    async with make_client() as client:
        task = await client.generate("a fox")  # keeps images: the bad one must not cost the task
        row = journal_row(client)
    assert task.status is qw.TaskStatus.COMPLETED and task.images[0].local_path is None
    assert row.state is EntryState.FINISHED


async def test_a_retry_after_past_the_deadline_says_so_and_names_the_429(server, make_client):
    sim = server.simulator
    sim.duration = 100_000
    async with make_client() as client:
        task = await client.submit(qw.ImageRequest("a fox"))
        sim.inject(SimResponse(429, {"Retry-After": "3600"}, b'{"error": {"message": "slow down"}}'),
                   method="GET", count=1000)
        with pytest.raises(qw.TaskTimeoutError) as caught:
            await client.wait(task, timeout=30)
    message = str(caught.value)
    assert caught.value.server_wait == 3600
    assert "asked to wait 3600 s" in message and "30 s deadline" in message and "429" in message
    assert "Re-attach" in message and not message.startswith("after 30 s")
