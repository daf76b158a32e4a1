"""Regression tests for the adversarial review's defects: each failed before its fix."""

from __future__ import annotations

import asyncio
import json
import os
import sqlite3
import subprocess
import sys
import textwrap
import time
import warnings
from pathlib import Path

import pytest

import qwen_widgets as qw
from qwen_widgets.store.journal import Journal
from qwen_widgets.store.schema import SCHEMA_VERSION
from qwen_widgets.store.images import STALE_TEMPORARY_SECONDS, disk_usage, prune
from qwen_widgets.simulator import SimResponse, Simulator, serve

from ..conftest import TEST_KEY, TIME_SCALE, fast_options

pytestmark = pytest.mark.anyio

REPO = Path(__file__).resolve().parents[2]
BAD_PORT_URL = "http://127.0.0.1:notaport/x.png"


def home() -> Path:
    return Path(os.environ["QWEN_WIDGETS_HOME"])


def states(path: Path | None = None) -> list[str]:
    db = sqlite3.connect(str(path or home() / "journal.sqlite"))
    try:
        return [state for (state,) in db.execute("SELECT state FROM submissions ORDER BY created_at")]
    finally:
        db.close()


class OneBadURL(Simulator):
    """Completes tasks whose second image URL has a port that is not a number."""

    def _images_of(self, task):
        images = super()._images_of(task)
        if len(images) > 1:
            images[1] = {**images[1], "url": BAD_PORT_URL}
        return images


# -- 1. one unusable image URL must not lose a completed, paid task -----------------------------


async def test_an_unusable_image_url_becomes_that_images_error_and_the_others_are_kept():
    with serve(OneBadURL(seed=3, time_scale=TIME_SCALE)) as server:
        async with qw.AsyncQwenClient(TEST_KEY, base_url=server.url, **fast_options()) as client:
            task = await client.generate("three foxes, one lost", n=3)
            assert task.status is qw.TaskStatus.COMPLETED and len(task.images) == 3
            good, bad, other = task.images
            assert bad.error is not None and "cannot be fetched" in bad.error and bad.local_path is None
            assert good.error is None and good.local_path.read_bytes().startswith(b"\x89PNG")
            assert other.error is None and other.local_path.exists()
            with pytest.raises(qw.ImageFetchError, match="cannot be fetched"):
                await client.fetch_image(bad)
            with pytest.raises(qw.ImageFetchError):
                await client.fetch_image(BAD_PORT_URL)
    assert states() == ["finished"]
    entry, = Journal(home() / "journal.sqlite").entries()
    assert [image.error is not None for image in entry.task.images] == [False, True, False]
    assert [image.local_path is not None for image in entry.task.images] == [True, False, True]
    frame = qw.to_frame(task)
    assert frame["error"].isna().tolist() == [True, False, True]


async def test_a_redirect_to_an_unusable_url_is_an_image_fetch_error(server, make_client):
    async with make_client() as client:
        task = await client.generate("a fox")
        server.simulator.inject(SimResponse(302, {"Location": "http://elsewhere:bad/x.png"}),
                                path_prefix="/sim-images/", count=10)
        with pytest.raises(qw.ImageFetchError, match="Invalid URL in location header"):
            await client.fetch_image(task.urls[0])


@pytest.mark.parametrize("base_url", ["http://127.0.0.1:99999", "http://127.0.0.1:port", "http://[::1"])
def test_an_unusable_base_url_is_refused_before_any_request(base_url):
    with pytest.raises(qw.RequestValidationError, match="base_url"):
        qw.AsyncQwenClient(TEST_KEY, base_url=base_url)


# -- 2. any finite positive request budget works ---------------------------------------------------


@pytest.mark.parametrize("rate", [1e6, 1e9])
async def test_a_generous_budget_does_not_hang(server, rate):
    budget = qw.RequestBudget(rate)
    async with qw.AsyncQwenClient(TEST_KEY, base_url=server.url,
                                  **fast_options(poll_budget=budget)) as client:
        # a deadline far beyond the work (a few hundred ms): it only turns a hang into a failure
        tasks = await asyncio.wait_for(
            asyncio.gather(*(client.generate(f"fox {i}") for i in range(5))), 120)
    assert [task.status for task in tasks] == [qw.TaskStatus.COMPLETED] * 5


