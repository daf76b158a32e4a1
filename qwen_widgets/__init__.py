"""qwen_widgets: generate images with Qwen-Image 2.0 (APIMart) from Jupyter and Python.

    import qwen_widgets as qw
    task = qw.generate("a red fox in snow", size="16:9", n=2)

With no APIMART_API_KEY set, everything runs against a built-in offline simulator.
Importing this package is cheap: pandas, Pillow and ipywidgets load only when used.
"""

from ._client import DEFAULT_BASE_URL, AsyncQwenClient, DemoModeWarning, QwenClient, generate, resume
from ._errors import (
    APIError,
    AuthenticationError,
    ImageFetchError,
    JournalError,
    MalformedResponseError,
    NotFoundError,
    PermissionDeniedError,
    QwenError,
    RateLimitError,
    RequestValidationError,
    ServerError,
    SubmitOutcomeUnknownError,
    TaskFailedError,
    TaskTimeoutError,
    TransportError,
)
from ._frame import history, to_frame
from ._journal import Journal
from ._models import GeneratedImage, Task, TaskStatus
from ._polling import PollBudget, PollSchedule
from ._request import MODELS, RESOLUTIONS, SIZES, ImageRequest
from ._retry import RetryPolicy
from ._save import disk_usage, prune, save
from ._sweep import Sweep, sweep

__version__ = "0.1.0"

_WIDGETS = ("Panel", "Gallery", "Card", "show")


def __getattr__(name: str):
    # ipywidgets costs more to import than the whole engine: load it on first use
    if name in _WIDGETS:
        from . import widgets

        return getattr(widgets, name)
    raise AttributeError(f"module 'qwen_widgets' has no attribute {name!r}")


def load_ipython_extension(ipython) -> None:
    """`%load_ext qwen_widgets`: register %qwen and %%qwen, quietly."""
    from ._magics import register, unfinished_notice

    register(ipython)
    notice = unfinished_notice()
    if notice:
        print(notice)


def unload_ipython_extension(ipython) -> None:
    """`%unload_ext qwen_widgets`: remove the magics again."""
    from ._magics import unregister

    unregister(ipython)


__all__ = [
    "__version__",
    "ImageRequest",
    "MODELS",
    "SIZES",
    "RESOLUTIONS",
    "Task",
    "TaskStatus",
    "GeneratedImage",
    "AsyncQwenClient",
    "QwenClient",
    "generate",
    "resume",
    "sweep",
    "Sweep",
    "history",
    "save",
    "disk_usage",
    "prune",
    "Journal",
    "to_frame",
    "Panel",
    "Gallery",
    "Card",
    "show",
    "load_ipython_extension",
    "unload_ipython_extension",
    "DEFAULT_BASE_URL",
    "DemoModeWarning",
    "PollSchedule",
    "PollBudget",
    "RetryPolicy",
    "QwenError",
    "RequestValidationError",
    "APIError",
    "AuthenticationError",
    "PermissionDeniedError",
    "NotFoundError",
    "RateLimitError",
    "ServerError",
    "MalformedResponseError",
    "TransportError",
    "SubmitOutcomeUnknownError",
    "TaskFailedError",
    "TaskTimeoutError",
    "ImageFetchError",
    "JournalError",
]
