"""The simulator's own statement of the contract (`qwen_widgets/simulator/_contract.py`).

Pure checks: no server. The facts asserted here come from the vendor's generation page and
docs/api-contract.md (sections 1, 3-5 and 7), restated in the tests' own words; none comes from the client.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import qwen_widgets.simulator as simulator_package
from qwen_widgets.simulator import CONTRACT, DEFAULT_MODELS, SimModel
from qwen_widgets.simulator._contract import (
    FIELDS,
    MAX_UPLOAD_BYTES,
    OUTPUT_SIZES,
    Refusal,
    check_submission,
    check_upload,
    error_body,
    ignored_fields,
)

PNG = b"\x89PNG\r\n\x1a\n" + b"\0" * 32
JPEG = b"\xff\xd8\xff\xe0" + b"\0" * 32
GIF = b"GIF89a" + b"\0" * 32
WEBP = b"RIFF\x24\0\0\0WEBPVP8 " + b"\0" * 32


def refusal(payload, models=DEFAULT_MODELS) -> Refusal:
    with pytest.raises(Refusal) as caught:
        check_submission(payload, models)
    return caught.value


def body(**fields):
    return {"model": "qwen-image-2.0", "prompt": "a cat asleep in the sun", **fields}


# -- it is the simulator's own --------------------------------------------------------------------


def test_the_simulator_imports_nothing_from_the_rest_of_the_package():
    """Its rules must be a second statement of the contract, not the client's rules again."""
    folder = Path(simulator_package.__file__).parent
    outside = []
    for source in sorted(folder.glob("*.py")):
        for node in ast.walk(ast.parse(source.read_text())):
            if isinstance(node, ast.ImportFrom) and (node.level > 1 or (node.module or "").startswith("qwen_widgets")):
                outside.append(f"{source.name}: from {'.' * node.level}{node.module or ''}")
            elif isinstance(node, ast.Import):
                outside += [f"{source.name}: import {a.name}" for a in node.names if a.name.startswith("qwen_widgets")]
    assert len(list(folder.glob("*.py"))) >= 9 and outside == []


# -- the table of fields and the vendor's numbers ---------------------------------------------------


def test_the_field_table_states_the_documented_body():
    table = {rule.name: rule for rule in FIELDS}
    assert list(table) == ["model", "prompt", "size", "resolution", "n", "negative_prompt", "image_urls"]
    assert [name for name, rule in table.items() if rule.required] == ["model", "prompt"]
    assert (table["size"].default, table["resolution"].default, table["n"].default) == ("1:1", "1K", 1)
    assert table["n"].type == "integer" and table["image_urls"].type == "array of strings"
    assert "base64" in table["image_urls"].rule and "800" in table["prompt"].rule
    assert CONTRACT["fields"] == table


def test_the_contract_holds_the_pages_numbers():
    assert CONTRACT["models"] == ("qwen-image-2.0", "qwen-image-2.0-pro")
    assert CONTRACT["sizes"] == ("1:1", "4:3", "3:4", "16:9", "9:16", "3:2", "2:3")
    assert CONTRACT["resolutions"] == ("1K", "2K")
    assert (CONTRACT["max_prompt_chars"], CONTRACT["max_negative_prompt_chars"]) == (800, 500)
    assert (CONTRACT["min_images"], CONTRACT["max_images"]) == (1, 6)
    assert CONTRACT["max_upload_bytes"] == 20 * 1024 * 1024
    assert set(CONTRACT["upload_content_types"].values()) == {"image/jpeg", "image/png", "image/gif", "image/webp"}
    assert CONTRACT["image_url_schemes"] == ("http", "https")
    assert dict(CONTRACT["prices"]) == {"qwen-image-2.0": 0.021, "qwen-image-2.0-pro": 0.053}
    assert {name: model.price for name, model in DEFAULT_MODELS.items()} == dict(CONTRACT["prices"])


@pytest.mark.parametrize(("size", "one_k", "two_k"), [
    ("1:1", (1024, 1024), (2048, 2048)), ("4:3", (1152, 864), (2048, 1536)), ("3:4", (864, 1152), (1536, 2048)),
    ("16:9", (1280, 720), (2048, 1152)), ("9:16", (720, 1280), (1152, 2048)), ("3:2", (1248, 832), (2048, 1360)),
    ("2:3", (832, 1248), (1360, 2048)),
])
def test_the_resolution_table(size, one_k, two_k):
    assert (OUTPUT_SIZES[(size, "1K")], OUTPUT_SIZES[(size, "2K")]) == (one_k, two_k)


def test_the_pages_two_worked_examples_of_size_and_tier():
    """Only a ratio: the 1K tier; ratio and tier: that tier."""
    assert check_submission(body(size="16:9"), DEFAULT_MODELS).output_size == (1280, 720)
    assert check_submission(body(size="16:9", resolution="2K"), DEFAULT_MODELS).output_size == (2048, 1152)


def test_a_minimal_request_gets_the_documented_defaults():
    request = check_submission({"model": "qwen-image-2.0", "prompt": "a cat"}, DEFAULT_MODELS)
    assert (request.size, request.resolution, request.n, request.output_size) == ("1:1", "1K", 1, (1024, 1024))
    assert request.negative_prompt is None and request.image_urls == ()
    assert request.to_payload() == {"model": "qwen-image-2.0", "prompt": "a cat", "size": "1:1",
                                    "resolution": "1K", "n": 1}


