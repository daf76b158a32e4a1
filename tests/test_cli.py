"""The `qwen-widgets` command (and `python -m qwen_widgets`): every subcommand in process through
main(argv), and as real processes where a process is the point (exit status, no traceback,
servers that start and stop, the console script's entry point)."""

from __future__ import annotations

import json
import os
import re
import select
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import httpx
import pytest
from PIL import Image

import qwen_widgets as qw
from qwen_widgets.cli import DEFAULT_PROMPT, main

from .conftest import TEST_KEY, demo_client, fast_options

REPO = Path(__file__).resolve().parents[1]
START_TIMEOUT = 60.0


@pytest.fixture
def demo():
    """The CLI's client (it uses the default one) on a fast in-process simulator."""
    client = demo_client()
    qw.set_default_client(client)
    yield client
    client.close()


@pytest.fixture
def keyed(server):
    """The CLI's client with a key, against the loopback simulator: journaled in the home folder."""
    client = qw.QwenClient(TEST_KEY, base_url=server.url, **fast_options())
    qw.set_default_client(client)
    yield client
    client.close()


def run(capsys, *argv: str) -> tuple[int, str, str]:
    status = main(list(argv))
    out, err = capsys.readouterr()
    return status, out, err


def fails(capsys, *argv: str) -> tuple[int, str]:
    """The exit status and stderr of a command line refused by argparse (SystemExit) or by us."""
    try:
        status = main(list(argv))
    except SystemExit as exit:
        status = exit.code
    return status, capsys.readouterr().err


def png(path: Path, size=(96, 64)) -> Path:
    Image.new("RGB", size, "orange").save(path)
    return path


def subprocess_env(**extra: str) -> dict[str, str]:
    env = {name: value for name, value in os.environ.items() if not name.startswith(("APIMART_", "QWEN_WIDGETS_DEMO"))}
    return {**env, "PYTHONPATH": str(REPO), **extra}


# -- generate ----------------------------------------------------------------------------------------


def test_no_arguments_generates_two_images_of_the_default_prompt_and_prints_their_paths(demo, capsys, tmp_path,
                                                                                        monkeypatch):
    monkeypatch.chdir(tmp_path)
    status, out, err = run(capsys)
    assert status == 0
    paths = [Path(line) for line in out.splitlines()]
    assert len(paths) == 2 and all(p.is_file() and p.parent == tmp_path / "qwen_images" for p in paths)
    sidecar = json.loads(paths[0].with_suffix(".json").read_text())
    assert sidecar["request"]["prompt"] == DEFAULT_PROMPT and sidecar["request"]["size"] == "16:9"
    assert err.startswith("Simulated images: no API key set") and "done in" in err


def test_every_request_field_reaches_the_request_and_a_local_reference_is_uploaded(demo, capsys, tmp_path):
    sketch = png(tmp_path / "sketch.png")
    status, out, err = run(capsys, "generate", "a", "fox", "in", "snow", "--model", "qwen-image-2.0-pro",
                           "--size", "1:1", "--resolution", "2K", "-n", "3", "--negative", "blurry",
                           "--ref", str(sketch), "--out", str(tmp_path / "foxes"))
    assert status == 0, err
    assert len(out.splitlines()) == 3 and all(Path(line).parent == tmp_path / "foxes" for line in out.splitlines())
    (entry,) = demo.aio.journal.entries()
    request = entry.request
    assert (request.prompt, request.model, request.size, request.resolution, request.n, request.negative_prompt) == (
        "a fox in snow", "qwen-image-2.0-pro", "1:1", "2K", 3, "blurry")
    assert len(request.image_urls) == 1 and request.image_urls[0].startswith("http")
    assert demo.aio.simulator.count("POST", "/v1/uploads/images") == 1
    assert "2048x2048" in err


def test_progress_goes_to_stderr_one_line_per_change_when_not_a_terminal(demo, capsys, tmp_path):
    status, out, err = run(capsys, "a fox", "-n", "1", "--out", str(tmp_path))
    assert status == 0
    task_id = Path(out.strip()).stem.rsplit("_", 1)[0]
    steps = [line for line in err.splitlines() if task_id in line]
    assert steps[-1].split() == [task_id, "completed", "100%"]
    assert len(steps) == len(set(steps)) and "\r" not in err  # each step once, nothing rewritten in a log
    assert all(Path(line).is_file() for line in out.splitlines())  # stdout: the paths only


