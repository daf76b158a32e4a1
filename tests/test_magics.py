"""%qwen and %%qwen through a real IPython shell, against a fast in-process simulator."""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
import warnings

import pytest
from IPython.core.error import UsageError
from IPython.core.interactiveshell import InteractiveShell
from IPython.utils.capture import capture_output

import qwen_widgets as qw
from qwen_widgets import _magics
from qwen_widgets.simulator import Simulator

from .conftest import TIME_SCALE, fast_options

FOX_LINE = ('a red fox in snow --size 16:9 --resolution 2K -n 2 '
            '--model qwen-image-2.0-pro --negative "blurry"')


def make_client(**simulator_options) -> qw.QwenClient:
    options = {"time_scale": TIME_SCALE, **simulator_options}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", qw.DemoModeWarning)
        return qw.QwenClient(simulator=Simulator(**options), **fast_options())


def unload(shell) -> None:
    if "qwen_widgets" in shell.extension_manager.loaded:
        shell.run_line_magic("unload_ext", "qwen_widgets")
    _magics.unregister(shell)


@pytest.fixture
def shell():
    """The IPython shell with no qwen magics, restored to that afterwards."""
    ip = InteractiveShell.instance()
    unload(ip)
    yield ip
    unload(ip)
    for name in ("t", "_"):
        ip.user_ns.pop(name, None)


@pytest.fixture
def client(monkeypatch):
    fast = make_client()
    qw.set_default_client(fast)
    return fast


@pytest.fixture
def loaded(shell, client):
    with capture_output():
        shell.run_line_magic("load_ext", "qwen_widgets")
    return shell


@pytest.fixture
def shown(monkeypatch):
    """Everything the magic passes to display(), in order."""
    objects = []
    monkeypatch.setattr(_magics, "display", lambda obj, *a, **k: objects.append(obj))
    return objects


def posts(client) -> int:
    return client.simulator.count("POST")


# -- loading and unloading ------------------------------------------------------------------


def test_load_ext_registers_line_and_cell_magic_silently(shell, client):
    magics = shell.magics_manager.magics
    assert "qwen" not in magics["line"] and "qwen" not in magics["cell"]
    with capture_output() as captured:
        shell.run_line_magic("load_ext", "qwen_widgets")
    assert captured.stdout == "" and captured.stderr == ""
    assert captured.outputs == []
    assert "qwen" in magics["line"] and "qwen" in magics["cell"]


def test_load_ext_through_run_cell_prints_nothing(shell, client, capsys):
    result = shell.run_cell("%load_ext qwen_widgets")
    assert result.success
    out, err = capsys.readouterr()
    assert out == "" and err == ""
    assert "qwen" in shell.magics_manager.magics["line"]


def test_loading_twice_is_harmless(loaded, client, shown):
    with capture_output() as captured:
        loaded.run_line_magic("load_ext", "qwen_widgets")
    assert captured.stderr == ""
    qw.load_ipython_extension(loaded)  # directly, again
    assert "qwen" in loaded.magics_manager.magics["line"]
    assert "qwen" in loaded.magics_manager.magics["cell"]
    task = loaded.run_line_magic("qwen", "a fox -n 1")
    assert task.status is qw.TaskStatus.COMPLETED
    assert posts(client) == 1  # one magic call, one submission, despite two registrations


def test_unload_ext_removes_the_magics(loaded, client):
    with capture_output() as captured:
        loaded.run_line_magic("unload_ext", "qwen_widgets")
    assert captured.stderr == ""
    magics = loaded.magics_manager.magics
    assert "qwen" not in magics["line"] and "qwen" not in magics["cell"]
    with pytest.raises(UsageError):
        loaded.run_line_magic("qwen", "a fox")
    assert posts(client) == 0


def test_load_after_unload_works_again(loaded, client, shown):
    loaded.run_line_magic("unload_ext", "qwen_widgets")
    with capture_output() as captured:
        loaded.run_line_magic("load_ext", "qwen_widgets")
    assert captured.stdout == ""
    assert loaded.run_line_magic("qwen", "a fox").status is qw.TaskStatus.COMPLETED


# -- generating ---------------------------------------------------------------------------------


