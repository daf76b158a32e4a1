"""APIMart's published client contract (docs/api-contract.md sections 1.5, 3 and 4), spoken by the engine and the simulator.

Idempotent submissions that recover from a lost answer by themselves, both answer shapes,
final errors, 72 h media, and the simulator's account and discovery endpoints. All of it
against the simulator on a real loopback socket.
"""

from __future__ import annotations

import asyncio
import json
import os
import sqlite3
import time
from pathlib import Path

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import qwen_widgets as qw
from qwen_widgets.model.submission import EntryState
from qwen_widgets.store.journal import Journal
from qwen_widgets.model.request import MAX_IMAGES, MAX_PROMPT_CHARS
from qwen_widgets.simulator import SimResponse, Simulator, serve

from ..conftest import TEST_KEY, TIME_SCALE, fast_options

pytestmark = pytest.mark.anyio


def home() -> Path:
    return Path(os.environ["QWEN_WIDGETS_HOME"])


def rows(sql: str) -> list[tuple]:
    db = sqlite3.connect(str(home() / "journal.sqlite"))
    try:
        return db.execute(sql).fetchall()
    finally:
        db.close()


def posts(simulator: Simulator) -> list[dict]:
    return [entry for entry in simulator.log if entry["method"] == "POST"]


class LegacyGateway(httpx.AsyncBaseTransport):
    """A gateway that drops headers it does not know: the server answers in the legacy shape."""

    def __init__(self):
        self.inner = httpx.AsyncHTTPTransport()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        request.headers.pop("X-APIMart-Response-Version", None)
        return await self.inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self.inner.aclose()


# -- 1. a key per logical submission ---------------------------------------------------------------


async def test_every_post_carries_a_fresh_key_and_the_response_version(server, make_client):
    async with make_client() as client:
        first = await client.submit(qw.ImageRequest("a fox"))
        second = await client.submit(qw.ImageRequest("a fox"))  # the same request, a new submission
    keys = [entry["idempotency_key"] for entry in posts(server.simulator)]
    assert len(keys) == 2 and keys[0] != keys[1] and all(1 <= len(k) <= 191 and k.isascii() for k in keys)
    assert first.task_id != second.task_id
    assert sorted(key for (key,) in rows("SELECT idempotency_key FROM submissions")) == sorted(keys)


async def test_the_versioned_answer_keeps_its_request_id_on_the_task_and_in_the_journal(server, make_client):
    async with make_client() as client:
        task = await client.submit(qw.ImageRequest("a fox"))
    assert task.request_id and task.request_id.startswith("req_")
    assert rows("SELECT request_id, attempts, replayed FROM submissions") == [(task.request_id, 1, 0)]


# -- 2. a lost answer is sent again with the same key, automatically ---------------------------------


LOST_ANSWERS = {
    "reset after the task was created": SimResponse(action="drop"),
    "gateway 502 after processing": SimResponse(502, {}, b"Bad Gateway"),
    "gateway 504 after processing": SimResponse(504, {}, b"Gateway Timeout"),
    "a 303 after processing": SimResponse(303, {"Location": "/elsewhere"}),
    "a 2xx without a task id": SimResponse(200, {"Content-Type": "application/json"}, b'{"code": 200, "data": {}}'),
    "an answer that is not JSON": SimResponse(200, {}, b"<html>ok</html>"),
}


@pytest.mark.parametrize("fault", LOST_ANSWERS.values(), ids=LOST_ANSWERS.keys())
async def test_a_lost_answer_is_resent_with_the_same_key_and_makes_one_task(server, make_client, fault):
    simulator = server.simulator
    simulator.inject(fault, method="POST", process=True)
    async with make_client() as client:
        task = await client.generate("one fox, whatever the network did", n=2)
    assert task.status is qw.TaskStatus.COMPLETED and len(task.images) == 2
    assert len(simulator.tasks) == 1 and task.task_id in simulator.tasks
    first, second = posts(simulator)
    assert first["idempotency_key"] == second["idempotency_key"]
    assert rows("SELECT state, attempts, replayed FROM submissions") == [("finished", 2, 1)]


