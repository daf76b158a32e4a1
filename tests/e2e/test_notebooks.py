"""The notebooks run top to bottom with a real kernel, installed exactly as Binder installs them.

A session fixture builds a fresh virtual environment from `binder/requirements.txt` (run from
the repository root, as repo2docker does) and registers its kernel; nbclient executes each
notebook there in demo mode. The environment also holds a dummy key, which must not appear in
the executed notebook or its stored widget state.
"""

from __future__ import annotations

import json
import secrets
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

pytestmark = pytest.mark.e2e  # slow: a real kernel, browser, venv or killed process (pytest -m 'not e2e' skips them)

REPO = Path(__file__).resolve().parents[2]
NOTEBOOKS = sorted((REPO / "notebooks").glob("*.ipynb"))
KERNEL_NAME = "qwen-binder"
WIDGET_STATE = "application/vnd.jupyter.widget-state+json"


def test_the_notebooks_exist():
    assert [p.name for p in NOTEBOOKS] == [
        "image_to_image.ipynb", "prompt_exploration.ipynb", "quickstart.ipynb",
        "teaching_async_apis.ipynb", "voila_app.ipynb",
    ]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_committed_notebooks_are_clean(path):
    notebook = nbformat.read(path, as_version=4)
    nbformat.validate(notebook)
    code = [cell for cell in notebook.cells if cell.cell_type == "code"]
    assert code and all(not cell.outputs and cell.execution_count is None for cell in code)
    assert "widgets" not in notebook.metadata
    assert "APIMART_API_KEY=" not in path.read_text()


@pytest.fixture(scope="session")
def binder_kernel(tmp_path_factory):
    """A kernel from a fresh venv built the way Binder builds it; returns its JUPYTER_PATH."""
    root = tmp_path_factory.mktemp("binder")
    venv = root / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    python = str(venv / "bin" / "python")
    subprocess.run(
        [python, "-m", "pip", "install", "--disable-pip-version-check", "--quiet",
         "-r", "binder/requirements.txt"],
        cwd=REPO, check=True,
    )
    subprocess.run(
        [python, "-m", "ipykernel", "install", "--prefix", str(root), "--name", KERNEL_NAME],
        check=True, capture_output=True,
    )
    return str(root / "share" / "jupyter")


@pytest.mark.timeout(900)
@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_runs_in_demo_mode_and_keeps_no_key(path, binder_kernel, monkeypatch, tmp_path):
    dummy_key = f"sk-dummy-{secrets.token_hex(12)}"
    monkeypatch.setenv("JUPYTER_PATH", binder_kernel)
    monkeypatch.setenv("APIMART_API_KEY", dummy_key)
    monkeypatch.setenv("QWEN_WIDGETS_DEMO", "1")
    notebook = nbformat.read(path, as_version=4)
    client = NotebookClient(notebook, timeout=600, kernel_name=KERNEL_NAME,
                            resources={"metadata": {"path": str(tmp_path)}},
                            store_widget_state=True)
    client.execute()  # raises CellExecutionError on the first failing cell

    executed = nbformat.writes(notebook)
    (tmp_path / path.name).write_text(executed)  # left for inspection when the test fails
    assert dummy_key not in executed
    outputs = [o for cell in notebook.cells if cell.cell_type == "code" for o in cell.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    streams = "".join(o.get("text", "") for o in outputs if o.output_type == "stream")
    assert "Simulated images" in streams + executed  # demo mode was on, and said so (or the panel did)
    uses_widgets = any("application/vnd.jupyter.widget-view+json" in o.get("data", {}) for o in outputs)
    if uses_widgets:  # the search above covered real widget state, not an empty notebook
        state = notebook.metadata["widgets"][WIDGET_STATE]["state"]
        assert state and dummy_key not in json.dumps(state)


@pytest.mark.timeout(300)
@pytest.mark.parametrize("name", ["quickstart", "voila_app"])
def test_under_voila_loading_the_page_spends_nothing(name, server, monkeypatch, tmp_path):
    """Voila runs every cell for each visitor, and tells its kernels so (SERVER_SOFTWARE,
    set as Voila sets it): with a key, no cell of these notebooks may submit anything."""
    monkeypatch.setenv("SERVER_SOFTWARE", "voila/0.5.8")
    monkeypatch.setenv("APIMART_API_KEY", "sk-test-0123456789abcdef")
    monkeypatch.setenv("APIMART_BASE_URL", server.url)
    monkeypatch.setenv("PYTHONPATH", str(REPO))
    notebook = nbformat.read(REPO / "notebooks" / f"{name}.ipynb", as_version=4)
    NotebookClient(notebook, timeout=120, kernel_name="python3",
                   resources={"metadata": {"path": str(tmp_path)}}).execute()
    assert server.simulator.count("POST") == 0  # nothing generated, nothing uploaded
    outputs = [o for cell in notebook.cells if cell.cell_type == "code" for o in cell.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    assert any("application/vnd.jupyter.widget-view+json" in o.get("data", {}) for o in outputs)  # the panel
