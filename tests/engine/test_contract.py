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
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import qwen_widgets as qw
from qwen_widgets.model.submission import EntryState
from qwen_widgets.store.journal import Journal
from qwen_widgets.model.request import MAX_IMAGES, MAX_PROMPT_CHARS
from qwen_widgets.simulator import DEFAULT_MODELS, SimModel, SimResponse, Simulator, serve

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


# -- 8. the models the service offers, and their rules (docs/api-contract.md sections 5.2 to 5.4) ------

WIDE = {("21:9", "1K"): (1344, 576), ("21:9", "2K"): (2688, 1152), ("1:1", "1K"): (1024, 1024)}
"""A model the package never heard of: a size the documented pair lacks, and no 1:1 at 2K."""
NEW_MODELS = {**DEFAULT_MODELS,
              "qwen-image-3.0": SimModel(0.04, output_sizes=WIDE, default_size="21:9", max_images=4,
                                         max_prompt_chars=2000, max_negative_prompt_chars=300),
              "flux-kontext": SimModel(0.03)}


@pytest.fixture
def offering():
    """A simulator that offers a new Qwen-Image model (and a model of another family) beside the pair."""
    with serve(Simulator(seed=4, time_scale=TIME_SCALE, models=NEW_MODELS)) as running:
        yield running


def discovery(simulator: Simulator) -> list[str]:
    return [e["path"] for e in simulator.log if e["path"].startswith(("/v1/models", "/v1/model-"))]


async def test_a_model_the_package_never_heard_of_works_end_to_end(offering):
    async with qw.AsyncQwenClient(TEST_KEY, base_url=offering.url, **fast_options()) as client:
        task = await client.generate("a wide fox " * 150, model="qwen-image-3.0", n=4)  # 1650 characters
        again = await client.generate("a wider fox", model="qwen-image-3.0", resolution="2K")
    assert task.status is qw.TaskStatus.COMPLETED and len(task.images) == 4
    assert (task.request.size, task.request.resolution) == ("21:9", "1K")  # the model's own defaults
    assert {(image.width, image.height) for image in task.images} == {(1344, 576)}  # from the model's page
    assert again.images[0].width == 2688
    # asked once per client: the list, the schema and the page, then never again
    assert discovery(offering.simulator) == ["/v1/models", "/v1/model-schema", "/v1/model-docs"]


def test_the_front_door_and_a_sweep_take_a_new_model(offering):
    client = qw.QwenClient(TEST_KEY, base_url=offering.url, **fast_options())
    qw.set_default_client(client)
    task = qw.generate("a fox", model="qwen-image-3.0")
    assert task.status is qw.TaskStatus.COMPLETED and task.request.size == "21:9"
    sweep = qw.sweep("a fox", model=["qwen-image-2.0", "qwen-image-3.0"], n=2, client=client)
    tasks = sweep.wait(60)
    assert [(t.request.model, t.request.size, t.status) for t in tasks] == [
        ("qwen-image-2.0", "1:1", qw.TaskStatus.COMPLETED), ("qwen-image-3.0", "21:9", qw.TaskStatus.COMPLETED)]
    with pytest.raises(qw.RequestValidationError) as caught:  # every cell under its own model's rules
        qw.sweep("a fox", model=["qwen-image-2.0", "qwen-image-3.0"], n=5, client=client)
    assert caught.value.field == "n" and "from 1 to 4" in str(caught.value)
    assert offering.simulator.count("POST") == 3


async def test_the_services_rules_refuse_locally_naming_the_field(offering):
    async with qw.AsyncQwenClient(TEST_KEY, base_url=offering.url, **fast_options()) as client:
        for fields, field, words in (({"n": 5}, "n", "from 1 to 4"), ({"size": "16:9"}, "size", "21:9, 1:1"),
                                     ({"negative_prompt": "no " * 101}, "negative_prompt", "at most 300")):
            with pytest.raises(qw.RequestValidationError) as caught:
                await client.generate("a fox", model="qwen-image-3.0", **fields)
            assert caught.value.field == field and words in str(caught.value)
    assert offering.simulator.count("POST") == 0


