"""The gateway as a process: its start banner, the teacher token file, one process per data
folder, stopping cleanly, and what the package may import (cheaply, and from where)."""

from __future__ import annotations

import ast
import os
import re
import select
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import httpx

from qwen_widgets.gateway import DataFolder, Store

REPO = Path(__file__).resolve().parents[2]
GATEWAY = REPO / "qwen_widgets" / "gateway"
START_TIMEOUT = 60.0


def run_env() -> dict[str, str]:
    env = {name: value for name, value in os.environ.items() if not name.startswith(("APIMART_", "JUPYTERHUB_"))}
    env["PYTHONPATH"] = str(REPO)
    return env


def start_serving(data: Path, **environment: str) -> tuple[subprocess.Popen, dict[str, str]]:
    """`serve --port 0` in a child process; returns it and what its banner says."""
    process = subprocess.Popen([sys.executable, "-m", "qwen_widgets.gateway", "serve", "--port", "0",
                                "--data", str(data)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               env={**run_env(), **environment})
    printed = b""
    deadline = time.monotonic() + START_TIMEOUT
    while b"Ctrl-C" not in printed:
        ready, _, _ = select.select([process.stdout], [], [], max(0.0, deadline - time.monotonic()))
        assert ready, f"the gateway did not start: {printed!r} {process.poll()}"
        chunk = os.read(process.stdout.fileno(), 4096)
        assert chunk, f"the gateway exited: {process.stderr.read()!r}"
        printed += chunk
    text = printed.decode()
    return process, {"url": re.search(r"Class gateway at (\S+)", text).group(1), "printed": printed,
                     "teacher": re.search(r"teacher page .*: (\S+)", text).group(1), "text": text}


def stop(process: subprocess.Popen) -> int:
    process.send_signal(signal.SIGTERM)
    return process.wait(timeout=START_TIMEOUT)


def test_a_second_gateway_on_the_same_folder_is_refused_clearly(tmp_path):
    data = tmp_path / "class-data"
    first, banner = start_serving(data)
    try:
        assert "built-in simulator" in banner["text"]
        assert httpx.get(banner["url"] + "/").status_code == 200
        second = subprocess.run([sys.executable, "-m", "qwen_widgets.gateway", "serve", "--port", "0",
                                 "--data", str(data)], capture_output=True, text=True, env=run_env(),
                                timeout=START_TIMEOUT)
        assert second.returncode == 2
        lines = second.stderr.strip().splitlines()
        assert len(lines) == 1 and "Traceback" not in second.stderr
        assert str(data.resolve()) in lines[0] and f"PID {first.pid}" in lines[0] and "--data" in lines[0]
        assert httpx.get(banner["url"] + "/").status_code == 200  # the first one is untouched
    finally:
        assert stop(first) == 0
    again, _ = start_serving(data)  # the lock went with the process that held it
    assert stop(again) == 0


def test_the_teacher_token_is_made_once_private_and_printed_as_a_link(tmp_path):
    data = tmp_path / "class-data"
    process, banner = start_serving(data)
    try:
        token_file = data / "teacher-token"
        token = token_file.read_text().strip()
        assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
        assert stat.S_IMODE(data.stat().st_mode) == 0o700
        assert banner["teacher"] == f"{banner['url']}/teacher?token={token}"
        page = httpx.get(banner["teacher"], follow_redirects=True)
        assert page.status_code == 200 and "Classes" in page.text
    finally:
        stop(process)
    access_log = process.stderr.read().decode()
    assert "GET /teacher " in access_log and token not in access_log  # the query is never logged
    process, banner = start_serving(data)
    try:
        assert banner["teacher"].endswith(token)  # the same token after a restart
    finally:
        stop(process)


def test_a_gateway_process_with_the_real_key_never_prints_it(tmp_path):
    from qwen_widgets.gateway.cli import main
    from qwen_widgets.simulator import Simulator, serve

    from .conftest import PLANTED_KEY, submit, task_id

    data = tmp_path / "class-data"
    assert main(["add-class", "art", "--students", "1", "--images-per-day", "3", "--data", str(data)]) == 0
    with Store(DataFolder(data).database) as store:
        code = store.reissue("art", "student-1")
    with serve(Simulator(api_keys={PLANTED_KEY}, time_scale=0.001)) as provider:
        process, banner = start_serving(data, APIMART_API_KEY=PLANTED_KEY, APIMART_BASE_URL=provider.url)
        try:
            assert f"images from: {provider.url}" in banner["text"]
            student = httpx.Client(base_url=banner["url"], headers={"Authorization": f"Bearer {code}"})
            made = task_id(submit(student))
            assert student.get(f"/v1/tasks/{made}").status_code == 200
            assert provider.simulator.count("POST") == 1  # it went through, with the planted key
        finally:
            stop(process)
    output = banner["printed"] + process.stdout.read() + process.stderr.read()
    assert b"POST /v1/images/generations" in output and PLANTED_KEY.encode() not in output


def test_without_tornado_the_command_says_what_to_install(tmp_path):
    code = ("import sys; sys.modules['tornado'] = None; from qwen_widgets.gateway.cli import main; "
            f"sys.exit(main(['serve', '--data', {str(tmp_path)!r}]))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=run_env(), timeout=60)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        "python -m qwen_widgets.gateway serve: error: the gateway needs tornado: pip install 'qwen_widgets[gateway]'"]


def test_importing_the_gateway_is_cheap():
    code = ("import sys; import qwen_widgets.gateway, qwen_widgets.gateway.cli; "
            "print(sorted(m for m in ('tornado', 'httpx', 'jupyterhub') if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=run_env(), timeout=60)
    assert done.returncode == 0, done.stderr
    assert "tornado" not in done.stdout and "jupyterhub" not in done.stdout


def test_the_gateway_imports_only_the_simulator_from_the_package():
    allowed_outside = {"httpx", "tornado", "jupyterhub"}
    for path in sorted(GATEWAY.glob("*.py")):
        tree = ast.parse(path.read_text(), str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.level:
                assert node.level == 1, f"{path.name}: relative import outside the gateway"
                continue
            names = [alias.name for alias in node.names] if isinstance(node, ast.Import) else \
                [node.module] if isinstance(node, ast.ImportFrom) else []
            for name in names:
                top = name.split(".")[0]
                if top == "qwen_widgets":
                    assert name == "qwen_widgets.simulator", f"{path.name} imports {name}"
                elif top not in sys.stdlib_module_names:
                    assert top in allowed_outside, f"{path.name} imports {name}"


def test_a_sigterm_sent_as_soon_as_the_banner_says_ctrl_c_stops_is_a_clean_stop(tmp_path):
    """The banner is the signal that the gateway is up: a SIGTERM sent the moment it is printed
    (here: by the print itself) stops it cleanly, never kills it mid-start."""
    code = ("import builtins, os, signal, sys\n"
            "real = builtins.print\n"
            "def print(*args, **kwargs):\n"
            "    real(*args, **kwargs)\n"
            "    if args and 'Ctrl-C stops.' in str(args[0]):\n"
            "        os.kill(os.getpid(), signal.SIGTERM)\n"
            "builtins.print = print\n"
            "from qwen_widgets.gateway.cli import main\n"
            f"sys.exit(main(['serve', '--port', '0', '--data', {str(tmp_path / 'class-data')!r}]))\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=run_env(),
                          timeout=START_TIMEOUT)
    assert done.returncode == 0, (done.returncode, done.stderr[-2000:])
    assert "Ctrl-C stops." in done.stdout
