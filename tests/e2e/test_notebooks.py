"""The notebooks run top to bottom with a real kernel, installed exactly as Binder installs them.

A session fixture provides a virtual environment built from `binder/requirements.txt` (run from
the repository root, as repo2docker does) and registers its kernel; nbclient executes every
notebook there in demo mode, all at once. The environment also holds a dummy key, which must
not appear in the executed notebook or its stored widget state.

Building that environment takes half a minute or more, so it is kept between runs in the user's
cache (`~/.cache/qwen_widgets-tests`, never in the repository), under a key made of everything
the install reads: the requirements, pyproject.toml, the package's files and the Python
version. A change to any of them builds a new one; the few most recently used are kept.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import hashlib
import json
import os
import secrets
import shutil
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
KEEP_VENVS = 3
BUILT = "built"  # written last: an environment without it is half built
# The teaching notebook sleeps and waits in real time to show what polling costs; under test it
# runs ten times faster (its first cell reads this), the same cells and the same story.
SPEED = {"QWEN_WIDGETS_NOTEBOOK_SPEED": "10"}


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


def _cache_root() -> Path:
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "qwen_widgets-tests"


def install_key() -> str:
    """A digest of everything `pip install -r binder/requirements.txt` reads from here."""
    digest = hashlib.sha256(sys.version.encode())
    files = [REPO / "binder" / "requirements.txt", REPO / "pyproject.toml"]
    files += sorted(p for p in (REPO / "qwen_widgets").rglob("*") if p.is_file() and "__pycache__" not in p.parts)
    for path in files:
        digest.update(str(path.relative_to(REPO)).encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()[:20]


@contextlib.contextmanager
def _locked(path: Path, mode: int):
    with path.open("a") as handle:
        fcntl.flock(handle, mode)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _build(root: Path) -> None:
    shutil.rmtree(root, ignore_errors=True)
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
    (root / BUILT).touch()


def _prune(cache: Path, keep: Path) -> None:
    """Remove all but the KEEP_VENVS most recently used environments that nobody is using."""
    built = sorted((p for p in cache.glob("binder-*") if p.is_dir() and (p / BUILT).exists()),
                   key=lambda p: (p / BUILT).stat().st_mtime, reverse=True)
    for old in built[KEEP_VENVS:]:
        if old == keep:
            continue
        with (cache / f"{old.name}.lock").open("a") as handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                continue  # another run is using it
            shutil.rmtree(old, ignore_errors=True)


@pytest.fixture(scope="session")
def binder_kernel():
    """A kernel from a venv built the way Binder builds it; yields its JUPYTER_PATH."""
    cache = _cache_root()
    cache.mkdir(parents=True, exist_ok=True)
    root = cache / f"binder-{install_key()}"
    in_use = cache / f"{root.name}.lock"
    if not (root / BUILT).exists():
        with _locked(in_use, fcntl.LOCK_EX):  # one build at a time, and none while it is used
            if not (root / BUILT).exists():
                _build(root)
    (root / BUILT).touch()  # the most recently used
    with _locked(in_use, fcntl.LOCK_SH):  # shared while this run uses it: not pruned
        with _locked(cache / "prune.lock", fcntl.LOCK_EX):
            _prune(cache, root)
        yield str(root / "share" / "jupyter")


@pytest.fixture(scope="session")
def executed(binder_kernel, tmp_path_factory):
    """Every notebook run top to bottom in demo mode, all at once (each mostly waits on its
    simulated tasks, so together they take about as long as the longest alone); yields
    (the dummy key in their environment, {name: the executed notebook or the error})."""
    dummy_key = f"sk-dummy-{secrets.token_hex(12)}"
    folder = tmp_path_factory.mktemp("notebooks")
    with pytest.MonkeyPatch.context() as env:  # the kernels inherit it
        env.setenv("JUPYTER_PATH", binder_kernel)
        env.setenv("APIMART_API_KEY", dummy_key)
        env.setenv("QWEN_WIDGETS_DEMO", "1")
        env.setenv("QWEN_WIDGETS_HOME", str(folder / "qwen_home"))
        for name, value in SPEED.items():
            env.setenv(name, value)

        async def run(path: Path):
            notebook = nbformat.read(path, as_version=4)
            cwd = folder / path.stem
            cwd.mkdir()
            client = NotebookClient(notebook, timeout=600, kernel_name=KERNEL_NAME,
                                    resources={"metadata": {"path": str(cwd)}}, store_widget_state=True)
            try:
                await client.async_execute()  # CellExecutionError on the first failing cell
            except Exception as error:  # noqa: BLE001 (the notebook's own test reports it)
                return error
            (cwd / path.name).write_text(nbformat.writes(notebook))  # left for inspection
            return notebook

        async def run_all():
            return await asyncio.gather(*(run(path) for path in NOTEBOOKS))

        results = asyncio.run(run_all())
    yield dummy_key, {path.stem: result for path, result in zip(NOTEBOOKS, results)}


@pytest.mark.timeout(900)
@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_runs_in_demo_mode_and_keeps_no_key(path, executed):
    dummy_key, notebooks = executed
    notebook = notebooks[path.stem]
    if isinstance(notebook, BaseException):
        raise notebook
    executed_text = nbformat.writes(notebook)
    assert dummy_key not in executed_text
    outputs = [o for cell in notebook.cells if cell.cell_type == "code" for o in cell.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    streams = "".join(o.get("text", "") for o in outputs if o.output_type == "stream")
    assert "Simulated images" in streams + executed_text  # demo mode was on, and said so (or the panel did)
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
