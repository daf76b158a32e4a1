"""Each endpoint of the simulator on a real loopback socket, checked against the vendor's facts.

The requests are the vendor's published examples (the generation page's four usage examples,
docs/api-contract.md sections 4-7) and the bodies two real clients send: APIMart's official client and
martianzhang/apimart-cli. The simulator runs on a fake clock, so tasks finish when the test
moves time on and nothing waits in real time.
"""

from __future__ import annotations

import contextlib
import io
import json
from collections.abc import Iterator

import httpx
import pytest
from PIL import Image

from qwen_widgets.simulator import DEFAULT_MODELS, SimModel, Simulator, serve
from qwen_widgets.simulator.__main__ import parse_arguments, simulator_from

KEY = "sk-sim-test-0123456789"
AUTH = {"Authorization": f"Bearer {KEY}"}
VERSIONED = {**AUTH, "X-APIMart-Response-Version": "2026-07-27"}
PNG = b"\x89PNG\r\n\x1a\n" + b"\0" * 64


class FakeClock:
    """Unix time that moves only when the test says so."""

    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


class Api:
    """A simulator on loopback and a plain HTTP client for it."""

    def __init__(self, simulator: Simulator, url: str, clock: FakeClock):
        self.simulator, self.url, self.clock = simulator, url, clock
        self.http = httpx.Client(base_url=url, timeout=10)

    def get(self, path: str, headers=AUTH, **params) -> httpx.Response:
        return self.http.get(path, headers=headers, params=params)

    def submit(self, payload: dict, headers=AUTH) -> httpx.Response:
        return self.http.post("/v1/images/generations", headers=headers, json=payload)

    def task_id(self, payload: dict) -> str:
        answer = self.submit(payload)
        assert answer.status_code == 200, answer.text
        return answer.json()["data"][0]["task_id"]

    def finished(self, task_id: str) -> dict:
        """The task after every simulated task has ended."""
        # tasks last tens of (scaled) seconds; ids and links live a (scaled) day
        self.clock.now += 500 * self.simulator.time_scale
        return self.get(f"/v1/tasks/{task_id}").json()["data"]


@contextlib.contextmanager
def api(**options) -> Iterator[Api]:
    clock = FakeClock()
    simulator = Simulator(seed=3, clock=clock, **options)
    with serve(simulator) as server:
        running = Api(simulator, server.url, clock)
        with running.http:
            yield running


@pytest.fixture
def live():
    with api() as running:
        yield running


# -- generation: the page's examples ------------------------------------------------------------------

PAGE_EXAMPLES = [
    ({"model": "qwen-image-2.0", "prompt": "A cute orange cat napping in the sunshine"}, 1, (1024, 1024)),
    ({"model": "qwen-image-2.0-pro", "prompt": "Cyberpunk-style futuristic city nightscape with flickering neon lights",
      "size": "16:9", "n": 4}, 4, (1280, 720)),
    ({"model": "qwen-image-2.0-pro", "prompt": "Exquisite food photography, sushi platter", "size": "4:3",
      "resolution": "2K", "n": 2}, 2, (2048, 1536)),
    ({"model": "qwen-image-2.0", "prompt": "Change the background to a seaside sunset",
      "image_urls": ["https://example.com/my-photo.jpg"]}, 1, (1024, 1024)),
]


@pytest.mark.parametrize(("payload", "images", "pixels"), PAGE_EXAMPLES)
def test_the_pages_usage_examples_are_accepted_and_made(live, payload, images, pixels):
    answer = live.submit(payload)
    assert answer.status_code == 200
    (submitted,) = answer.json()["data"]  # a list of one, as the page shows
    assert answer.json()["code"] == 200 and submitted["status"] == "submitted"
    task = live.simulator.tasks[submitted["task_id"]]
    assert (task.request.n, task.request.output_size) == (images, pixels)
    data = live.finished(submitted["task_id"])
    assert data["status"] == "completed" and len(data["result"]["images"]) == images
    assert data["cost"] == pytest.approx(images * DEFAULT_MODELS[payload["model"]].price)


def test_a_result_image_has_the_tables_pixels(live):
    task_id = live.task_id({"model": "qwen-image-2.0", "prompt": "a wide fox", "size": "16:9"})
    (image,) = live.finished(task_id)["result"]["images"]
    png = httpx.get(image["url"][0]).content
    assert Image.open(io.BytesIO(png)).size == (1280, 720)


