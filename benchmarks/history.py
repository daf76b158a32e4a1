"""The history at scale: `qw.history()` and the panel's History tab with 100,000 generations.

    python benchmarks/history.py [--rows 100000] [--repeat 5]

Targets (issue 26 item 6, issue 28 item 8): the frame of 100,000 rows within 0.5 s; the
history view's first page within 0.3 s and a search within 0.2 s, on a 2-core machine, with
memory that does not grow with the journal.

A journal of `--rows` finished one-image generations (prompts of 8-14 words from a vocabulary
of 200, "lighthouse" among them, so a search for it finds about 5%) is written straight into
SQLite: the journal's own triggers fill its library table, its rows per image and its search
index, as they do for every submission. Each figure is the median of `--repeat` runs, wall
time and the process's CPU time (others' work on a shared machine inflates the first, not the
second). The view is the panel's own HistoryView on a demo client given that journal; "first
page" is from asking to the page's 24 items being on it (no thumbnails: nothing is kept on disk
and every link has expired here, so each item shows its placeholder; thumbnails kept on disk are
read from small cached JPEGs), "search" the same for the query "lighthouse" (the
view waits SEARCH_PAUSE after the last key press before it asks; that pause is printed apart).
Memory is the peak that tracemalloc sees while the page or the search is made, at a tenth of
the rows and at all of them.
"""

from __future__ import annotations

import argparse
import json
import random
import sqlite3
import statistics
import sys
import tempfile
import threading
import time
import tracemalloc
import uuid
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import qwen_widgets as qw  # noqa: E402
from qwen_widgets.model.frame import history_frame  # noqa: E402
from qwen_widgets.model.history import HistoryQuery  # noqa: E402
from qwen_widgets.simulator import Simulator  # noqa: E402
from qwen_widgets.store.journal import Journal  # noqa: E402

WORDS = ["lighthouse"] + [f"{stem}{suffix}" for stem in (
    "fox owl snow rain dusk cliff river city night neon forest mountain portrait cat dog oil sketch "
    "harbor meadow storm").split() for suffix in ("", "s", "y", "ish", "ed", "er", "ing", "ly", "ness", "ful")][:199]


def write_journal(path: Path, rows: int) -> None:
    """`rows` finished one-image generations, a minute apart, ending now."""
    Journal(path).close()  # the schema, its triggers and its search index
    db = sqlite3.connect(path, isolation_level=None)
    rng = random.Random(1)
    start = time.time() - rows * 60
    db.execute("BEGIN")
    for number in range(rows):
        created = start + number * 60
        task_id = f"task_{number:09d}"
        words = " ".join(rng.choice(WORDS) for _ in range(rng.randint(8, 14)))
        request = {"model": rng.choice(qw.MODELS), "prompt": words,
                   "size": rng.choice(qw.SIZES), "resolution": "1K", "n": 1}
        task = {"task_id": task_id, "status": "completed", "progress": 100, "estimated_time": 60, "actual_time": 19.0,
                "created_at": created, "completed_at": created + 19, "error": None, "request_id": f"req_{number}",
                "cost": 0.021, "credits_cost": None,
                # links long expired and nothing kept: each item shows its placeholder, no network
                "images": [{"url": f"https://cdn.example/{task_id}/0.png", "index": 0, "expires_at": created + 60,
                            "width": 1024, "height": 1024, "error": None}]}
        db.execute("INSERT INTO submissions (local_id, created_at, updated_at, base_url, pid, request, state, task_id,"
                   " task) VALUES (?, ?, ?, 'https://api.apimart.ai', 1, ?, 'finished', ?, ?)",
                   (uuid.uuid4().hex, created, created, json.dumps(request), task_id, json.dumps(task)))
        if number % 20_000 == 19_999:
            print(f"  {number + 1:,} rows written", file=sys.stderr)
    db.execute("COMMIT")
    db.close()


def timed(work, repeat: int) -> tuple[float, float]:
    """Median (wall, CPU) seconds of `work()`."""
    walls, cpus = [], []
    for _ in range(repeat):
        wall, cpu = time.perf_counter(), time.process_time()
        work()
        walls.append(time.perf_counter() - wall)
        cpus.append(time.process_time() - cpu)
    return statistics.median(walls), statistics.median(cpus)


def view_on(path: Path):
    """The panel's HistoryView on a demo client whose journal is the file at `path`."""
    from qwen_widgets.widgets.history import HistoryView

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", qw.DemoModeWarning)
        client = qw.QwenClient(simulator=Simulator(seed=1), journal=Journal(path))
    return HistoryView(client)


