"""Two clients this project did not write, flow by flow, against the simulator (issue 25).

Each test sends what one of their commands sends (method, path, headers, body) as raw HTTP,
and checks the answer the way that client reads it: the fields it requires, with the JSON
types its decoder accepts. The flows were read from the clients' sources (not copied):

- APIMart's official client, `apimart-ai/apimart-skills` `apimart-media.mjs` (contract
  2026-07-27): `models`, `docs`, `schema`, `upload-image`, `generate-image` (the schema first,
  then the POST with an idempotency key and the version header) and `task`. It sends
  `Accept: application/json` and a Bearer key on every request, and keeps only string codes.
- `martianzhang/apimart-cli`, its internal client and types: submit (no key, no version:
  the legacy answer; `quality` and `output_format` in every body), the task (integers for
  times, `url` a list, a numeric `code` on a failed task), upload, both balances, the model
  list and one model, the public pricing and marketplace.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from qwen_widgets.simulator import Simulator, serve

KEY = "sk-real-clients-0123456789"
OFFICIAL = {"Accept": "application/json", "Authorization": f"Bearer {KEY}"}
CLI = {"Authorization": f"Bearer {KEY}"}
PNG = b"\x89PNG\r\n\x1a\n" + b"\0" * 64


class Clock:
    """Unix time that moves only when a test says so: tasks end without waiting."""

    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


@contextlib.contextmanager
def running(**options: Any) -> Iterator[tuple[httpx.Client, Simulator, Clock]]:
    clock = Clock()
    simulator = Simulator(seed=11, clock=clock, **options)
    with serve(simulator) as server, httpx.Client(base_url=server.url, timeout=10,
                                                   follow_redirects=False) as http:
        yield http, simulator, clock


@pytest.fixture
def api():
    with running() as parts:
        yield parts


def whole(value: Any) -> bool:
    """What Go's decoder takes for an `int` field: a JSON number without a fraction."""
    return isinstance(value, int) and not isinstance(value, bool)


def number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def finish(clock: Clock, simulator: Simulator) -> None:
    clock.now += 500 * simulator.time_scale  # past every task's end, well within a day


# -- APIMart's official client ------------------------------------------------------------------------


def test_official_models(api):
    http, _, _ = api
    answer = http.get("/v1/models", headers=OFFICIAL)
    assert answer.status_code == 200
    models = answer.json()["data"]
    assert isinstance(models, list) and {m["id"] for m in models if isinstance(m.get("id"), str)} >= {
        "qwen-image-2.0", "qwen-image-2.0-pro"}


def test_official_docs(api):
    http, _, _ = api
    docs = http.get("/v1/model-docs", headers=OFFICIAL, params={"model": "qwen-image-2.0"}).json()
    assert docs["object"] == "model.documentation" and docs["model"] == "qwen-image-2.0"
    for name in ("doc_url", "markdown_url", "markdown"):
        assert isinstance(docs[name], str) and docs[name].strip()
    assert whole(docs["fetched_at"]) and docs["fetched_at"] > 0
    assert whole(docs["cache_ttl_seconds"]) and docs["cache_ttl_seconds"] > 0
    assert isinstance(docs["stale"], bool) and isinstance(docs.get("warning", ""), str)


def test_official_schema(api):
    http, _, _ = api
    schema = http.get("/v1/model-schema", headers=OFFICIAL,
                      params={"model": "qwen-image-2.0-pro", "operation": "image_generation"}).json()
    assert isinstance(schema["model"], str) and schema["operation"] == "image_generation"
    assert isinstance(schema["input_schema"], dict)
    # the client passes `model` beside the input and refuses an input that holds it
    assert "model" not in schema["input_schema"]["properties"]
    assert "model" not in schema["input_schema"].get("required", [])


def test_official_upload_image(api):
    http, _, _ = api
    answer = http.post("/v1/uploads/images", headers=OFFICIAL,
                       files={"file": ("fox.png", PNG, "image/png")})
    upload = answer.json()
    assert answer.status_code == 200 and upload["url"].startswith(("http://", "https://"))
    assert upload["filename"] and upload["content_type"] in ("image/jpeg", "image/png", "image/gif", "image/webp")
    assert whole(upload["bytes"]) and upload["bytes"] > 0 and whole(upload["created_at"]) and upload["created_at"] > 0


def test_official_generate_image_then_task(api):
    http, simulator, clock = api
    model = "qwen-image-2.0"
    schema = http.get("/v1/model-schema", headers=OFFICIAL, params={"model": model, "operation": "image_generation"})
    assert schema.json()["operation"] == "image_generation"  # checked before a billable submit
    key = str(uuid.uuid4())
    headers = {**OFFICIAL, "Content-Type": "application/json", "Idempotency-Key": key,
               "X-APIMart-Response-Version": "2026-07-27"}
    body = {"prompt": "a red fox in snow", "size": "16:9", "n": 2, "model": model}
    first = http.post("/v1/images/generations", headers=headers, json=body)
    again = http.post("/v1/images/generations", headers=headers, json=body)  # an unknown outcome, resent
    data = first.json()["data"]
    assert first.status_code == 200 and isinstance(data, dict) and isinstance(data["id"], str) and data["id"]
    assert data.get("object", "generation.task") == "generation.task" and data["status"].lower() == "pending"
    assert isinstance(first.json()["request_id"], str)
    assert again.json()["data"]["id"] == data["id"] and again.headers["idempotency-replayed"] == "true"
    finish(clock, simulator)
    task = http.get(f"/v1/tasks/{data['id']}", headers=OFFICIAL, params={"language": "en"}).json()["data"]
    assert task["status"].lower() == "completed" and len(task["result"]["images"]) <= 2
    assert len(simulator.tasks) == 1


