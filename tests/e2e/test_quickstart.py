"""The README's quick-start commands, run exactly as written (as root in CI, as whoever runs them here)."""

from __future__ import annotations

import os
import re
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


def test_quick_start_command_1_starts_jupyterlab_on_the_demo_notebook(tmp_path):
    """Command 1 verbatim: it installs (already done here, so quick) and starts JupyterLab,
    which must come up as the current user, root included."""
    env = {**os.environ, "BROWSER": "true", "JUPYTER_RUNTIME_DIR": str(tmp_path / "runtime"),
           "JUPYTER_CONFIG_DIR": str(tmp_path / "config"), "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
    env.pop("APIMART_API_KEY", None)
    process = subprocess.Popen(["bash", "-c", quick_start_commands()["1"]], cwd=REPO, env=env,
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
