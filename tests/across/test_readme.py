"""Every code block of the README runs as written, in demo mode (no key), in the order a reader
meets them: the Python and `%qwen` blocks one after another in one IPython shell (what a notebook
runs them in), the shell blocks with bash. A statement followed by a comment that shows an error
(`# RequestValidationError: n: must be ...`) must raise that error with that message.

Not run, and why (checked: every shell block is either run or listed here):
- the quick start's block installs the package and starts JupyterLab: tests/e2e/test_quickstart.py
  runs command 1 as written and .ci/run runs command 2 verbatim;
- the Install block installs packages into the environment: what .ci/run does;
- the class mode block installs the gateway extra and starts a gateway that serves until stopped:
  tests/test_cli.py starts `qwen-widgets gateway serve` as a process, tests/gateway runs the rest.

What a reader is assumed to have: the files a block names (`photos/cat.jpg`), made here; and for
the spending-limit example, a day's 50 images already used, made here before it runs.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
from IPython.core.interactiveshell import InteractiveShell
from IPython.utils.capture import capture_output
from PIL import Image

import qwen_widgets as qw
from qwen_widgets.simulator import Simulator

REPO = Path(__file__).resolve().parents[2]
NOT_RUN = {
    "# 1. install and open the demo notebook": "installs and starts JupyterLab (tests/e2e/test_quickstart.py, .ci/run)",
    "pip install -e .": "installs packages (.ci/run)",
    "pip install 'qwen_widgets[gateway]'": "installs tornado and starts a gateway that runs until stopped "
                                            "(tests/test_cli.py starts `qwen-widgets gateway serve` as a "
                                            "process; tests/gateway/test_cli.py runs add-class and revoke)",
}
ERROR_COMMENT = re.compile(r"# ([A-Z]\w*Error): (.*)")


def blocks() -> list[tuple[int, str, str]]:
    """(line, language, code) of every fenced block with a language."""
    text = (REPO / "README.md").read_text()
    return [(text[:m.start()].count("\n") + 1, m.group(1), m.group(2))
            for m in re.finditer(r"^```(\w+)\n(.*?)^```", text, re.S | re.M)]


def cells(code: str) -> list[tuple[str, tuple[str, str] | None]]:
    """The block as cells to run: a statement shown with its error is a cell of its own, with
    (error name, message) to expect; the comment's continuation lines belong to the message."""
    lines, result, current, i = code.splitlines(), [], [], 0
    while i < len(lines):
        shown = ERROR_COMMENT.fullmatch(lines[i + 1].strip()) if i + 1 < len(lines) else None
        if shown is None:
            current.append(lines[i])
            i += 1
            continue
        if current:
            result.append(("\n".join(current), None))
            current = []
        message, j = [re.split(r"\s{2,}", shown.group(2))[0]], i + 2  # "   .field == 'n'" is a note
        while j < len(lines) and lines[j].startswith("# ") and not ERROR_COMMENT.fullmatch(lines[j].strip()):
            message.append(lines[j][2:])
            j += 1
        result.append((lines[i], (shown.group(1), " ".join(message))))
        i = j
    if current:
        result.append(("\n".join(current), None))
    return result


def comparable(text: str) -> str:
    return re.sub(r"\d{4}-\d\d-\d\d \d\d:\d\d", "<time>", " ".join(text.split()))


def command_bin(tmp_path: Path) -> Path:
    """A folder holding `qwen-widgets`: pip's script when this environment has an up-to-date one,
    else the same two lines pip writes into it."""
    installed = Path(sys.executable).with_name("qwen-widgets")
    if installed.is_file() and "qwen_widgets.cli import main" in installed.read_text():
        return installed.parent
    folder = tmp_path / "bin"
    folder.mkdir()
    script = folder / "qwen-widgets"
    script.write_text(f"#!{sys.executable}\nimport sys\nfrom qwen_widgets.cli import main\nsys.exit(main())\n")
    script.chmod(0o755)
    return folder


