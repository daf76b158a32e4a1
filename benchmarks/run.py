"""The benchmark suite: `python benchmarks/run.py` prints a table and writes JSON.

1. polling strategies under three styles of progress (see polling.py): the engine on a fake
   clock, exact whatever the machine's load; and short tasks of 3-6 s, live on a loopback
   socket, eight at a time (short_tasks.py)
2. a 48-task sweep at the default settings against a fixed-3 s loop at the same concurrency,
   both against the lower bound (each task sent at its first budget slot, seen the instant
   it ends)
3. scale: 1,000 tasks through one process at the default budget, under a 20 requests/s
   server limit, for each of five seeds: first result, time to results, detection delay,
   429s, beside an oracle at the same budget (each slot polls the earliest finished task
   nobody has seen yet, else submits the next; every task polled once, the instant it ends)
4. startup cost, notebook weight, journal open time at 10,000 rows
5. memory per finished card in the panel at 1,000 cards (panel_memory.py)
6. moving big files (transfer_memory.py: an export of 200 images of 6 MB, an upload of a
   14 MB PNG) and the history at 100,000 rows (history.py)
7. the whole test suite in four workers (about 6 minutes; `--no-suite` skips it)

Sections 2 and 3 run against the simulator on a loopback socket, seeded, time-scaled so the
run takes a few minutes; durations are reported in unscaled (real-service) seconds. The run
ends with issue 26's goals side by side: each figure, its goal, its ratio to the goal's
yardstick, met or missed.
"""

from __future__ import annotations

import argparse
import asyncio
import heapq
import json
import math
import pathlib
import re
import tempfile
import resource
import statistics
import subprocess
import sys
import textwrap
import time
import warnings

import httpx

sys.path.insert(0, str(pathlib.Path(__file__).parent))
import polling  # noqa: E402  (the strategies benchmark, a sibling script)
import short_tasks  # noqa: E402
import transfer_memory  # noqa: E402
import history as history_benchmark  # noqa: E402

import qwen_widgets as qw  # noqa: E402
from qwen_widgets.engine import runner as _runner  # noqa: E402
from qwen_widgets.engine.sweep import Sweep, SweepPlan  # noqa: E402
from qwen_widgets.simulator import Simulator, serve  # noqa: E402
from qwen_widgets.store.journal import Journal  # noqa: E402


def client_for(server, scale: float, transport=None, budget: qw.RequestBudget | None = None,
               journal: Journal | None = None) -> qw.QwenClient:
    """A client whose schedule and budget are scaled like the simulator's clock: the
    package's defaults, in real-service seconds."""
    budget = budget or qw.RequestBudget(qw.RequestBudget().max_rate / scale)
    return qw.QwenClient(
        "bench-key", base_url=server.url, transport=transport,
        poll_schedule=qw.PollSchedule().scaled(scale), poll_budget=budget,
        journal=journal or Journal(":memory:"), keep_images=False,
    )


# -- 2. sweep makespan ----------------------------------------------------------------------------


def lower_bound(durations: list[float], rate: float) -> float:
    """Makespan if every task were sent at its budget slot and seen the instant it ended."""
    return max(i / rate + duration for i, duration in enumerate(durations))


async def fixed_loop(client: qw.QwenClient, prompts: list[str], concurrency: int, interval: float) -> None:
    """The vendor examples' loop at a sweep's concurrency: submit, sleep, poll, repeat."""
    gate = asyncio.Semaphore(concurrency)

    async def one(prompt: str) -> None:
        async with gate:
            task = await client.aio.submit(qw.ImageRequest(prompt))
            while not task.done:
                await asyncio.sleep(interval)
                task = await client.aio.get_task(task.task_id)

    await asyncio.gather(*(one(prompt) for prompt in prompts))


