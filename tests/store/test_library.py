"""The journal as a library: search, filters, pages, stars, hiding, deleting, lineage, the
migration from version 3, and the receipt inside every image file (write, read, rerun)."""

from __future__ import annotations

import hashlib
import io
import json
import os
import sqlite3
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from PIL import Image

import qwen_widgets as qw
from qwen_widgets.model.history import HistoryQuery
from qwen_widgets.model.limits import SpendingLimits
from qwen_widgets.model.images import read_text
from qwen_widgets.simulator import SimResponse
from qwen_widgets.store.journal import Journal

from ..conftest import TEST_KEY, fast_options

pytestmark = pytest.mark.anyio


def home() -> Path:
    return Path(os.environ["QWEN_WIDGETS_HOME"])


@pytest.fixture
def client(server):
    with qw.QwenClient(TEST_KEY, base_url=server.url, **fast_options()) as made:
        yield made


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def prompts(page) -> list[str]:
    return [entry.request.prompt for entry in page.entries]


# -- search, filters, pages ------------------------------------------------------------------------


def test_search_finds_parts_of_words_in_prompt_and_negative_prompt_newest_first(client):
    client.generate("A Lighthouse at dusk, watercolor")
    client.generate("a red fox in snow", negative_prompt="blurry lighthouse")
    client.generate("an owl in the rain")
    assert prompts(client.history(HistoryQuery(search="lighthouse"))) == [
        "a red fox in snow", "A Lighthouse at dusk, watercolor"]  # any case, newest first
    assert prompts(client.history(HistoryQuery(search="light dusk"))) == ["A Lighthouse at dusk, watercolor"]
    assert prompts(client.history(HistoryQuery(search='"red fox"'))) == ["a red fox in snow"]
    assert prompts(client.history(HistoryQuery(search='"fox red"'))) == []
    assert prompts(client.history(HistoryQuery(search="ra"))) == ["an owl in the rain"]  # short: scanned
    assert prompts(client.history(HistoryQuery(search="100%_"))) == []  # LIKE's wildcards are literal
    assert client.history(HistoryQuery(search="lighthouse")).total == 2
    assert "FTS5" in client.journal.search_mode


def test_the_scan_finds_what_the_index_finds(client, monkeypatch):
    for prompt in ("a lighthouse at dusk", "Lighthouses of Brittany", "a fox", "über alles"):
        client.generate(prompt)
    queries = ["lighthouse", "LIGHT", "fox", "ü", "über", "dusk light", "nothing"]
    indexed = {q: prompts(client.history(HistoryQuery(search=q))) for q in queries}
    monkeypatch.setattr(client.journal, "search_mode", "a scan of every prompt")
    scanned = {q: prompts(client.history(HistoryQuery(search=q))) for q in queries}
    assert indexed == scanned
    assert indexed["LIGHT"] == ["Lighthouses of Brittany", "a lighthouse at dusk"]


def test_filters_by_model_size_resolution_status_star_date_and_pages(client, server):
    client.generate("one", model="qwen-image-2.0-pro", size="16:9")
    client.generate("two", resolution="2K")
    server.simulator.failure_rate = 1.0
    with pytest.raises(qw.TaskFailedError):
        client.generate("three")
    server.simulator.failure_rate = 0.0
    assert prompts(client.history(HistoryQuery.of(model="qwen-image-2.0-pro"))) == ["one"]
    assert prompts(client.history(HistoryQuery.of(size=["16:9", "4:3"]))) == ["one"]
    assert prompts(client.history(HistoryQuery.of(resolution="2K"))) == ["two"]
    assert prompts(client.history(HistoryQuery.of(status="failed"))) == ["three"]
    assert prompts(client.history(HistoryQuery.of(status="completed"))) == ["two", "one"]
    assert prompts(client.history(HistoryQuery.of(since="1h"))) == ["three", "two", "one"]
    assert prompts(client.history(HistoryQuery.of(until=datetime.now(timezone.utc) - timedelta(days=1)))) == []
    page = client.history(HistoryQuery(), offset=1, limit=1)
    assert prompts(page) == ["two"] and page.total == 3 and page.pages == 3 and page.number == 2
    with pytest.raises(qw.RequestValidationError, match="since: .*'7d'"):
        HistoryQuery.of(since="last week")
    with pytest.raises(qw.RequestValidationError, match="status: must be one of"):
        HistoryQuery.of(status="done")