async def test_a_model_the_service_does_not_offer_is_refused_with_its_list(offering):
    async with qw.AsyncQwenClient(TEST_KEY, base_url=offering.url, **fast_options()) as client:
        with pytest.raises(qw.RequestValidationError) as caught:
            await client.generate("a fox", model="qwen-image-9")
        assert await client.models() == ("qwen-image-2.0", "qwen-image-2.0-pro", "qwen-image-3.0")
    message = str(caught.value)
    assert caught.value.field == "model" and "qwen-image-3.0" in message and "the service offers" in message
    assert offering.simulator.count("POST") == 0 and discovery(offering.simulator) == ["/v1/models"]


async def test_models_lists_the_qwen_image_family_and_another_listed_model_still_works(offering):
    async with qw.AsyncQwenClient(TEST_KEY, base_url=offering.url, **fast_options()) as client:
        assert "flux-kontext" not in await client.models()
        task = await client.generate("a fox", model="flux-kontext")
    assert task.status is qw.TaskStatus.COMPLETED


async def test_without_the_services_list_the_known_pair_is_offered_and_a_new_model_refused_saying_why(
        offering, caplog):
    simulator = offering.simulator
    simulator.inject(SimResponse(404, {"Content-Type": "application/json"}, b'{"error": {"message": "no route"}}'),
                     path_prefix="/v1/models", count=100)
    async with qw.AsyncQwenClient(TEST_KEY, base_url=offering.url, **fast_options()) as client:
        with caplog.at_level("WARNING", logger="qwen_widgets"):
            assert await client.models() == qw.MODELS
        for _ in range(2):  # asked once, not before every request
            with pytest.raises(qw.RequestValidationError) as caught:
                await client.generate("a fox", model="qwen-image-3.0")
        known = await client.generate("a fox", n=2)
    message = str(caught.value)
    assert caught.value.field == "model" and all(model in message for model in qw.MODELS)
    assert "could not be read" in message and "no route" in message
    assert "list of models could not be read" in caplog.text
    assert discovery(simulator) == ["/v1/models"] and simulator.count("POST") == 1
    assert known.status is qw.TaskStatus.COMPLETED


async def test_a_listed_model_whose_schema_cannot_be_read_is_left_to_the_services_checks(offering):
    offering.simulator.inject(SimResponse(500, {}, b"oops"), path_prefix="/v1/model-schema", count=100)
    async with qw.AsyncQwenClient(TEST_KEY, base_url=offering.url, **fast_options(
            retry=qw.RetryPolicy(max_attempts=2, backoff_base=0.01, backoff_cap=0.02))) as client:
        rules = await client.model_rules("qwen-image-3.0")
        assert (rules.source, rules.sizes, rules.max_images) == ("unknown", (), None)
        assert (await client.model_rules("qwen-image-2.0")).source == "known"  # the documented rules
        task = await client.generate("a fox", model="qwen-image-3.0", size="21:9")
        with pytest.raises(qw.APIError) as refused:  # the service checks what nobody could tell
            await client.generate("a fox", model="qwen-image-3.0", n=5)
    assert task.status is qw.TaskStatus.COMPLETED and task.images[0].width is None  # pixels unknown, not guessed
    assert refused.value.param == "n"


async def test_a_known_model_costs_no_discovery_and_its_bad_input_no_request(offering):
    async with qw.AsyncQwenClient(TEST_KEY, base_url=offering.url, **fast_options()) as client:
        await client.generate("a fox", model="qwen-image-2.0-pro")
        with pytest.raises(qw.RequestValidationError):
            await client.generate("a fox", n=7)
        with pytest.raises(qw.RequestValidationError) as caught:  # wrong whatever the model's rules
            await client.generate("   ", model="qwen-image-3.0")
    assert caught.value.field == "prompt"
    assert discovery(offering.simulator) == [] and offering.simulator.count("POST") == 1