def sweep_makespan(scale: float, tasks: int = 48) -> dict:
    rows = {}
    for name in ("sweep at the defaults", "fixed 3 s loop, same concurrency"):
        simulator = Simulator(seed=2026, time_scale=scale, rate_limit=20 / scale)
        with serve(simulator) as server:
            client = client_for(server, scale)
            prompts = [f"sweep prompt {i}" for i in range(tasks)]
            sweep = Sweep(client, SweepPlan.of({"prompt": prompts}, max_images=tasks))
            concurrency = sweep.concurrency
            started = time.time()
            if name.startswith("sweep"):
                sweep.start().wait()
            else:
                _runner.run(fixed_loop(client, prompts, concurrency, 3.0 * scale))
            makespan = time.time() - started
            durations = [task.duration for task in simulator.tasks.values()]
            client.close()
        bound = lower_bound(durations, qw.RequestBudget().max_rate / scale)
        rows[name] = {"tasks": tasks, "concurrency": concurrency, "makespan_s": makespan / scale,
                      "lower_bound_s": bound / scale, "ratio": makespan / bound}
    return rows


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


def oracle(durations: list[float], rate: float) -> dict:
    """Times to result of the best that polling can do at `rate`: each slot polls the
    earliest finished task nobody has seen yet, else submits the next task (durations in
    submit order); every task is polled exactly once, the instant it can be."""
    finished: list[float] = []  # a heap of finishing times of submitted, unseen tasks
    results: list[float] = []
    slot, submitted = 0, 0
    while len(results) < len(durations):
        now = slot / rate
        if finished and finished[0] <= now:
            heapq.heappop(finished)
            results.append(now)
        elif submitted < len(durations):
            heapq.heappush(finished, now + durations[submitted])
            submitted += 1
        else:  # nothing to do until the next task ends
            slot = max(slot, math.ceil(finished[0] * rate)) - 1
        slot += 1
    return {"first_result_s": results[0], "median_time_to_result_s": statistics.median(results),
            "makespan_s": results[-1]}


