"""Short tasks, live: polls per task and detection delay for tasks of 3-6 s, eight at a time.

    python benchmarks/short_tasks.py [--tasks 40]

Issue 26 item 2's target: in each style of progress (smooth, coarse 0/50/100, none), at most
a third of the polls of a fixed 0.5 s loop, and a median detection delay of at most 0.5 s.
The simulator runs in real time on a loopback socket, as the live service would, answering
durations in whole seconds as the live service does; the client is the package's defaults.
Each style runs twice: with a fresh journal (the first dozen tasks, in flight before five have
finished, know nothing of the kind), and "learned", after the client watched 16 such tasks
(what the journal tells a new session about an account's usual work). The goal is judged on
the learned runs: it is about what the schedule does with the history it has. The fixed loop
runs the same seeded tasks, eight in flight at a time.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time

import qwen_widgets as qw
from qwen_widgets.engine import runner
from qwen_widgets.simulator import Simulator, serve
from qwen_widgets.store.journal import Journal

STYLES = ("linear", "coarse", "none")
DURATION, SPREAD = 4.25, 0.17  # 95% of tasks take 3.0-6.0 s
IN_FLIGHT = 8
KEY = "sk-benchmark-0123456789"


async def _watch(client: qw.QwenClient, prompts: list[str], fixed: float | None) -> dict[str, float]:
    """Generate `prompts`, IN_FLIGHT at a time; returns when each task was seen done."""
    gate, seen = asyncio.Semaphore(IN_FLIGHT), {}

    async def one(prompt: str) -> None:
        async with gate:
            task = await client.aio.submit(qw.ImageRequest(prompt))
            if fixed is None:
                task = await client.aio.wait(task)
            while not task.done:
                await asyncio.sleep(fixed)
                task = await client.aio.get_task(task.task_id)
            seen[task.task_id] = time.time()

    await asyncio.gather(*(one(prompt) for prompt in prompts))
    return seen


def run(style: str, tasks: int, seed: int, fixed: float | None = None, seen_before: int = 0) -> dict:
    simulator = Simulator(seed=seed, duration=DURATION, duration_spread=SPREAD, progress_style=style)
    with serve(simulator) as server, qw.QwenClient(KEY, base_url=server.url, journal=Journal(":memory:"),
                                                    keep_images=False) as client:
        if seen_before:
            runner.run(_watch(client, [f"an earlier sketch {i}" for i in range(seen_before)], fixed))
            simulator.log.clear()
        seen = runner.run(_watch(client, [f"a quick sketch {i}" for i in range(tasks)], fixed))
    polls = [sum(1 for entry in simulator.log if entry["path"] == f"/v1/tasks/{task_id}") for task_id in seen]
    delays = [at - simulator.completion_time(task_id) for task_id, at in seen.items()]
    durations = [task.duration for task in simulator.tasks.values()]
    return {"style": style, "strategy": "qwen_widgets" if fixed is None else f"fixed {fixed:g} s",
            "seen_before": seen_before, "tasks": tasks, "polls_per_task": statistics.mean(polls),
            "delay_median_s": statistics.median(delays),
            "duration_min_s": min(durations), "duration_max_s": max(durations)}


LEARNED_FROM = 16


def run_all(tasks: int = 40, seed: int = 26) -> dict:
    fixed = run("none", tasks, seed, fixed=0.5)  # a fixed loop ignores progress: one run serves every style
    rows = [run(style, tasks, seed, seen_before=seen) for style in STYLES for seen in (0, LEARNED_FROM)]
    for row in rows:
        row["polls_ratio"] = row["polls_per_task"] / fixed["polls_per_task"]
        row["met"] = row["polls_ratio"] <= 1 / 3 and row["delay_median_s"] <= 0.5
    return {"fixed": fixed, "rows": rows}


def print_table(result: dict) -> None:
    fixed = result["fixed"]
    print(f"   {result['rows'][0]['tasks']} tasks of {fixed['duration_min_s']:.1f}-{fixed['duration_max_s']:.1f} s, "
          f"{IN_FLIGHT} at a time; fixed 0.5 s loop: {fixed['polls_per_task']:.2f} polls/task, "
          f"median delay {fixed['delay_median_s']:.2f} s")
    for row in result["rows"]:
        journal = f"learned ({row['seen_before']} seen)" if row["seen_before"] else "fresh journal"
        verdict = ("met" if row["met"] else "MISSED") if row["seen_before"] else ("within" if row["met"] else "over")
        print(f"   {row['style']:<7} {journal:<19} {row['polls_per_task']:5.2f} polls/task = {row['polls_ratio']:.2f} "
              f"of the fixed loop (goal <= 0.33), median delay {row['delay_median_s']:.2f} s (goal <= 0.5): {verdict}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", type=int, default=40)
    parser.add_argument("--seed", type=int, default=26)
    args = parser.parse_args()
    print_table(run_all(args.tasks, args.seed))


if __name__ == "__main__":
    main()