def test_official_generate_for_a_model_the_service_lacks(api):
    http, simulator, _ = api
    schema = http.get("/v1/model-schema", headers=OFFICIAL,
                      params={"model": "qwen-image-9", "operation": "image_generation"})
    error = schema.json()["error"]
    assert schema.status_code == 404 and isinstance(error["code"], str) and error["message"]
    assert simulator.count("POST") == 0


# -- martianzhang/apimart-cli -------------------------------------------------------------------------

CLI_BODY = {"model": "qwen-image-2.0", "prompt": "a red fox in snow", "size": "16:9", "resolution": "1K",
            "quality": "auto", "output_format": "png", "n": 2}


def cli_submit(http: httpx.Client, **changes: Any) -> httpx.Response:
    return http.post("/v1/images/generations", headers={**CLI, "Content-Type": "application/json"},
                     json={**CLI_BODY, **changes})


def test_cli_submit_and_task(api):
    http, simulator, clock = api
    answer = cli_submit(http)
    submitted = answer.json()
    assert answer.status_code == 200 and submitted["code"] == 200
    entry, = submitted["data"]
    assert entry["status"] == "submitted" and isinstance(entry["task_id"], str)
    finish(clock, simulator)
    task = http.get(f"/v1/tasks/{entry['task_id']}", headers=CLI).json()
    assert task["code"] == 200
    data = task["data"]
    assert data["status"] == "completed" and whole(data["progress"])
    for name in ("actual_time", "estimated_time", "created", "completed"):
        assert whole(data[name]), name
    for image in data["result"]["images"]:
        assert isinstance(image["url"], list) and all(isinstance(u, str) for u in image["url"])
        assert whole(image["expires_at"])
    assert number(data["cost"])


def test_cli_a_failed_task_has_a_numeric_code():
    with running(failure_rate=1.0) as (http, simulator, clock):
        task_id = cli_submit(http).json()["data"][0]["task_id"]
        finish(clock, simulator)
        data = http.get(f"/v1/tasks/{task_id}", headers=CLI).json()["data"]
    assert data["status"] == "failed"
    assert whole(data["error"]["code"]) and isinstance(data["error"]["message"], str)


@pytest.mark.parametrize("changes, param", [({"prompt": "x" * 801}, "prompt"), ({"n": 7}, "n")],
                         ids=["801-character prompt", "n=7"])
def test_cli_a_bad_value_is_refused_for_itself_not_for_the_fields_it_always_sends(api, changes, param):
    http, _, _ = api
    answer = cli_submit(http, **changes)
    assert answer.status_code == 400 and answer.json()["error"]["param"] == param


def test_cli_upload(api):
    http, _, _ = api
    upload = http.post("/v1/uploads/images", headers=CLI, files={"file": ("fox.png", PNG)}).json()
    assert upload["url"].startswith("http") and upload["filename"] == "fox.png"
    assert upload["content_type"] == "image/png" and whole(upload["bytes"]) and whole(upload["created_at"])


@pytest.mark.parametrize("path", ["/v1/balance", "/v1/user/balance"], ids=["the key's", "the account's"])
def test_cli_balance(api, path):
    http, _, _ = api
    balance = http.get(path, headers=CLI).json()
    assert balance["success"] is True
    for name in ("remain_balance", "remain_credits", "used_balance", "used_credits"):
        assert number(balance[name]), name
    assert isinstance(balance["unlimited_quota"], bool)


def test_cli_models_and_one_model(api):
    http, _, _ = api
    models = http.get("/v1/models", headers=CLI).json()["data"]
    for model in models:
        assert isinstance(model["id"], str) and isinstance(model["object"], str)
        assert whole(model["created"]) and isinstance(model["owned_by"], str)
    one = http.get(f"/v1/models/{models[0]['id']}", headers=CLI).json()
    assert one == models[0]


def test_cli_pricing_without_a_key(api):
    http, _, _ = api
    for model, priced in (("qwen-image-2.0", True), ("no-such-model", False)):
        answer = http.get("/api/pricing/model", params={"model": model}).json()
        data = answer["data"]
        assert answer["success"] is True and data["model_name"] == model
        assert isinstance(data["billing_type"], str) and isinstance(data["resolution_enabled"], bool)
        assert number(data["model_price"]) and number(data["discount_rate"])
        assert all(isinstance(s, str) for s in data["supported_sizes"] + data["supported_qualities"])
        assert all(number(p) for sizes in data["size_quality_prices"].values() for p in sizes.values())
        assert all(number(p) for p in data["resolution_prices"].values())
        assert (data["model_price"] > 0) is priced  # zeros for a model it does not price


def test_cli_marketplace_without_a_key(api):
    http, _, _ = api
    answer = http.get("/api/marketplace/models", params={"type": "image", "page": 1, "page_size": 50}).json()
    data = answer["data"]
    assert answer["success"] is True and all(whole(data[n]) for n in ("total", "page", "page_size"))
    for model in data["models"]:
        assert whole(model["id"]) and isinstance(model["model_name"], str) and isinstance(model["tags"], list)
        pricing = model["pricing"]
        assert number(pricing["starting_price"]) and whole(pricing["credits_per_generation"])
        assert isinstance(pricing["has_price"], bool) and whole(model["call_count"]) and whole(model["discount_percent"])
