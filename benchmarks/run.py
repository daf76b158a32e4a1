"""The benchmark suite: `python benchmarks/run.py` prints a table and writes JSON.

Everything runs against the simulator on a loopback socket, seeded, with tasks like the real
service's (about 20 s, an estimate that overstates 1.5-3.5x), time-scaled so the whole run
takes a few minutes. Durations and rates are reported in unscaled (real-service) units.

1. polling strategies on the same tasks (see polling.py)
2. sweep makespan against its lower bound, and the one-at-a-time loop
3. scale: 1,000 tasks through one process under a 20 requests/s rate limit
4. startup cost and notebook weight
"""

from __future__ import annotations

import argparse
import asyncio
import heapq
import json
import pathlib
import resource
import statistics
import subprocess
import sys
import time
import warnings

import httpx

sys.path.insert(0, str(pathlib.Path(__file__).parent))
import polling  # noqa: E402  (the strategies benchmark, a sibling script)

import qwen_widgets as qw  # noqa: E402
from qwen_widgets import _runner  # noqa: E402
from qwen_widgets._sweep import Sweep, SweepPlan  # noqa: E402
from qwen_widgets.simulator import Simulator, serve  # noqa: E402


def client_for(server, scale: float, transport=None, budget_per_s: float = 10.0) -> qw.QwenClient:
    """A client whose schedule and budget are scaled like the simulator's clock."""
    return qw.QwenClient(
        "bench-key", base_url=server.url, transport=transport,
        poll_schedule=qw.PollSchedule().scaled(scale), poll_budget=qw.PollBudget(budget_per_s / scale),
        journal=qw.Journal(":memory:"), keep_images=False,
    )


# -- 2. sweep makespan ----------------------------------------------------------------------------


def lower_bound(durations: list[float], slots: int) -> float:
    """Makespan if each slot took its next task the instant the previous one finished."""
    free = [0.0] * slots
    end = 0.0
    for duration in durations:
        start = heapq.heappop(free)
        end = max(end, start + duration)
        heapq.heappush(free, start + duration)
    return end


def sweep_makespan(scale: float, tasks: int = 48, concurrency: int = 16) -> dict:
    simulator = Simulator(seed=2026, time_scale=scale)
    with serve(simulator) as server:
        client = client_for(server, scale)
        sweep = Sweep(client, SweepPlan.of({"prompt": [f"sweep prompt {i}" for i in range(tasks)]}, max_images=tasks), concurrency=concurrency)
        started = time.time()
        sweep.start().wait()
        makespan = time.time() - started
        durations = [simulator.tasks[t.task_id].duration for t in sweep.tasks]

        loop_tasks, loop_started = 6, time.time()  # the vendor examples' loop: submit, sleep 3 s, poll
        for i in range(loop_tasks):
            task = client.submit(qw.ImageRequest(f"one at a time {i}"))
            while not task.done:
                time.sleep(3.0 * scale)
                task = client.get_task(task.task_id)
        loop_elapsed = time.time() - loop_started
        client.close()
    bound = lower_bound(durations, concurrency)
    return {
        "tasks": tasks, "concurrency": concurrency,
        "makespan_s": makespan / scale, "lower_bound_s": bound / scale, "ratio": makespan / bound,
        "sweep_tasks_per_min": tasks / (makespan / scale / 60),
        "loop_tasks_per_min": loop_tasks / (loop_elapsed / scale / 60),
    }


# -- 3. scale ---------------------------------------------------------------------------------------


class CountingTransport(httpx.AsyncBaseTransport):
    """Records when each API request left and what status came back (client side)."""

    def __init__(self):
        self.inner = httpx.AsyncHTTPTransport()
        self.sent: list[tuple[float, str, int]] = []

    async def handle_async_request(self, request):
        sent_at = time.monotonic()
        response = await self.inner.handle_async_request(request)
        self.sent.append((sent_at, request.method, response.status_code))
        return response

    async def aclose(self):
        await self.inner.aclose()


def busiest_window(times: list[float], width: float) -> int:
    times = sorted(times)
    best, start = 0, 0
    for end, t in enumerate(times):
        while t - times[start] >= width:
            start += 1
        best = max(best, end - start + 1)
    return best