# -- refusals name their field ------------------------------------------------------------------------


@pytest.mark.parametrize(("fields", "param"), [
    ({"prompt": "x" * 801}, "prompt"),
    ({"prompt": "   "}, "prompt"),
    ({"prompt": 42}, "prompt"),
    ({"negative_prompt": "x" * 501}, "negative_prompt"),
    ({"size": "5:4"}, "size"),
    ({"resolution": "4K"}, "resolution"),
    ({"n": 0}, "n"),
    ({"n": 7}, "n"),
    ({"n": True}, "n"),
    ({"n": 2.0}, "n"),
    ({"n": "2"}, "n"),
    ({"image_urls": "https://example.com/a.jpg"}, "image_urls"),
    ({"image_urls": ["data:image/png;base64,iVBORw0KGgo="]}, "image_urls[0]"),
    ({"image_urls": ["https://example.com/a.jpg", "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk"]},
     "image_urls[1]"),
    ({"image_urls": ["ftp://example.com/a.jpg"]}, "image_urls[0]"),
    ({"image_urls": ["/home/me/a.jpg"]}, "image_urls[0]"),
])
def test_a_wrong_known_field_is_refused_with_400_naming_it(fields, param):
    refused = refusal(body(**fields))
    assert refused.status == 400 and refused.param == param
    envelope = refused.body()["error"]
    assert envelope["param"] == param and envelope["code"] == 400 and envelope["message"].startswith(param)


def test_the_limits_themselves_are_accepted():
    request = check_submission(body(prompt="x" * 800, negative_prompt="y" * 500, n=6,
                                    image_urls=["https://example.com/a.jpg", "http://127.0.0.1:9/b.png"]),
                               DEFAULT_MODELS)
    assert request.n == 6 and len(request.prompt) == 800 and len(request.image_urls) == 2


def test_a_missing_required_field_is_refused():
    assert refusal({"prompt": "a cat"}).param == "model"
    assert refusal({"model": "qwen-image-2.0"}).param == "prompt"
    assert refusal(["not", "an", "object"]).param == "body"


def test_an_unknown_model_is_503_model_not_found():
    refused = refusal(body(model="qwen-image-9"))
    assert (refused.status, refused.code, refused.param) == (503, "model_not_found", "model")
    assert refused.body()["error"]["code"] == "model_not_found"


def test_fields_it_does_not_model_are_named_not_refused():
    payload = body(quality="auto", output_format="png", seed=7)
    assert ignored_fields(payload) == ("quality", "output_format", "seed")
    assert check_submission(payload, DEFAULT_MODELS).to_payload() == check_submission(body(), DEFAULT_MODELS).to_payload()
    assert ignored_fields(body()) == () and ignored_fields("not an object") == ()


def test_error_codes_in_each_style():
    assert error_body(400, "n: bad", "invalid_request_error", param="n")["error"] == {
        "code": 400, "message": "n: bad", "type": "invalid_request_error", "param": "n"}
    assert error_body(400, "n: bad", "invalid_request_error", style="string")["error"]["code"] == "invalid_request_error"
    assert error_body(503, "gone", "invalid_request_error", code="model_not_found", style="numeric")["error"]["code"] == 503
    assert error_body(503, "gone", "invalid_request_error", code="model_not_found", style="string")["error"]["code"] == \
        "model_not_found"


# -- models of their own ------------------------------------------------------------------------------


def test_a_new_model_brings_its_own_rules():
    wide = {**OUTPUT_SIZES, ("21:9", "1K"): (1344, 576)}
    models = {"qwen-image-3.0": SimModel(price=0.04, output_sizes=wide, max_images=4, max_prompt_chars=2000)}
    request = check_submission(body(model="qwen-image-3.0", size="21:9", prompt="x" * 1500, n=4), models)
    assert request.output_size == (1344, 576) and models["qwen-image-3.0"].sizes[-1] == "21:9"
    assert refusal(body(model="qwen-image-3.0", n=5), models).param == "n"
    assert refusal(body(model="qwen-image-3.0", size="21:9", resolution="2K"), models).param == "resolution"
    assert refusal(body(), models).status == 503  # 2.0 is not offered by this service


def test_a_model_whose_defaults_are_not_in_its_table_is_a_mistake():
    with pytest.raises(ValueError):
        SimModel(price=0.01, output_sizes={("16:9", "1K"): (1280, 720)})


# -- uploads ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("data", "content_type"), [
    (PNG, "image/png"), (JPEG, "image/jpeg"), (GIF, "image/gif"), (WEBP, "image/webp")])
def test_uploads_are_told_apart_by_their_bytes(data, content_type):
    assert check_upload(data) == content_type


@pytest.mark.parametrize("data", [b"", b"<html>not an image</html>", b"BM" + b"\0" * 40])
def test_other_bytes_are_refused_400(data):
    with pytest.raises(Refusal) as caught:
        check_upload(data)
    assert caught.value.status == 400 and caught.value.param == "file"


def test_the_upload_limit_is_20_mb():
    assert check_upload(PNG + b"\0" * (MAX_UPLOAD_BYTES - len(PNG))) == "image/png"
    with pytest.raises(Refusal) as caught:
        check_upload(PNG + b"\0" * (MAX_UPLOAD_BYTES - len(PNG) + 1))
    assert caught.value.status == 413