async def test_once_asked_the_services_rules_count_for_the_known_pair_too():
    """A service that narrows a documented model: after the client asked (as the panel does),
    submit refuses locally what the service would refuse."""
    narrow = {"qwen-image-2.0": SimModel(0.021, max_images=2)}
    with serve(Simulator(seed=4, time_scale=TIME_SCALE, models=narrow)) as running:
        async with qw.AsyncQwenClient(TEST_KEY, base_url=running.url, **fast_options()) as client:
            with pytest.raises(qw.APIError):  # not asked yet: the service itself refuses
                await client.generate("a fox", n=3)
            assert (await client.model_rules("qwen-image-2.0")).max_images == 2
            with pytest.raises(qw.RequestValidationError) as caught:
                await client.submit(qw.ImageRequest("a fox", n=3))
            with pytest.raises(qw.RequestValidationError) as gone:
                await client.submit(qw.ImageRequest("a fox", model="qwen-image-2.0-pro"))
        assert running.simulator.count("POST") == 1
    assert caught.value.field == "n" and "from 1 to 2" in str(caught.value)
    assert gone.value.field == "model" and "the service offers" in str(gone.value)


def test_the_sync_client_offers_models_rules_and_requests(offering):
    with qw.QwenClient(TEST_KEY, base_url=offering.url, **fast_options()) as client:
        assert client.models()[-1] == "qwen-image-3.0"
        rules = client.model_rules("qwen-image-3.0")
        request = client.build_request("a fox", model="qwen-image-3.0", n=4)
        plan = client.plan({"prompt": ["a fox", "a wolf"], "model": "qwen-image-3.0"})
        with pytest.raises(qw.RequestValidationError):
            client.model_rules("")
    assert rules.sizes == ("21:9", "1:1") and rules.pixels("21:9", "2K") == (2688, 1152)
    assert request.rules == rules and request.output_size == (1344, 576)
    assert [cell.request.size for cell in plan.cells] == ["21:9", "21:9"]


# -- 9. each endpoint as the vendor's published examples show it --------------------------------------
#
# The bodies below restate, in our own words and values, the shapes of docs/api-contract.md
# sections 1, 2, 4, 5 and 6 (and /work/shared/API.md sections 1, 2, 5 and 6): the generation
# page's examples, the official client's contract and the second client's types. Each one is
# served by httpx.MockTransport and read by the client's own parsers, as the real service's
# answers would be.

API = "https://api.apimart.ai"
CREATED = 1_767_225_600
PNG = b"\x89PNG\r\n\x1a\n" + bytes(64)


def published(routes: dict[str, Any]) -> tuple[qw.AsyncQwenClient, list[httpx.Request]]:
    """A client whose API answers `routes` ("METHOD /path" -> JSON body, or (status, body))."""
    seen: list[httpx.Request] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        route = routes.get(f"{request.method} {request.url.path}")
        if route is None:
            return httpx.Response(404, json={"error": {"message": "not in this example", "type": "not_found"}})
        status, body = route if isinstance(route, tuple) else (200, route)
        return httpx.Response(status, json=body)

    client = qw.AsyncQwenClient(TEST_KEY, base_url=API, transport=httpx.MockTransport(answer),
                                journal=Journal(":memory:"), keep_images=False, **fast_options())
    return client, seen


def completed(url: Any, **extra: Any) -> dict[str, Any]:
    """A finished task as the examples show it: 60 s estimated, 19 s taken, one image."""
    return {"code": 200, "data": {"id": "task_01JEXAMPLE", "status": "completed", "progress": 100,
                                  "estimated_time": 60, "actual_time": 19, "created": CREATED,
                                  "completed": CREATED + 19, "cost": 0.021,
                                  "result": {"images": [{"url": url, "expires_at": CREATED + 86_400}]}, **extra}}