def shown(view, repeat: int) -> tuple[float, float]:
    """Median (wall, CPU) seconds from asking the view for its first page to the page's items
    being on it (their thumbnails then load in the background; here each is a placeholder)."""
    walls, cpus = [], []
    for _ in range(repeat):
        done = threading.Event()
        stamps: list[tuple[float, float]] = []

        def on_page(_change, stamps=stamps, done=done) -> None:
            stamps.append((time.perf_counter(), time.process_time()))
            done.set()

        view.grid.observe(on_page, "children")
        wall, cpu = time.perf_counter(), time.process_time()
        future = view.refresh(0)
        done.wait(60)
        view.grid.unobserve(on_page, "children")
        future.result(60)
        walls.append(stamps[0][0] - wall)
        cpus.append(stamps[0][1] - cpu)
    return statistics.median(walls), statistics.median(cpus)


def peak_kib(work) -> float:
    tracemalloc.start()
    work()
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return peak / 1024


def measure(rows: int, repeat: int, say=print) -> dict:
    """Every figure of this benchmark for a journal of `rows` generations (and of a tenth of
    them, for memory); `say` prints each line as it is measured. benchmarks/run.py calls it too."""
    from qwen_widgets.widgets.history import SEARCH_PAUSE

    with tempfile.TemporaryDirectory() as folder:
        sizes = {"all": rows, "a tenth": rows // 10}
        paths = {name: Path(folder) / f"journal-{count}.sqlite" for name, count in sizes.items()}
        for name, count in sizes.items():
            print(f"writing a journal of {count:,} generations…", file=sys.stderr)
            write_journal(paths[name], count)
        journal = Journal(paths["all"])
        say(f"The history with {rows:,} generations ({journal.search_mode.split(' (')[0]}; "
            f"SQLite {sqlite3.sqlite_version}); median of {repeat}, wall s / CPU s")
        frame_wall, frame_cpu = timed(lambda: qw.history(journal), repeat)
        frame_rows = len(qw.history(journal))
        read_wall, read_cpu = timed(lambda: journal.history_rows(HistoryQuery()), repeat)
        every = journal.history_rows(HistoryQuery())
        build_wall, build_cpu = timed(lambda: history_frame(every), repeat)
        say(f"  qw.history() frame of {frame_rows:,} rows    {frame_wall:6.3f} / {frame_cpu:6.3f}   target <= 0.5 s: "
            f"{'met' if frame_wall <= 0.5 else 'MISSED'}")
        say(f"    of which SQLite rows into Python  {read_wall:6.3f} / {read_cpu:6.3f}")
        say(f"    of which the typed frame          {build_wall:6.3f} / {build_cpu:6.3f}")
        view = view_on(paths["all"])
        page_wall, page_cpu = shown(view, repeat)
        say(f"  History tab, first page ({len(view.items)} items)   {page_wall:6.3f} / {page_cpu:6.3f}   "
            f"target <= 0.3 s: {'met' if page_wall <= 0.3 else 'MISSED'}")
        view.search.unobserve_all()  # the answer is timed here; the typing pause is said apart
        view.search.value = "lighthouse"
        search_wall, search_cpu = shown(view, repeat)
        found = view.page.total if view.page else 0
        say(f"  search 'lighthouse' ({found:,} found)    {search_wall:6.3f} / {search_cpu:6.3f}   "
            f"target <= 0.2 s: {'met' if search_wall <= 0.2 else 'MISSED'}"
            f" (after the view's {SEARCH_PAUSE:.2f} s pause in typing)")
        memory = {}
        for name in ("a tenth", "all"):
            small = view_on(paths[name])
            page = peak_kib(lambda v=small: v.refresh(0).result(60))
            small.search.unobserve_all()
            small.search.value = "lighthouse"
            search = peak_kib(lambda v=small: v.refresh(0).result(60))
            memory[sizes[name]] = {"first_page_kib": page, "search_kib": search}
            say(f"  peak memory at {sizes[name]:>7,} generations: first page {page:7.0f} KiB, "
                f"search {search:7.0f} KiB")
        journal.close()
    return {"rows": frame_rows, "frame_s": frame_wall, "frame_cpu_s": frame_cpu, "first_page_s": page_wall,
            "search_s": search_wall, "found": found, "peak_kib": memory}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    print()
    measure(args.rows, args.repeat)


if __name__ == "__main__":
    main()