class LateClock:
    """Every sleep overruns by 2 ms, as a busy event loop's timers do."""

    def __init__(self):
        self.now, self.sleeps = 0.0, 0

    def monotonic(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps += 1
        self.now += max(seconds, 0.0) + 0.002


@pytest.mark.parametrize("rate", [1e3, 1e6, 1e9])
async def test_a_budget_finer_than_timer_jitter_takes_one_slot_per_request(rate):
    budget, clock = qw.RequestBudget(rate), LateClock()
    for _ in range(100):
        await budget.take(clock)
    assert clock.sleeps == 100  # no request had to give up its slot and queue again


async def test_a_real_stall_still_gives_up_the_stale_slot():
    budget, clock = qw.RequestBudget(10), LateClock()
    stalled = iter([0.0, 0.5])  # the second request's wake comes half a second late

    async def sleep(seconds: float) -> None:
        clock.sleeps += 1
        clock.now += seconds + next(stalled, 0.0)

    clock.sleep = sleep
    await budget.take(clock)  # its slot is now: no sleep to be late from
    await budget.take(clock)  # a tenth of a second later, woken 0.5 s late: a fresh slot
    assert clock.sleeps == 3


# -- 3. a damaged journal is a QwenError that names the file --------------------------------------


def _truncated_journal(path: Path) -> None:
    journal = Journal(path)
    for i in range(200):
        journal.record(qw.Task(f"task_{i}", qw.TaskStatus.SUBMITTED), "https://api.example")
    journal.close()
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 3])
    for suffix in ("-wal", "-shm"):
        Path(str(path) + suffix).unlink(missing_ok=True)


@pytest.mark.parametrize("damage", ["garbage", "truncated"])
def test_a_damaged_journal_is_named_and_nothing_is_sent(server, damage):
    path = home() / "journal.sqlite"
    home().mkdir(parents=True, exist_ok=True)
    if damage == "garbage":
        path.write_bytes(os.urandom(4096))
    else:
        _truncated_journal(path)
    before = path.read_bytes()
    with pytest.raises(qw.JournalError) as caught:
        with qw.QwenClient(TEST_KEY, base_url=server.url, **fast_options()) as client:
            client.generate("a fox")
    message = str(caught.value)
    assert str(path) in message and "Move it aside" in message and "never deletes" in message
    assert isinstance(caught.value, qw.QwenError)
    assert server.simulator.count("POST") == 0
    assert path.read_bytes() == before  # nothing deleted or rewritten


def test_a_damaged_journal_is_reported_by_history_and_the_load_notice():
    from qwen_widgets._magics import unfinished_notice

    home().mkdir(parents=True, exist_ok=True)
    (home() / "journal.sqlite").write_bytes(b"not a database" * 100)
    with pytest.raises(qw.JournalError, match="journal.sqlite"):
        qw.history()
    assert "journal.sqlite" in unfinished_notice() and "Move it aside" in unfinished_notice()


# -- 4. a relative home folder -------------------------------------------------------------------


