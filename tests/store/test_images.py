"""qw.export and the panel's "Download all": one zip with images, sidecars, results.csv."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import subprocess
import sys
import tracemalloc
import zipfile
from datetime import datetime, timedelta, timezone

import pytest

import qwen_widgets as qw
from qwen_widgets.model.images import archive_name
from qwen_widgets.store.images import Archive

from ..conftest import TEST_KEY, demo_client


def test_export_given_tasks_holds_full_images_sidecars_and_a_csv(tmp_path):
    client = demo_client()
    tasks = [client.generate("a fox", size="16:9", n=2), client.generate("a wolf")]
    path = qw.export(tmp_path / "work.zip", tasks, client=client)
    assert path == tmp_path / "work.zip"
    with zipfile.ZipFile(path) as archive:
        names = set(archive.namelist())
        for task in tasks:
            for image in task.images:
                stem = f"{task.task_id}_{image.index}"
                data = archive.read(f"{stem}.png")
                record = json.loads(archive.read(f"{stem}.json"))
                assert record["sha256"] == hashlib.sha256(client.fetch_image(image)).hexdigest()
                assert record["request"]["prompt"] == task.request.prompt
                assert data[:8] == b"\x89PNG\r\n\x1a\n"
        rows = list(csv.DictReader(io.StringIO(archive.read("results.csv").decode())))
        readme = archive.read("README.txt").decode()
    assert {"results.csv", "README.txt"} <= names
    assert [(r["prompt"], r["image_index"]) for r in rows] == [("a fox", "0"), ("a fox", "1"), ("a wolf", "0")]
    assert rows[0]["width"] == "1280" and "3 image(s) from 2 task(s)" in readme


def test_export_without_tasks_takes_the_whole_history_into_a_folder(tmp_path):
    client = demo_client()
    qw.set_default_client(client)
    done = [qw.generate("one"), qw.generate("two", n=2)]
    path = qw.export(tmp_path)
    assert path.parent == tmp_path and path.name.startswith("qwen_images_") and path.suffix == ".zip"
    with zipfile.ZipFile(path) as archive:
        pngs = [name for name in archive.namelist() if name.endswith(".png")]
    assert len(pngs) == 3 and {t.task_id for t in done} == {name.rsplit("_", 1)[0] for name in pngs}


def test_an_image_that_cannot_be_had_is_listed_not_fatal(tmp_path):
    client = demo_client()
    task = client.generate("a fox", n=2)
    broken = task.images[1].__class__(**{**task.images[1].__dict__, "url": task.images[1].url.replace(
        task.task_id, "task_01MISSING")})
    task = task.__class__(**{**task.__dict__, "images": (task.images[0], broken)})
    path = qw.export(tmp_path / "x.zip", task, client=client)
    with zipfile.ZipFile(path) as archive:
        pngs = [name for name in archive.namelist() if name.endswith(".png")]
        readme = archive.read("README.txt").decode()
    assert pngs == [f"{task.task_id}_0.png"]
    assert "1 image(s) could not be fetched" in readme and "image 2" in readme


def test_archive_name_is_dated_and_an_archive_works_without_images(tmp_path):
    assert archive_name().startswith("qwen_images_") and archive_name().endswith(".zip")
    path = Archive(tmp_path / "empty.zip").finish([])
    assert set(zipfile.ZipFile(path).namelist()) == {"results.csv", "README.txt"}
    assert [p.name for p in tmp_path.iterdir()] == ["empty.zip"]  # no temporary file left


def test_importing_the_package_still_loads_no_pandas_or_pillow():
    code = ("import sys, qwen_widgets as qw; qw.export; "
            "print(sorted(m for m in ('pandas', 'PIL', 'ipywidgets') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


# -- issue 24: what a newcomer met ------------------------------------------------------------


def test_cells_a_spreadsheet_would_run_are_kept_as_text(tmp_path):
    client = demo_client()
    made = client.generate('=HYPERLINK("http://evil.example","click")')
    failed = qw.Task("task_01FAILED", qw.TaskStatus.FAILED, error="@SUM(A1:A9) refused",
                     request=qw.ImageRequest("+cmd|' /C calc'!A0", negative_prompt="-2+3"))
    path = qw.export(tmp_path / "work.zip", [made, failed], client=client)
    rows = list(csv.DictReader(io.StringIO(zipfile.ZipFile(path).read("results.csv").decode())))
    assert rows[0]["prompt"] == """'=HYPERLINK("http://evil.example","click")"""
    assert rows[1]["prompt"] == "'+cmd|' /C calc'!A0" and rows[1]["negative_prompt"] == "'-2+3"
    assert rows[1]["error"] == "'@SUM(A1:A9) refused"
    assert rows[0]["status"] == "completed"  # ordinary text stays as it is