async def test_a_read_timeout_on_the_post_is_resent_with_the_same_key(server, make_client):
    simulator = server.simulator
    simulator.inject(delay=30.0, method="POST")  # the real answer, 30 s late: far past the cap
    async with make_client(timeout=0.3) as client:
        task = await client.submit(qw.ImageRequest("a patient fox"))
    assert len(simulator.tasks) == 1 and task.task_id in simulator.tasks
    keys = {entry["idempotency_key"] for entry in posts(simulator)}
    assert len(posts(simulator)) == 2 and len(keys) == 1


async def test_when_every_attempt_is_lost_the_error_carries_the_key_and_resume_recovers(server, make_client):
    simulator = server.simulator
    simulator.inject(SimResponse(action="drop"), method="POST", process=True, count=100)
    async with make_client(retry=qw.RetryPolicy(max_attempts=3, backoff_base=0.01, backoff_cap=0.02)) as client:
        with pytest.raises(qw.SubmitOutcomeUnknownError) as caught:
            await client.submit(qw.ImageRequest("a fox lost three times", n=2))
        error = caught.value
        assert error.idempotency_key and error.attempts == 3
        assert error.idempotency_key in str(error) and "resume()" in str(error)
        assert rows("SELECT state, attempts FROM submissions") == [("unknown", 3)]
        simulator.faults.clear()  # the network is back
        resumed = await client.resume()
    assert [task.status for task in resumed] == [qw.TaskStatus.COMPLETED]
    assert len(resumed[0].images) == 2 and all(image.local_path.exists() for image in resumed[0].images)
    assert len(simulator.tasks) == 1
    assert {entry["idempotency_key"] for entry in posts(simulator)} == {error.idempotency_key}
    assert rows("SELECT state, attempts, replayed FROM submissions") == [("finished", 4, 1)]


async def test_a_refusal_after_a_lost_answer_leaves_the_outcome_unknown(server, make_client):
    """The lost attempt may have created the task; a later 401 proves nothing about it."""
    simulator = server.simulator
    simulator.inject(SimResponse(action="drop"), method="POST", process=True)
    simulator.inject(SimResponse(401, {"Content-Type": "application/json"},
                                 b'{"error": {"message": "key revoked"}}'), method="POST")
    async with make_client() as client:
        with pytest.raises(qw.SubmitOutcomeUnknownError, match="key revoked"):
            await client.submit(qw.ImageRequest("a fox"))
    assert rows("SELECT state FROM submissions") == [("unknown",)]


async def test_a_refusal_when_resume_resends_a_lost_submission_keeps_it_unknown(server, make_client):
    """resume()'s first attempt follows an earlier lost answer: its refusal proves nothing either."""
    simulator = server.simulator
    simulator.inject(SimResponse(action="drop"), method="POST", process=True, count=100)
    async with make_client(retry=qw.RetryPolicy(max_attempts=2, backoff_base=0.01, backoff_cap=0.02)) as client:
        with pytest.raises(qw.SubmitOutcomeUnknownError):
            await client.submit(qw.ImageRequest("a fox"))
        simulator.faults.clear()
        simulator.inject(SimResponse(401, {"Content-Type": "application/json"},
                                     b'{"error": {"message": "key revoked"}}'), method="POST")
        assert await client.resume() == []
    assert rows("SELECT state FROM submissions") == [("unknown",)]  # still there for the next resume()
    assert len(posts(simulator)) == 3 and len({entry["idempotency_key"] for entry in posts(simulator)}) == 1


