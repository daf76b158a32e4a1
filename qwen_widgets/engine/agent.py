"""How this package names itself on the wire: the User-Agent of every request it sends.

httpx's default (`python-httpx/x.y`) makes this client's traffic indistinguishable from any
script's; APIMart, a class gateway or a proxy's log can tell `qwen-widgets/x.y` apart, and a
bug report's server-side line says which version, httpx and Python sent it (as
`replicate-python/x.y` and `fal-client/x.y` do for their clients).
"""

from __future__ import annotations

import platform

import httpx

from .._version import __version__

__all__ = ["USER_AGENT"]

USER_AGENT = f"qwen-widgets/{__version__} (+httpx/{httpx.__version__}; python/{platform.python_version()})"