@pytest.mark.parametrize("argv, message", [
    (["generate", "x", "--size", "5:4"], "--size: must be one of 1:1, 4:3, 3:4, 16:9, 9:16, 3:2, 2:3 (got '5:4')"),
    (["generate", "x", "-n", "7"], "-n: must be from 1 to 6 (got 7)"),
    (["generate", "x", "-n", "two"], "-n: must be an integer from 1 to 6 (got 'two')"),
    (["generate", "x", "--model", "qwen-image-9"], "--model: must be one of"),
    (["generate", "x", "--resolution", "4K"], "--resolution: must be one of 1K, 2K (got '4K')"),
    (["generate", "x", "--negative", "n" * 801], "--negative: must be at most"),
    (["generate", " "], "PROMPT: must not be empty or only whitespace"),
    (["generate", "x", "--ref", "photos/cat.jpg"], "--ref: no such file: photos/cat.jpg"),
    (["generate", "x", "--ref", "ftp://example.com/a.png"], "--ref: must be a public http(s) URL"),
    (["generate", "x", "--ref", "https://example.com/a.png", "--ref", "data:image/png;base64,iVBOR"],
     "--ref 2: looks like base64 image data"),
    (["generate", "x", "--timeout", "0"], "--timeout: must be a number of seconds above 0"),
    (["generate", "x", "--colour", "red"], "unrecognized arguments: --colour red"),
    (["x", "--size", "5:4"], "--size: must be one of"),  # a prompt first: generate
])
def test_a_bad_value_is_one_line_naming_the_option_before_anything_is_sent(demo, capsys, argv, message):
    status, err = fails(capsys, *argv)
    assert status == 2
    assert err.count("\n") == 1 and "Traceback" not in err
    assert err.startswith("qwen-widgets generate: error: ") and message in err
    assert demo.aio.simulator.log == []


def test_a_reference_that_is_not_an_image_is_refused_by_its_option_before_anything_is_sent(demo, capsys, tmp_path):
    good, bad = png(tmp_path / "good.png"), tmp_path / "notes.png"
    bad.write_text("not an image")
    status, err = fails(capsys, "x", "--ref", str(good), "--ref", str(bad))
    assert status == 2 and err.startswith("qwen-widgets generate: error: --ref 2: ") and "notes.png" in err
    assert demo.aio.simulator.log == []


def test_a_typo_of_a_command_is_not_taken_for_a_prompt_to_pay_for(demo, capsys):
    status, err = fails(capsys, "hisotry")
    assert status == 2 and "did you mean history?" in err and "qwen-widgets generate 'hisotry'" in err
    assert demo.aio.simulator.log == []


def test_a_failed_task_is_exit_status_1_with_the_reason(capsys, tmp_path):
    client = demo_client(failure_rate=1.0)
    qw.set_default_client(client)
    try:
        status, out, err = run(capsys, "a fox", "--out", str(tmp_path))
    finally:
        client.close()
    assert status == 1 and out == ""
    assert re.search(r"^qwen-widgets generate: error: task \S+ failed", err, re.M) and "Traceback" not in err


# -- resume -------------------------------------------------------------------------------------------


def test_resume_finishes_a_task_left_unwatched_and_saves_it_with_out(keyed, capsys, tmp_path):
    task = keyed.submit(qw.ImageRequest("a fox left behind", n=2))
    status, out, err = run(capsys, "resume", "--out", str(tmp_path / "resumed"))
    assert status == 0
    assert f"{task.task_id}  completed  2 image(s)" in err
    assert len(out.splitlines()) == 2 and all(Path(p).parent == tmp_path / "resumed" for p in out.splitlines())
    status, out, err = run(capsys, "resume")
    assert status == 0 and "Nothing was left open." in err


def test_resume_in_demo_mode_says_why_nothing_is_left_open(demo, capsys):
    status, out, err = run(capsys, "resume")
    assert status == 0 and out == "" and "a demo run's tasks end with its process" in err


# -- history and export ---------------------------------------------------------------------------------


@pytest.fixture
def journaled(keyed):
    """Two finished tasks in the home journal: a fox (pro, 2 images) and a lighthouse."""
    fox = keyed.generate("a red fox in snow", model="qwen-image-2.0-pro", n=2, negative_prompt="blurry")
    lighthouse = keyed.generate("a lighthouse at dusk", size="16:9")
    return fox, lighthouse


def test_history_is_a_table_of_submissions_newest_first(journaled, capsys):
    fox, lighthouse = journaled
    status, out, err = run(capsys, "history")
    assert status == 0
    lines = out.splitlines()
    assert lines[0].split()[:4] == ["made", "(UTC)", "task", "status"]
    assert lighthouse.task_id in lines[1] and fox.task_id in lines[2] and len(lines) == 3
    assert re.search(r"completed\s+qwen-image-2.0-pro\s+1:1 1K\s+2/2\s+\S+\s+a red fox in snow$", lines[2])