def scale_run(scale: float, tasks: int = 1000, limit_per_s: float = 20.0, seen_before: int = 0,
              seed: int = 1) -> dict:
    """`seen_before`: tasks of the same kind the journal already holds (0: a fresh journal,
    which must learn durations from the run's own first results)."""
    simulator = Simulator(seed=seed, time_scale=scale, rate_limit=limit_per_s / scale)
    budget = qw.RequestBudget(qw.RequestBudget().max_rate / scale)
    journal = Journal(":memory:")
    with serve(simulator) as server:
        if seen_before:
            with client_for(server, scale, journal=journal) as earlier:
                prompts = {"prompt": [f"earlier {i}" for i in range(seen_before)]}
                Sweep(earlier, SweepPlan.of(prompts, max_images=seen_before)).start().wait()
        transport = CountingTransport()
        client = client_for(server, scale, transport=transport, budget=budget, journal=journal)
        sweep = Sweep(client, SweepPlan.of({"prompt": [f"load {i}" for i in range(tasks)]}, max_images=tasks),
                      concurrency=tasks)
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
    to_result = sorted((at - started) / scale for at in seen.values())
    rate = budget.max_rate * scale
    durations = [simulator.tasks[t.task_id].duration / scale for t in sweep.results if t is not None]
    in_submit_order = [task.duration / scale for task in list(simulator.tasks.values())[seen_before:]]
    return {
        "seed": seed, "oracle": oracle(in_submit_order, rate),
        "tasks": tasks, "seen_before": seen_before, "completed": len(sweep.tasks), "makespan_s": elapsed / scale,
        "first_result_s": to_result[0], "median_time_to_result_s": statistics.median(to_result),
        # a submit and one poll per task, at the budget's rate, each poll the instant it ends
        "requests_bound_s": 2 * tasks / rate,
        "first_result_bound_s": min(durations),
        "budget_per_s": rate, "server_limit_per_s": limit_per_s, "budget_throttles": budget.throttles,
        "peak_requests_per_s": busiest_window([t for t, _, _ in transport.sent], scale),
        "responses_429": sum(1 for _, _, status in transport.sent if status == 429),
        "polls_per_task": len(polls) / tasks,
        "cpu_ms_per_request": 1000 * cpu / len(transport.sent),
        "detection_delay_median_s": statistics.median(delays),
        "detection_delay_p95_s": polling.p95(delays),
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


async def _thread_cpu() -> float:
    return time.thread_time()  # CPU of the private loop's thread: the client's own work


# -- 4. startup and weight ------------------------------------------------------------------------


def import_times(statements: tuple[str, ...], runs: int = 11) -> list[float]:
    """Median seconds each statement takes in a fresh interpreter, the statements taking turns
    run by run, so a busy moment of the machine falls on both sides alike."""
    code = "import time; t = time.perf_counter(); {}; print(time.perf_counter() - t)".format
    times: list[list[float]] = [[] for _ in statements]
    for _ in range(runs):
        for index, statement in enumerate(statements):
            times[index].append(float(subprocess.run([sys.executable, "-c", code(statement)], capture_output=True,
                                                     text=True, check=True).stdout))
    return [statistics.median(each) for each in times]


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
    ours, base = import_times(("import qwen_widgets", "import ipywidgets, httpx"))
    heavy = subprocess.run([sys.executable, "-c", "import sys, qwen_widgets; print(sorted(m for m in "
                            "('pandas', 'PIL', 'ipywidgets') if m in sys.modules))"],
                           capture_output=True, text=True, check=True).stdout.strip()
    return {"import_s": ours, "ipywidgets_httpx_import_s": base, "ratio": ours / base,
            "heavy_modules_imported": heavy}


# -- the table --------------------------------------------------------------------------------------


def journal_open(rows: int = 10_000) -> dict:
    """Opening the journal and asking for unfinished work, as a Panel or %load_ext does."""
    import tempfile

    with tempfile.TemporaryDirectory() as folder:
        journal = Journal(pathlib.Path(folder) / "journal.sqlite")
        request = qw.ImageRequest("a journaled fox")
        for i in range(rows):
            state = qw.TaskStatus.COMPLETED if i % 50 else qw.TaskStatus.PROCESSING
            journal.record(qw.Task(f"task_{i:06d}", state, request=request), "https://api.example")
        journal.close()
        times = []
        for _ in range(7):
            started = time.perf_counter()
            opened = Journal(pathlib.Path(folder) / "journal.sqlite")
            opened.settle_orphans()
            waiting = opened.open_work("https://api.example").unfinished
            times.append(time.perf_counter() - started)
            opened.close()
    return {"rows": rows, "open_and_unfinished_s": statistics.median(times), "unfinished": len(waiting)}


def panel_memory() -> dict | None:
    """The widgets' own measurement (benchmarks/panel_memory.py), when it is there: its table,
    and KiB per finished card at 1,000 cards for each number of images."""
    script = pathlib.Path(__file__).with_name("panel_memory.py")
    if not script.exists():
        return None
    done = subprocess.run([sys.executable, str(script), "--cards", "1000"], capture_output=True, text=True)
    if done.returncode != 0:
        return {"error": done.stderr[-300:]}
    # its rows: cards, n, KiB per card, ...
    per_card = {int(n): float(kib) for n, kib in re.findall(r"^\s*1000\s+(\d+)\s+([\d.]+)\s", done.stdout, re.M)}
    return {"table": done.stdout, "kib_per_card": per_card}


def transfers() -> dict:
    """Issue 26 items 3-4 (benchmarks/transfer_memory.py): memory added by an export of 200
    images of 6 MB, and by an upload of a 14 MB PNG."""
    with tempfile.TemporaryDirectory() as folder:
        export = transfer_memory.measure_export(pathlib.Path(folder), 200, 6.0)
    with tempfile.TemporaryDirectory() as folder:
        upload = transfer_memory.measure_upload(pathlib.Path(folder), 14.0)
    return {"export": export, "upload": upload}


def history(rows: int = 100_000, repeat: int = 3) -> dict:
    """Issue 26 item 6 and issue 28 item 8 (benchmarks/history.py): `qw.history()` with `rows`
    generations in the journal, the History tab's first page and a search, and their memory."""
    lines: list[str] = []
    figures = history_benchmark.measure(rows, repeat, say=lines.append)
    return {**figures, "table": "\n".join(lines)}


def test_suite() -> dict:
    """Issue 26 item 7: the whole test suite in four workers (`python -m pytest -n 4`; the
    README's command runs one process), wall seconds and what pytest says it ran."""
    repo = pathlib.Path(__file__).resolve().parents[1]
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-n", "4", "-p", "no:cacheprovider"], cwd=repo,
                          capture_output=True, text=True)
    wall = time.perf_counter() - started
    summary = done.stdout.strip().splitlines()[-1] if done.stdout.strip() else done.stderr[-300:]
    return {"wall_s": wall, "summary": summary, "passed": done.returncode == 0}


