"""The client's settings from the environment: the key, the API's base URL, the demo switch,
whether completed images are kept, and the spending limits. (The home folder is the store's:
`store.home`.)

Each is read when a client is built (or a function asks), never at import, so a notebook can
set a variable and then create a client.
"""

from __future__ import annotations

import os
import warnings
from typing import Any

from ..model.errors import RequestValidationError
from ..model.limits import SpendingLimits
from ..model.urls import has_credentials, is_http_url

__all__ = ["DEFAULT_BASE_URL", "DemoModeWarning"]

DEFAULT_BASE_URL = "https://api.apimart.ai"
"""The APIMart API, used unless `base_url=` or APIMART_BASE_URL says otherwise."""

API_KEY = "APIMART_API_KEY"
BASE_URL = "APIMART_BASE_URL"
DEMO = "QWEN_WIDGETS_DEMO"
KEEP_IMAGES = "QWEN_WIDGETS_KEEP_IMAGES"
MAX_IMAGES_PER_DAY = "QWEN_WIDGETS_MAX_IMAGES_PER_DAY"
MAX_SPEND_PER_DAY = "QWEN_WIDGETS_MAX_SPEND_PER_DAY"
PRICE_PER_IMAGE = "QWEN_WIDGETS_PRICE_PER_IMAGE"


class DemoModeWarning(UserWarning):
    """Shown once per process when the clients fall back to the built-in simulator."""


def api_key() -> str:
    """The key from APIMART_API_KEY, or "" when it is not set."""
    return os.environ.get(API_KEY, "")


def base_url(given: str | None = None) -> str:
    """`given`, else APIMART_BASE_URL, else the APIMart API; without a trailing slash.
    RequestValidationError when it is not a usable http(s) URL."""
    url = given or os.environ.get(BASE_URL) or DEFAULT_BASE_URL
    if not is_http_url(url):
        raise RequestValidationError(
            "base_url", "must be an http(s) URL with a host, a valid port and no credentials",
            url, show_value=not has_credentials(url))
    return url.rstrip("/")


def demo_forced() -> bool:
    """True when QWEN_WIDGETS_DEMO asks for the simulator even if a key is set."""
    return os.environ.get(DEMO, "").strip().lower() in ("1", "true", "yes", "on")


def keep_images() -> bool:
    """Whether completed images are copied into the home folder (QWEN_WIDGETS_KEEP_IMAGES)."""
    return os.environ.get(KEEP_IMAGES, "1") != "0"


def spending_limits(max_images: Any, max_spend: Any, price: Any) -> SpendingLimits:
    """The limits from the client's options, each left out one from its environment variable."""
    return SpendingLimits(
        _option(max_images, MAX_IMAGES_PER_DAY, int),
        _option(max_spend, MAX_SPEND_PER_DAY, float),
        _option(price, PRICE_PER_IMAGE, float))


def _option(given: Any, variable: str, kind: type) -> Any:
    if given is not NOT_GIVEN:
        return given
    text = os.environ.get(variable, "").strip()
    if not text:
        return None
    try:
        return kind(text)
    except ValueError:
        raise RequestValidationError(variable, f"must be a {'whole ' if kind is int else ''}number", text) from None


_demo_announced = False


def demo_reason() -> str:
    """Why a client runs against the simulator, as far as can be told without guessing."""
    if demo_forced():
        return f"{DEMO}=1 is set"
    if api_key():
        return f"this client was given a simulator ({API_KEY} is not used by it)"
    return f"no API key set ({API_KEY})"


def announce_demo() -> None:
    """Say once per process, in one short line, that images are simulated, and why.

    In a script this is a DemoModeWarning on stderr. In a Jupyter kernel a warning is drawn
    as a pink error-like box, so there it is one plain printed line instead; the widgets
    (which show the same notice in their own line) create their client with the warning
    filtered out, and then nothing is printed. `warnings` filters are honoured in both.
    """
    global _demo_announced
    if _demo_announced:
        return
    _demo_announced = True
    message = f"Simulated images (the built-in offline simulator): {demo_reason()}."
    if not _in_kernel():
        # warn_explicit: one clean line, without echoing whichever source line created the client
        warnings.warn_explicit(message, DemoModeWarning, "qwen_widgets", 0)
        return
    with warnings.catch_warnings(record=True) as caught:
        warnings.warn_explicit(message, DemoModeWarning, "qwen_widgets", 0)
    if caught:  # not filtered out (by the widgets, or the user)
        print(f"qwen_widgets: {message}")


def _in_kernel() -> bool:
    import sys

    shell = sys.modules.get("IPython") and sys.modules["IPython"].get_ipython()
    return type(shell).__name__ == "ZMQInteractiveShell"


class NotGiven:
    """The type of NOT_GIVEN: an option left out, as opposed to one set to None or 0."""

    _instance: NotGiven | None = None

    def __new__(cls) -> NotGiven:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "NOT_GIVEN"

    def __bool__(self) -> bool:
        return False


NOT_GIVEN = NotGiven()