def test_qw_history_filters_the_frame(client):
    qw.set_default_client(client)
    first = client.generate("a lighthouse at dusk", n=2)
    client.generate("a fox in snow")
    frame = qw.history(search="lighthouse")
    assert frame["prompt"].tolist() == ["a lighthouse at dusk"] * 2
    assert frame["local_path"].tolist() == [str(image.local_path) for image in first.images]
    qw.star(first)
    assert qw.history(starred=True)["task_id"].unique().tolist() == [first.task_id]
    assert qw.history(starred=False)["prompt"].tolist() == ["a fox in snow"]
    assert qw.history(since="7d", model="qwen-image-2.0")["starred"].tolist() == [True, True, False]


# -- keep: stars, hiding, deleting ------------------------------------------------------------------


def test_star_unstar_hide_and_delete_by_task_id_or_task(client):
    qw.set_default_client(client)
    kept = client.generate("a keeper", n=2)
    gone = client.generate("a mistake")
    qw.star(kept.task_id)
    assert client.find(kept).starred
    qw.unstar(kept)
    assert not client.find(kept).starred
    qw.hide(gone)
    assert prompts(client.history()) == ["a keeper"]
    assert prompts(client.history(HistoryQuery(hidden=True))) == ["a mistake"]
    qw.unhide(gone)
    size = sum(image.local_path.stat().st_size for image in kept.images)
    qw.star(kept)
    freed = qw.delete(kept)
    assert freed == {"images": 2, "bytes_freed": size}
    assert not any(image.local_path.exists() for image in kept.images)
    assert prompts(client.history()) == ["a mistake"]
    assert qw.history()["prompt"].tolist() == ["a mistake"]
    assert client.recent_prompts() == [("a mistake", False)]  # its star went with it
    with pytest.raises(qw.RequestValidationError, match="not in this journal"):
        qw.star(kept)
    # the row still counts for what must count it (the last day's spending), and nothing else
    assert client.journal.usage(SpendingLimits()).images == 3
    assert [entry.request.prompt for entry in client.journal.entries()] == ["a mistake"]


def test_a_running_generation_cannot_be_deleted(client, server):
    server.simulator.time_scale = 100  # it will not end during this test
    task = client.submit(qw.ImageRequest("still running"))
    with pytest.raises(qw.RequestValidationError, match="still running"):
        client.delete(task.task_id)
    assert prompts(client.history()) == ["still running"]


def test_delete_removes_the_thumbnails_made_from_kept_copies(client):
    task = client.generate("with a thumbnail")
    client.background(client.aio.thumbnail(task.images[0], 256)).result(30)
    thumbnails = list((home() / "images" / ".thumbnails").iterdir())
    assert len(thumbnails) == 1
    size = sum(path.stat().st_size for path in (task.images[0].local_path, *thumbnails))
    assert client.delete(task) == {"images": 1, "bytes_freed": size}
    assert not thumbnails[0].exists()


def test_recent_prompts_offer_starred_first_then_recent_once_each(client):
    for prompt in ("old starred", "middle", "newest", "middle"):
        task = client.generate(prompt)
        if prompt == "old starred":
            client.star(task)
    assert client.recent_prompts() == [("old starred", True), ("middle", False), ("newest", False)]