def scale_runs(seeds: list[int], tasks: int, seen_before: int) -> dict:
    """Section 3 for each seed; the medians over seeds of ours and of the oracle."""
    runs = [scale_run(0.5, tasks=tasks, seen_before=seen_before, seed=seed) for seed in seeds]
    median = lambda f: statistics.median(f(run) for run in runs)  # noqa: E731
    return {"runs": runs, "seeds": seeds, "median": {
        key: median(lambda run, key=key: run[key]) for key in (
            "first_result_s", "median_time_to_result_s", "makespan_s", "detection_delay_median_s",
            "polls_per_task", "responses_429", "peak_requests_per_s")},
        "oracle": {key: median(lambda run, key=key: run["oracle"][key]) for key in (
            "first_result_s", "median_time_to_result_s", "makespan_s")}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--json", default="benchmarks/results/benchmarks.json")
    parser.add_argument("--scale-tasks", type=int, default=1000)
    parser.add_argument("--seeds", type=int, default=5, help="section 3: how many seeds (1, 2, ...)")
    parser.add_argument("--no-suite", action="store_true", help="skip section 7, the test suite (about 6 minutes)")
    parser.add_argument("--seen-before", type=int, default=0,
                        help="section 3: tasks of the same kind already in the journal (default: a fresh one)")
    args = parser.parse_args()
    started = time.time()
    strategies = polling.run_all(120, 2026)
    short = short_tasks.run_all()
    sweeps = sweep_makespan(0.1)
    load = scale_runs(list(range(1, args.seeds + 1)), args.scale_tasks, args.seen_before)
    start = {**startup(), **notebook_weight(), "journal": journal_open(), "panel": panel_memory()}
    results = {"strategies": strategies, "short": short, "sweeps": sweeps, "scale": load, "startup": start,
               "transfers": transfers(), "history": history(), "suite": None if args.no_suite else test_suite()}
    results["wall_s"] = time.time() - started
    print_report(results)
    out = pathlib.Path(args.json)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2))


