"""Layer 1: ImageRequest validation, output sizes, payload shaping (docs/api-contract.md section 1)."""

from __future__ import annotations

import base64
import dataclasses
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from qwen_widgets.model.errors import (
    MalformedResponseError,
    QwenError,
    RequestValidationError,
)
from qwen_widgets.model.request import (
    KNOWN_RULES,
    ImageRequest,
    ModelRules,
    field_errors,
    make_request,
    parse_model_list,
    parse_model_schema,
    pixels_from_markdown,
    rules_from_schema,
)

# Written from docs/api-contract.md, independently of the package's constants.
API_MODELS = ("qwen-image-2.0", "qwen-image-2.0-pro")
API_SIZES = ("1:1", "4:3", "3:4", "16:9", "9:16", "3:2", "2:3")
API_RESOLUTIONS = ("1K", "2K")
FIELDS = {"prompt", "model", "size", "resolution", "n", "negative_prompt", "image_urls"}

# docs/api-contract.md section 1.3, "Output pixel size is fixed by size x resolution".
API_OUTPUT_TABLE = """
1:1   1024x1024 2048x2048
4:3   1152x864  2048x1536
3:4   864x1152  1536x2048
16:9  1280x720  2048x1152
9:16  720x1280  1152x2048
3:2   1248x832  2048x1360
2:3   832x1248  1360x2048
"""


def _table() -> dict[tuple[str, str], tuple[int, int]]:
    out = {}
    for line in API_OUTPUT_TABLE.strip().splitlines():
        size, one_k, two_k = line.split()
        for res, cell in (("1K", one_k), ("2K", two_k)):
            w, h = cell.split("x")
            out[(size, res)] = (int(w), int(h))
    return out


OUTPUT_TABLE = _table()
PNG_B64 = base64.b64encode(b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 2).decode()
URLSAFE_B64 = base64.urlsafe_b64encode(bytes(range(255, -1, -1)) * 2).decode()
GOOD_URL = "https://example.com/cat.png"


def _build(**fields):
    fields.setdefault("prompt", "a red fox in snow")
    return ImageRequest(**fields)


def _field_of(exc: RequestValidationError) -> str:
    return re.sub(r"\[\d+\]$", "", exc.field)


def _assert_quotes_value(message: str, value) -> None:
    """The message quotes the offending value, shortened when long."""
    text = repr(value)
    if len(text) <= 40:
        assert text in message
    else:
        assert text[:20] in message
        assert len(message) < 400, "a long value must be shortened in the message"


