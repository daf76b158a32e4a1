"""Your own images as references (engine.uploads and the client's upload()): against the simulator on a loopback socket."""

from __future__ import annotations

import hashlib
import io
import json
import os
import tracemalloc
import warnings

import httpx
import pytest
from PIL import Image

import qwen_widgets as qw
from qwen_widgets.engine.uploads import MAX_UPLOAD_BYTES
from qwen_widgets.simulator import SimResponse, Simulator

from ..conftest import TEST_KEY, TIME_SCALE, fast_options

FORMATS = {"png": "PNG", "jpeg": "JPEG", "gif": "GIF", "webp": "WEBP"}


def picture(kind: str = "png", colour=(200, 30, 30), size=(64, 48)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, colour).save(buffer, FORMATS[kind])
    return buffer.getvalue()


def uploads_sent(simulator: Simulator) -> int:
    return simulator.count("POST", "/v1/uploads/")


# -- 1. local images as references ---------------------------------------------------------------


@pytest.mark.parametrize("kind", FORMATS)
@pytest.mark.parametrize("given_as", ["path", "str", "bytes", "pil"])
def test_upload_by_path_bytes_or_pil_in_every_format(client, server, tmp_path, kind, given_as):
    data = picture(kind)
    file = tmp_path / f"photo.{kind}"
    file.write_bytes(data)
    source = {"path": file, "str": str(file), "bytes": data, "pil": Image.open(io.BytesIO(data))}[given_as]
    uploaded = client.upload(source)
    assert uploaded.url.startswith(server.url) and uploaded.bytes > 0
    expected_type = "image/png" if given_as == "pil" else f"image/{kind}"  # PIL images go as PNG
    assert uploaded.content_type == expected_type
    assert (uploaded.local_path == file) == (given_as in ("path", "str"))
    served = client.fetch_image(uploaded.url)
    assert served == (data if given_as != "pil" else served) and served[:4] == picture(expected_type.split("/")[1])[:4]
    assert uploaded.expires_at is not None


@pytest.mark.parametrize("content, rule", [
    (b"just some text, not an image\n", "is not a JPEG, PNG, GIF or WebP image"),
    (b"", "is empty"),
    (b"\x89PNG\r\n\x1a\n" + b"\0" * MAX_UPLOAD_BYTES, "over the 20 MB upload limit"),
])
def test_a_bad_file_is_refused_locally_naming_the_file_and_the_rule(client, server, tmp_path, content, rule):
    file = tmp_path / "notes.png"
    file.write_bytes(content)
    with pytest.raises(qw.RequestValidationError, match=rule) as caught:
        client.upload(file)
    assert str(file) in str(caught.value)
    with pytest.raises(qw.RequestValidationError, match=rule):
        client.generate("a fox", image_urls=[file])
    assert uploads_sent(server.simulator) == 0 and server.simulator.count("POST") == 0


@pytest.mark.parametrize("mistyped", ["photos/cat.jpg", "cat.jpg", "./photos/cat.png"])
def test_a_mistyped_local_path_says_no_such_file_everywhere(client, server, tmp_path, monkeypatch, mistyped):
    """Not "must be a public http(s) URL" for a path to a file that is not there."""
    monkeypatch.chdir(tmp_path)
    with pytest.raises(qw.RequestValidationError, match="no such file") as in_request:
        client.generate("the same cat", image_urls=[mistyped])
    assert in_request.value.field == "image_urls[0]" and "http(s) URL" in str(in_request.value)
    with pytest.raises(qw.RequestValidationError, match="no such file"):
        client.upload(mistyped)
    with pytest.raises(qw.RequestValidationError, match="must be a public http"):  # not a path: a URL rule
        client.generate("a cat", image_urls=["ftp://example.com/cat.jpg"])
    assert server.simulator.count("POST") == 0


def test_an_upload_whose_answer_was_lost_is_not_sent_again(client, server, tmp_path):
    server.simulator.inject(SimResponse(action="drop"), method="POST", path_prefix="/v1/uploads/", process=True)
    with pytest.raises(qw.ImageUploadError, match="not uploaded again") as caught:
        client.upload(picture())
    assert caught.value.outcome_unknown
    assert uploads_sent(server.simulator) == 1


