"""The widgets' pure text helpers (widgets/_format.py) and image saving (_save.py)."""

from __future__ import annotations

import dataclasses
import io
import json
import os
import re
import warnings
from datetime import datetime, timedelta, timezone

import pytest
from PIL import Image

import qwen_widgets as qw
from qwen_widgets import GeneratedImage, ImageRequest, Task, TaskStatus
from qwen_widgets.store import images as _store
from qwen_widgets.model.account import Balance
from qwen_widgets.store.images import save_image, sidecar
from qwen_widgets.model.limits import SpendingLimits, Usage
from qwen_widgets.simulator import SimResponse, Simulator
from qwen_widgets.widgets._format import (
    balance_words,
    cost_words,
    error_message,
    expiry_words,
    limit_message,
    money,
    output_size_line,
    photo_problem,
    plan_cost,
    retry_message,
    safe_link,
    status_line,
    timings_line,
    usage_words,
)

from ..conftest import fast_options

NOW = datetime(2026, 3, 1, 12, 0, 0, tzinfo=timezone.utc)
def _tiny_png() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (4, 3), "red").save(buffer, "PNG")
    return buffer.getvalue()


PNG = _tiny_png()
JPEG = b"\xff\xd8\xff\xe0" + bytes(64)


def running(status=TaskStatus.PROCESSING, progress=40, estimated_time=60.0, task_id="task_1"):
    return Task(task_id, status, progress=progress, estimated_time=estimated_time)


# -- output_size_line -------------------------------------------------------------------------


@pytest.mark.parametrize(("size", "resolution", "n", "expected"), [
    ("16:9", "2K", 4, "16:9 2K -> 2048x1152, 4 images"),
    ("1:1", "1K", 1, "1:1 1K -> 1024x1024, 1 image"),
    ("9:16", "1K", 2, "9:16 1K -> 720x1280, 2 images"),
    ("3:2", "2K", 6, "3:2 2K -> 2048x1360, 6 images"),
])
def test_output_size_line(size, resolution, n, expected):
    assert output_size_line(size, resolution, n) == expected


# -- status_line --------------------------------------------------------------------------------


def test_status_while_submitting_has_no_task_id():
    line = status_line(None, 3.2)
    assert line.startswith("submitting")
    assert "3 s" in line


def test_status_submitted_shows_id_state_and_time():
    line = status_line(running(TaskStatus.SUBMITTED, progress=0), 2.0)
    assert "task_1" in line and "submitted" in line and "2 s" in line
    assert "estimated" not in line


def test_status_processing_within_the_estimate():
    line = status_line(running(progress=40, estimated_time=60.0), 12.0)
    assert "task_1" in line and "processing" in line and "40%" in line
    assert "12 s of ~60 s estimated" in line
    assert "longer" not in line


def test_status_processing_past_the_estimate_says_so():
    line = status_line(running(progress=95, estimated_time=60.0), 75.0)
    assert "taking longer than estimated" in line
    assert "75 s" in line and "60 s" in line
    assert "of ~60 s estimated" not in line


def test_status_exactly_at_the_estimate_is_not_late_yet():
    assert "longer" not in status_line(running(estimated_time=60.0), 60.0)
    assert "longer" in status_line(running(estimated_time=60.0), 60.5)


def test_status_processing_without_an_estimate():
    line = status_line(running(estimated_time=None), 9.0)
    assert "processing" in line and "9 s" in line and "40%" in line
    assert "estimated" not in line


def test_status_of_a_finished_task_has_no_timer():
    line = status_line(Task("task_9", TaskStatus.COMPLETED, progress=100, estimated_time=60.0), 80.0)
    assert "task_9" in line and "completed" in line
    assert "longer" not in line and "80" not in line


# -- timings_line -------------------------------------------------------------------------------


def finished(n, returned, actual_time=18.34, estimated_time=60.0):
    request = ImageRequest("a fox", n=n)
    images = tuple(GeneratedImage(f"https://img.example/{i}.png", i) for i in range(returned))
    return Task("task_T", TaskStatus.COMPLETED, progress=100, actual_time=actual_time,
                estimated_time=estimated_time, images=images, request=request)


def test_timings_line_reports_fewer_images_than_requested():
    line = timings_line(finished(n=4, returned=2), 20.0)
    assert "2 of 4 images" in line
    assert "20.0 s" in line and "18.3 s" in line and "60 s" in line