# (id, fields, expected field, words the message must contain)
INVALID = [
    ("empty prompt", {"prompt": ""}, "prompt", ["empty"]),
    ("space prompt", {"prompt": "   "}, "prompt", ["whitespace"]),
    ("tab-newline prompt", {"prompt": "\t\n "}, "prompt", ["whitespace"]),
    ("ideographic-space prompt", {"prompt": "\u3000"}, "prompt", ["whitespace"]),
    ("prompt None", {"prompt": None}, "prompt", ["string"]),
    ("prompt int", {"prompt": 42}, "prompt", ["string"]),
    ("prompt bytes", {"prompt": b"fox"}, "prompt", ["string"]),
    ("prompt 801", {"prompt": "x" * 801}, "prompt", ["800", "801"]),
    ("prompt 5000", {"prompt": "fox " * 1250}, "prompt", ["800", "5000"]),
    ("negative 501", {"negative_prompt": "y" * 501}, "negative_prompt", ["500", "501"]),
    ("negative int", {"negative_prompt": 3}, "negative_prompt", ["string"]),
    ("n zero", {"n": 0}, "n", ["1", "6"]),
    ("n seven", {"n": 7}, "n", ["1", "6"]),
    ("n negative", {"n": -1}, "n", ["1", "6"]),
    ("n huge", {"n": 10**12}, "n", ["1", "6"]),
    ("n True", {"n": True}, "n", ["integer"]),
    ("n False", {"n": False}, "n", ["integer"]),
    ("n float", {"n": 2.0}, "n", ["integer"]),
    ("n str", {"n": "2"}, "n", ["integer"]),
    ("n None", {"n": None}, "n", ["integer"]),
    ("model unknown", {"model": "qwen-image-3"}, "model", list(API_MODELS)),
    ("model case", {"model": "Qwen-Image-2.0"}, "model", list(API_MODELS)),
    ("model empty", {"model": ""}, "model", list(API_MODELS)),
    ("model None", {"model": None}, "model", list(API_MODELS)),
    ("size unknown", {"size": "1:2"}, "size", list(API_SIZES)),
    ("size pixels", {"size": "1024x1024"}, "size", list(API_SIZES)),
    ("size int", {"size": 1}, "size", list(API_SIZES)),
    ("resolution 4K", {"resolution": "4K"}, "resolution", list(API_RESOLUTIONS)),
    ("resolution lower", {"resolution": "1k"}, "resolution", list(API_RESOLUTIONS)),
    ("resolution as size", {"resolution": "16:9"}, "resolution", list(API_RESOLUTIONS)),
    ("urls not a list", {"image_urls": 5}, "image_urls", ["list"]),
    ("urls dict", {"image_urls": {"a": GOOD_URL}}, "image_urls", ["list"]),
    ("url not str", {"image_urls": [GOOD_URL, 7]}, "image_urls[1]", ["string"]),
    ("ftp url", {"image_urls": ["ftp://example.com/a.png"]}, "image_urls[0]", ["http"]),
    ("file url", {"image_urls": ["file:///etc/passwd"]}, "image_urls[0]", ["http"]),
    ("javascript url", {"image_urls": ["javascript:alert(1)"]}, "image_urls[0]", ["http"]),
    ("no scheme", {"image_urls": ["example.com/a.png"]}, "image_urls[0]", ["http"]),
    ("scheme relative", {"image_urls": ["//example.com/a.png"]}, "image_urls[0]", ["http"]),
    ("no host", {"image_urls": ["https:///a.png"]}, "image_urls[0]", ["host"]),
    ("empty host", {"image_urls": ["http://"]}, "image_urls[0]", ["host"]),
    ("port only", {"image_urls": ["https://:8080/a.png"]}, "image_urls[0]", ["host"]),
    ("empty url", {"image_urls": [GOOD_URL, ""]}, "image_urls[1]", ["http"]),
    ("inner space", {"image_urls": ["https://example.com/a b.png"]}, "image_urls[0]", ["whitespace"]),
    ("too long url", {"image_urls": ["https://example.com/" + "a/" * 1100]}, "image_urls[0]", ["2048"]),
]  # fmt: skip

BASE64_INPUTS = [
    ("data uri png", "data:image/png;base64," + PNG_B64),
    ("data uri upper", "DATA:image/jpeg;base64," + PNG_B64),
    ("data uri padded", "  data:image/png;base64,iVBORw0KGgo=  "),
    ("raw base64", PNG_B64),
    ("raw urlsafe base64", URLSAFE_B64),
    ("raw base64 padded by spaces", "\n" + PNG_B64 + "\n"),
]


@pytest.mark.parametrize(
    "fields, field, words", [case[1:] for case in INVALID], ids=[case[0] for case in INVALID]
)
def test_invalid_field_is_named_with_its_rule_and_value(fields, field, words):
    with pytest.raises(RequestValidationError) as info:
        _build(**fields)
    exc = info.value
    assert exc.field == field
    message = str(exc)
    assert message.startswith(field)
    for word in words:
        assert word in message, f"{word!r} missing from {message!r}"
    offending = fields[_field_of(exc)]
    if field.endswith("]"):
        offending = offending[int(field[field.index("[") + 1 : -1])]
    _assert_quotes_value(message, offending)