async def test_resend_with_key_off_never_resends_and_resume_only_warns(server, make_client):
    simulator = server.simulator
    simulator.inject(SimResponse(action="drop"), method="POST", process=True)
    async with make_client(resend_with_key=False) as client:
        with pytest.raises(qw.SubmitOutcomeUnknownError, match="NOT resent"):
            await client.submit(qw.ImageRequest("a fox behind an old gateway"))
        with pytest.warns(UserWarning, match="resend_with_key=False"):
            assert await client.resume() == []
    assert len(posts(simulator)) == 1 and len(simulator.tasks) == 1
    assert rows("SELECT state, resend FROM submissions") == [("unknown", 0)]


async def test_a_cancel_while_resending_keeps_the_submission_unknown_for_resume(server, make_client):
    simulator = server.simulator
    simulator.inject(SimResponse(action="drop"), method="POST", process=True, count=100)
    retried = asyncio.Event()
    async with make_client(retry=qw.RetryPolicy(backoff_base=5.0, backoff_cap=5.0)) as client:
        submitting = asyncio.ensure_future(client.submit(qw.ImageRequest("a fox"),
                                                         on_retry=lambda error, delay: retried.set()))
        await asyncio.wait_for(retried.wait(), 60)
        submitting.cancel()
        with pytest.raises((asyncio.CancelledError, qw.SubmitOutcomeUnknownError)):
            await submitting
    assert rows("SELECT state, resend FROM submissions") == [("unknown", 1)]


# -- 3. both answer shapes ---------------------------------------------------------------------------


async def test_the_legacy_shape_through_a_gateway_that_drops_the_version_header(server, make_client):
    async with make_client(transport=LegacyGateway()) as client:
        task = await client.generate("a fox the old way")
    assert task.status is qw.TaskStatus.COMPLETED and task.request_id is None
    assert task.task_id in server.simulator.tasks


async def test_a_synchronous_result_needs_no_poll():
    with serve(Simulator(seed=2, time_scale=TIME_SCALE, synchronous_results=True)) as fast:
        async with qw.AsyncQwenClient(TEST_KEY, base_url=fast.url, **fast_options()) as client:
            task = await client.generate("an instant fox", n=3)
        assert fast.simulator.count("GET", "/v1/tasks/") == 0
    assert task.status is qw.TaskStatus.COMPLETED and len(task.images) == 3
    assert task.cost == pytest.approx(3 * 0.021)
    assert all(image.local_path.exists() for image in task.images)
    assert rows("SELECT state FROM submissions") == [("finished",)]


async def test_a_task_id_under_task_info_is_found(server, make_client):
    body = {"code": 200, "request_id": "req_x", "data": {"task_info": {"id": "task_01INFO"}, "status": "pending"}}
    server.simulator.inject(SimResponse(200, {"Content-Type": "application/json"}, json.dumps(body).encode()),
                            method="POST")
    async with make_client() as client:
        task = await client.submit(qw.ImageRequest("a fox"))
    assert task.task_id == "task_01INFO" and task.request_id == "req_x"


# -- 4. errors ---------------------------------------------------------------------------------------


async def test_model_not_found_is_final_and_sent_once(server, make_client):
    body = {"error": {"message": "model not found", "type": "invalid_request_error",
                      "code": "model_not_found", "param": "model"}, "request_id": "req_nf"}
    server.simulator.inject(SimResponse(503, {"Content-Type": "application/json"}, json.dumps(body).encode()),
                            method="POST", count=10)
    async with make_client() as client:
        with pytest.raises(qw.APIError) as caught:
            await client.submit(qw.ImageRequest("a fox"))
    error = caught.value
    assert error.code == "model_not_found" and error.param == "model" and error.request_id == "req_nf"
    assert "req_nf" in str(error) and "model" in str(error)
    assert len(posts(server.simulator)) == 1
    assert rows("SELECT state FROM submissions") == [("refused",)]


def test_the_simulator_answers_an_unknown_model_with_503_model_not_found(server):
    answer = httpx.post(f"{server.url}/v1/images/generations", headers={"Authorization": f"Bearer {TEST_KEY}"},
                        json={"model": "qwen-image-9", "prompt": "a fox"})
    assert answer.status_code == 503 and answer.json()["error"]["code"] == "model_not_found"