def test_line_magic_returns_the_completed_task_with_exact_request(loaded, client, shown):
    task = loaded.run_line_magic("qwen", FOX_LINE)
    assert isinstance(task, qw.Task)
    assert task.status is qw.TaskStatus.COMPLETED
    request = task.request
    assert request.prompt == "a red fox in snow"
    assert request.model == "qwen-image-2.0-pro"
    assert request.size == "16:9"
    assert request.resolution == "2K"
    assert request.n == 2
    assert request.negative_prompt == "blurry"  # the quotes are not part of it
    assert request.image_urls == ()
    assert len(task.images) == 2
    assert [(image.width, image.height) for image in task.images] == [(2048, 1152)] * 2
    # what reached the server is exactly that request
    assert client.simulator.tasks[task.task_id].request.to_payload() == request.to_payload()
    assert posts(client) == 1
    # the live card was shown, and it ends on the same task
    cards = [obj for obj in shown if isinstance(obj, qw.Card)]
    assert len(cards) == 1 and cards[0].task == task


def test_short_options_and_single_quotes(loaded, client, shown):
    task = loaded.run_line_magic("qwen", "a lighthouse -s 9:16 -r 1K -m qwen-image-2.0 --negative 'fog, rain'")
    assert task.request.size == "9:16" and task.request.resolution == "1K"
    assert task.request.model == "qwen-image-2.0"
    assert task.request.negative_prompt == "fog, rain"
    assert task.request.n == 1  # the default


def test_ref_option_repeats_into_image_urls(loaded, client, shown):
    task = loaded.run_line_magic(
        "qwen", "make it blue --ref https://example.com/a.png --ref 'https://example.com/b.jpg'")
    assert task.request.prompt == "make it blue"
    assert task.request.image_urls == ("https://example.com/a.png", "https://example.com/b.jpg")


def test_assignment_puts_the_task_in_the_user_namespace(loaded, client, shown):
    result = loaded.run_cell("t = %qwen a lighthouse --resolution 2K")
    assert result.success, result.error_in_exec
    task = loaded.user_ns["t"]
    assert isinstance(task, qw.Task) and task.status is qw.TaskStatus.COMPLETED
    assert task.request.prompt == "a lighthouse"
    assert task.request.resolution == "2K"
    assert (task.images[0].width, task.images[0].height) == (2048, 2048)  # 1:1 at 2K


def test_cell_magic_uses_the_whole_body_as_prompt(loaded, client, shown):
    body = "a lighthouse on a cliff\nat dusk, oil painting\n  with seagulls --not an option"
    result = loaded.run_cell(f"%%qwen -n 1 --size 3:2\n{body}\n")
    assert result.success, result.error_in_exec
    task = result.result
    assert isinstance(task, qw.Task) and task.status is qw.TaskStatus.COMPLETED
    assert task.request.prompt.strip("\n") == body
    assert task.request.n == 1 and task.request.size == "3:2"
    assert client.simulator.tasks[task.task_id].request.prompt == task.request.prompt


def test_cell_magic_directly(loaded, client, shown):
    task = loaded.run_cell_magic("qwen", "-n 2", "first line\nsecond line")
    assert task.request.prompt == "first line\nsecond line"
    assert len(task.images) == 2


def test_no_prompt_displays_a_panel_and_returns_none(loaded, client, shown):
    assert loaded.run_line_magic("qwen", "") is None
    assert len(shown) == 1
    panel = shown[0]
    assert isinstance(panel, qw.Panel)
    assert panel.client is client
    assert posts(client) == 0


def test_no_prompt_display_reaches_the_output(loaded, client):
    with capture_output() as captured:
        result = loaded.run_line_magic("qwen", "   ")
    assert result is None
    # the live panel, then the copy of its results saved with the notebook (none yet)
    assert len(captured.outputs) == 2
    live, saved = (output.data for output in captured.outputs)
    assert "application/vnd.jupyter.widget-view+json" in live
    assert live["text/plain"] == ""  # one notice where no widget runs: the copy's heading
    assert "Results saved with the notebook: 0 generations" in saved["text/html"]
    assert posts(client) == 0


def test_failed_task_is_returned_not_raised(shell, monkeypatch, shown):
    failing = make_client(failure_rate=1.0)
    qw.set_default_client(failing)
    with capture_output():
        shell.run_line_magic("load_ext", "qwen_widgets")
    task = shell.run_line_magic("qwen", "a fox -n 2")
    assert isinstance(task, qw.Task)
    assert task.status is qw.TaskStatus.FAILED
    assert task.error
    assert task.images == ()
    assert task.request.n == 2


# -- bad input ----------------------------------------------------------------------------------