@pytest.mark.parametrize("url", [u for _, u in BASE64_INPUTS], ids=[i for i, _ in BASE64_INPUTS])
def test_base64_images_are_refused_with_a_pointer_to_public_urls(url):
    with pytest.raises(RequestValidationError) as info:
        _build(image_urls=[GOOD_URL, url])
    exc = info.value
    assert exc.field == "image_urls[1]"
    message = str(exc).lower()
    assert "base64" in message
    assert "refuse" in message
    assert "uploaded for you" in message and "file path" in message
    assert len(str(exc)) < 400  # the blob is quoted shortened, not in full


def test_line_wrapped_base64_gets_the_base64_message():
    wrapped = base64.encodebytes(b"\x89PNG\r\n\x1a\n" + bytes(range(256))).decode()
    with pytest.raises(RequestValidationError) as info:
        _build(image_urls=[wrapped])
    assert "base64" in str(info.value)


@pytest.mark.parametrize(
    "url, secret",
    [
        ("https://alice:hunter2secret@example.com/a.png", "hunter2secret"),
        ("http://tok3nvalue@example.com/a.png", "tok3nvalue"),
        ("https://:pa55word@example.com/a.png", "pa55word"),
    ],
)
def test_credentials_in_url_are_refused_without_echoing_them(url, secret):
    with pytest.raises(RequestValidationError) as info:
        _build(image_urls=[url])
    exc = info.value
    assert exc.field == "image_urls[0]"
    assert "credentials" in str(exc)
    assert secret not in str(exc)
    assert secret not in repr(exc)


@pytest.mark.parametrize("length", [1, 799, 800])
def test_prompt_length_limit_is_inclusive(length):
    assert len(_build(prompt="p" * length).prompt) == length


@pytest.mark.parametrize("length", [1, 500])
def test_negative_prompt_length_limit_is_inclusive(length):
    assert _build(negative_prompt="q" * length).negative_prompt == "q" * length


@pytest.mark.parametrize("blank", ["", "   ", None])
def test_blank_negative_prompt_means_none(blank):
    request = _build(negative_prompt=blank)
    assert request.negative_prompt is None
    assert "negative_prompt" not in request.to_payload()


@pytest.mark.parametrize("n", range(1, 7))
def test_every_n_from_1_to_6_is_accepted(n):
    assert _build(n=n).n == n


@pytest.mark.parametrize("model", API_MODELS)
def test_both_models_are_accepted(model):
    assert _build(model=model).model == model


@pytest.mark.parametrize(
    "urls, expected",
    [
        (None, ()),
        ([], ()),
        (GOOD_URL, (GOOD_URL,)),
        ([GOOD_URL], (GOOD_URL,)),
        (("http://example.org/x.jpg", GOOD_URL), ("http://example.org/x.jpg", GOOD_URL)),
        (["  https://example.com/a.png  "], ("https://example.com/a.png",)),
        (["HTTPS://Example.COM/a.png"], ("HTTPS://Example.COM/a.png",)),
        (["https://127.0.0.1:8080/a.png?x=1#f"], ("https://127.0.0.1:8080/a.png?x=1#f",)),
    ],
)
def test_accepted_image_urls_are_normalised_to_a_tuple(urls, expected):
    assert _build(image_urls=urls).image_urls == expected


@pytest.mark.parametrize("size, resolution", sorted(OUTPUT_TABLE))
def test_output_size_matches_api_table(size, resolution):
    assert _build(size=size, resolution=resolution).output_size == OUTPUT_TABLE[(size, resolution)]


def test_output_table_covers_all_14_combinations():
    assert len(OUTPUT_TABLE) == 14
    combos = {(s, r) for s in API_SIZES for r in API_RESOLUTIONS}
    assert combos == set(OUTPUT_TABLE)
    for size, res in combos:
        _build(size=size, resolution=res)  # every combination is valid


def test_defaults_follow_the_api():
    request = ImageRequest(prompt="fox")
    assert (request.model, request.size, request.resolution, request.n) == (
        "qwen-image-2.0", "1:1", "1K", 1,
    )  # fmt: skip
    assert request.negative_prompt is None
    assert request.image_urls == ()


@pytest.mark.parametrize("name", sorted(FIELDS))
def test_request_is_frozen(name):
    request = _build()
    with pytest.raises(dataclasses.FrozenInstanceError):
        setattr(request, name, "changed")