def test_timings_line_is_quiet_when_all_images_came_back():
    line = timings_line(finished(n=3, returned=3), 20.0)
    assert "of 3" not in line and "images returned" not in line
    assert "20.0 s" in line


def test_timings_line_without_server_times():
    line = timings_line(finished(n=1, returned=1, actual_time=None, estimated_time=None), 4.0)
    assert "4.0 s" in line
    assert "server" not in line and "estimated" not in line


# -- expiry_words -------------------------------------------------------------------------------


@pytest.mark.parametrize(("delta", "expected"), [
    (timedelta(hours=23), "expires in 23 h"),
    (timedelta(hours=23, minutes=10), "expires in 23 h"),
    (timedelta(minutes=12), "expires in 12 min"),
    (timedelta(seconds=40), "expires in 40 s"),
    (timedelta(hours=-3), "expired 3 h ago"),
    (timedelta(minutes=-5), "expired 5 min ago"),
    (timedelta(seconds=-7), "expired 7 s ago"),
])
def test_expiry_words(delta, expected):
    assert expiry_words(NOW + delta, now=NOW) == expected


def test_expiry_unknown():
    assert expiry_words(None) == "expiry unknown"
    assert expiry_words(None, now=NOW) == "expiry unknown"


def test_expiry_defaults_to_the_current_time():
    assert expiry_words(datetime.now(timezone.utc) + timedelta(hours=5, minutes=1)) == "expires in 5 h"
    assert expiry_words(datetime.now(timezone.utc) - timedelta(days=2)).startswith("expired 48 h")


def test_expiry_across_time_zones_is_the_same_instant():
    plus_five = timezone(timedelta(hours=5))
    assert expiry_words((NOW + timedelta(minutes=30)).astimezone(plus_five), now=NOW) == \
        "expires in 30 min"


# -- error_message ------------------------------------------------------------------------------


def raised(error: BaseException) -> BaseException:
    """The error with a real traceback and cause attached, as the card receives it."""
    try:
        try:
            raise OSError("the underlying cause")
        except OSError as cause:
            raise error from cause
    except BaseException as caught:  # noqa: BLE001
        return caught


TASK = Task("task_E", TaskStatus.FAILED, error="content moderation rejected the prompt")
ERRORS = [
    (qw.RequestValidationError("n", "must be from 1 to 6", 9), ["n", "must be from 1 to 6", "nothing was sent"]),
    (qw.AuthenticationError("Invalid or missing API key", status_code=401),
     ["401", "check your key", "key field", "nothing was created or billed"]),
    (qw.PermissionDeniedError("insufficient balance", status_code=402), ["402", "balance", "insufficient"]),
    (qw.NotFoundError("task not found", status_code=404, task_id="task_E"), ["404", "not found", "task_E"]),
    (qw.RateLimitError("slow down", status_code=429, retry_after=3), ["429", "try again", "not"]),
    (qw.ServerError("internal server error", status_code=503), ["503", "internal server error", "billed"]),
    (qw.MalformedResponseError("task response has no 'status'"), ["status"]),
    (qw.TransportError("POST http://x/v1 failed: ConnectError: All connection attempts failed",
                       plain="could not connect to the server"),
     ["Network", "could not connect", "nothing was created or billed", "Retry"]),
    (qw.SubmitOutcomeUnknownError(ImageRequest("a fox"), "read timeout"), ["NOT resent", "may exist and be billed"]),
    (qw.SubmitOutcomeUnknownError(ImageRequest("a fox"), "read timeout", idempotency_key="k", resent=True),
     ["same idempotency key", "may exist and be billed", "Retry"]),
    (qw.TaskFailedError(TASK), ["task_E", "failed", "moderation", "not billed", "Retry"]),
    (qw.TaskTimeoutError("task_E", None, 600), ["task_E", "600 s", "may still finish and be billed", "Re-attach"]),
    (qw.ImageFetchError("https://img.example/0.png", "HTTP 403 (the URL has expired)"), ["403", "expired"]),
    (ValueError("something odd"), ["ValueError", "something odd"]),
]