def goals(results: dict) -> list[tuple[str, str, str, float | None, bool | None]]:
    """Issue 26's goals: (item, figure, goal, ratio to the goal's yardstick, met)."""
    rows = []
    s, o = results["scale"]["median"], results["scale"]["oracle"]
    median = s["median_time_to_result_s"] / o["median_time_to_result_s"]
    first = s["first_result_s"] / o["first_result_s"]
    rows.append(("1 scale, median time to result", f"{s['median_time_to_result_s']:.1f} s (oracle "
                 f"{o['median_time_to_result_s']:.1f} s)", "<= 1.10x the oracle", median, median <= 1.10))
    rows.append(("1 scale, first result", f"{s['first_result_s']:.1f} s (oracle {o['first_result_s']:.1f} s)",
                 "<= 1.20x the oracle", first, first <= 1.20))
    fixed = results["short"]["fixed"]["polls_per_task"]
    for row in results["short"]["rows"]:
        if row["seen_before"]:
            rows.append((f"2 short tasks, {row['style']}", f"{row['polls_per_task']:.2f} polls vs {fixed:.2f}, "
                         f"delay {row['delay_median_s']:.2f} s", "<= 0.33x the fixed 0.5 s loop, delay <= 0.5 s",
                         row["polls_ratio"], row["met"]))
    export, upload = results["transfers"]["export"], results["transfers"]["upload"]
    rows.append(("3 export of 200 x 6 MB", f"+{export['peak_mb']:.1f} MB", "<= 64 MB added",
                 export["peak_mb"] / 64, export["peak_mb"] <= 64))
    ratio = upload["peak_mb"] / upload["file_mb"]
    rows.append(("4 upload of a 14 MB PNG", f"+{upload['peak_mb']:.1f} MB", "<= 1.2x the file", ratio / 1.2,
                 ratio <= 1.2))
    panel = results["startup"]["panel"] or {}
    for n, kib in sorted(panel.get("kib_per_card", {}).items()):
        rows.append((f"5 a finished card, n={n}, at 1,000 cards", f"{kib:.1f} KiB", "<= 60 KiB", kib / 60, kib <= 60))
    if not panel.get("kib_per_card"):
        rows.append(("5 a finished card at 1,000 cards", "not measured", "<= 60 KiB", None, None))
    h = results["history"]
    rows.append((f"6 qw.history() at {h['rows']:,} rows", f"{h['frame_s']:.2f} s", "<= 0.5 s", h["frame_s"] / 0.5,
                 h["frame_s"] <= 0.5))
    rows.append(("6 the history view's first page", f"{h['first_page_s']:.3f} s", "<= 0.3 s",
                 h["first_page_s"] / 0.3, h["first_page_s"] <= 0.3))
    rows.append((f"6 a search ({h['found']:,} found)", f"{h['search_s']:.3f} s", "<= 0.2 s",
                 h["search_s"] / 0.2, h["search_s"] <= 0.2))
    grew = h["peak_kib"][h["rows"]]["first_page_kib"] / h["peak_kib"][h["rows"] // 10]["first_page_kib"]
    rows.append(("6 first page's memory, 10x the rows", f"x{grew:.2f}", "does not grow", None, grew <= 1.25))
    suite = results.get("suite")
    if suite:
        rows.append(("7 the test suite", f"{suite['wall_s']:.0f} s ({'passed' if suite['passed'] else 'FAILED'})",
                     "<= 240 s", suite["wall_s"] / 240, suite["wall_s"] <= 240))
    else:
        rows.append(("7 the test suite", "not run (--no-suite)", "<= 240 s", None, None))
    return rows


def print_report(results: dict) -> None:
    print("1. Polling strategies (120 tasks of ~20 s per row, estimate overstated 1.5-3.5x; engine on a fake clock)")
    polling.print_table(results["strategies"])
    print("\n   Short tasks, live on a loopback socket (benchmarks/short_tasks.py)")
    short_tasks.print_table(results["short"])
    print("\n2. A 48-task sweep, default settings, 20 req/s server limit")
    print(f"   {'run':<36} {'concurrency':>11} {'makespan (s)':>12} {'lower bound (s)':>15} {'ratio':>6}")
    for name, m in results["sweeps"].items():
        print(f"   {name:<36} {m['concurrency']:>11} {m['makespan_s']:>12.1f} {m['lower_bound_s']:>15.1f} "
              f"{m['ratio']:>6.2f}")
    ours = results["sweeps"]["sweep at the defaults"]
    print(f"   target: sweep makespan <= 1.15 x its lower bound: {'met' if ours['ratio'] <= 1.15 else 'MISSED'}")
    scale = results["scale"]
    first = scale["runs"][0]
    print(f"\n3. Scale: {first['tasks']} tasks in flight, default budget {first['budget_per_s']:g} req/s, "
          f"server limit {first['server_limit_per_s']:g} req/s, {first['seen_before']} tasks in the journal before; "
          f"seeds {', '.join(map(str, scale['seeds']))}; the oracle at the same budget")
    print(f"   {'seed':>4} {'first (s)':>9} {'oracle':>7} {'median (s)':>10} {'oracle':>7} {'makespan':>8} "
          f"{'oracle':>7} {'delay med':>9} {'polls/task':>10} {'429s':>5} {'peak/s':>6}")
    for run in scale["runs"]:
        o = run["oracle"]
        print(f"   {run['seed']:>4} {run['first_result_s']:>9.1f} {o['first_result_s']:>7.1f} "
              f"{run['median_time_to_result_s']:>10.1f} {o['median_time_to_result_s']:>7.1f} {run['makespan_s']:>8.1f} "
              f"{o['makespan_s']:>7.1f} {run['detection_delay_median_s']:>9.2f} {run['polls_per_task']:>10.2f} "
              f"{run['responses_429']:>5} {run['peak_requests_per_s']:>6}")
    m, o = scale["median"], scale["oracle"]
    print(f"   {'med':>4} {m['first_result_s']:>9.1f} {o['first_result_s']:>7.1f} "
          f"{m['median_time_to_result_s']:>10.1f} {o['median_time_to_result_s']:>7.1f} {m['makespan_s']:>8.1f} "
          f"{o['makespan_s']:>7.1f} "
          f"{m['detection_delay_median_s']:>9.2f} {m['polls_per_task']:>10.2f} {m['responses_429']:>5g} "
          f"{m['peak_requests_per_s']:>6g}")
    print(f"   client CPU {statistics.median(r['cpu_ms_per_request'] for r in scale['runs']):.2f} ms/request, "
          f"budget lowered by 429s {sum(r['budget_throttles'] for r in scale['runs'])} times in all, "
          f"peak RSS {max(r['peak_rss_mb'] for r in scale['runs']):.0f} MB")
    st = results["startup"]
    print(f"\n4. Startup: import qwen_widgets {1000 * st['import_s']:.0f} ms vs ipywidgets+httpx "
          f"{1000 * st['ipywidgets_httpx_import_s']:.0f} ms: ratio {st['ratio']:.2f} (target <= 1.3); "
          f"heavy modules imported: {st['heavy_modules_imported']}")
    print(f"   saved notebook grows {st['bytes_per_image'] / 1024:.1f} KiB per image shown in the gallery")
    j = st["journal"]
    print(f"   journal open + unfinished at {j['rows']:,} rows: {1000 * j['open_and_unfinished_s']:.1f} ms "
          f"(target <= 20 ms: {'met' if j['open_and_unfinished_s'] <= 0.020 else 'MISSED'})")
    if st["panel"]:
        print("\n5. Panel (benchmarks/panel_memory.py --cards 1000)")
        print(textwrap.indent(st["panel"].get("table") or st["panel"]["error"], "   "))
    t, h = results["transfers"], results["history"]
    print("\n6. Big files and a long history (benchmarks/transfer_memory.py, benchmarks/history.py)")
    export = t["export"]
    print(f"   export of {export['images']} images of {export['image_mb']:g} MB ({export['zip_mb']:.0f} MB zip, "
          f"{export['seconds']:.1f} s): peak added {export['peak_mb']:.1f} MB")
    print(f"   upload of a {t['upload']['file_mb']:.1f} MB PNG: peak added {t['upload']['peak_mb']:.1f} MB")
    print(textwrap.indent(h["table"], "   "))
    if results.get("suite"):
        print(f"\n7. The test suite (python -m pytest -n 4): {results['suite']['wall_s']:.0f} s; "
              f"{results['suite']['summary']}")
    print("\nIssue 26's goals, side by side (ratio: the figure over the goal's yardstick; <= 1 meets it)")
    print(f"   {'item':<40} {'figure':<44} {'goal':<44} {'ratio':>6}   verdict")
    for item, figure, goal, ratio, met in goals(results):
        shown = "" if ratio is None else f"{ratio:.2f}"
        verdict = "not measured" if met is None else ("met" if met else "MISSED")
        print(f"   {item:<40} {figure:<44} {goal:<44} {shown:>6}   {verdict}")
    print(f"\nwhole run: {results['wall_s']:.0f} s")


if __name__ == "__main__":
    main()