def test_equal_requests_hash_equal():
    a = _build(image_urls=[GOOD_URL], n=2)
    b = _build(image_urls=(GOOD_URL,), n=2)
    assert a == b and hash(a) == hash(b)
    assert a != _build(image_urls=[GOOD_URL], n=3)


def test_payload_with_only_required_fields_has_no_optional_keys():
    payload = ImageRequest(prompt="a fox").to_payload()
    assert payload == {
        "model": "qwen-image-2.0",
        "prompt": "a fox",
        "size": "1:1",
        "resolution": "1K",
        "n": 1,
    }


def test_payload_with_every_field():
    request = ImageRequest(
        prompt="a fox",
        model="qwen-image-2.0-pro",
        size="9:16",
        resolution="2K",
        n=4,
        negative_prompt="blurry",
        image_urls=[GOOD_URL, "http://example.org/b.jpg"],
    )
    payload = request.to_payload()
    assert payload == {
        "model": "qwen-image-2.0-pro",
        "prompt": "a fox",
        "size": "9:16",
        "resolution": "2K",
        "n": 4,
        "negative_prompt": "blurry",
        "image_urls": [GOOD_URL, "http://example.org/b.jpg"],
    }
    assert isinstance(payload["image_urls"], list)  # JSON array, not a tuple
    payload["image_urls"].append("https://mutated.example/")
    assert len(request.image_urls) == 2  # the payload is a copy


def test_replace_changes_and_revalidates():
    request = _build(size="16:9")
    wider = request.replace(resolution="2K")
    assert wider.output_size == OUTPUT_TABLE[("16:9", "2K")]
    assert request.resolution == "1K"  # original untouched
    for bad in ({"n": 7}, {"prompt": " "}, {"size": "5:4"}, {"image_urls": ["data:x;base64,AA"]}):
        with pytest.raises(RequestValidationError) as info:
            request.replace(**bad)
        assert _field_of(info.value) == next(iter(bad))


@pytest.mark.parametrize(
    "fields",
    [
        {},
        {"n": 6, "size": "3:2", "resolution": "2K"},
        {"negative_prompt": "text, watermark", "model": "qwen-image-2.0-pro"},
        {"image_urls": [GOOD_URL, "http://example.org/b.jpg"]},
    ],
)
def test_from_payload_round_trip(fields):
    request = _build(**fields)
    again = ImageRequest.from_payload(request.to_payload())
    assert again == request
    assert again.to_payload() == request.to_payload()


@pytest.mark.parametrize("key", ["seed", "guidance", "response_format"])
def test_from_payload_refuses_unknown_keys(key):
    payload = _build().to_payload() | {key: 1}
    with pytest.raises(RequestValidationError) as info:
        ImageRequest.from_payload(payload)
    assert info.value.field == key
    assert "prompt" in str(info.value)  # the allowed fields are named


def test_from_payload_needs_a_prompt_and_an_object():
    with pytest.raises(RequestValidationError) as info:
        ImageRequest.from_payload({"model": "qwen-image-2.0"})
    assert info.value.field == "prompt"
    for body in (None, [], "prompt", 3):
        with pytest.raises(RequestValidationError):
            ImageRequest.from_payload(body)


def test_from_payload_validates_values():
    with pytest.raises(RequestValidationError) as info:
        ImageRequest.from_payload({"prompt": "fox", "n": 9})
    assert info.value.field == "n"


def test_validation_error_is_a_value_error_and_qwen_error():
    with pytest.raises(ValueError):
        _build(n=0)
    with pytest.raises(QwenError):
        _build(n=0)


def test_repr_is_short_for_a_long_prompt():
    request = _build(prompt="z" * 800, n=2)
    text = repr(request)
    assert len(text) < 200
    assert "z" * 100 not in text
    assert "n=2" in text


# --- property: any value, any field -> success or RequestValidationError naming a real field