async def test_success_false_is_an_error_on_any_status(server, make_client):
    body = b'{"success": false, "message": "insufficient balance"}'
    server.simulator.inject(SimResponse(200, {"Content-Type": "application/json"}, body), method="POST")
    async with make_client() as client:
        with pytest.raises(qw.APIError, match="insufficient balance"):
            await client.submit(qw.ImageRequest("a fox"))
    assert rows("SELECT state FROM submissions") == [("refused",)]


async def test_success_false_on_a_2xx_poll_is_asked_again(server, make_client):
    body = b'{"success": false, "message": "busy, try again"}'
    server.simulator.inject(SimResponse(200, {"Content-Type": "application/json"}, body), method="GET")
    async with make_client() as client:
        task = await client.generate(qw.ImageRequest("a fox"))
    assert task.status is qw.TaskStatus.COMPLETED
    assert rows("SELECT state FROM submissions") == [("finished",)]


# -- 5. media lifetime -------------------------------------------------------------------------------


async def test_resume_looks_back_one_day_and_expires_what_it_can_no_longer_ask_about(server, make_client):
    journal = Journal.default()
    old, recent = "task_two_days_old", "task_unknown_here"
    for task_id in (old, recent):
        journal.record(qw.Task(task_id, qw.TaskStatus.SUBMITTED, request=qw.ImageRequest("a fox")), server.url)
    db = sqlite3.connect(str(home() / "journal.sqlite"))
    with db:
        db.execute("UPDATE submissions SET created_at = ? WHERE task_id = ?", (time.time() - 48 * 3600, old))
        db.execute("UPDATE submissions SET created_at = ? WHERE task_id = ?", (time.time() - 2 * 3600, recent))
    db.close()
    async with make_client() as client:
        assert await client.resume() == []  # the recent id is unknown to this server: a 404, logged
    states = dict(rows("SELECT task_id, state FROM submissions"))
    # past the day ids live: expired without asking; within it: still open, asked about once
    assert states == {old: "expired", recent: "submitted"}
    assert server.simulator.count("GET", f"/v1/tasks/{old}") == 0
    assert server.simulator.count("GET", f"/v1/tasks/{recent}") >= 1


def test_a_missing_expiry_is_assumed_to_be_24_hours():
    from qwen_widgets.model.wire import parse_task_response

    body = {"data": {"id": "task_1", "status": "completed", "completed": 1_800_000_000,
                     "result": {"images": [{"url": "https://img.example/1.png"}]}}}
    image, = parse_task_response(body, task_id="task_1", request=None).images
    assert image.expires_at.timestamp() == 1_800_000_000 + 86_400


# -- 6. the simulator speaks the contract ------------------------------------------------------------


def test_same_key_same_body_replays_and_a_different_body_is_refused(server):
    headers = {"Authorization": f"Bearer {TEST_KEY}", "Idempotency-Key": "key-1",
               "X-APIMart-Response-Version": "2026-07-27"}
    url = f"{server.url}/v1/images/generations"
    first = httpx.post(url, headers=headers, json={"model": "qwen-image-2.0", "prompt": "a fox"})
    again = httpx.post(url, headers=headers, json={"model": "qwen-image-2.0", "prompt": "a fox"})
    other = httpx.post(url, headers=headers, json={"model": "qwen-image-2.0", "prompt": "a wolf"})
    assert first.json()["data"]["id"] == again.json()["data"]["id"]
    assert "idempotency-replayed" not in first.headers and again.headers["idempotency-replayed"] == "true"
    assert other.status_code == 422 and other.json()["error"]["code"] == "idempotency_key_reused"
    assert len(server.simulator.tasks) == 1
    legacy = httpx.post(url, headers={"Authorization": f"Bearer {TEST_KEY}"},
                        json={"model": "qwen-image-2.0", "prompt": "a fox"}).json()
    assert legacy["data"][0]["status"] == "submitted" and "task_id" in legacy["data"][0]