def test_the_versioned_shape_and_a_replayed_key(live):
    headers = {**VERSIONED, "Idempotency-Key": "3f1c2d9e-key"}
    first = live.submit({"model": "qwen-image-2.0", "prompt": "a fox", "quality": "auto"}, headers)
    again = live.submit({"model": "qwen-image-2.0", "prompt": "a fox", "quality": "auto"}, headers)
    data = first.json()["data"]
    assert (data["object"], data["status"]) == ("generation.task", "pending") and first.json()["request_id"]
    assert again.json()["data"]["id"] == data["id"] and again.headers["idempotency-replayed"] == "true"
    assert len(live.simulator.tasks) == 1


# -- what real clients send: fields the contract does not model ----------------------------------------

CLI_BODY = {"model": "qwen-image-2.0", "prompt": "a lighthouse at dusk", "size": "16:9", "resolution": "1K",
            "quality": "auto", "output_format": "png", "n": 1}
"""What martianzhang/apimart-cli posts: every request carries quality and output_format."""


def test_unknown_fields_are_ignored_and_reported(live):
    answer = live.submit(CLI_BODY)
    assert answer.status_code == 200
    assert answer.headers["X-Simulator-Ignored-Fields"] == "quality, output_format"
    assert live.simulator.log[-1]["ignored_fields"] == ["quality", "output_format"]
    task = live.simulator.tasks[answer.json()["data"][0]["task_id"]]
    assert task.request.to_payload() == {key: CLI_BODY[key] for key in ("model", "prompt", "size", "resolution", "n")}


def test_a_body_without_unknown_fields_reports_none(live):
    answer = live.submit({"model": "qwen-image-2.0", "prompt": "a fox"})
    assert "X-Simulator-Ignored-Fields" not in answer.headers and live.simulator.log[-1]["ignored_fields"] == []


@pytest.mark.parametrize(("change", "param"), [({"n": 7}, "n"), ({"prompt": "x" * 801}, "prompt"),
                                               ({"size": "5:4"}, "size")])
def test_a_wrong_known_field_is_still_refused_beside_ignored_ones(live, change, param):
    answer = live.submit({**CLI_BODY, **change})
    assert answer.status_code == 400
    error = answer.json()["error"]
    assert (error["param"], error["code"], error["type"]) == (param, 400, "invalid_request_error")
    assert answer.headers["X-Simulator-Ignored-Fields"] == "quality, output_format"
    assert live.simulator.tasks == {}


def test_an_unknown_model_answers_503_model_not_found(live):
    answer = live.submit({"model": "qwen-image-9", "prompt": "a fox"})
    assert answer.status_code == 503
    assert answer.json()["error"]["code"] == "model_not_found" and answer.json()["error"]["param"] == "model"


# -- task answers follow live recordings ---------------------------------------------------------------


def test_times_are_whole_seconds_and_urls_are_lists_by_default(live):
    task_id = live.task_id({"model": "qwen-image-2.0", "prompt": "a fox", "n": 3})
    pending = live.get(f"/v1/tasks/{task_id}").json()["data"]
    data = live.finished(task_id)
    assert type(pending["estimated_time"]) is int and pending["estimated_time"] >= 1
    assert type(data["estimated_time"]) is int and type(data["actual_time"]) is int and data["actual_time"] >= 1
    assert data["completed"] - data["created"] == pytest.approx(data["actual_time"], abs=1)
    urls = [image["url"] for image in data["result"]["images"]]
    assert len(urls) == 3 and all(isinstance(url, list) and len(url) == 1 and isinstance(url[0], str) for url in urls)
    assert all(image["expires_at"] - data["completed"] == pytest.approx(86_400, abs=1)
               for image in data["result"]["images"])


def test_a_scaled_simulator_keeps_fractions_unless_told_otherwise():
    with api(time_scale=0.01) as scaled:
        data = scaled.finished(scaled.task_id({"model": "qwen-image-2.0", "prompt": "a fox"}))
    assert isinstance(data["actual_time"], float) and 0 < data["actual_time"] < 1
    assert data["actual_time"] == round(data["actual_time"], 3)
    with api(time_scale=0.01, whole_seconds=True, url_style="string") as whole:
        data = whole.finished(whole.task_id({"model": "qwen-image-2.0", "prompt": "a fox"}))
    assert type(data["actual_time"]) is int and data["actual_time"] == 1 and type(data["estimated_time"]) is int
    assert isinstance(data["result"]["images"][0]["url"], str)