ANY_VALUE = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=900),
    st.binary(max_size=20),
    st.sampled_from(API_MODELS + API_SIZES + API_RESOLUTIONS),
    st.lists(st.one_of(st.text(max_size=30), st.integers(), st.none()), max_size=4),
    st.dictionaries(st.text(max_size=5), st.integers(), max_size=3),
    st.tuples(st.text(max_size=10)),
)
URLISH = st.builds(
    lambda scheme, rest: scheme + rest,
    st.sampled_from(["http://", "https://", "data:", "ftp://", "", "//", "http://u:p@", "https://["]),
    st.text(max_size=80),
)
URL_VALUES = st.one_of(ANY_VALUE, st.lists(st.one_of(URLISH, ANY_VALUE), max_size=7), URLISH)


@settings(max_examples=300, deadline=None)
@given(
    values=st.fixed_dictionaries(
        {},
        optional={
            "prompt": ANY_VALUE,
            "model": ANY_VALUE,
            "size": ANY_VALUE,
            "resolution": ANY_VALUE,
            "n": ANY_VALUE,
            "negative_prompt": ANY_VALUE,
            "image_urls": URL_VALUES,
        },
    )
)
def test_any_input_validates_or_names_a_real_field(values):
    values.setdefault("prompt", "fox")
    try:
        request = ImageRequest(**values)
    except RequestValidationError as exc:
        assert _field_of(exc) in FIELDS
        assert str(exc).startswith(exc.field)
        return
    # accepted: the result obeys every rule
    assert isinstance(request.prompt, str) and request.prompt.strip()
    assert len(request.prompt) <= 800
    assert request.model in API_MODELS
    assert (request.size, request.resolution) in OUTPUT_TABLE
    assert type(request.n) is int and 1 <= request.n <= 6
    assert request.negative_prompt is None or 0 < len(request.negative_prompt) <= 500
    for url in request.image_urls:
        assert url.lower().startswith(("http://", "https://"))
    assert ImageRequest.from_payload(request.to_payload()) == request


@settings(max_examples=200, deadline=None)
@given(st.text(min_size=1, max_size=1200))
def test_any_prompt_text_follows_the_length_rule(prompt):
    if prompt.strip() and len(prompt) <= 800:
        assert ImageRequest(prompt=prompt).prompt == prompt
    else:
        with pytest.raises(RequestValidationError) as info:
            ImageRequest(prompt=prompt)
        assert info.value.field == "prompt"


# --- a model's rules: the documented pair's offline, a service's from its schema (docs/api-contract.md 5.3)

# What a service might say of a model it added: other sizes, more images, a longer prompt.
NEW_SCHEMA = {
    "type": "object",
    "required": ["prompt"],
    "properties": {
        "prompt": {"type": "string", "minLength": 1, "maxLength": 2000},
        "size": {"type": "string", "enum": ["21:9", "1:1"], "default": "21:9"},
        "resolution": {"type": "string", "enum": ["1K", "4K"]},
        "n": {"type": "integer", "minimum": 1, "maximum": 4},
        "negative_prompt": {"type": "string", "maxLength": 300},
        "image_urls": {"type": "array", "items": {"type": "string"}},
    },
}
NEW = rules_from_schema("qwen-image-3.0", NEW_SCHEMA)


def test_the_documented_pair_is_known_offline_with_the_documented_rules():
    assert set(KNOWN_RULES) == set(API_MODELS)
    for model, rules in KNOWN_RULES.items():
        assert (rules.model, rules.sizes, rules.resolutions) == (model, API_SIZES, API_RESOLUTIONS)
        assert dict(rules.output_sizes) == OUTPUT_TABLE
        assert (rules.max_prompt_chars, rules.max_negative_prompt_chars, rules.min_images, rules.max_images) == (
            800, 500, 1, 6)
    assert ImageRequest("a fox").rules == KNOWN_RULES["qwen-image-2.0"]


