"""What the end-to-end tests share: one JupyterLab per run."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def lab(tmp_path_factory):
    """One JupyterLab for every browser test of the run (tests/e2e/test_browser.py's `_lab`):
    starting it takes longer than most of what a test then does with it. Each test gets its
    own folder, workspace and kernels through `_serve`."""
    from .test_browser import _lab, _require_chromium

    _require_chromium()
    with _lab(tmp_path_factory.mktemp("lab")) as running:
        yield running
