"""Polls per task and completion-to-detection delay, ours vs. the usual fixed schedules.

Runs against the simulator on a real loopback socket, seeded, with tasks like the real
service's (about 20 s, an `estimated_time` that overstates 1.5-3.5x), time-scaled so the
run is short. All figures are reported in unscaled seconds.

    python benchmarks/polling.py [--tasks 20] [--time-scale 0.2]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import pathlib
import statistics
import time

import qwen_widgets as qw
from qwen_widgets.simulator import Simulator, serve


def fixed(interval: float):
    return lambda polls: interval


def doubling(start: float, every: int, cap: float):
    """DashScope SDK: 1 s, doubling every 3 polls, up to 5 s."""
    return lambda polls: min(cap, start * 2 ** (polls // every))


STRATEGIES = {
    "qwen_widgets (adaptive)": None,
    "fixed 0.5 s (replicate-python)": fixed(0.5),
    "fixed 3 s (typical public code)": fixed(3.0),
    "1 s doubling /3 polls to 5 s (DashScope)": doubling(1.0, 3, 5.0),
}


async def run_strategy(name, interval_of, tasks: int, scale: float, seed: int) -> dict:
    simulator = Simulator(seed=seed, time_scale=scale)
    with serve(simulator) as server:
        client = qw.AsyncQwenClient(
            "bench", base_url=server.url, poll_schedule=qw.PollSchedule().scaled(scale),
            poll_budget=qw.PollBudget(10_000), journal=qw.Journal(":memory:"), keep_images=False,
        )
        async with client:
            async def one(i: int) -> tuple[int, float]:
                task = await client.submit(qw.ImageRequest(f"benchmark prompt {i}"))
                if interval_of is None:
                    final = await client.wait(task)
                else:
                    polls = 0
                    while True:
                        await asyncio.sleep(interval_of(polls) * scale)
                        final = await client.get_task(task.task_id)
                        polls += 1
                        if final.done:
                            break
                seen = time.time()
                path = f"/v1/tasks/{task.task_id}"
                n_polls = sum(1 for e in simulator.log if e["path"] == path)
                return n_polls, (seen - simulator.completion_time(task.task_id)) / scale

            results = await asyncio.gather(*(one(i) for i in range(tasks)))
    polls = [p for p, _ in results]
    delays = [d for _, d in results]
    return {
        "strategy": name,
        "polls_median": statistics.median(polls),
        "polls_p95": _p95(polls),
        "delay_median_s": statistics.median(delays),
        "delay_p95_s": _p95(delays),
    }


def _p95(values):
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", type=int, default=20)
    parser.add_argument("--time-scale", type=float, default=0.2)
    parser.add_argument("--seed", type=int, default=2026)
    parser.add_argument("--json", default="benchmarks/results/polling.json")
    args = parser.parse_args()
    rows = [asyncio.run(run_strategy(name, fn, args.tasks, args.time_scale, args.seed))
            for name, fn in STRATEGIES.items()]
    header = f"{'strategy':<42} {'polls/task med':>14} {'p95':>5} {'delay med (s)':>13} {'p95':>6}"
    print(header)
    print("-" * len(header))
    for r in rows:
        print(f"{r['strategy']:<42} {r['polls_median']:>14.1f} {r['polls_p95']:>5} "
              f"{r['delay_median_s']:>13.2f} {r['delay_p95_s']:>6.2f}")
    ours, half = rows[0], rows[1]
    print(f"\npolls vs fixed 0.5 s: {ours['polls_median'] / half['polls_median']:.2f} (target <= 0.33); "
          f"median delay vs fixed 3 s: {ours['delay_median_s']:.2f} s vs {rows[2]['delay_median_s']:.2f} s")
    out = pathlib.Path(args.json)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"tasks": args.tasks, "time_scale": args.time_scale, "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
