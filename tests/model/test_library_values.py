"""Pure values of the library: the history query, the request diff, references and receipts."""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone

import pytest

import qwen_widgets as qw
from qwen_widgets.model.history import HistoryQuery
from qwen_widgets.model.lineage import Reference, describe_diff, request_diff
from qwen_widgets.model.receipt import Receipt, labelled
from qwen_widgets.model.task import GeneratedImage, Task, TaskStatus

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=timezone.utc)


@pytest.mark.parametrize("value, expected", [
    ("7d", NOW - timedelta(days=7)), ("24h", NOW - timedelta(hours=24)), ("30m", NOW - timedelta(minutes=30)),
    ("2w", NOW - timedelta(weeks=2)), (" 1.5 d ", NOW - timedelta(days=1.5)),
    ("2026-01-30", datetime(2026, 1, 30, tzinfo=timezone.utc)), (date(2026, 1, 30), datetime(2026, 1, 30, tzinfo=timezone.utc)),
    (datetime(2026, 1, 30, 8), datetime(2026, 1, 30, 8, tzinfo=timezone.utc)), (timedelta(hours=1), NOW - timedelta(hours=1)),
    (None, None), ("", None),
])
def test_since_understands_spans_dates_and_datetimes(value, expected):
    assert HistoryQuery.of(since=value, now=NOW).since == expected


@pytest.mark.parametrize("field, value, rule", [
    ("since", "last week", "a span back from now"), ("starred", "yes", "True, False or None"),
    ("status", "done", "must be one of completed"), ("model", 3, "a string or a list"),
    ("search", 12, "must be text"),
])
def test_bad_filters_are_refused_naming_the_field(field, value, rule):
    with pytest.raises(qw.RequestValidationError, match=f"{field}: .*{rule}"):
        HistoryQuery.of(**{field: value})


def test_search_terms_are_words_or_quoted_phrases_once_each():
    assert HistoryQuery(search=' Red  "red fox" fox RED ').terms() == ["red", "red fox", "fox"]
    assert not HistoryQuery().filtered and HistoryQuery(starred=True).filtered


@pytest.mark.parametrize("before, after, said", [
    (dict(prompt="a lighthouse"), dict(prompt="a lighthouse at dusk"), ["prompt + 'at dusk'"]),
    (dict(prompt="a blurry lighthouse"), dict(prompt="a lighthouse"), ["prompt - 'blurry'"]),
    (dict(prompt="a fox", size="1:1"), dict(prompt="a fox", size="16:9", n=2), ["size 1:1 -> 16:9", "n 1 -> 2"]),
    (dict(prompt="a fox"), dict(prompt="a fox", negative_prompt="blurry"), ["negative prompt 'blurry'"]),
    (dict(prompt="a fox", negative_prompt="blurry"), dict(prompt="a fox"), ["negative prompt removed"]),
    (dict(prompt="a fox"), dict(prompt="an entirely different subject, painted in oil"),
     ["prompt -> 'an entirely different subject, painted in oil'"]),
    (dict(prompt="a fox"), dict(prompt="a fox"), []),
])
def test_request_diff_in_words(before, after, said):
    assert request_diff(qw.ImageRequest(**before), qw.ImageRequest(**after)) == said


def test_describe_diff_joins_or_says_same():
    fox = qw.ImageRequest("a fox")
    assert describe_diff(fox, fox) == "the same request"
    assert describe_diff(fox, fox.replace(model="qwen-image-2.0-pro", resolution="2K")) == \
        "model qwen-image-2.0 -> qwen-image-2.0-pro, resolution 1K -> 2K"


def test_reference_json_round_trip_and_labels():
    ref = Reference("https://x.example/a.png", "abc", "/home/me/cat.jpg", "task_1", 2, "f" * 32)
    assert Reference.from_json(ref.to_json()) == ref
    assert ref.label == "task_1 image 3"
    assert Reference("https://x.example/pics/b.png", local_path="C:\\\\me\\\\b.png").label == "b.png"
    assert Reference.from_json({"url": 3}) is None and Reference.from_json([]) is None


def test_a_receipt_names_no_local_path_and_says_there_is_no_seed():
    request = qw.ImageRequest("a fox", image_urls=["https://x.example/a.png"])
    task = Task("task_1", TaskStatus.COMPLETED, request=request, cost=0.02,
                images=(GeneratedImage("https://x.example/r.png", 0, width=1024, height=1024),),
                references=(Reference("https://x.example/a.png", "abc", "/home/me/secret/cat.png", "task_0", 1),))
    png = b"\x89PNG\r\n\x1a\n" + b"\x00\x00\x00\x0dIHDR" + bytes(13) + b"\x00\x00\x00\x00" + b"\x00\x00\x00\x00IEND\xaeB`\x82"
    record, data = labelled(task, task.images[0], png)
    assert b"/home/me" not in data and "local_path" not in str(record["references"])
    receipt = Receipt.from_bytes(data)
    assert receipt.request == request and receipt.seed is None and "no seed" in receipt.seed_note
    assert receipt.references == (Reference("https://x.example/a.png", "abc", None, "task_0", 1),)
    assert repr(receipt) == "Receipt(task_id='task_1', image_index=0, prompt='a fox')"
    assert Receipt.from_bytes(png) is None and Receipt.from_bytes(b"not an image") is None


def test_the_words_for_not_ended_yet_are_all_running():
    assert HistoryQuery.of(status=["pending", "processing", "submitted", "completed"]).status == ("running", "completed")


def test_a_compressed_text_chunk_that_would_inflate_past_a_mebibyte_is_skipped():
    import struct
    import zlib

    from qwen_widgets.model.images import png_with_text, read_text

    def chunk(kind: bytes, payload: bytes) -> bytes:
        return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))

    bomb = zlib.compress(b"A" * (64 << 20), 9)  # 64 MiB of text in about 64 KiB
    assert len(bomb) < 256 << 10  # inside the part of a file searched for a receipt
    small = zlib.compress(b"a kept note")
    data = png_with_text(_tiny_png(), {"plain": "as written"})
    end = data.rindex(b"IEND") - 4
    data = (data[:end] + chunk(b"zTXt", b"bomb\0\0" + bomb) + chunk(b"zTXt", b"note\0\0" + small)
            + chunk(b"iTXt", b"bomb2\0\1\0\0\0" + bomb) + data[end:])
    assert read_text(data) == {"plain": "as written", "note": "a kept note"}


def _tiny_png() -> bytes:
    import io

    from PIL import Image

    out = io.BytesIO()
    Image.new("RGB", (2, 2)).save(out, "PNG")
    return out.getvalue()