@pytest.mark.parametrize(("line", "named"), [
    ("a fox -n 9", "n"),
    ("a fox --size 5:4", "size"),
    ("a fox --resolution 4K", "resolution"),
    ("a fox --model dall-e", "model"),
    ("a fox --bogus", "--bogus"),
    ("a fox -n notanumber", "-n"),
    ("a fox --ref data:image/png;base64,AAAA", "image_urls"),
    ("a fox 'unbalanced", "quote"),
])
def test_bad_options_are_one_line_usage_errors_and_send_nothing(loaded, client, shown, line, named):
    with pytest.raises(UsageError) as caught:
        loaded.run_line_magic("qwen", line)
    message = str(caught.value)
    assert "\n" not in message.strip()
    assert named in message
    assert "Traceback" not in message
    assert posts(client) == 0
    assert shown == []  # no card for a request that was never made


@pytest.mark.parametrize(("cell", "named"), [
    ("%qwen a fox -n 9", "n:"),
    ("%qwen a fox --size 5:4", "size"),
    ("%qwen a fox --bogus", "--bogus"),
    ("%qwen a fox -n notanumber", "notanumber"),
])
def test_bad_options_in_a_cell_show_one_usage_line(loaded, client, shown, cell, named):
    with capture_output() as captured:
        result = loaded.run_cell(cell)
    assert isinstance(result.error_in_exec, UsageError)
    lines = [line for line in captured.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, captured.stderr
    assert lines[0].startswith("UsageError") and named in lines[0]
    assert "Traceback" not in captured.stdout + captured.stderr
    assert posts(client) == 0


def test_cell_magic_with_words_on_the_line_is_a_usage_error(loaded, client, shown):
    with pytest.raises(UsageError) as caught:
        loaded.run_cell_magic("qwen", "a fox -n 1", "a lighthouse")
    assert "\n" not in str(caught.value)
    assert "body" in str(caught.value)
    assert posts(client) == 0 and shown == []


def test_cell_magic_with_an_empty_body_is_a_usage_error(loaded, client, shown):
    with pytest.raises(UsageError) as caught:
        loaded.run_cell_magic("qwen", "-n 1", "  \n\n")
    assert "empty" in str(caught.value)
    assert posts(client) == 0 and shown == []


# -- help -----------------------------------------------------------------------------------------


def test_docstring_documents_every_option(loaded):
    doc = loaded.magics_manager.magics["line"]["qwen"].__doc__
    assert doc is not None
    for option in ("--size", "--resolution", "-n", "--model", "--negative", "--ref"):
        assert option in doc
    assert "16:9" in doc and "2K" in doc and "qwen-image-2.0-pro" in doc  # the allowed values
    assert "%%qwen" in doc  # the cell form


def test_question_mark_help_shows_the_options(loaded, client):
    with capture_output() as captured:
        loaded.run_cell("%qwen?")
    text = captured.stdout + "".join(str(o.data.get("text/plain", "")) for o in captured.outputs)
    assert "--resolution" in text and "--negative" in text
    assert posts(client) == 0


# -- interruption -----------------------------------------------------------------------------


def _main_thread_waits_on_result() -> bool:
    frame = sys._current_frames().get(threading.main_thread().ident)
    while frame is not None:
        code = frame.f_code
        if code.co_name == "result" and code.co_filename.endswith(os.path.join("futures", "_base.py")):
            return True
        frame = frame.f_back
    return False


def _interrupt_main_thread(interrupted: threading.Event) -> None:
    """Ctrl-C for the main thread, sent again until its handler has run.

    A signal that lands after the main thread last ran Python code but before it blocked on
    a lock does not wake it: the handler would wait for the lock (on a loaded machine the
    thread is easily preempted in that gap). A signal sent while it is blocked does wake it.
    """
    while True:
        signal.pthread_kill(threading.main_thread().ident, signal.SIGINT)
        if interrupted.wait(0.2):
            return


def _sigint_once(interrupted: threading.Event):
    """A SIGINT handler that raises KeyboardInterrupt the first time only."""

    def handler(signum, frame):
        if not interrupted.is_set():
            interrupted.set()
            raise KeyboardInterrupt

    return handler


def test_interrupt_stops_watching_and_prints_the_task_id(monkeypatch, shown, capsys):
    """Ctrl-C while the magic waits: the card stops, the id to re-attach is printed."""
    if threading.current_thread() is not threading.main_thread():
        pytest.skip("needs the main thread to receive SIGINT")
    slow = make_client(time_scale=1.0, duration=1000.0, duration_spread=0.0)
    qw.set_default_client(slow)
    request = qw.ImageRequest("a very slow fox", n=2)
    interrupted = threading.Event()

    def interrupt() -> None:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            cards = [obj for obj in shown if isinstance(obj, qw.Card)]
            # the task has an id, the watcher is running and the main thread is blocked
            if cards and cards[0].task is not None and cards[0]._watcher is not None \
                    and _main_thread_waits_on_result():
                _interrupt_main_thread(interrupted)
                return
            time.sleep(0.005)

    previous = signal.signal(signal.SIGINT, _sigint_once(interrupted))
    helper = threading.Thread(target=interrupt, daemon=True)
    helper.start()
    try:
        result = _magics._generate_in_cell(request)
    finally:
        helper.join(5)
        signal.signal(signal.SIGINT, previous)
    assert interrupted.is_set()
    assert result is None
    card = shown[0]
    task_id = card.task.task_id
    out = capsys.readouterr().out
    assert f"Stopped watching task {task_id}" in out
    assert f"attach({task_id!r})" in out
    assert "billed" in out
    assert card.future.done() and card.future.result() is None
    assert "stopped watching" in card.status.value
    assert card.attach_button.layout.display is None  # Re-attach is offered
    assert slow.simulator.count("POST") == 1
    assert not card.task.done


def test_interrupt_during_submission_waits_for_the_answer_then_reports_the_id(monkeypatch, shown, capsys):
    """Ctrl-C before the POST is answered: the submission is not cut short, its id is printed."""
    if threading.current_thread() is not threading.main_thread():
        pytest.skip("needs the main thread to receive SIGINT")
    from qwen_widgets.engine import runner as _runner

    slow = make_client(time_scale=1.0, duration=1000.0, duration_spread=0.0)
    qw.set_default_client(slow)
    release = threading.Event()
    _runner.get_loop().call_soon_threadsafe(release.wait, 60)  # hold the loop: nothing is sent yet
    stop_seen, interrupted = threading.Event(), threading.Event()

    def interrupt() -> None:
        try:
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline and not _main_thread_waits_on_result():
                time.sleep(0.005)
            assert slow.simulator.count("POST") == 0
            _interrupt_main_thread(interrupted)
            while time.monotonic() < deadline:
                cards = [obj for obj in shown if isinstance(obj, qw.Card)]
                if cards and cards[0].status.value.startswith("Stop requested"):
                    stop_seen.set()
                    break
                time.sleep(0.005)
        finally:
            release.set()

    previous = signal.signal(signal.SIGINT, _sigint_once(interrupted))
    helper = threading.Thread(target=interrupt, daemon=True)
    helper.start()
    try:
        result = _magics._generate_in_cell(qw.ImageRequest("a very slow fox"))
    finally:
        release.set()
        helper.join(5)
        signal.signal(signal.SIGINT, previous)
    assert stop_seen.is_set()  # the card said it waits for the submission's answer
    assert result is None
    assert slow.simulator.count("POST") == 1  # the POST was sent and answered, once
    card = shown[0]
    assert card.task is not None
    out = capsys.readouterr().out
    assert f"Stopped watching task {card.task.task_id}" in out
    assert "before the server assigned" not in out
    assert slow.simulator.count("GET") == 0  # no watching after the stop


# -- the package's errors in a cell (issue 24 item 19) ------------------------------------------


def _run(shell, code: str) -> str:
    with capture_output() as out:
        shell.run_cell(code)
    return out.stdout + out.stderr


def test_a_package_error_in_a_cell_is_its_message_and_the_full_traceback_is_one_step_away(shell, client):
    shell.user_ns["qw"] = qw
    short = _run(shell, 'qw.generate("a fox", n=9)')
    lines = [line for line in short.splitlines() if line.strip()]
    assert len(lines) == 2, short
    assert "RequestValidationError" in lines[0] and "n: must be from 1 to 6 (got 9)" in lines[0]
    assert "%tb Plain" in lines[1] and "request.py" not in short and "_front.py" not in short
    full = _run(shell, "%tb Plain")
    assert "Traceback" in full and "qwen_widgets/model/request.py" in full and "_front.py" in full
    assert "n: must be from 1 to 6" in full


def test_other_errors_and_other_exception_modes_keep_the_whole_traceback(shell, client):
    shell.user_ns["qw"] = qw
    assert "Traceback" in _run(shell, "int('x')")  # not the package's: as IPython always shows it
    shell.run_line_magic("xmode", "Plain")
    try:
        assert "qwen_widgets/model/request.py" in _run(shell, 'qw.ImageRequest("a fox", n=9)')
    finally:
        shell.run_line_magic("xmode", "Context")