def test_a_deleted_generation_is_no_longer_open_work_nor_exported(server, client):
    # a lost submission (the server made its task; the answer never came) and a kept result
    server.simulator.inject(SimResponse(action="drop"), method="POST", path_prefix="/v1/images", process=True)
    with qw.QwenClient(TEST_KEY, base_url=server.url, **fast_options(retry=qw.RetryPolicy(max_attempts=1))) as first:
        with pytest.raises(qw.SubmitOutcomeUnknownError):
            first.submit(qw.ImageRequest("a fox whose answer was lost"))
    lost, = client.open_work().lost
    kept = client.generate("kept, then deleted")
    client.delete(lost)
    client.delete(kept)  # its kept copy goes: its images are not to be kept again
    assert not client.open_work()
    posts = server.simulator.count("POST", "/v1/images")
    assert client.resume() == [] and server.simulator.count("POST", "/v1/images") == posts  # nothing resent
    assert client.journal.entries() == []  # what export and the command line's export read


def test_hidden_and_deleted_prompts_are_not_offered_again(client):
    for prompt in ("shown", "hidden away", "deleted"):
        task = client.generate(prompt)
        if prompt == "hidden away":
            client.hide(task)
        if prompt == "deleted":
            client.delete(task)
    assert client.recent_prompts() == [("shown", False)]


def test_short_words_match_any_case_beyond_ascii(client):
    client.generate("Öl painting of a fox")
    client.generate("an owl")
    for words in ("Öl", "öl", "ÖL", "öl fox"):
        assert prompts(client.history(HistoryQuery(search=words))) == ["Öl painting of a fox"], words


def test_moments_naive_ones_local_strings_utc_and_bad_ones_named(monkeypatch):
    now = datetime(2026, 12, 7, 12, 0, tzinfo=timezone.utc)
    naive = datetime(2026, 12, 7, 9, 30)
    monkeypatch.setenv("TZ", "America/New_York")  # five hours behind UTC in December
    time.tzset()
    try:
        local = HistoryQuery.of(since=naive, now=now).since  # as datetime.now() means it
    finally:
        monkeypatch.undo()
        time.tzset()
    assert local == datetime(2026, 12, 7, 14, 30, tzinfo=timezone.utc)
    assert HistoryQuery.of(since="2026-12-07T09:30", now=now).since == naive.replace(tzinfo=timezone.utc)
    assert HistoryQuery.of(until="2026-12-07T09:30+01:00", now=now).until == datetime(
        2026, 12, 7, 8, 30, tzinfo=timezone.utc)
    with pytest.raises(qw.RequestValidationError, match="since: "):
        HistoryQuery.of(since="99999999999w", now=now)  # before year 1
    with pytest.raises(qw.RequestValidationError, match="search: .*NUL"):
        HistoryQuery.of(search="x\x00y")


# -- lineage -----------------------------------------------------------------------------------------


def test_an_image_made_from_a_result_knows_its_parent_and_the_chain(client):
    sketch = client.generate("a sketch of a lighthouse")
    refined = client.generate("a lighthouse at dusk", image_urls=[sketch.images[0].url])
    final = client.generate("a lighthouse at dusk, oil", image_urls=[refined.images[0].url], size="16:9")
    reference, = final.references
    assert (reference.parent_task_id, reference.parent_index) == (refined.task_id, 0)
    assert reference.sha256 and reference.local_path == str(refined.images[0].local_path)
    chain = client.chain(final)
    assert [entry.task.task_id for entry in chain] == [refined.task_id, sketch.task_id]
    assert qw.diff(chain[0], final) == "size 1:1 -> 16:9, prompt + ', oil', references +1 -1"
    assert client.find(final).references == final.references
    client.delete(sketch)
    assert [entry.task.task_id for entry in client.chain(final)] == [refined.task_id]  # it ends at a deleted one


def test_an_upload_of_a_kept_copy_or_of_a_saved_file_is_traced_to_its_task(client, tmp_path):
    parent = client.generate("the original")
    from_copy = client.generate("again, from the kept copy", image_urls=[parent.images[0].local_path])
    assert from_copy.references[0].parent_task_id == parent.task_id
    saved, = qw.save(parent, tmp_path, client=client)  # bytes differ: the receipt is inside
    from_file = client.generate("again, from the saved file", image_urls=[saved])
    origin = from_file.references[0]
    assert (origin.parent_task_id, origin.parent_index, origin.local_path) == (parent.task_id, 0, str(saved))
    outside = client.generate("from an outside picture", image_urls=[_png_file(tmp_path / "photo.png")])
    assert outside.references[0].parent_task_id is None
    assert outside.references[0].label == "photo.png"


