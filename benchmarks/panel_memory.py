"""Memory per finished card, and notebook weight per image, for the panel's gallery.

    python benchmarks/panel_memory.py [--cards 1000] [--images 1 4]

Issue 14's target (issue 26 item 5: whatever the number of images): at most 60 KiB of kernel
memory per finished card at 1,000 cards. A finished card keeps small pictures, not full images:
the newest card its thumbnails and its first image large, every older one a single contact
sheet of all its images. Issue 15's: a saved notebook grows at most 40 KB per image. Runs
in-process against the simulator; prints one table.

Memory is what tracemalloc sees allocated and still held after the cards finished (widgets,
their layouts and styles, thumbnails, the Task values), divided by the number of cards; the
in-process simulator's own allocations (it plays the server) and first-use imports (one card
is shown before measuring) are left out.
Notebook weight is the bytes per image of (a) the static copy saved as the panel's output
and (b) the widget state, which JupyterLab saves only with "Save widget state" switched on.
"""

from __future__ import annotations

import argparse
import gc
import json
import sys
import time
import tracemalloc
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import ipywidgets  # noqa: E402

import qwen_widgets as qw  # noqa: E402
from qwen_widgets.simulator import Simulator  # noqa: E402
from qwen_widgets.widgets.card import FEATURE_DELAY  # noqa: E402

TIME_SCALE = 0.0005


def client() -> qw.QwenClient:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", qw.DemoModeWarning)
        return qw.QwenClient(simulator=Simulator(seed=3, time_scale=TIME_SCALE),
                             poll_schedule=qw.PollSchedule().scaled(TIME_SCALE),
                             poll_budget=qw.RequestBudget(10_000))


def finished_tasks(engine: qw.QwenClient, count: int, n: int) -> list[qw.Task]:
    return [engine.generate(f"memory benchmark prompt number {i}, a red fox in snow", n=n)
            for i in range(count)]


def memory_per_card(count: int, n: int) -> dict:
    engine = client()
    tasks = finished_tasks(engine, count, n)
    panel = qw.Panel(engine)
    warm = engine.generate("warm-up: first use imports Pillow and friends", n=n)
    panel._new_card(warm.request).show_task(warm).result(60)
    gc.collect()
    widgets_before = len(ipywidgets.widgets.widget._instances)
    tracemalloc.start()
    before = tracemalloc.take_snapshot()
    started = time.perf_counter()
    for task in tasks:
        card = panel._new_card(task.request)
        card.show_task(task).result(60)
    cards = panel.gallery.cards
    deadline = time.monotonic() + 60
    while not all(card.mode == "compact" for card in cards[1:]) and time.monotonic() < deadline:
        time.sleep(0.05)  # the older cards shrink in the background, the newest opens large
    time.sleep(2 * FEATURE_DELAY)
    gc.collect()
    server_side = [tracemalloc.Filter(False, "*/qwen_widgets/simulator/*")]
    after = tracemalloc.take_snapshot().filter_traces(server_side)
    held = sum(stat.size_diff for stat in after.compare_to(before.filter_traces(server_side), "filename"))
    tracemalloc.stop()
    thumbs = sum(len(picture.value) for card in panel.gallery.cards for tile in card.tiles.children
                 for picture in tile.children if isinstance(picture, ipywidgets.Image))
    return {"cards": count, "n": n, "kib_per_card": held / count / 1024,
            "thumbnail_kib_per_card": thumbs / count / 1024,
            "widgets_per_card": (len(ipywidgets.widgets.widget._instances) - widgets_before) / count,
            "seconds": time.perf_counter() - started}


def notebook_weight(n: int) -> dict:
    """Bytes a finished card of `n` images adds to a saved notebook, per image."""
    from ipywidgets.embed import dependency_state, embed_data

    engine = client()
    sizes = {}
    for images in (1, n):
        panel = qw.Panel(engine)
        panel.request = qw.ImageRequest("weight of a saved notebook", n=images)
        card = panel.generate()
        card.future.result(60)
        deadline = time.monotonic() + 60  # the newest card opens its first image large: in both
        while not (card.viewer is not None and card.viewer.picture.value) and time.monotonic() < deadline:
            time.sleep(0.05)
        copy = len(panel._static_page("0" * 16).encode())
        # this panel's widgets only (every widget of the process would count the first panel too)
        state = len(json.dumps(embed_data(views=[panel], state=dependency_state(panel))["manager_state"]))
        sizes[images] = (copy, state)
    per = lambda k: (sizes[n][k] - sizes[1][k]) / (n - 1)  # noqa: E731
    return {"static_bytes_per_image": per(0), "widget_state_bytes_per_image": per(1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cards", type=int, nargs="+", default=[100, 1000])
    parser.add_argument("--images", type=int, nargs="+", default=[1, 4])
    args = parser.parse_args()
    print("panel memory per finished card (tracemalloc, after the cards finished)")
    print(f"{'cards':>6} {'n':>3} {'KiB/card':>9} {'of which thumbnails':>20} {'widgets/card':>13} {'s':>6}")
    for count in args.cards:
        for n in args.images:
            row = memory_per_card(count, n)
            print(f"{row['cards']:>6} {row['n']:>3} {row['kib_per_card']:>9.1f} "
                  f"{row['thumbnail_kib_per_card']:>20.1f} {row['widgets_per_card']:>13.1f} "
                  f"{row['seconds']:>6.1f}")
    weight = notebook_weight(4)
    print("\nsaved notebook, per image: static copy "
          f"{weight['static_bytes_per_image'] / 1024:.1f} KiB (always saved); widget state "
          f"{weight['widget_state_bytes_per_image'] / 1024:.1f} KiB (only with 'Save widget state' on)")
    print("targets: <= 60 KiB per finished card at 1,000 cards; <= 40 KB per image saved")


if __name__ == "__main__":
    main()
