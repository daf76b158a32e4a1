"""Nothing paid for is lost when a process dies: real subprocesses, killed with SIGKILL.

The simulator runs on a loopback socket in this process; the generating process and the
resuming process are separate Python processes sharing only QWEN_WIDGETS_HOME.
"""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import time

import pytest
from PIL import Image

import qwen_widgets as qw
from qwen_widgets.simulator import Simulator, serve
from qwen_widgets.store.journal import Journal

from ..conftest import TEST_KEY

pytestmark = pytest.mark.e2e  # slow: a real kernel, browser, venv or killed process (pytest -m 'not e2e' skips them)

GENERATE = """
import qwen_widgets as qw
client = qw.QwenClient(poll_schedule=qw.PollSchedule().scaled(0.05))
client.generate("a fox, interrupted", n=6,
                on_update=lambda t: print("STATE", t.task_id, t.status.value, flush=True))
print("FINISHED", flush=True)
"""
RESUME = """
import json, qwen_widgets as qw
client = qw.QwenClient(poll_schedule=qw.PollSchedule().scaled(0.05))
tasks = client.resume()
print("RESUMED", json.dumps([{"task_id": t.task_id, "status": t.status.value,
                              "images": [str(i.local_path) for i in t.images]} for t in tasks]))
"""


@pytest.fixture
def world(tmp_path):
    """A loopback simulator and the environment both processes share."""
    simulator = Simulator(seed=42, time_scale=0.15)  # tasks of about 3 s
    with serve(simulator) as server:
        env = {**os.environ, "APIMART_API_KEY": TEST_KEY, "APIMART_BASE_URL": server.url,
               "QWEN_WIDGETS_HOME": str(tmp_path / "home"), "PYTHONUNBUFFERED": "1"}
        yield simulator, env, tmp_path / "home"


def start(script: str, env: dict) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", script], env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def kill(process: subprocess.Popen) -> None:
    process.send_signal(signal.SIGKILL)
    process.wait(10)
    assert process.returncode == -signal.SIGKILL


def run(script: str, env: dict) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", script], env=env, text=True,
                          capture_output=True, timeout=120)


@pytest.mark.timeout(120)
def test_killed_mid_poll_then_resume_finds_every_image(world):
    simulator, env, home = world
    # the simulator's clock stands still until the kill, so the task cannot finish first
    # however slowly this process reads the child's output
    frozen = time.time()
    simulator.clock = lambda: frozen
    child = start(GENERATE, env)
    task_id = None
    for line in child.stdout:  # wait until it is polling a running task
        if line.startswith("STATE") and line.split()[2] in ("pending", "processing"):
            task_id = line.split()[1]
            break
    assert task_id is not None, child.stderr.read()
    kill(child)
    assert simulator.tasks[task_id].state(simulator.clock())[0] != "completed"  # killed mid-task
    simulator.clock = time.time

    resumed = run(RESUME, env)
    assert resumed.returncode == 0, resumed.stderr
    tasks = json.loads(resumed.stdout.split("RESUMED ", 1)[1])
    assert [t["task_id"] for t in tasks] == [task_id] and tasks[0]["status"] == "completed"
    paths = tasks[0]["images"]
    assert len(paths) == 6
    for path in paths:  # every paid image is on disk, whole, at the size asked for
        assert path.startswith(str(home)) and Image.open(io.BytesIO(open(path, "rb").read())).size == (1024, 1024)
    assert simulator.count("POST") == 1  # resumed, not resubmitted

    journal = Journal(home / "journal.sqlite")
    frame = qw.history(journal)
    assert list(frame["journal_state"]) == ["finished"] * 6
    assert frame["local_path"].tolist() == paths
    assert run(RESUME, env).stdout.strip() == "RESUMED []"  # nothing left to resume


@pytest.mark.timeout(120)
def test_killed_mid_post_then_resume_makes_exactly_one_task_with_every_image(world):
    simulator, env, home = world
    simulator.inject(delay=60, method="POST")  # the server takes the POST, answers a minute later
    child = start(GENERATE, env)
    deadline = time.monotonic() + 30
    while simulator.count("POST") == 0 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert simulator.count("POST") == 1
    kill(child)
    assert len(simulator.tasks) == 1  # the server did create (and would bill) a task

    resumed = run(RESUME, env)  # a new process: the journal says "submitting" by a dead pid
    assert resumed.returncode == 0, resumed.stderr
    tasks = json.loads(resumed.stdout.split("RESUMED ", 1)[1])
    (created,) = simulator.tasks
    assert [t["task_id"] for t in tasks] == [created] and tasks[0]["status"] == "completed"
    assert len(tasks[0]["images"]) == 6 and all(os.path.exists(path) for path in tasks[0]["images"])
    assert len(simulator.tasks) == 1  # resent with its key: the server replayed, not a second task
    first, second = [e for e in simulator.log if e["method"] == "POST"]
    assert first["idempotency_key"] == second["idempotency_key"] is not None
    frame = qw.history(Journal(home / "journal.sqlite"))
    assert list(frame["journal_state"]) == ["finished"] * 6
    assert run(RESUME, env).stdout.strip() == "RESUMED []"