@pytest.mark.parametrize("argv, expected", [
    (["--search", "FOX"], {"fox"}),
    (["--search", "blurry"], {"fox"}),  # the negative prompt too
    (["--search", "fox dusk"], set()),  # every word
    (["--model", "qwen-image-2.0"], {"lighthouse"}),
    (["--status", "completed"], {"fox", "lighthouse"}),
    (["--status", "failed"], set()),
    (["--since", "1h"], {"fox", "lighthouse"}),
    (["--since", "2999-01-01"], set()),
    (["--starred"], set()),
])
def test_history_filters(journaled, capsys, argv, expected):
    fox, lighthouse = journaled
    status, out, err = run(capsys, "history", "--format", "json", *argv)
    assert status == 0
    found = {row["task_id"] for row in json.loads(out)}
    assert found == {{"fox": fox.task_id, "lighthouse": lighthouse.task_id}[name] for name in expected}


def test_history_as_csv_has_every_column_of_qw_history(journaled, capsys):
    status, out, err = run(capsys, "history", "--format", "csv")
    header = out.splitlines()[0].split(",")
    assert status == 0 and header == list(qw.history().columns) and len(out.splitlines()) == 1 + 3


def test_history_limit_shows_the_newest_and_says_how_many_are_left(journaled, capsys):
    status, out, err = run(capsys, "history", "--limit", "1")
    assert status == 0 and len(out.splitlines()) == 2 and journaled[1].task_id in out
    assert "(1 of 2; --limit 0 shows all)" in err


def test_history_without_a_journal_says_where_it_looked_and_why_demo_runs_are_not_there(demo, capsys):
    run(capsys, "a fox", "-n", "1", "--out", str(Path(os.environ["QWEN_WIDGETS_HOME"]).parent / "out"))
    status, out, err = run(capsys, "history")
    assert status == 0 and out == ""
    assert os.environ["QWEN_WIDGETS_HOME"] in err and "demo runs are not" in err


def test_export_writes_a_dated_zip_here_by_default(journaled, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    status, out, err = run(capsys, "export")
    assert status == 0
    written = Path(out.strip())
    assert written.parent == tmp_path and re.fullmatch(r"qwen_images_\d{8}-\d{6}\.zip", written.name)
    with zipfile.ZipFile(written) as archive:
        assert sum(name.endswith(".png") for name in archive.namelist()) == 3


def test_export_takes_the_history_filters_and_a_path(journaled, capsys, tmp_path):
    fox, _ = journaled
    status, out, err = run(capsys, "export", str(tmp_path / "foxes.zip"), "--search", "fox")
    assert status == 0 and Path(out.strip()) == tmp_path / "foxes.zip"
    with zipfile.ZipFile(tmp_path / "foxes.zip") as archive:
        results = archive.read("results.csv").decode()
    assert fox.task_id in results and "lighthouse" not in results
    status, out, err = run(capsys, "export", str(tmp_path / "none.zip"), "--search", "zebra")
    assert status == 0 and out == "" and "Nothing was written" in err and not (tmp_path / "none.zip").exists()


# -- the mounted command lines ------------------------------------------------------------------------


def test_the_simulator_command_takes_the_simulators_options_and_serves(tmp_path):
    process = subprocess.Popen([sys.executable, "-m", "qwen_widgets", "simulator", "--port", "0",
                                "--time-scale", "0.01", "--balance-unit", "CNY"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=subprocess_env())
    try:
        url = re.search(r"at (http://\S+)", read_until(process, b"Ctrl-C")).group(1)
        with qw.QwenClient(TEST_KEY, base_url=url, **fast_options()) as client:
            assert client.generate("a fox").status is qw.TaskStatus.COMPLETED
            assert client.balance().unit == "CNY"
    finally:
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=START_TIMEOUT) == 0


def test_the_simulator_command_refuses_a_bad_option(capsys):
    status, err = fails(capsys, "simulator", "--port", "eighty")
    assert status == 2 and "--port: invalid int value: 'eighty'" in err


def test_the_gateway_commands_are_mounted_with_their_one_line_errors(capsys, tmp_path):
    data = str(tmp_path / "class-data")
    status, out, err = run(capsys, "gateway", "add-class", "art", "--students", "2", "--images-per-day", "3",
                           "--data", data, "--json")
    assert status == 0 and [c["name"] for c in json.loads(out)["codes"]] == ["student-1", "student-2"]
    status, out, err = run(capsys, "gateway", "add-class", "art", "--students", "1", "--images-per-day", "3",
                           "--data", data)
    assert status == 2 and err == "qwen-widgets gateway add-class: error: NAME: a class named 'art' already exists\n"
    status, err = fails(capsys, "gateway", "list", "--data", data, "--colour")
    assert status == 2 and err == "qwen-widgets gateway list: error: unrecognized arguments: --colour (see --help)\n"


def test_gateway_serve_runs_as_python_m_qwen_widgets_gateway_serve_does(tmp_path):
    process = subprocess.Popen([sys.executable, "-m", "qwen_widgets", "gateway", "serve", "--port", "0",
                                "--data", str(tmp_path / "class-data")],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=subprocess_env())
    try:
        url = re.search(r"Class gateway at (\S+)", read_until(process, b"Ctrl-C")).group(1)
        assert httpx.get(url + "/").status_code == 200
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=START_TIMEOUT) == 0