def test_a_failed_tasks_error_code_is_a_number_by_default_and_a_word_on_request():
    with api(failure_rate=1.0) as failing:
        error = failing.finished(failing.task_id({"model": "qwen-image-2.0", "prompt": "a fox"}))["error"]
    assert isinstance(error["code"], int) and error["message"] and error["type"]
    with api(failure_rate=1.0, error_codes="string") as worded:
        error = worded.finished(worded.task_id({"model": "qwen-image-2.0", "prompt": "a fox"}))["error"]
    assert isinstance(error["code"], str)


def test_refusal_codes_in_the_string_and_numeric_styles():
    with api(error_codes="string") as worded:
        assert isinstance(worded.submit({"model": "qwen-image-2.0", "prompt": ""}).json()["error"]["code"], str)
        assert worded.get("/v1/models", headers={}).json()["error"]["code"] == "authentication_error"
    with api(error_codes="numeric") as numbered:
        assert numbered.submit({"model": "qwen-image-9", "prompt": "a fox"}).json()["error"]["code"] == 503


# -- balances: the key's and the account's ------------------------------------------------------------

BALANCE_FIELDS = {"success", "remain_balance", "remain_credits", "used_balance", "used_credits", "unlimited_quota",
                  "unit"}


def test_both_balances_answer_the_documented_fields_with_a_unit():
    with api(balance_unit="CNY", starting_balance=50.0) as running:
        for path in ("/v1/balance", "/v1/user/balance"):
            answer = running.get(path).json()
            assert set(answer) == BALANCE_FIELDS and answer["success"] is True
            assert (answer["remain_balance"], answer["used_balance"], answer["unit"]) == (50.0, 0.0, "CNY")
            assert answer["unlimited_quota"] is False


def test_the_keys_balance_counts_its_own_tasks_and_the_accounts_counts_all():
    other = {"Authorization": "Bearer sk-another-key-987"}
    with api(starting_balance=10.0, key_quota=1.0) as running:
        mine = running.task_id({"model": "qwen-image-2.0-pro", "prompt": "a fox", "n": 2})
        running.submit({"model": "qwen-image-2.0", "prompt": "a wolf", "n": 3}, other)
        running.finished(mine)
        key, account = running.get("/v1/balance").json(), running.get("/v1/user/balance").json()
        others = running.get("/v1/balance", headers=other).json()
    assert key["used_balance"] == pytest.approx(2 * 0.053) and key["remain_balance"] == pytest.approx(1.0 - 2 * 0.053)
    assert others["used_balance"] == pytest.approx(3 * 0.021)
    assert account["used_balance"] == pytest.approx(2 * 0.053 + 3 * 0.021)
    assert account["remain_balance"] == pytest.approx(10.0 - 2 * 0.053 - 3 * 0.021)


def test_without_a_key_quota_the_key_reports_the_accounts_remainder(live):
    live.finished(live.task_id({"model": "qwen-image-2.0", "prompt": "a fox"}))
    key, account = live.get("/v1/balance").json(), live.get("/v1/user/balance").json()
    assert key["remain_balance"] == account["remain_balance"] == pytest.approx(10.0 - 0.021)


@pytest.mark.parametrize(("which", "failing", "working"), [("key", "/v1/balance", "/v1/user/balance"),
                                                          ("account", "/v1/user/balance", "/v1/balance")])
def test_a_balance_can_fail_with_success_false_on_a_200(which, failing, working):
    with api(balance_failures={which: "Token Not Found"}) as running:
        failed, fine = running.get(failing), running.get(working)
    assert failed.status_code == 200 and failed.json() == {"success": False, "message": "Token Not Found"}
    assert fine.json()["success"] is True


def test_balances_need_a_key(live):
    assert live.get("/v1/user/balance", headers={}).status_code == 401


# -- models and their documentation ---------------------------------------------------------------------


def test_models_list_and_one_model(live):
    listed = live.get("/v1/models").json()["data"]
    assert [model["id"] for model in listed] == ["qwen-image-2.0", "qwen-image-2.0-pro"]
    one = live.get("/v1/models/qwen-image-2.0-pro").json()
    assert set(one) == {"id", "object", "created", "owned_by"}
    assert (one["id"], one["object"]) == ("qwen-image-2.0-pro", "model") and isinstance(one["created"], int)
    missing = live.get("/v1/models/qwen-image-9")
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "model_not_found"