@pytest.mark.parametrize("given", ["exports/", "exports"])
def test_export_to_a_folder_that_does_not_exist_makes_it_with_a_dated_zip_inside(tmp_path, monkeypatch, given):
    monkeypatch.chdir(tmp_path)
    client = demo_client()
    path = qw.export(given, [client.generate("a fox")], client=client)
    assert (tmp_path / "exports").is_dir() and path.parent.resolve() == (tmp_path / "exports").resolve()
    assert path.name.startswith("qwen_images_") and zipfile.is_zipfile(path)


def mode(path) -> int:
    return path.stat().st_mode & 0o777


def test_files_in_a_chosen_folder_follow_the_umask_and_the_home_stays_private(server, tmp_path):
    old = os.umask(0o022)
    try:
        client = qw.QwenClient(TEST_KEY, base_url=server.url, timeout=5)
        task = client.generate("a fox")  # kept in the private home
        saved = client.save([task], tmp_path / "saved")
        exported = qw.export(tmp_path / "out" / "work.zip", [task], client=client)
    finally:
        os.umask(old)
    assert mode(saved[0]) == 0o644 and mode(saved[0].with_suffix(".json")) == 0o644
    assert mode(exported) == 0o644
    assert task.images[0].local_path is not None and mode(task.images[0].local_path) == 0o600
    with zipfile.ZipFile(exported) as archive:  # unpacked readable as any file
        assert {info.external_attr >> 16 for info in archive.infolist()} == {0o644}


def test_images_of_a_simulator_that_is_gone_are_said_to_be_so(tmp_path):
    first = demo_client()
    tasks = [first.generate("a fox")]
    qw.set_default_client(demo_client())  # a new client: a new simulator
    path = qw.export(tmp_path / "x.zip", tasks)
    readme = zipfile.ZipFile(path).read("README.txt").decode()
    assert "1 image(s) could not be fetched" in readme
    assert "the simulator running now did not draw this image" in readme and "expired" not in readme


def test_zip_members_are_dated_when_their_images_were_made(tmp_path):
    client = demo_client()
    task = client.generate("a fox")
    made = datetime(2026, 3, 4, 5, 6, 8, tzinfo=timezone.utc)
    task = task.__class__(**{**task.__dict__, "completed_at": made})
    path = qw.export(tmp_path / "x.zip", [task], client=client)
    with zipfile.ZipFile(path) as archive:
        dates = {info.filename: datetime(*info.date_time) for info in archive.infolist()}
    local = datetime.fromtimestamp(made.timestamp()).replace(tzinfo=None)
    assert dates[f"{task.task_id}_0.png"] == local and dates[f"{task.task_id}_0.json"] == local
    assert abs(dates["results.csv"] - datetime.now()) < timedelta(hours=1)  # not 1980


def test_an_export_streams_each_image_to_its_file(tmp_path):
    """Issue 26 item 3 at a small scale: 24 kept images of 2 MB (48 MB) add a few images' worth
    of memory, not the whole export twice over (the zip was built in memory, then copied)."""
    kept = tmp_path / "kept"
    kept.mkdir()
    tasks = []
    for number in range(4):
        images = []
        for index in range(6):
            path = kept / f"{number}_{index}.png"
            path.write_bytes(b"\x89PNG\r\n\x1a\n" + os.urandom(2 * 2**20))
            images.append(qw.GeneratedImage(f"https://cdn.example/{number}/{index}.png", index, local_path=path))
        tasks.append(qw.Task(f"task_01BIG{number}", qw.TaskStatus.COMPLETED, images=tuple(images),
                             request=qw.ImageRequest("a fox", n=6)))
    client = qw.QwenClient(TEST_KEY, base_url="http://127.0.0.1:9")
    qw.export(tmp_path / "warm.zip", tasks[:1], client=client)  # imports (pandas) are not the export's
    tracemalloc.start()
    try:
        path = qw.export(tmp_path / "big.zip", tasks, client=client)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert len([n for n in zipfile.ZipFile(path).namelist() if n.endswith(".png")]) == 24
    assert peak < 12 * 2**20, f"peak {peak / 2**20:.1f} MB"