def test_rules_are_read_from_a_schema_without_guessing_what_it_leaves_out():
    assert (NEW.sizes, NEW.resolutions, NEW.default_size, NEW.default_resolution) == (
        ("21:9", "1:1"), ("1K", "4K"), "21:9", "1K")
    assert (NEW.max_prompt_chars, NEW.max_negative_prompt_chars, NEW.min_images, NEW.max_images) == (2000, 300, 1, 4)
    assert NEW.output_sizes == {} and NEW.source == "service"  # no pixel table given: none guessed
    bare = rules_from_schema("qwen-image-9", {"properties": {"prompt": {"type": "string"}}})
    assert (bare.sizes, bare.resolutions, bare.max_prompt_chars, bare.max_images) == ((), (), None, None)


def test_a_schema_that_lists_model_in_its_input_is_read_all_the_same():
    """The contract keeps `model` out of the input; a schema that holds it must not make it a rule."""
    schema = {**NEW_SCHEMA, "required": ["model", "prompt"],
              "properties": {"model": {"type": "string", "enum": ["qwen-image-3.0"]}, **NEW_SCHEMA["properties"]}}
    assert rules_from_schema("qwen-image-3.0", schema) == NEW


def test_a_known_model_keeps_the_documented_pixels_for_the_sizes_its_schema_offers():
    schema = {"properties": {"size": {"enum": ["1:1", "16:9", "5:4"]}, "resolution": {"enum": ["1K"]}}}
    rules = rules_from_schema("qwen-image-2.0", schema)
    assert rules.output_sizes == {("1:1", "1K"): (1024, 1024), ("16:9", "1K"): (1280, 720)}
    assert rules.pixels("5:4", "1K") is None


@pytest.mark.parametrize("bad", [None, [], {"type": "object"}, {"properties": []}])
def test_a_schema_without_properties_is_malformed(bad):
    with pytest.raises(MalformedResponseError):
        rules_from_schema("qwen-image-3.0", bad)


def test_the_schema_answer_must_be_about_the_model_and_image_generation():
    body = {"model": "qwen-image-3.0", "operation": "image_generation", "input_schema": NEW_SCHEMA}
    assert parse_model_schema(body, "qwen-image-3.0") == NEW
    for wrong in ({**body, "model": "other"}, {**body, "operation": "video_generation"}, {"model": "qwen-image-3.0"}):
        with pytest.raises(MalformedResponseError):
            parse_model_schema(wrong, "qwen-image-3.0")


def test_a_request_for_a_new_model_follows_its_rules():
    request = ImageRequest("x" * 1500, model="qwen-image-3.0", n=4, rules=NEW)
    assert (request.size, request.resolution) == ("21:9", "1K")  # the model's defaults
    assert request.output_size == (None, None)  # nobody said its pixels
    for fields, field in (({"n": 5}, "n"), ({"prompt": "x" * 2001}, "prompt"), ({"size": "16:9"}, "size"),
                          ({"resolution": "2K"}, "resolution"), ({"negative_prompt": "y" * 301}, "negative_prompt")):
        with pytest.raises(RequestValidationError) as info:
            request.replace(**fields)
        assert info.value.field == field
    with_pixels = dataclasses.replace(NEW, output_sizes={("21:9", "1K"): (1344, 576)})
    assert ImageRequest("a fox", model="qwen-image-3.0", rules=with_pixels).output_size == (1344, 576)


def test_a_model_without_rules_is_refused_naming_the_known_ones_and_why():
    with pytest.raises(RequestValidationError) as info:
        ImageRequest("a fox", model="qwen-image-3.0")
    message = str(info.value)
    assert info.value.field == "model" and all(model in message for model in API_MODELS)
    assert "service" in message  # how to get the others: a client that reaches the service


def test_rules_for_another_model_are_refused():
    with pytest.raises(RequestValidationError) as info:
        ImageRequest("a fox", model="qwen-image-2.0", rules=NEW)
    assert info.value.field == "model" and "qwen-image-3.0" in str(info.value)