def failed(error: Any) -> dict[str, Any]:
    return {"code": 200, "data": {"id": "task_01JEXAMPLE", "status": "failed", "progress": 0,
                                  "created": CREATED, "error": error}}


async def test_submit_legacy_answer():
    """1.4: `data` is a list of one, the id is called `task_id`."""
    client, seen = published({"POST /v1/images/generations": {
        "code": 200, "data": [{"status": "submitted", "task_id": "task_01JGXYZLEGACY"}]}})
    async with client:
        task = await client.submit(qw.ImageRequest("a cute orange cat napping in the sunshine"))
    assert (task.task_id, task.status, task.request_id) == ("task_01JGXYZLEGACY", qw.TaskStatus.SUBMITTED, None)
    assert json.loads(seen[0].content) == {"model": "qwen-image-2.0", "prompt": "a cute orange cat napping in "
                                           "the sunshine", "size": "1:1", "resolution": "1K", "n": 1}


async def test_submit_versioned_answer():
    """1.5: with the version header, `data` is an object with `id`, and the envelope a `request_id`."""
    client, seen = published({"POST /v1/images/generations": {
        "code": 200, "request_id": "req_example", "data": {"id": "task_01JGXYZVERSIONED", "object": "generation.task",
                                                           "status": "pending", "created": CREATED}}})
    async with client:
        task = await client.submit(qw.ImageRequest("a fox", size="16:9"))
    headers = seen[0].headers
    assert headers["X-APIMart-Response-Version"] == "2026-07-27" and 1 <= len(headers["Idempotency-Key"]) <= 191
    assert headers["Authorization"] == f"Bearer {TEST_KEY}"
    # accepted: polling tells the rest, whatever word the answer used for a new task
    assert (task.task_id, task.status, task.request_id) == ("task_01JGXYZVERSIONED", qw.TaskStatus.SUBMITTED,
                                                            "req_example")


@pytest.mark.parametrize("url", [["https://upload.apimart.ai/f/image/a.png"], "https://upload.apimart.ai/f/image/a.png"],
                         ids=["url as a list", "url as a string"])
async def test_task_answer_completed(url):
    """2.2, 2.4, 7.1: a finished task; `url` a list in current examples, a string in older ones."""
    client, _ = published({"GET /v1/tasks/task_01JEXAMPLE": completed(url)})
    async with client:
        task = await client.get_task("task_01JEXAMPLE", request=qw.ImageRequest("a fox", size="16:9"))
    image, = task.images
    assert task.status is qw.TaskStatus.COMPLETED and image.url == "https://upload.apimart.ai/f/image/a.png"
    assert (task.estimated_time, task.actual_time, task.cost) == (60, 19, 0.021)
    assert image.expires_at.timestamp() == CREATED + 86_400 and (image.width, image.height) == (1280, 720)


@pytest.mark.parametrize("error, words", [
    ({"code": 500, "message": "content moderation rejected the prompt", "type": "generation_error"},
     "content moderation rejected the prompt"),
    ({"code": "content_policy", "message": "rejected by policy", "type": "generation_error"}, "rejected by policy"),
    ("upstream generation failed", "upstream generation failed"),
], ids=["error object, numeric code", "error object, word code", "error as a string"])
async def test_task_answer_failed(error, words):
    """2.5, 7.9: `error` is an object (code a number or a word) or a plain string."""
    client, _ = published({"GET /v1/tasks/task_01JEXAMPLE": failed(error)})
    async with client:
        task = await client.get_task("task_01JEXAMPLE")
    assert task.status is qw.TaskStatus.FAILED and words in task.error and task.images == ()


async def test_a_200_with_success_false_is_a_failure():
    """6.1, 7.5: a 200 can carry `success: false` and a message."""
    client, _ = published({"GET /v1/balance": {"success": False, "message": "Token Not Found"}})
    async with client:
        with pytest.raises(qw.APIError, match="Token Not Found"):
            await client.balance()