def test_the_schema_keeps_model_out_of_the_input(live):
    answer = live.get("/v1/model-schema", model="qwen-image-2.0", operation="image_generation").json()
    assert (answer["model"], answer["operation"]) == ("qwen-image-2.0", "image_generation")
    schema = answer["input_schema"]
    assert "model" not in schema["properties"] and "model" not in schema["required"]
    assert schema["required"] == ["prompt"]
    assert set(schema["properties"]) == {"prompt", "size", "resolution", "n", "negative_prompt", "image_urls"}
    properties = schema["properties"]
    assert properties["size"]["enum"] == ["1:1", "4:3", "3:4", "16:9", "9:16", "3:2", "2:3"]
    assert (properties["n"]["maximum"], properties["prompt"]["maxLength"]) == (6, 800)
    assert properties["negative_prompt"]["maxLength"] == 500
    assert live.get("/v1/model-schema", model="qwen-image-2.0").json()["operation"] == "image_generation"
    assert live.get("/v1/model-schema", model="nope", operation="image_generation").status_code == 404
    assert live.get("/v1/model-schema", model="qwen-image-2.0", operation="video_generation").status_code == 404


def test_model_docs_answer_what_the_official_client_checks(live):
    docs = live.get("/v1/model-docs", model="qwen-image-2.0-pro").json()
    assert set(docs) == {"object", "model", "doc_url", "markdown_url", "markdown", "fetched_at", "cache_ttl_seconds",
                         "stale"}
    assert (docs["object"], docs["model"], docs["stale"]) == ("model.documentation", "qwen-image-2.0-pro", False)
    assert type(docs["fetched_at"]) is int and docs["fetched_at"] == int(live.clock.now)
    assert type(docs["cache_ttl_seconds"]) is int and docs["cache_ttl_seconds"] > 0
    assert "qwen-image-2.0-pro" in docs["markdown"] and "800" in docs["markdown"] and "2048x1152" in docs["markdown"]
    assert httpx.get(docs["markdown_url"]).text == docs["markdown"]
    assert live.get("/v1/model-docs", model="nope").status_code == 404
    assert live.get("/v1/model-docs").json()["error"]["param"] == "model"


# -- public pricing and marketplace ---------------------------------------------------------------------

PRICING_FIELDS = {"model_name", "billing_type", "model_price", "discount_rate", "resolution_enabled",
                  "supported_sizes", "supported_qualities", "size_quality_prices", "resolution_prices"}


def test_pricing_needs_no_key_and_has_the_shape_real_clients_decode(live):
    answer = live.get("/api/pricing/model", headers={}, model="qwen-image-2.0-pro")
    assert answer.status_code == 200 and answer.json()["success"] is True
    data = answer.json()["data"]
    assert set(data) == PRICING_FIELDS
    assert (data["model_name"], data["model_price"]) == ("qwen-image-2.0-pro", 0.053)
    assert data["supported_sizes"] == ["1:1", "4:3", "3:4", "16:9", "9:16", "3:2", "2:3"]
    assert data["resolution_prices"] == {"1K": 0.053, "2K": 0.053}
    assert isinstance(data["size_quality_prices"], dict) and isinstance(data["supported_qualities"], list)


def test_pricing_an_unknown_model_answers_zero_values(live):
    answer = live.get("/api/pricing/model", headers={}, model="qwen-image-9")
    data = answer.json()["data"]
    assert answer.status_code == 200 and set(data) == PRICING_FIELDS
    assert data["model_price"] == 0 and data["supported_sizes"] == [] and data["resolution_prices"] == {}


def test_the_marketplace_lists_image_models_by_page(live):
    first = live.get("/api/marketplace/models", headers={}, type="image", page=1, page_size=1).json()
    assert first["success"] is True
    assert (first["data"]["total"], first["data"]["page"], first["data"]["page_size"]) == (2, 1, 1)
    (model,) = first["data"]["models"]
    assert model["model_name"] == "qwen-image-2.0" and model["media_type"] == "image"
    assert model["pricing"]["starting_price"] == 0.021 and model["pricing"]["has_price"] is True
    second = live.get("/api/marketplace/models", headers={}, type="image", page=2, page_size=1).json()
    assert [m["model_name"] for m in second["data"]["models"]] == ["qwen-image-2.0-pro"]
    video = live.get("/api/marketplace/models", headers={}, type="video", page=1, page_size=50).json()
    assert video["data"]["total"] == 0 and video["data"]["models"] == []


# -- uploads --------------------------------------------------------------------------------------------


