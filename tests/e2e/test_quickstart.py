"""The README's quick-start commands, run exactly as written (as root in CI, as whoever runs them here)."""

from __future__ import annotations

import fcntl
import hashlib
import os
import re
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e  # slow: a real kernel, browser, venv or killed process (pytest -m 'not e2e' skips them)

REPO = Path(__file__).resolve().parents[2]


def quick_start_commands() -> dict[str, str]:
    """'1' and '2' -> the commands under the '# 1.' and '# 2.' comments of the README."""
    block = re.search(r"## Quick start.*?```bash\n(.*?)```", (REPO / "README.md").read_text(), re.S)
    assert block, "the README has a Quick start section with a bash block"
    commands, number = {}, None
    for line in block.group(1).splitlines():
        heading = re.match(r"# (\d)\.", line.strip())
        if heading:
            number = heading.group(1)
        elif line.strip() and number:
            commands[number] = line.strip()
    return commands


def test_the_readme_has_exactly_two_quick_start_commands_and_ci_runs_the_second():
    commands = quick_start_commands()
    assert sorted(commands) == ["1", "2"]
    assert commands["2"] in (REPO / ".ci" / "run").read_text()


def _clone() -> Path:
    """The repository's files as a clone has them, in the test cache: command 1 runs there, so
    its `pip install -e` never reinstalls the package under the suite's other tests (which run
    at the same time, from the repository's own .venv). The copy keeps its .venv between runs
    (the first run installs, about a minute; later ones find it done, as a second run of the
    command would); its files are refreshed every run."""
    from .test_notebooks import _cache_root, _locked

    clone = _cache_root() / f"quickstart-{hashlib.sha256(str(REPO).encode()).hexdigest()[:12]}"
    clone.mkdir(parents=True, exist_ok=True)
    with _locked(clone.with_suffix(".lock"), fcntl.LOCK_EX):
        tracked = subprocess.run(["git", "ls-files", "-z"], cwd=REPO, capture_output=True, check=True).stdout
        for name in filter(None, tracked.decode().split("\0")):
            source = REPO / name
            if source.is_file():
                (clone / name).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(source, clone / name)
    return clone


def test_quick_start_command_1_starts_jupyterlab_on_the_demo_notebook(tmp_path):
    """Command 1 verbatim, in a clone: it installs (quick once done) and starts JupyterLab,
    which must come up as the current user, root included."""
    env = {**os.environ, "BROWSER": "true", "JUPYTER_RUNTIME_DIR": str(tmp_path / "runtime"),
           "JUPYTER_CONFIG_DIR": str(tmp_path / "config"), "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
    env.pop("APIMART_API_KEY", None)
    env.pop("VIRTUAL_ENV", None)
    process = subprocess.Popen(["bash", "-c", quick_start_commands()["1"]], cwd=_clone(), env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                               start_new_session=True)
    output = []
    try:
        deadline = time.monotonic() + 600  # a fresh install may download; far from the usual 30 s
        while time.monotonic() < deadline:
            line = process.stdout.readline()
            if not line:
                break
            output.append(line)
            if "is running at" in line:
                break
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(60)
    text = "".join(output)
    assert "is running at" in text, text[-3000:]
    assert "Running as root is not recommended" not in text