async def test_a_relative_home_stores_absolute_paths_that_survive_chdir(server, monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("QWEN_WIDGETS_HOME", "relative_home")
    async with qw.AsyncQwenClient(TEST_KEY, base_url=server.url, **fast_options()) as client:
        task = await client.generate("a fox far from home")
        elsewhere = tmp_path / "elsewhere"
        elsewhere.mkdir()
        monkeypatch.chdir(elsewhere)
        entry, = client.journal.entries()
        image = entry.task.images[0]
        assert image.local_path.is_absolute() and image.local_path.exists()
        assert image.local_path.is_relative_to(tmp_path / "relative_home")
        server.simulator.url_lifetime = -10_000  # the URL is dead: only the kept copy serves
        assert await client.fetch_image(image) == task.images[0].local_path.read_bytes()
    assert Path(client.journal.path).is_absolute()


# -- 5. a reissued task id never overwrites another submission's image ----------------------------


async def test_a_reissued_task_id_keeps_both_images_apart(tmp_path):
    tasks = []
    for prompt in ("the first fox", "the second, different fox"):
        with serve(Simulator(seed=1, time_scale=TIME_SCALE, task_id_seed="restarted")) as fresh:
            async with qw.AsyncQwenClient(TEST_KEY, base_url=fresh.url, **fast_options()) as client:
                tasks.append(await client.generate(prompt))
    first, second = tasks
    assert first.task_id == second.task_id
    assert first.images[0].local_path != second.images[0].local_path
    assert first.images[0].local_path.read_bytes() != second.images[0].local_path.read_bytes()
    history = qw.history()
    assert history["prompt"].tolist() == ["the first fox", "the second, different fox"]
    shown = [Path(path).read_bytes() for path in history["local_path"]]
    assert shown == [first.images[0].local_path.read_bytes(), second.images[0].local_path.read_bytes()]

    exports = tmp_path / "exports"
    with qw.QwenClient(TEST_KEY, base_url="http://127.0.0.1:9", **fast_options()) as offline:
        paths = qw.save(tasks, exports, client=offline)  # from the kept copies: no network
        again = qw.save(first, exports, client=offline)
    assert len(set(paths)) == 2 and again == paths[:1]  # saving again overwrites only itself
    assert [json.loads(p.with_suffix(".json").read_text())["request"]["prompt"] for p in paths] == \
        ["the first fox", "the second, different fox"]
    assert len(list(exports.glob("*.png"))) == 2


def test_demo_task_ids_differ_between_simulators():
    ids = set()
    for _ in range(3):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", qw.DemoModeWarning)
            with qw.QwenClient(simulator=Simulator(time_scale=TIME_SCALE), **fast_options()) as client:
                ids.add(client.submit(qw.ImageRequest("a fox")).task_id)
    assert len(ids) == 3


def test_running_the_module_twice_keeps_both_runs_images(tmp_path):
    out = tmp_path / "out"
    for _ in range(2):
        done = subprocess.run([sys.executable, "-m", "qwen_widgets", "a fox", "-n", "1", "--out", str(out)],
                              cwd=tmp_path, capture_output=True, text=True, timeout=120,
                              env={**os.environ, "PYTHONPATH": str(REPO)})
        assert done.returncode == 0, done.stderr
    assert len(list(out.glob("*.png"))) == 2 and len(list(out.glob("*.json"))) == 2


# -- 6. a 3xx answer to the POST is unknown, not refused -------------------------------------------


@pytest.mark.parametrize("status", [301, 303, 307])
async def test_a_redirect_answer_to_the_post_is_journaled_unknown(server, make_client, status):
    server.simulator.inject(SimResponse(status, {"Location": "/v1/tasks/elsewhere"}),
                            method="POST", process=True)
    async with make_client(resend_with_key=False) as client:  # with keys it would be resent
        with pytest.raises(qw.SubmitOutcomeUnknownError):
            await client.submit(qw.ImageRequest("a redirected fox"))
    assert states() == ["unknown"]
    assert server.simulator.count("POST") == 1


# -- 7. temporary files left by a crash mid-copy ----------------------------------------------------


def _leftovers(folder: Path) -> tuple[Path, Path]:
    stale = folder / ".task_x_0-abc.png.k3j4h5.part"
    fresh = folder / ".task_y_0-def.png.a1b2c3.part"
    stale.write_bytes(b"\x89PNG" + b"\0" * 1000)
    fresh.write_bytes(b"\x89PNG" + b"\0" * 10)
    old = time.time() - STALE_TEMPORARY_SECONDS - 60
    os.utime(stale, (old, old))
    return stale, fresh


def test_disk_usage_sees_and_prune_removes_stale_temporary_files():
    journal = Journal.default()
    stale, fresh = _leftovers(journal.images_folder())
    usage = disk_usage(journal)
    assert usage["temporary_files"] == 1 and usage["temporary_bytes"] == 1004
    result = prune(older_than_days=30, journal=journal)
    assert result["temporary_files_removed"] == 1 and result["bytes_freed"] == 1004
    assert not stale.exists() and fresh.exists()  # a write may still be filling it


async def test_resume_removes_stale_temporary_files(make_client):
    async with make_client() as client:
        stale, fresh = _leftovers(client.journal.images_folder())
        await client.resume()
    assert not stale.exists() and fresh.exists()


# -- 8. a script that ends while a card still works exits quietly ----------------------------------


def test_show_as_the_last_line_of_a_script_exits_quietly(tmp_path):
    script = textwrap.dedent("""
        import asyncio, threading, time, warnings
        import qwen_widgets as qw
        from qwen_widgets.engine import runner as _runner
        from qwen_widgets.simulator import Simulator

        class SlowImages(Simulator):
            slow = False

            def handle(self, method, target, headers, body):
                if self.slow and target.startswith("/sim-images/"):
                    time.sleep(1.0)  # a worker thread is busy when the script ends
                return super().handle(method, target, headers, body)

        def after_the_package_stopped():
            # threading's exit hooks run newest first: this one runs after the package's
            _runner._thread.join(30)
            print("loop still running:", _runner._thread.is_alive(), flush=True)

        threading._register_atexit(after_the_package_stopped)
        warnings.simplefilter("ignore", qw.DemoModeWarning)
        simulator = SlowImages(time_scale=0.01)
        client = qw.QwenClient(simulator=simulator)
        task = client.generate("a fox", n=2)
        simulator.slow = True
        qw.show(task, client=client)
    """)
    done = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True,
                          timeout=120, env={**os.environ, "PYTHONPATH": str(REPO)})
    assert done.returncode == 0
    assert "loop still running: False" in done.stdout
    assert done.stderr == "", done.stderr