def test_a_refused_upload_is_an_upload_error(client, server):
    server.simulator.inject(SimResponse(413, {"Content-Type": "application/json"},
                                        b'{"error": {"message": "too large"}}'), path_prefix="/v1/uploads/")
    with pytest.raises(qw.ImageUploadError, match="too large") as caught:
        client.upload(picture())
    assert not caught.value.outcome_unknown


def test_a_local_reference_reaches_the_post_as_its_url_and_the_journal_keeps_the_file(client, server, tmp_path):
    file = tmp_path / "sketch.jpg"
    file.write_bytes(picture("jpeg"))
    task = client.generate("a fox from my sketch", image_urls=[file])
    (url,) = task.request.image_urls
    assert url.startswith(server.url + "/sim-uploads/")
    posted = [e for e in server.simulator.log if e["path"] == "/v1/images/generations"]
    assert len(posted) == 1
    assert json.loads(client.journal._read("SELECT local_refs FROM submissions", ())[0][0]) == {url: str(file)}


def test_a_sweep_reusing_one_photo_uploads_it_once(client, server, tmp_path):
    file = tmp_path / "photo.png"
    file.write_bytes(picture())
    sweep = qw.sweep(prompt=[f"variation {i}" for i in range(6)], image_urls=[file], client=client)
    tasks = sweep.wait(120)
    assert len(tasks) == 6 and uploads_sent(server.simulator) == 1
    assert len({task.request.image_urls for task in tasks}) == 1
    again = client.upload(file)  # later, in this session or the next: the URL is reused
    assert uploads_sent(server.simulator) == 1 and again.url == tasks[0].request.image_urls[0]


def test_demo_mode_draws_the_reference_into_the_picture(tmp_path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", qw.DemoModeWarning)
        demo = qw.QwenClient(simulator=Simulator(time_scale=TIME_SCALE), **fast_options())
    green = picture(colour=(20, 200, 40), size=(300, 300))
    plain = demo.generate("a field")
    guided = demo.generate("a field", image_urls=[green])

    def mean(data: bytes) -> tuple[float, ...]:
        raw = Image.open(io.BytesIO(data)).convert("RGB").resize((8, 8)).tobytes()
        return tuple(sum(raw[i::3]) / 64 for i in range(3))

    r, g, b = mean(demo.fetch_image(guided.images[0]))
    assert g > r + 60 and g > b + 60  # the green reference dominates the simulated picture
    assert mean(demo.fetch_image(plain.images[0])) != (r, g, b)


class _CountingUploads(httpx.AsyncBaseTransport):
    """An upload endpoint that reads the body as it comes, a chunk at a time, keeping none."""

    def __init__(self):
        self.received = 0

    async def handle_async_request(self, request):
        async for chunk in request.stream:
            self.received += len(chunk)
        body = {"url": "https://cdn.example/uploaded.png", "filename": "big.png", "content_type": "image/png"}
        return httpx.Response(200, json=body)


def test_uploading_a_large_file_streams_it_from_disk(tmp_path):
    """Issue 26 item 4: the multipart body comes from the file a chunk at a time; the client
    adds a fraction of the file, not the 2.8 times it did (the file read whole, then joined
    into the body)."""
    file = tmp_path / "big.png"
    file.write_bytes(b"\x89PNG\r\n\x1a\n" + os.urandom(14 * 2**20))
    transport = _CountingUploads()
    client = qw.QwenClient(TEST_KEY, base_url="http://api.example", transport=transport)
    client.upload(picture())  # first use (imports, the loop) is not the upload's
    tracemalloc.start()
    try:
        uploaded = client.upload(file)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    size = file.stat().st_size
    assert uploaded.bytes == size and uploaded.sha256 == hashlib.sha256(file.read_bytes()).hexdigest()
    assert transport.received > size  # the whole file went, in its multipart envelope
    assert peak < 0.2 * size, f"peak {peak / 2**20:.1f} MB for a {size / 2**20:.1f} MB file"