def scale_run(scale: float, tasks: int = 1000, limit_per_s: float = 20.0, budget_per_s: float = 10.0) -> dict:
    simulator = Simulator(seed=99, time_scale=scale, rate_limit=limit_per_s / scale)
    with serve(simulator) as server:
        transport = CountingTransport()
        client = client_for(server, scale, transport=transport, budget_per_s=budget_per_s)
        sweep = Sweep(client, SweepPlan.of({"prompt": [f"load {i}" for i in range(tasks)]}, max_images=tasks), concurrency=tasks)
        seen: dict[int, float] = {}
        sweep.on_change(lambda i: sweep.results[i] is not None and seen.setdefault(i, time.time()))
        cpu_before = _runner.run(_thread_cpu())
        started = time.time()
        sweep.start().wait()
        elapsed = time.time() - started
        cpu = _runner.run(_thread_cpu()) - cpu_before
        client.close()
    polls = [t for t, method, _ in transport.sent if method == "GET"]
    delays = [(seen[i] - simulator.completion_time(t.task_id)) / scale
              for i, t in enumerate(sweep.results) if t is not None and i in seen]
    return {
        "tasks": tasks, "completed": len(sweep.tasks), "elapsed_s": elapsed / scale,
        # each task needs a submit and at least one poll, all through the budget
        "budget_bound_s": 2 * tasks / budget_per_s,
        "budget_per_s": budget_per_s, "server_limit_per_s": limit_per_s,
        "peak_requests_per_s": busiest_window([t for t, _, _ in transport.sent], scale),
        "peak_polls_per_s": busiest_window(polls, scale),
        "responses_429": sum(1 for _, _, status in transport.sent if status == 429),
        "polls_per_task": len(polls) / tasks,
        "cpu_ms_per_request": 1000 * cpu / len(transport.sent),
        "detection_delay_median_s": statistics.median(delays),
        "detection_delay_p95_s": polling._p95(delays),
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


async def _thread_cpu() -> float:
    return time.thread_time()  # CPU of the private loop's thread: the client's own work


# -- 4. startup and weight ------------------------------------------------------------------------


def import_time(statement: str, runs: int = 7) -> float:
    code = f"import time; t = time.perf_counter(); {statement}; print(time.perf_counter() - t)"
    return statistics.median(float(subprocess.run([sys.executable, "-c", code], capture_output=True,
                                                  text=True, check=True).stdout) for _ in range(runs))


def notebook_weight() -> dict:
    """Bytes of saved widget state a card adds per image shown (thumbnails, not full images)."""
    from ipywidgets.embed import embed_data

    sizes = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", qw.DemoModeWarning)
        client = qw.QwenClient(simulator=Simulator(seed=3, time_scale=0.01),
                               poll_schedule=qw.PollSchedule().scaled(0.01))
    for n in (1, 6):
        card = qw.Card(client, request=qw.ImageRequest("weight of a saved notebook", n=n))
        card.start_generation(card.request).result(60)
        sizes[n] = len(json.dumps(embed_data(views=[card])["manager_state"]))
    return {"bytes_per_image": (sizes[6] - sizes[1]) / 5, "card_bytes_n1": sizes[1]}


def startup() -> dict:
    ours = import_time("import qwen_widgets")
    base = import_time("import ipywidgets, httpx")
    heavy = subprocess.run([sys.executable, "-c", "import sys, qwen_widgets; print(sorted(m for m in "
                            "('pandas', 'PIL', 'ipywidgets') if m in sys.modules))"],
                           capture_output=True, text=True, check=True).stdout.strip()
    return {"import_s": ours, "ipywidgets_httpx_import_s": base, "ratio": ours / base,
            "heavy_modules_imported": heavy}


# -- the table --------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--json", default="benchmarks/results/benchmarks.json")
    parser.add_argument("--scale-tasks", type=int, default=1000)
    args = parser.parse_args()
    started = time.time()
    strategies = [asyncio.run(polling.run_strategy(name, fn, 20, 0.2, 2026))
                  for name, fn in polling.STRATEGIES.items()]
    makespan = sweep_makespan(0.1)
    load = scale_run(0.2, tasks=args.scale_tasks)
    start = {**startup(), **notebook_weight()}
    results = {"strategies": strategies, "sweep": makespan, "scale": load, "startup": start,
               "wall_s": time.time() - started}

    print("1. Polling strategies (20 tasks of ~20 s, estimate overstated 1.5-3.5x)")
    print(f"   {'strategy':<42} {'polls/task med':>14} {'p95':>5} {'delay med (s)':>13} {'p95':>6}")
    for r in strategies:
        print(f"   {r['strategy']:<42} {r['polls_median']:>14.1f} {r['polls_p95']:>5} "
              f"{r['delay_median_s']:>13.2f} {r['delay_p95_s']:>6.2f}")
    ours, half, three = strategies[0], strategies[1], strategies[2]
    print(f"   polls vs fixed 0.5 s: {ours['polls_median'] / half['polls_median']:.2f} (target <= 0.33); "
          f"median delay {ours['delay_median_s']:.2f} s vs fixed 3 s {three['delay_median_s']:.2f} s "
          f"(target: no worse)")
    m = makespan
    print(f"\n2. Sweep: {m['tasks']} tasks, concurrency {m['concurrency']}: makespan {m['makespan_s']:.1f} s, "
          f"lower bound {m['lower_bound_s']:.1f} s, ratio {m['ratio']:.3f} (target <= 1.10)")
    print(f"   throughput: sweep {m['sweep_tasks_per_min']:.1f} tasks/min; one-at-a-time loop "
          f"(submit, poll every 3 s) {m['loop_tasks_per_min']:.1f} tasks/min")
    s = load
    print(f"\n3. Scale: {s['tasks']} tasks in flight, server limit {s['server_limit_per_s']:g} req/s, "
          f"budget {s['budget_per_s']:g} req/s: {s['completed']} completed in {s['elapsed_s']:.0f} s "
          f"(the budget alone needs {s['budget_bound_s']:.0f} s: a submit and a poll per task)")
    print(f"   peak requests in any sliding second, measured at send time {s['peak_requests_per_s']} "
          f"(polls {s['peak_polls_per_s']}; slots are 1/budget apart, the excess is event-loop jitter), "
          f"429 responses {s['responses_429']}, polls/task {s['polls_per_task']:.1f}, "
          f"client CPU {s['cpu_ms_per_request']:.2f} ms/request, peak RSS {s['peak_rss_mb']:.0f} MB")
    print(f"   detection delay under load: median {s['detection_delay_median_s']:.1f} s, "
          f"p95 {s['detection_delay_p95_s']:.1f} s (tasks queue for the budget, not for the schedule)")
    st = start
    print(f"\n4. Startup: import qwen_widgets {1000 * st['import_s']:.0f} ms vs ipywidgets+httpx "
          f"{1000 * st['ipywidgets_httpx_import_s']:.0f} ms: ratio {st['ratio']:.2f} (target <= 1.3); "
          f"heavy modules imported: {st['heavy_modules_imported']}")
    print(f"   saved notebook grows {st['bytes_per_image'] / 1024:.1f} KiB per image shown in the gallery")
    print(f"\nwhole run: {results['wall_s']:.0f} s")
    out = pathlib.Path(args.json)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