def test_models_schema_and_balance(server):
    headers = {"Authorization": f"Bearer {TEST_KEY}"}
    models = httpx.get(f"{server.url}/v1/models", headers=headers).json()
    assert [m["id"] for m in models["data"]] == list(qw.MODELS)
    schema = httpx.get(f"{server.url}/v1/model-schema", headers=headers,
                       params={"model": "qwen-image-2.0", "operation": "image_generation"}).json()
    properties = schema["input_schema"]["properties"]
    assert properties["size"]["enum"] == list(qw.SIZES) and properties["resolution"]["enum"] == list(qw.RESOLUTIONS)
    assert properties["n"]["maximum"] == MAX_IMAGES and properties["prompt"]["maxLength"] == MAX_PROMPT_CHARS
    # the input is the body without `model`, which goes at the top level (the official client
    # refuses an input that holds it)
    assert set(properties) == set(qw.ImageRequest.__dataclass_fields__) - {"model"}
    assert "model" not in schema["input_schema"].get("required", [])
    assert httpx.get(f"{server.url}/v1/model-schema", headers=headers,
                     params={"model": "nope", "operation": "image_generation"}).status_code == 404
    before = httpx.get(f"{server.url}/v1/balance", headers=headers).json()
    with qw.QwenClient(TEST_KEY, base_url=server.url, **fast_options()) as client:
        task = client.generate("a paid fox", n=2, model="qwen-image-2.0-pro")
    after = httpx.get(f"{server.url}/v1/balance", headers=headers).json()
    assert task.cost == pytest.approx(2 * 0.053)
    assert after["used_balance"] - before["used_balance"] == pytest.approx(task.cost)
    assert after["remain_balance"] == pytest.approx(before["remain_balance"] - task.cost)


# -- 7. one server-side task per submission, whatever happens to the answers --------------------------

FAULTS = st.sampled_from([
    None,
    SimResponse(action="drop"),
    SimResponse(502, {}, b"Bad Gateway"),
    SimResponse(500, {}, b"oops"),
    SimResponse(200, {}, b"not json"),
    SimResponse(429, {"Retry-After": "0"}, b"slow down"),
])


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(sequence=st.lists(FAULTS, min_size=0, max_size=8))
def test_any_sequence_of_faults_makes_one_task_per_submission(server, sequence):
    """Each fault hits one POST attempt (processed first, except a 429); after resume(), a
    submission has exactly one task at the server and it completed, unless every attempt was
    refused outright (429s only), which created none."""
    simulator = server.simulator
    simulator.faults.clear()
    before = len(simulator.tasks)
    for fault in sequence:
        if fault is None:
            simulator.inject(delay=0.0, method="POST")
        else:
            simulator.inject(fault, method="POST", process=fault.status != 429)
    retry = qw.RetryPolicy(max_attempts=4, backoff_base=0.001, backoff_cap=0.002)
    with qw.QwenClient(TEST_KEY, base_url=server.url, journal=Journal(":memory:"), keep_images=False,
                       **fast_options(retry=retry)) as client:
        try:
            client.submit(qw.ImageRequest("one fox per submission"))
        except (qw.SubmitOutcomeUnknownError, qw.RateLimitError):
            pass
        simulator.faults.clear()
        resumed = client.resume()
        journal = client.journal
    created = len(simulator.tasks) - before
    entry, = journal.entries()
    if entry.state is EntryState.REFUSED:
        assert created == 0 and all(f is not None and f.status == 429 for f in sequence[:entry.attempts])
        return
    assert created == 1
    assert entry.state in (EntryState.SUBMITTED, EntryState.FINISHED)
    assert entry.task is not None and entry.task.task_id in simulator.tasks
    assert len({e["idempotency_key"] for e in posts(simulator)[-entry.attempts:]}) == 1
    assert all(task.status is qw.TaskStatus.COMPLETED for task in resumed)
