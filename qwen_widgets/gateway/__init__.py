"""Class mode: one real API key on a gateway, capped codes for the students.

A teacher runs the gateway with the real key in its own environment; each student gets a
code to use as their `APIMART_API_KEY`, with `APIMART_BASE_URL` pointing at the gateway.
The gateway speaks APIMart's API, checks every request against the class's window, budgets
and prompt rules, forwards it with the real key, and shows the teacher a page of classes,
codes, use and results. With no key it fronts the built-in simulator (demo mode).

- `python -m qwen_widgets.gateway serve|add-class|revoke|...` (see `cli.py`);
- `start(DIR)` runs one from Python (a notebook cell, a test) and returns the running server;
- `Store` is the data folder's database (classes, codes, usage), used by the commands.

Importing this package is cheap: tornado is imported only when a gateway starts.
"""

from __future__ import annotations

import os
from typing import Any

from .folder import DataFolder, FolderInUse
from .store import FieldError, Store

__all__ = ["start", "Store", "DataFolder", "FolderInUse", "FieldError", "INSTALL_HINT"]

INSTALL_HINT = "the gateway needs tornado: pip install 'qwen_widgets[gateway]'"


def start(data: str | os.PathLike[str], **options: Any) -> Any:
    """Start a gateway on data folder `data` in a background thread; returns the running
    `GatewayServer` (`.url`, `.teacher_url`, `.close()`).

    Options: `host` ('127.0.0.1'), `port` (0: any free port), `api_key` (None: the built-in
    simulator), `base_url`, `simulator` (a Simulator to front), `clock`, `hub_class`, `prefix`.
    Raises FolderInUse when another gateway serves `data`.
    """
    try:
        import tornado  # noqa: F401
    except ImportError:
        raise ImportError(INSTALL_HINT) from None
    from .server import GatewayServer

    return GatewayServer(data, **options)