@pytest.fixture
def shell(monkeypatch, tmp_path):
    """A notebook-like IPython shell in an empty folder, with demo tasks of a fraction of a second."""
    monkeypatch.setattr(Simulator, "for_demo", classmethod(lambda cls: cls(time_scale=0.02)))
    monkeypatch.chdir(tmp_path)
    (tmp_path / "photos").mkdir()
    Image.new("RGB", (320, 240), "orange").save(tmp_path / "photos" / "cat.jpg")
    ip = InteractiveShell.instance()
    before = set(ip.user_ns)
    yield ip
    for name in set(ip.user_ns) - before:
        del ip.user_ns[name]
    if "qwen_widgets" in ip.extension_manager.loaded:
        ip.run_line_magic("unload_ext", "qwen_widgets")


def use_up_the_day(monkeypatch) -> None:
    """Before the spending-limit example: a new kernel (the limits are read when its client is
    made) in which the class has already made its 50 images today."""
    qw.set_default_client(None)
    for n in [6] * 8 + [2]:
        qw.generate("a fox of the day", n=n)


SETUP = {'qw.generate("one more fox")': use_up_the_day}


@pytest.mark.e2e  # about a minute: some 30 simulated tasks at the default poll schedule
def test_every_code_block_of_the_readme_runs_as_written(shell, monkeypatch, tmp_path):
    found = blocks()
    assert len(found) > 15, "the README's blocks were found"
    environment = {**os.environ, "PATH": f"{command_bin(tmp_path)}{os.pathsep}{os.environ['PATH']}",
                   "PYTHONPATH": str(REPO)}
    for line, language, code in found:
        where = f"README.md line {line}"
        skipped = [reason for start, reason in NOT_RUN.items() if code.startswith(start)]
        if skipped:
            continue
        if language == "bash":
            for command in code.replace("\\\n", " ").splitlines():  # a continued line is one command
                if not command.strip() or command.startswith("#"):
                    continue
                if command.startswith("export "):  # applies to what follows, as in the reader's shell
                    for assignment in shlex.split(command)[1:]:
                        name, _, value = assignment.partition("=")
                        monkeypatch.setenv(name, value)
                        environment[name] = value
                    continue
                done = subprocess.run(["bash", "-c", command], cwd=tmp_path, env=environment,
                                      capture_output=True, text=True, timeout=300)
                assert done.returncode == 0, f"{where}: {command}\n{done.stderr}"
            continue
        assert language == "python", f"{where}: a {language} block the test does not know how to run"
        for trigger, setup in SETUP.items():
            if trigger in code:
                setup(monkeypatch)
        for cell, expected in cells(code):
            with capture_output():
                result = shell.run_cell(cell)
            error = result.error_before_exec or result.error_in_exec
            if expected is None:
                assert error is None, f"{where}: {cell}\n{type(error).__name__}: {error}"
                continue
            name, message = expected
            assert type(error).__name__ == name, f"{where}: {cell} should raise {name}, got {error!r}"
            assert comparable(str(error)).startswith(comparable(message)), f"{where}: {error} vs {message}"


def test_every_shell_block_is_run_or_listed_with_its_reason():
    for line, language, code in blocks():
        if language == "bash" and any(code.startswith(start) for start in NOT_RUN):
            continue
        assert language in ("bash", "python"), f"README.md line {line}: a {language} block"
    assert all(any(code.startswith(start) for _, _, code in blocks()) for start in NOT_RUN), \
        "every listed block is still in the README"


def test_documents_cited_in_the_code_are_in_the_repository():
    """Docstrings and comments cite `docs/...` files; a file outside the repository (the old
    `API.md`) helps no reader."""
    cited = {}
    for path in (REPO / "qwen_widgets").rglob("*.py"):
        for name in re.findall(r"(?<![\w/.-])((?:docs/)?[\w.-]+\.md)\b", path.read_text()):
            cited.setdefault(name, []).append(path.name)
    missing = {name: files for name, files in cited.items() if not (REPO / name).is_file()}
    assert not missing and "docs/api-contract.md" in cited
