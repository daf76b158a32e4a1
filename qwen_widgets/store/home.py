"""The home folder: where the journal and the kept images live (QWEN_WIDGETS_HOME).

Read when something asks for it, never at import, so a notebook can set the variable first.
"""

from __future__ import annotations

import os
from pathlib import Path

__all__: list[str] = []

HOME = "QWEN_WIDGETS_HOME"
"""The environment variable naming the home folder."""


def home_path() -> Path:
    """QWEN_WIDGETS_HOME, or a per-user data folder, as an absolute path (a relative setting
    is resolved against the current folder here, once per call); nothing is created."""
    configured = os.environ.get(HOME)
    if configured:
        path = Path(configured).expanduser()
    elif os.name == "nt":
        path = Path(os.environ.get("LOCALAPPDATA", Path.home())) / "qwen_widgets"
    else:
        path = Path(os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share") / "qwen_widgets"
    return path.absolute()


def home_dir() -> Path:
    """home_path(), created readable by the user only."""
    path = home_path()
    if not path.is_dir():
        path.mkdir(parents=True, exist_ok=True)
        path.chmod(0o700)
    return path