def test_a_card_error_never_quotes_the_library_nor_python():
    """Issue 24 item 17: what happened, whether it was billed, what to do; no library words."""
    network = qw.TransportError("GET http://x/v1/tasks/t failed: ConnectError: All connection attempts failed",
                                plain="could not connect to the server")
    for error, watching in [(network, None), (network, "task_W"),
                            (qw.TaskTimeoutError("task_W", None, 30, server_wait=3600), None),
                            (qw.ImageFetchError("https://img.example/0.png", "ConnectError: refused",
                                                plain="could not connect to the image host"), None)]:
        message = error_message(error, watching=watching)
        assert "ConnectError" not in message and "All connection attempts" not in message, message
        assert "client.wait" not in message and "(" + "'" not in message, message
    watched = error_message(network, watching="task_W")
    assert "task_W" in watched and "may still finish and be billed" in watched and "Re-attach" in watched
    assert "3600 s" in error_message(qw.TaskTimeoutError("task_W", None, 30, server_wait=3600))


@pytest.mark.parametrize(("error", "words"), ERRORS, ids=lambda v: type(v).__name__ if isinstance(v, BaseException) else "")
def test_error_message_is_one_readable_line(error, words):
    message = error_message(raised(error))
    for word in words:
        assert word.lower() in message.lower(), (word, message)
    assert "\n" not in message
    assert "Traceback" not in message and 'File "' not in message
    assert "the underlying cause" not in message  # the chained cause is not dumped


def test_validation_message_names_the_field_and_rule():
    message = error_message(qw.RequestValidationError("negative_prompt", "must be at most 500 characters", "x"))
    assert message.startswith("Invalid negative_prompt")
    assert "500" in message


def test_authentication_message_names_the_variable_but_not_the_key():
    key = "sk-secret-0123456789abcdef"
    message = error_message(qw.AuthenticationError("Invalid key", status_code=401))
    assert "APIMART_API_KEY" in message and key not in message


def test_error_message_stays_one_line_for_a_multiline_server_body():
    body = b'Traceback (most recent call last):\n  File "app.py", line 3, in handler\nKeyError: x'
    simulator = Simulator(time_scale=0.01)
    simulator.inject(SimResponse(500, {"Content-Type": "text/plain"}, body), method="GET", count=5)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", qw.DemoModeWarning)
        client = qw.QwenClient(simulator=simulator,
                               **fast_options(retry=qw.RetryPolicy(max_attempts=1)))
    with pytest.raises(qw.ServerError) as caught:
        client.get_task("task_abc")
    message = error_message(caught.value)
    assert "\n" not in message
    assert "Traceback" not in message


# -- retry_message ------------------------------------------------------------------------------


def test_retry_message_for_rate_limits():
    error = qw.RateLimitError("slow down", status_code=429, retry_after=4)
    assert retry_message(error, 4.0) == "rate limited, retrying in 4 s"
    assert retry_message(error, 2.6) == "rate limited, retrying in 3 s"


def test_retry_message_for_other_errors_explains_and_gives_the_delay():
    message = retry_message(qw.ServerError("bad gateway", status_code=502), 1.2)
    assert "502" in message and "bad gateway" in message
    assert message.endswith("Retrying in 1 s.")
    assert "\n" not in message


# -- safe_link ----------------------------------------------------------------------------------


def test_safe_link_for_https():
    link = safe_link("https://img.example/a.png?x=1&y=2", "image URL")
    assert link.startswith("<a ") and link.endswith(">image URL</a>")
    assert 'href="https://img.example/a.png?x=1&amp;y=2"' in link
    assert 'target="_blank"' in link and "noopener" in link


def test_safe_link_shows_the_url_when_no_text():
    link = safe_link("http://img.example/a.png")
    assert ">http://img.example/a.png</a>" in link


def test_safe_link_escapes_quotes_and_angle_brackets():
    url = 'https://img.example/a.png?q="><script>alert(1)</script>\'x'
    link = safe_link(url, '<b>"caption"</b>')
    assert "<script>" not in link and "<b>" not in link
    href = re.search(r'href="([^"]*)"', link).group(1)
    assert "&quot;" in href and "&lt;script&gt;" in href and "&#x27;x" in href
    assert link.count('"') == 6  # only the three attribute values are quoted
    assert "&lt;b&gt;&quot;caption&quot;&lt;/b&gt;" in link


@pytest.mark.parametrize("url", [
    "javascript:alert(document.cookie)",
    "JavaScript:alert(1)",
    " javascript:alert(1)",
    "data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==",
    "data:text/html,<script>alert(1)</script>",
    "vbscript:msgbox(1)",
    "//evil.example/x.png",
    "file:///etc/passwd",
])
def test_safe_link_makes_other_schemes_inert(url):
    link = safe_link(url, None)
    assert link.startswith("<code>") and link.endswith("</code>")
    assert "href" not in link and "<a" not in link
    assert "<script>" not in link
    inner = link[len("<code>"):-len("</code>")]
    assert "<" not in inner and ">" not in inner