def _png_file(path: Path) -> Path:
    Image.new("RGB", (64, 48), "#1565c0").save(path)
    return path


# -- receipts: written, read, rerun ----------------------------------------------------------------


def test_receipt_round_trip_save_read_rerun(client, server, tmp_path):
    qw.set_default_client(client)
    parent = client.generate("a sketch")
    task = client.generate("a lighthouse at dusk", size="16:9", negative_prompt="blurry",
                           image_urls=[parent.images[0].url])
    path, = qw.save(task, tmp_path)
    receipt = qw.read_receipt(path)
    assert receipt.request == task.request and receipt.task_id == task.task_id
    assert receipt.model == "qwen-image-2.0" and receipt.request_id == task.request_id
    assert receipt.cost == task.cost and receipt.actual_time == task.actual_time
    assert receipt.sha256 == sha256(task.images[0].local_path.read_bytes())
    reference, = receipt.references
    assert (reference.url, reference.parent_task_id, reference.parent_index) == (parent.images[0].url, parent.task_id, 0)
    assert reference.sha256 == sha256(parent.images[0].local_path.read_bytes())
    assert receipt.seed is None and "no seed" in receipt.seed_note
    assert str(home()) not in path.read_bytes().decode("latin-1")  # no local path travels with the file
    assert json.loads(path.with_suffix(".json").read_text()) == receipt.record  # the sidecar is the receipt
    posts = server.simulator.count("POST")
    again = qw.rerun(path)
    assert again.request == task.request and again.task_id != task.task_id
    assert server.simulator.count("POST") == posts + 1


def test_rerun_uploads_an_expired_reference_again_from_its_file(client, server, tmp_path):
    photo = _png_file(tmp_path / "photo.png")
    task = client.generate("from my photo", image_urls=[photo])
    path, = qw.save(task, tmp_path / "out", client=client)
    client.journal._write("UPDATE uploads SET expires_at = ?", (time.time() - 10,))  # its link died
    client.aio._uploads.clear()
    uploads = server.simulator.count("POST", "/v1/uploads/images")
    again = qw.rerun(path, client=client)
    assert server.simulator.count("POST", "/v1/uploads/images") == uploads + 1
    assert again.request.image_urls != task.request.image_urls
    assert again.references[0].local_path == str(photo)


def test_every_written_image_carries_the_receipt_export_too(client, tmp_path):
    import zipfile

    task = client.generate("for the archive", n=2)
    archive = qw.export(tmp_path / "work.zip", [task], client=client)
    with zipfile.ZipFile(archive) as opened:
        pngs = [name for name in opened.namelist() if name.endswith(".png")]
        receipts = [qw.read_receipt(opened.read(name)) for name in pngs]
        assert "read_receipt" in opened.read("README.txt").decode()
    assert sorted(r.image_index for r in receipts) == [0, 1]
    assert {r.task_id for r in receipts} == {task.task_id}


def test_a_file_without_a_receipt_is_refused_with_the_reason(tmp_path):
    with pytest.raises(qw.RequestValidationError, match="carries no qwen_widgets receipt"):
        qw.read_receipt(_png_file(tmp_path / "plain.png"))
    with pytest.raises(qw.RequestValidationError, match="cannot be read"):
        qw.read_receipt(tmp_path / "missing.png")


