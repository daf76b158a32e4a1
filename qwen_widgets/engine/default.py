"""The default client: the process-wide QwenClient behind `qw.generate`, the magics and panels
built without one."""

from __future__ import annotations

import threading
import warnings

from ..model.errors import RequestValidationError
from .settings import DemoModeWarning
from .sync import QwenClient

__all__ = ["default_client", "set_default_client"]

_default: QwenClient | None = None
_lock = threading.Lock()


def default_client(*, announce: bool = True) -> QwenClient:
    """The process-wide client behind `qwen_widgets.generate`, created on first use.

    `announce=False` creates it without the one-line demo-mode notice: a view that says so in
    its own line asks this way."""
    global _default
    with _lock:
        if _default is None:
            with warnings.catch_warnings():
                if not announce:
                    warnings.simplefilter("ignore", DemoModeWarning)
                _default = QwenClient()
        return _default


def set_default_client(client: QwenClient | None) -> None:
    """Make `client` the one behind `qwen_widgets.generate` (e.g. after a key is entered);
    None forgets it, so the next call builds one from the environment again."""
    global _default
    if client is not None and not isinstance(client, QwenClient):
        raise RequestValidationError("client", "must be a QwenClient (the synchronous client)", client)
    with _lock:
        _default = client


def current_client() -> QwenClient | None:
    """The default client if one was made (by `qw.generate`, a panel, `%qwen`...), else None:
    what the library functions look at before falling back to the home folder's journal."""
    with _lock:
        return _default