async def test_upload_answer():
    """4: a bare object; the URL is good for 72 hours after `created_at`."""
    client, seen = published({"POST /v1/uploads/images": {
        "url": "https://upload.apimart.ai/f/image/fox.png", "filename": "fox.png", "content_type": "image/png",
        "bytes": len(PNG), "created_at": CREATED}})
    async with client:
        uploaded = await client.upload(PNG)
    assert uploaded.url == "https://upload.apimart.ai/f/image/fox.png" and uploaded.filename == "fox.png"
    assert uploaded.expires_at.timestamp() == CREATED + 72 * 3600
    assert seen[0].headers["Content-Type"].startswith("multipart/form-data") and b'name="file"' in seen[0].content


async def test_balance_answers_of_the_key_and_of_the_account():
    """5.1: the same flat fields at two addresses; -1 with `unlimited_quota`; no unit stated here."""
    client, _ = published({
        "GET /v1/balance": {"success": True, "remain_balance": 4.5, "remain_credits": 0, "used_balance": 0.5,
                            "used_credits": 0, "unlimited_quota": False},
        "GET /v1/user/balance": {"success": True, "remain_balance": -1, "remain_credits": 0, "used_balance": 12.25,
                                 "used_credits": 0, "unlimited_quota": True}})
    async with client:
        key, account = await client.balance(), await client.balance(account=True)
    assert (key.scope, key.remaining, key.used, key.unlimited, key.unit) == ("key", 4.5, 0.5, False, None)
    assert (account.scope, account.remaining, account.used, account.unlimited) == ("account", None, 12.25, True)


async def test_models_answer():
    """5.2: `{"data": [{"id": ...}, ...]}`, APIMart's other models among them."""
    client, _ = published({"GET /v1/models": {"object": "list", "data": [
        {"id": "gpt-4o", "object": "model", "created": CREATED, "owned_by": "openai"},
        {"id": "qwen-image-2.0", "object": "model", "created": CREATED, "owned_by": "alibaba"},
        {"id": "qwen-image-3.0", "object": "model", "created": CREATED, "owned_by": "alibaba"}]}})
    async with client:
        assert await client.models() == ("qwen-image-2.0", "qwen-image-3.0")


NEW_INPUT_SCHEMA = {"type": "object", "required": ["prompt"], "properties": {
    "prompt": {"type": "string", "maxLength": 1600},
    "size": {"type": "string", "enum": ["1:1", "21:9"], "default": "1:1"},
    "resolution": {"type": "string", "enum": ["1K", "2K"], "default": "1K"},
    "n": {"type": "integer", "minimum": 1, "maximum": 4},
    "negative_prompt": {"type": "string", "maxLength": 500},
    "image_urls": {"type": "array", "items": {"type": "string", "format": "uri"}}}}


async def test_model_schema_answer_keeps_model_out_of_the_input():
    """5.3: `{model, operation, input_schema}`; the body sent is that input plus a top-level `model`."""
    client, seen = published({
        "GET /v1/models": {"data": [{"id": "qwen-image-3.0"}]},
        "GET /v1/model-schema": {"model": "qwen-image-3.0", "operation": "image_generation",
                                 "input_schema": NEW_INPUT_SCHEMA},
        "POST /v1/images/generations": {"code": 200, "data": [{"status": "submitted", "task_id": "task_01JNEW"}]}})
    async with client:
        rules = await client.model_rules("qwen-image-3.0")
        task = await client.submit(await client.build_request("a fox", model="qwen-image-3.0", size="21:9", n=4))
    assert (rules.sizes, rules.max_prompt_chars, rules.max_images) == (("1:1", "21:9"), 1600, 4)
    asked = next(r for r in seen if r.url.path == "/v1/model-schema")
    assert dict(asked.url.params) == {"model": "qwen-image-3.0", "operation": "image_generation"}
    body = json.loads(seen[-1].content)
    assert body == {"model": "qwen-image-3.0", "prompt": "a fox", "size": "21:9", "resolution": "1K", "n": 4}
    assert task.task_id == "task_01JNEW" and task.request.output_size == (None, None)  # no page: no pixels