def read_until(process: subprocess.Popen, marker: bytes) -> str:
    printed = b""
    deadline = time.monotonic() + START_TIMEOUT
    while marker not in printed:
        ready, _, _ = select.select([process.stdout], [], [], max(0.0, deadline - time.monotonic()))
        assert ready, f"no {marker!r} in time: {printed!r}"
        chunk = os.read(process.stdout.fileno(), 4096)
        assert chunk, f"the process exited: {process.stderr.read()!r}"
        printed += chunk
    return printed.decode()


# -- as processes ----------------------------------------------------------------------------------


def test_python_m_qwen_widgets_refuses_a_bad_value_in_one_line_without_a_traceback(tmp_path):
    done = subprocess.run([sys.executable, "-m", "qwen_widgets", "--size", "5:4"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=120, env=subprocess_env())
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr == ("python -m qwen_widgets generate: error: --size: must be one of "
                           "1:1, 4:3, 3:4, 16:9, 9:16, 3:2, 2:3 (got '5:4')\n")


def test_the_console_script_entry_point_generates(tmp_path):
    """What pip's `qwen-widgets` script does: import the entry point pyproject names and exit with
    what it returns (the installed script itself too, where this environment has it)."""
    entry = re.search(r'^qwen-widgets = "([\w.]+):(\w+)"$', (REPO / "pyproject.toml").read_text(), re.M)
    assert entry, "pyproject declares the qwen-widgets console script"
    module, function = entry.groups()
    wrapper = f"import sys; from {module} import {function}; sys.argv[0] = 'qwen-widgets'; sys.exit({function}())"
    commands = [[sys.executable, "-c", wrapper]]
    installed = Path(sys.executable).with_name("qwen-widgets")
    if installed.is_file() and f"{module} import {function}" in installed.read_text():  # pip made it
        commands.append([str(installed)])
    for command in commands:
        done = subprocess.run([*command, "a fox", "-n", "1", "--out", str(tmp_path / "out")], cwd=tmp_path,
                              capture_output=True, text=True, timeout=120, env=subprocess_env())
        assert done.returncode == 0, done.stderr
        assert Path(done.stdout.strip()).is_file() and "completed 100%" in " ".join(done.stderr.split())
        bad = subprocess.run([*command, "-n", "9"], cwd=tmp_path, capture_output=True, text=True, timeout=120,
                             env=subprocess_env())
        assert bad.returncode == 2 and bad.stderr == "qwen-widgets generate: error: -n: must be from 1 to 6 (got 9)\n"


def test_version(capsys):
    with pytest.raises(SystemExit) as exit:
        main(["--version"])
    assert exit.value.code == 0 and capsys.readouterr().out == f"qwen-widgets {qw.__version__}\n"


def test_ctrl_c_while_watching_says_which_task_runs_on_and_how_to_pick_it_up(server, tmp_path):
    server.simulator.duration = 10**6  # the task outlives the test
    process = subprocess.Popen([sys.executable, "-m", "qwen_widgets", "a slow fox", "-n", "1"], cwd=tmp_path,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               env=subprocess_env(APIMART_API_KEY=TEST_KEY, APIMART_BASE_URL=server.url,
                                                  QWEN_WIDGETS_HOME=str(tmp_path / "home")))
    printed = b""
    deadline = time.monotonic() + START_TIMEOUT
    while b" submitted " not in printed:  # the task id arrived: now it is being watched
        ready, _, _ = select.select([process.stderr], [], [], max(0.0, deadline - time.monotonic()))
        assert ready, f"no task in time: {printed!r}"
        chunk = os.read(process.stderr.fileno(), 4096)
        assert chunk, f"the process exited: {printed!r}"
        printed += chunk
    process.send_signal(signal.SIGINT)
    assert process.wait(timeout=START_TIMEOUT) == 130
    err = (printed + process.stderr.read()).decode()
    task_id = re.search(r"(\S+)\s+submitted", err).group(1)
    assert (f"Stopped watching task {task_id}; it may still finish and be billed "
            "(python -m qwen_widgets resume picks it up)." in err)
    assert "Traceback" not in err and process.stdout.read() == b""
