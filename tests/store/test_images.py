"""qw.export and the panel's "Download all": one zip with images, sidecars, results.csv."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import subprocess
import sys
import zipfile

import qwen_widgets as qw
from qwen_widgets.model.images import archive_name
from qwen_widgets.store.images import build_archive

from ..conftest import demo_client


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


def test_archive_name_is_dated_and_build_works_without_images():
    assert archive_name().startswith("qwen_images_") and archive_name().endswith(".zip")
    data = build_archive([], [])
    assert set(zipfile.ZipFile(io.BytesIO(data)).namelist()) == {"results.csv", "README.txt"}


def test_importing_the_package_still_loads_no_pandas_or_pillow():
    code = ("import sys, qwen_widgets as qw; qw.export; "
            "print(sorted(m for m in ('pandas', 'PIL', 'ipywidgets') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