# -- 9. history shows the on-disk journal whatever the mode ----------------------------------------


def test_history_without_a_key_shows_the_keyed_runs_and_no_demo_ones(server):
    with qw.QwenClient(TEST_KEY, base_url=server.url, **fast_options()) as keyed:
        keyed.generate("a keyed fox")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", qw.DemoModeWarning)
        with qw.QwenClient(simulator=Simulator(time_scale=TIME_SCALE), **fast_options()) as demo:
            demo.generate("a demo fox")
    assert qw.history()["prompt"].tolist() == ["a keyed fox"]


def test_history_without_any_journal_is_empty_and_creates_nothing():
    frame = qw.history()
    assert len(frame) == 0 and "journal_state" in frame.columns
    assert not home().exists()


# -- the journal file format -----------------------------------------------------------------------


def test_a_version_0_journal_moves_kept_images_to_their_submission(tmp_path):
    path = tmp_path / "journal.sqlite"
    db = sqlite3.connect(str(path))
    db.executescript("""
        CREATE TABLE submissions (local_id TEXT PRIMARY KEY, created_at REAL NOT NULL,
            updated_at REAL NOT NULL, base_url TEXT NOT NULL, pid INTEGER, request TEXT,
            state TEXT NOT NULL, task_id TEXT, task TEXT, error TEXT, UNIQUE (base_url, task_id));
        CREATE TABLE images (task_id TEXT NOT NULL, image_index INTEGER NOT NULL,
            local_path TEXT NOT NULL, sha256 TEXT NOT NULL, saved_at REAL NOT NULL,
            PRIMARY KEY (task_id, image_index));
        INSERT INTO submissions VALUES ('L1', 1, 1, 'https://api.example', 1, NULL, 'finished',
            'task_a', NULL, NULL);
        INSERT INTO images VALUES ('task_a', 0, '/kept/task_a_0.png', 'aa', 5);
    """)
    db.close()
    journal = Journal(path)
    copy, = journal.image_copies()
    assert (copy.local_id, copy.task_id, copy.index, str(copy.path)) == ("L1", "task_a", 0, "/kept/task_a_0.png")
    journal.close()
    db = sqlite3.connect(str(path))
    assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    db.close()