def test_replace_keeps_the_rules_while_the_model_stays():
    request = ImageRequest("a fox", model="qwen-image-3.0", rules=NEW)
    assert request.replace(n=4).rules is NEW
    back = request.replace(model="qwen-image-2.0", size="1:1")
    assert back.rules == KNOWN_RULES["qwen-image-2.0"]
    assert request == ImageRequest("a fox", model="qwen-image-3.0", size="21:9", rules=NEW)  # rules are no identity


def test_a_record_of_a_new_models_request_reads_back_for_the_journal():
    """A journal row of a model the package does not know must come back, to be resent or listed."""
    sent = ImageRequest("a fox", model="qwen-image-3.0", n=4, rules=NEW).to_payload()
    again = ImageRequest.from_payload(sent)
    assert again.to_payload() == sent and again.rules.source == "unknown"
    with pytest.raises(RequestValidationError):
        ImageRequest.from_payload({**sent, "n": 0})  # types and what any model needs still hold
    with pytest.raises(RequestValidationError):
        ImageRequest.from_payload({**sent, "n": 5}, rules=NEW)


def test_make_request_and_field_errors_take_a_models_rules():
    catalog = {**KNOWN_RULES, "qwen-image-3.0": NEW}
    assert make_request("a fox", {"model": "qwen-image-3.0"}, catalog).rules is NEW
    assert make_request(ImageRequest("a fox"), {"model": "qwen-image-3.0"}, catalog).size == "1:1"
    with pytest.raises(RequestValidationError) as info:
        make_request("a fox", {"model": "qwen-image-9"}, catalog)
    assert "qwen-image-3.0" in str(info.value)
    assert set(field_errors(NEW, model="qwen-image-3.0", size="16:9", n=5)) == {"size", "n"}
    assert field_errors(NEW, model="qwen-image-3.0", size="21:9", n=4) == {}
    assert set(field_errors(model="qwen-image-3.0", size="21:9", n=4)) == {"model"}  # no rules given: unknown


def test_the_model_list_is_read_in_the_services_order():
    body = {"object": "list", "data": [{"id": "qwen-image-3.0", "object": "model"}, {"id": "gpt-4o"},
                                       {"id": "qwen-image-2.0"}, {"no": "id"}, "qwen-image-3.0"]}
    assert parse_model_list(body) == ("qwen-image-3.0", "gpt-4o", "qwen-image-2.0")
    for bad in ({}, {"data": {}}, [], None):
        with pytest.raises(MalformedResponseError):
            parse_model_list(bad)


def test_the_pixel_table_is_read_from_a_models_page_in_either_layout():
    by_column = """
| Ratio | 1K Tier | 4K Tier |
|---|---|---|
| 21:9 | 1344×576 | 5376x2304 |
| 1:1 | 1024x1024 | — |
| 3:2 | 1248x832 | 4992x3328 |
"""
    assert pixels_from_markdown(by_column, NEW.sizes, NEW.resolutions) == {
        ("21:9", "1K"): (1344, 576), ("21:9", "4K"): (5376, 2304), ("1:1", "1K"): (1024, 1024)}
    by_row = "| size | resolution | pixels |\n|---|---|---|\n| 21:9 | 4K | 5376x2304 |\n| `1:1` | 1K | 1024 x 1024 |"
    assert pixels_from_markdown(by_row, NEW.sizes, NEW.resolutions) == {
        ("21:9", "4K"): (5376, 2304), ("1:1", "1K"): (1024, 1024)}
    assert pixels_from_markdown("no table here: 21:9 at 1344x576", NEW.sizes, NEW.resolutions) == {}
    assert pixels_from_markdown(None, NEW.sizes, NEW.resolutions) == {}


def test_unknown_rules_check_only_what_any_model_needs():
    rules = ModelRules.unknown("qwen-image-3.0")
    request = ImageRequest("x" * 5000, model="qwen-image-3.0", size="7:3", resolution="8K", n=12, rules=rules)
    assert request.output_size == (None, None)
    for fields in ({"prompt": " "}, {"n": 0}, {"size": ""}, {"image_urls": ["data:image/png;base64,AA"]}):
        with pytest.raises(RequestValidationError):
            request.replace(**fields)