@pytest.mark.parametrize("kind", ["JPEG", "WEBP"])
def test_jpeg_and_webp_get_the_receipt_as_xmp(client, kind):
    from qwen_widgets.model.receipt import Receipt, labelled

    task = client.generate("a jpeg or a webp")
    buffer = io.BytesIO()
    Image.new("RGB", (40, 30), "#c62828").save(buffer, kind)
    record, data = labelled(task, task.images[0], buffer.getvalue())
    with Image.open(io.BytesIO(data)) as opened:
        opened.load()
        # Pillow names a JPEG's XMP in info from version 11; before, it is one of its APP1 segments
        xmp = opened.info.get("xmp") or b"".join(body for marker, body in getattr(opened, "applist", ())
                                                 if marker == "APP1")
        assert b"qw:qwen_widgets" in xmp
    assert read_text(data)["prompt"] == "a jpeg or a webp"
    assert Receipt.from_bytes(data).task_id == task.task_id == record["task_id"]


# -- the migration from version 3 ------------------------------------------------------------------

VERSION_3 = """
CREATE TABLE submissions (local_id TEXT PRIMARY KEY, created_at REAL NOT NULL, updated_at REAL NOT NULL,
    base_url TEXT NOT NULL, pid INTEGER, request TEXT, state TEXT NOT NULL, task_id TEXT, task TEXT, error TEXT,
    idempotency_key TEXT, request_id TEXT, attempts INTEGER NOT NULL DEFAULT 0, replayed INTEGER NOT NULL DEFAULT 0,
    resend INTEGER NOT NULL DEFAULT 0, local_refs TEXT, UNIQUE (base_url, task_id));
CREATE TABLE uploads (sha256 TEXT NOT NULL, base_url TEXT NOT NULL, url TEXT NOT NULL, expires_at REAL,
    filename TEXT NOT NULL, content_type TEXT NOT NULL, bytes INTEGER NOT NULL, local_path TEXT,
    created_at REAL NOT NULL, PRIMARY KEY (sha256, base_url));
CREATE TABLE images (local_id TEXT NOT NULL, image_index INTEGER NOT NULL, local_path TEXT NOT NULL,
    sha256 TEXT NOT NULL, saved_at REAL NOT NULL, PRIMARY KEY (local_id, image_index));
CREATE INDEX submissions_by_state ON submissions (base_url, state, created_at);
CREATE INDEX submissions_by_time ON submissions (created_at);
CREATE INDEX submissions_in_flight ON submissions (state);
PRAGMA user_version = 3;
"""