async def test_model_docs_answer():
    """5.4: the documentation object; its Markdown page gives the pixel table."""
    markdown = ("# qwen-image-3.0\n\n## Resolution reference\n\n| Ratio | 1K | 2K |\n|---|---|---|\n"
                "| 1:1 | 1024x1024 | 2048x2048 |\n| 21:9 | 1344x576 | 2688x1152 |\n")
    client, seen = published({
        "GET /v1/models": {"data": [{"id": "qwen-image-3.0"}]},
        "GET /v1/model-schema": {"model": "qwen-image-3.0", "operation": "image_generation",
                                 "input_schema": NEW_INPUT_SCHEMA},
        "GET /v1/model-docs": {"object": "model.documentation", "model": "qwen-image-3.0",
                               "doc_url": "https://docs.apimart.ai/models/qwen-image-3.0",
                               "markdown_url": "https://docs.apimart.ai/models/qwen-image-3.0.md",
                               "markdown": markdown, "fetched_at": CREATED, "cache_ttl_seconds": 3600,
                               "stale": False}})
    async with client:
        rules = await client.model_rules("qwen-image-3.0")
    assert rules.output_sizes == {("1:1", "1K"): (1024, 1024), ("1:1", "2K"): (2048, 2048),
                                  ("21:9", "1K"): (1344, 576), ("21:9", "2K"): (2688, 1152)}
    docs = next(r for r in seen if r.url.path == "/v1/model-docs")
    assert dict(docs.url.params) == {"model": "qwen-image-3.0"}


async def test_pricing_answer_with_model_price_and_zeros_for_an_unknown_model():
    """5.5: public, no key; an unknown model answers zeros, which mean 'unknown', not 'free'."""
    def pricing(name: str, price: float) -> dict[str, Any]:
        return {"success": True, "data": {
            "model_name": name, "billing_type": "per_image" if price else "", "model_price": price,
            "discount_rate": 1 if price else 0, "resolution_enabled": bool(price), "supported_sizes": [],
            "supported_qualities": [], "size_quality_prices": {}, "resolution_prices": {}}}

    seen: list[httpx.Request] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        name = request.url.params["model"]
        return httpx.Response(200, json=pricing(name, 0.021 if name == "qwen-image-2.0" else 0))

    async with qw.AsyncQwenClient(TEST_KEY, base_url=API, transport=httpx.MockTransport(answer),
                                  journal=Journal(":memory:"), **fast_options()) as client:
        assert await client.price_per_image("qwen-image-2.0") == (0.021, "pricing")
        assert await client.price_per_image("qwen-image-3.0") == (None, "unknown")
    assert [r.url.path for r in seen] == ["/api/pricing/model"] * 2
    assert not any("authorization" in r.headers for r in seen)


def test_balance_in_another_unit_through_the_front_door():
    """5.1: the unit is the service's (here yuan); the key's balance apart from the account's."""
    simulator = Simulator(seed=4, time_scale=TIME_SCALE, balance_unit="CNY", starting_balance=50.0, key_quota=5.0)
    with serve(simulator) as running:
        qw.set_default_client(qw.QwenClient(TEST_KEY, base_url=running.url, **fast_options()))
        qw.generate("a fox", n=2)
        key, account = qw.balance(), qw.balance(account=True)
    assert (key.unit, key.scope, key.remaining) == ("CNY", "key", pytest.approx(5.0 - 0.042))
    assert (account.unit, account.scope, account.remaining) == ("CNY", "account", pytest.approx(50.0 - 0.042))
    assert str(key) == "key balance: 4.96 CNY (0.04 CNY used)" and "$" not in str(account)