def test_an_upload_is_sniffed_from_its_bytes_and_usable_as_a_reference(live):
    answer = live.http.post("/v1/uploads/images", headers=AUTH, files={"file": ("photo.gif", PNG, "image/gif")})
    assert answer.status_code == 200
    upload = answer.json()
    assert (upload["content_type"], upload["bytes"], upload["filename"]) == ("image/png", len(PNG), "photo.gif")
    assert upload["created_at"] == int(live.clock.now) and httpx.get(upload["url"]).content == PNG
    assert live.submit({"model": "qwen-image-2.0", "prompt": "from my photo", "image_urls": [upload["url"]]}).status_code == 200


def test_uploads_that_are_not_images_or_not_files_are_refused(live):
    junk = live.http.post("/v1/uploads/images", headers=AUTH, files={"file": ("a.png", b"<html>", "image/png")})
    nothing = live.http.post("/v1/uploads/images", headers=AUTH, files={"other": ("a.png", PNG, "image/png")})
    assert (junk.status_code, nothing.status_code) == (400, 400)
    assert junk.json()["error"]["param"] == nothing.json()["error"]["param"] == "file"


# -- a model the package has never heard of -------------------------------------------------------------

NEW_MODEL = SimModel(price=0.04, description="a newer model", max_images=4,
                     output_sizes={**DEFAULT_MODELS["qwen-image-2.0"].output_sizes, ("21:9", "1K"): (1344, 576)})


def test_a_new_model_is_offered_everywhere_and_made():
    with api(models={**DEFAULT_MODELS, "qwen-image-3.0": NEW_MODEL}) as running:
        assert "qwen-image-3.0" in [m["id"] for m in running.get("/v1/models").json()["data"]]
        assert running.get("/v1/models/qwen-image-3.0").json()["id"] == "qwen-image-3.0"
        schema = running.get("/v1/model-schema", model="qwen-image-3.0", operation="image_generation").json()
        assert "21:9" in schema["input_schema"]["properties"]["size"]["enum"]
        assert schema["input_schema"]["properties"]["n"]["maximum"] == 4
        assert running.get("/api/pricing/model", headers={}, model="qwen-image-3.0").json()["data"]["model_price"] == 0.04
        assert running.get("/v1/model-docs", model="qwen-image-3.0").json()["markdown"].count("21:9") >= 2
        refused = running.submit({"model": "qwen-image-3.0", "prompt": "a fox", "n": 5})
        assert refused.status_code == 400 and refused.json()["error"]["param"] == "n"
        task_id = running.task_id({"model": "qwen-image-3.0", "prompt": "a very wide fox", "size": "21:9", "n": 4})
        data = running.finished(task_id)
        balance = running.get("/v1/user/balance").json()
        png = httpx.get(data["result"]["images"][0]["url"][0]).content
    assert running.simulator.tasks[task_id].request.output_size == (1344, 576)
    assert Image.open(io.BytesIO(png)).size == (1344, 576)
    assert data["cost"] == pytest.approx(4 * 0.04) and balance["used_balance"] == pytest.approx(4 * 0.04)


def test_a_simulator_offering_only_a_new_model_refuses_the_old_ones():
    with api(models={"qwen-image-3.0": NEW_MODEL}) as running:
        assert [m["id"] for m in running.get("/v1/models").json()["data"]] == ["qwen-image-3.0"]
        old = running.submit({"model": "qwen-image-2.0", "prompt": "a fox"})
        assert old.status_code == 503 and old.json()["error"]["code"] == "model_not_found"
        assert running.get("/api/pricing/model", headers={}, model="qwen-image-2.0").json()["data"]["model_price"] == 0


def test_the_command_line_offers_a_new_model_and_picks_variants():
    simulator = simulator_from(parse_arguments(["--model", "qwen-image-3.0=0.04", "--error-codes", "string",
                                                "--balance-unit", "tokens", "--no-whole-seconds"]))
    assert simulator.models["qwen-image-3.0"].price == 0.04 and "qwen-image-2.0" in simulator.models
    assert (simulator.error_codes, simulator.balance_unit, simulator.whole_seconds) == ("string", "tokens", False)
    defaults = simulator_from(parse_arguments([]))
    assert (defaults.url_style, defaults.whole_seconds, defaults.error_codes) == ("list", None, "recorded")


def test_the_task_log_never_keeps_the_key(live):
    live.finished(live.task_id({"model": "qwen-image-2.0", "prompt": "a fox"}))
    (task,) = live.simulator.tasks.values()
    assert KEY not in repr(task) and KEY not in json.dumps(live.simulator.log)