def test_a_version_3_journal_opens_keeps_everything_and_becomes_a_library(tmp_path):
    path, kept = tmp_path / "journal.sqlite", tmp_path / "images" / "task_A_0-aaaa.png"
    kept.parent.mkdir()
    kept.write_bytes(b"\x89PNG kept")
    photo = _png_file(tmp_path / "photo.png")
    now = time.time()
    task_a = {"task_id": "task_A", "status": "completed", "progress": 100, "estimated_time": 60, "actual_time": 19,
              "created_at": now - 100, "completed_at": now - 81, "error": None, "request_id": "req_A", "cost": 0.02,
              "credits_cost": None, "images": [{"url": "https://cdn.example/a0.png", "index": 0,
                                                "expires_at": now + 3600 * 20, "width": 1024, "height": 1024,
                                                "error": None}]}
    task_b = dict(task_a, task_id="task_B", images=[dict(task_a["images"][0], url="https://cdn.example/b0.png")])
    db = sqlite3.connect(path, isolation_level=None)
    db.executescript(VERSION_3)
    rows = [
        ("a" * 32, now - 100, {"model": "qwen-image-2.0", "prompt": "a lighthouse at dusk", "size": "1:1",
                               "resolution": "1K", "n": 1}, "finished", "task_A", task_a, None, None),
        ("b" * 32, now - 50, {"model": "qwen-image-2.0", "prompt": "the same lighthouse, in oil", "size": "1:1",
                              "resolution": "1K", "n": 1, "image_urls": ["https://cdn.example/a0.png",
                                                                          "https://up.example/photo.png"]},
         "finished", "task_B", task_b, None, {"https://up.example/photo.png": str(photo)}),
        ("c" * 32, now - 10, {"model": "qwen-image-2.0-pro", "prompt": "a refused fox", "size": "16:9",
                              "resolution": "2K", "n": 2}, "refused", None, None, "401: bad key", None),
    ]
    for local_id, created, request, state, task_id, task, error, local_refs in rows:
        db.execute("INSERT INTO submissions (local_id, created_at, updated_at, base_url, request, state, task_id,"
                   " task, error, idempotency_key, local_refs) VALUES (?, ?, ?, 'https://api.apimart.ai', ?, ?, ?,"
                   " ?, ?, 'key', ?)", (local_id, created, created, json.dumps(request), state, task_id,
                                        json.dumps(task) if task else None, error,
                                        json.dumps(local_refs) if local_refs else None))
    db.execute("INSERT INTO images VALUES (?, 0, ?, 'shaA', ?)", ("a" * 32, str(kept), now - 80))
    db.execute("INSERT INTO uploads VALUES ('shaP', 'https://api.apimart.ai', 'https://up.example/photo.png', ?,"
               " 'photo.png', 'image/png', 10, ?, ?)", (now + 3600, str(photo), now - 60))
    before = db.execute("SELECT * FROM submissions ORDER BY local_id").fetchall()
    db.close()

    journal = Journal(path)
    assert raw(path, "PRAGMA user_version") == [(4,)]
    assert raw(path, "SELECT local_id, created_at, updated_at, base_url, pid, request, state, task_id, task, error,"
                     " idempotency_key, request_id, attempts, replayed, resend, local_refs FROM submissions"
                     " ORDER BY local_id") == before  # every row, every column, as it was
    entries = journal.entries()
    assert [e.state.value for e in entries] == ["finished", "finished", "refused"]
    assert entries[0].task.images[0].local_path == kept
    page = journal.page(HistoryQuery(search="lighthouse"))
    assert [e.request.prompt for e in page.entries] == ["the same lighthouse, in oil", "a lighthouse at dusk"]
    assert journal.page(HistoryQuery.of(status="refused")).entries[0].error == "401: bad key"
    result, upload = journal.find("task_B").references
    assert (result.parent_task_id, result.parent_index, result.sha256) == ("task_A", 0, "shaA")
    assert (upload.local_path, upload.sha256, upload.parent_task_id) == (str(photo), "shaP", None)
    assert [e.local_id for e in journal.chain("b" * 32)] == ["a" * 32]
    from qwen_widgets.model.frame import history_frame

    frame = history_frame(journal.history_rows(HistoryQuery(hidden=None)))
    assert frame["prompt"].tolist() == ["a lighthouse at dusk", "the same lighthouse, in oil", "a refused fox"]
    assert frame["local_path"].tolist()[0] == str(kept) and frame["cost"].tolist()[:2] == [0.02, 0.02]
    assert frame["width"].tolist()[:2] == [1024, 1024] and frame["width"].isna().tolist()[2]
    journal.close()
    assert Journal(path).page().total == 3  # opened again: nothing to migrate, nothing lost


def test_an_index_left_without_its_triggers_is_rebuilt_on_the_next_open(tmp_path):
    """An SQLite without FTS5 drops the index's triggers (they would fail every write); rows
    written meanwhile are indexed by the next process that has FTS5."""
    path = tmp_path / "journal.sqlite"
    journal = Journal(path)
    journal.begin(qw.ImageRequest("a lighthouse before"), "https://api.apimart.ai")
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("DROP TRIGGER prompts_on_insert")
    db.execute("DROP TRIGGER prompts_on_update")
    db.close()
    journal.begin(qw.ImageRequest("a lighthouse meanwhile"), "https://api.apimart.ai")
    assert [e.request.prompt for e in journal.page(HistoryQuery(search="lighthouse")).entries] == ["a lighthouse before"]
    reopened = Journal(path)
    assert [e.request.prompt for e in reopened.page(HistoryQuery(search="lighthouse")).entries] == [
        "a lighthouse meanwhile", "a lighthouse before"]


def raw(path: Path, sql: str) -> list[tuple]:
    db = sqlite3.connect(path)
    try:
        return db.execute(sql).fetchall()
    finally:
        db.close()