def test_safe_link_inert_text_keeps_the_given_label_escaped():
    assert safe_link("javascript:alert(1)", "<i>x</i>") == "<code>&lt;i&gt;x&lt;/i&gt;</code>"


# -- save_image and sidecar -----------------------------------------------------------------------


EXPIRES = NOW + timedelta(hours=24)


def saved_task(task_id="task_S01", request=True) -> Task:
    req = ImageRequest("a red fox in snow", size="16:9", resolution="2K", n=2,
                       negative_prompt="blurry") if request else None
    images = tuple(GeneratedImage(f"https://img.example/{task_id}/{i}.png", i, EXPIRES, 2048, 1152)
                   for i in range(2))
    return Task(task_id, TaskStatus.COMPLETED, progress=100, estimated_time=60.0, actual_time=21.5,
                created_at=NOW, completed_at=NOW + timedelta(seconds=21), images=images, request=req)


def test_save_image_writes_the_image_and_a_sidecar(tmp_path):
    task = saved_task()
    image = task.images[1]
    path = save_image(task, image, PNG, tmp_path / "out")
    assert path == tmp_path / "out" / "task_S01_1.png"
    with Image.open(path) as saved, Image.open(io.BytesIO(PNG)) as original:
        assert saved.tobytes() == original.tobytes()  # the server's pixels, untouched
        assert saved.text["prompt"] == task.request.prompt  # and the prompt travels inside
        assert json.loads(saved.text["qwen_widgets"])["task_id"] == "task_S01"
    record = json.loads((tmp_path / "out" / "task_S01_1.json").read_text())
    assert record["task_id"] == "task_S01"
    assert record["image_index"] == 1
    assert record["url"] == image.url
    assert datetime.fromisoformat(record["expires_at"]) == EXPIRES
    assert record["request"] == task.request.to_payload()
    assert record["request"]["negative_prompt"] == "blurry"
    assert (record["width"], record["height"]) == (2048, 1152)
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["task_S01_1.json", "task_S01_1.png"]


def test_saving_twice_leaves_exactly_two_files(tmp_path):
    task = saved_task()
    first = save_image(task, task.images[0], PNG, tmp_path)
    second = save_image(task, task.images[0], PNG + b"more", tmp_path)
    assert first == second
    assert sorted(p.name for p in tmp_path.iterdir()) == ["task_S01_0.json", "task_S01_0.png"]
    assert second.read_bytes().endswith(b"more")  # overwritten, not copied


def test_save_uses_the_real_format_for_the_extension(tmp_path):
    task = saved_task()
    path = save_image(task, task.images[0], JPEG, tmp_path)
    assert path.stem == "task_S01_0"
    assert path.suffix in (".jpg", ".jpeg")


def test_save_two_images_of_a_task(tmp_path):
    task = saved_task()
    for image in task.images:
        save_image(task, image, PNG, tmp_path)
    assert len(list(tmp_path.iterdir())) == 4


def test_sidecar_content():
    task = saved_task()
    record = sidecar(task, task.images[0])
    assert record["task_id"] == "task_S01"
    assert record["status"] == "completed"
    assert record["request"] == {"model": "qwen-image-2.0", "prompt": "a red fox in snow",
                                 "size": "16:9", "resolution": "2K", "n": 2,
                                 "negative_prompt": "blurry"}
    assert record["url"] == "https://img.example/task_S01/0.png"
    assert record["expires_at"] == EXPIRES.isoformat()
    assert record["created_at"] == NOW.isoformat()
    assert datetime.fromisoformat(record["completed_at"]) == NOW + timedelta(seconds=21)
    assert record["actual_time"] == 21.5 and record["estimated_time"] == 60.0
    json.dumps(record)  # serialisable as is


def test_sidecar_without_request_or_expiry():
    task = saved_task(request=False)
    image = GeneratedImage("https://img.example/r/0.png", 0)
    record = sidecar(task, image)
    assert record["request"] is None
    assert record["expires_at"] is None
    assert record["width"] is None


