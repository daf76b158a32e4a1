"""The home folder: where the journal and the kept images live (QWEN_WIDGETS_HOME).

Read when something asks for it, never at import, so a notebook can set the variable first.
"""

from __future__ import annotations

import os
from pathlib import Path

from ..model.errors import RequestValidationError

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
    """home_path(), created readable by the user only; RequestValidationError naming the
    setting and what to do when it cannot be a folder (it is a file, or cannot be created)."""
    path = home_path()
    if not path.is_dir():
        try:
            path.mkdir(parents=True, exist_ok=True)
            path.chmod(0o700)
        except OSError as error:
            raise _unusable(path, error) from None
    return path


def _unusable(path: Path, error: OSError) -> RequestValidationError:
    if isinstance(error, FileExistsError):
        why = "it is a file, not a folder"
    elif isinstance(error, NotADirectoryError):
        why = "part of that path is a file, not a folder"
    else:
        why = f"it cannot be created ({error.strerror or error})"
    if os.environ.get(HOME):
        advice = f"set {HOME} to a folder (it is created if missing), or unset it to use the default"
    else:
        advice = f"set {HOME} to a folder you can write"
    return RequestValidationError(HOME, f"{path} cannot hold the journal and kept images: {why}; {advice}",
                                  show_value=False)