def test_failed_write_leaves_no_partial_file(tmp_path, monkeypatch):
    task = saved_task()

    def broken_replace(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(_store.os, "replace", broken_replace)
    with pytest.raises(OSError, match="disk full"):
        save_image(task, task.images[0], PNG, tmp_path)
    assert os.listdir(tmp_path) == []


# -- words for the panel user, and the copy saved with the notebook -----------------------------

from qwen_widgets.widgets._format import friendly_error  # noqa: E402
from qwen_widgets.widgets._static import Entry, entry_html, page_html  # noqa: E402


@pytest.mark.parametrize(("field", "message", "expected"), [
    ("prompt", "prompt: must not be empty or only whitespace (got '')", "Write a prompt to generate."),
    ("prompt", "prompt: must be at most 800 characters, this one has 801 (got 'xxx')",
     "The prompt is too long: at most 800 characters, this one has 801."),
    ("image_urls[1]", "image_urls[1]: must be a public http(s) URL with a host (got 'ftp://x')",
     "line 2: must be a public http(s) URL with a host"),
    ("generate", "vary at most two fields at once; now prompt, model, size vary",
     "Compare can vary at most two things at once; now prompt, model, size vary. "
     "Keep one value (or one prompt line) for the others."),
])
def test_friendly_errors_name_no_parameters_and_quote_nothing(field, message, expected):
    assert friendly_error(field, message) == expected


def test_too_many_images_says_what_to_do_without_max_images():
    text = friendly_error("max_images", "this sweep makes 14 tasks and 28 images, more than "
                          "max_images=24; pass max_images=28 to go ahead", limit=24)
    assert "28 images (14 tasks)" in text and "at most 24" in text
    assert "max_images" not in text and "pass" not in text


def test_the_saved_copy_escapes_everything_and_embeds_jpegs():
    entry = Entry("<script>alert(1)</script> $5", "qwen-image-2.0 · 1:1", [b"\xff\xd8\xffjpeg"], "done")
    markup = entry_html(entry)
    assert "<script>" not in markup and "&lt;script&gt;alert(1)&lt;/script&gt; $5" in markup
    assert 'src="data:image/jpeg;base64,/9j/anBlZw=="' in markup
    page = page_html("abc", "Saved <b>", [entry])
    assert page.startswith("<style>.jp-OutputArea:has(.qw-live-abc) ")
    assert "Saved &lt;b&gt;" in page and 'class="qw-static qw-static-abc ' in page


def test_the_saved_copy_hides_page_wide_and_keeps_math_typesetters_away():
    """Issue 24 items 22-23: a rule that needs no JupyterLab class (VS Code keeps none), and
    the classes MathJax skips, so "$0.021 ... $0.021" stays money."""
    page = page_html("abc", "Saved", [Entry("a fox", "cost $0.021 · at $0.021 per image")])
    assert ":root:has(.qw-live-abc) .qw-static-abc {display: none}" in page
    container = page[page.index("<div"):page.index(">", page.index("<div"))]
    assert "tex2jax_ignore" in container and "mathjax_ignore" in container


# -- money: costs, the balance, spending limits, your images ---------------------------------

@pytest.mark.parametrize("value, expected", [
    (0.04, "$0.04"), (0.021, "$0.021"), (12.5, "$12.50"), (0.0, "$0.00"), (0.168, "$0.168"),
    (0.1 + 0.2, "$0.30"),  # float noise is not a fraction of a cent
])
def test_money_keeps_cents_and_the_fraction_a_price_needs(value, expected):
    assert money(value) == expected


def test_cost_words_say_what_was_reported_and_nothing_otherwise():
    done = Task("task_01", TaskStatus.COMPLETED)
    assert cost_words(done) == ""
    assert cost_words(dataclasses.replace(done, cost=0.04)) == "cost\u00a0$0.04"
    assert cost_words(dataclasses.replace(done, cost=0.04, credits_cost=12)) == "cost\u00a0$0.04 (12 credits)"
    assert cost_words(dataclasses.replace(done, credits_cost=12.5)) == "cost\u00a012.5 credits"


def test_balance_words():
    assert balance_words(Balance(9.874, None, 0.126, None, False, "USD")) == "Balance $9.87 ($0.13 used)"
    assert balance_words(Balance(10.0, None, 0.0, None, False, "USD"), demo=True) == "Balance $10.00 (simulated)"
    # APIMart's unit "depends on system configuration": never assumed to be dollars
    assert balance_words(Balance(9.874, None, None, None, False)) == "Balance 9.87"
    assert balance_words(Balance(70.5, None, 1.5, None, False, "CNY")) == "Balance 70.50 CNY (1.50 CNY used)"
    assert balance_words(Balance(3, None, 1, None, False, "images")) == "Balance 3 images left (1 image used)"
    key, account = Balance(2.0, None, None, None, False, "USD"), Balance(50.0, None, None, None, False, "USD", "account")
    assert balance_words(key, account=account) == "Balance $2.00 for this key · $50.00 for the account"
    assert balance_words(key, account=Balance(2.0, None, None, None, False, "USD", "account")) == "Balance $2.00"
    assert balance_words(Balance(None, 1200, None, 30, False)) == "Balance 1200 credits"
    assert balance_words(Balance(None, None, None, None, True)) == "Balance: unlimited"


def test_usage_words_name_only_the_limits_that_are_set():
    usage = Usage(12, 0.252)
    assert usage_words(usage, SpendingLimits(max_images_per_day=50)) == "12 of 50 images today"
    both = SpendingLimits(max_images_per_day=50, max_spend_per_day=2, price_per_image=0.021)
    assert usage_words(usage, both) == "12 of 50 images today · $0.252 of $2.00 spent today"
    assert usage_words(usage, SpendingLimits()) == "" and usage_words(None, both) == ""


def test_plan_cost_names_the_price_and_its_source():
    prices = {"qwen-image-2.0": (0.021, "pricing"), "qwen-image-2.0-pro": (0.053, "pricing")}
    assert plan_cost({"qwen-image-2.0": 4}, prices) == (
        "about $0.08 at $0.021 per image (APIMart's pricing endpoint)")
    assert plan_cost({"qwen-image-2.0": 2}, {"qwen-image-2.0": (0.03, "user")}, demo=True) == (
        "about $0.06 at $0.03 per image (your price, simulated)")
    assert plan_cost({"qwen-image-2.0": 2, "qwen-image-2.0-pro": 2}, prices) == (
        "about $0.15 at $0.021 per qwen-image-2.0 image, $0.053 per qwen-image-2.0-pro image "
        "(APIMart's pricing endpoint)")
    assert plan_cost({"qwen-image-2.0": 2}, {"qwen-image-2.0": (None, "unknown")}) == "price unknown"


def test_limit_messages_say_what_is_used_what_to_do_and_when_room_comes():
    frees = (NOW + timedelta(hours=3, minutes=5)).timestamp()
    some_left = qw.SpendingLimitError("images per day", 48, 4, 50, frees)
    assert limit_message(some_left, NOW) == (
        "Daily limit: 48 of 50 images made in the last 24 hours; this needs 4. Ask for at most 2 "
        "images, or wait: room frees up in 3 h (15:05 UTC).")
    full = qw.SpendingLimitError("images per day", 50, 1, 50, (NOW + timedelta(minutes=12)).timestamp())
    assert limit_message(full, NOW) == ("Daily limit: 50 of 50 images made in the last 24 hours; this "
                                        "needs 1. Wait: room frees up in 12 min (12:12 UTC).")
    spend = qw.SpendingLimitError("spend per day", 1.98, 0.084, 2.0, frees)
    assert limit_message(spend, NOW).startswith(
        "Daily spending limit: $1.98 of $2.00 spent in the last 24 hours; this needs about $0.084. "
        "Ask for fewer images, or wait")
    never = qw.SpendingLimitError("images per day", 0, 60, 50, None)
    assert limit_message(never, NOW).endswith("That is more than the whole limit: ask for fewer images.")
    assert error_message(full).startswith("Daily limit: 50 of 50")  # what a card says, too


@pytest.mark.parametrize("rule, expected", [
    ("image.bin is not a JPEG, PNG, GIF or WebP image", "cat.txt was not added: it is not a JPEG, PNG, GIF or WebP image."),
    ("image.bin is empty", "cat.txt was not added: it is empty."),
    ("image.png is 21.0 MB, over the 20 MB upload limit", "cat.txt was not added: it is 21.0 MB, over the 20 MB upload limit."),
    ("/home/me/a b/cat is not here.png cannot be read (No such file)", "cat.txt was not added: /home/me/a b/cat is not here.png cannot be read (No such file)."),
])
def test_photo_problems_name_the_file_as_the_user_knows_it(rule, expected):
    assert photo_problem("cat.txt", rule) == expected


def test_an_upload_error_names_the_image_and_says_whether_it_may_have_arrived():
    lost = error_message(qw.ImageUploadError("cat.png", "connection reset", outcome_unknown=True))
    assert lost.startswith("Your image cat.png could not be uploaded: connection reset. The bytes may have arrived")
    assert error_message(qw.ImageUploadError("cat.png", "HTTP 413")) == "Your image cat.png could not be uploaded: HTTP 413."
