"""qwen_widgets: generate images with Qwen-Image 2.0 (APIMart) from Jupyter and Python.

    import qwen_widgets as qw
    task = qw.generate("a red fox in snow", size="16:9", n=2)

With no APIMART_API_KEY set, everything runs against a built-in offline simulator.
Importing this package is cheap: pandas, Pillow and ipywidgets load only when used.

The package is layered, each layer importing only those below it (checked by import-linter):
`model` (values and rules, pure) < `store` (the journal and images on disk) < `engine` (the
clients, the request budget, polling, the private loop) < `widgets` (the notebook views) < this
front door (the functions below, the magics, the command line). `simulator` and `gateway`
stand apart. Everything a user needs is named here; the rest is documented in its module.
"""

from ._front import (
    balance,
    delete,
    diff,
    export,
    generate,
    hide,
    history,
    lineage,
    read_receipt,
    rerun,
    resume,
    save,
    star,
    sweep,
    unhide,
    unstar,
    upload,
)
from ._tracebacks import render_traceback as _render_traceback
from ._version import __version__
from .engine.budget import RequestBudget
from .engine.client import AsyncQwenClient
from .engine.default import default_client, set_default_client
from .engine.polling import PollSchedule
from .engine.retry import RetryPolicy
from .engine.settings import DemoModeWarning
from .engine.sweep import Sweep
from .engine.sync import QwenClient
from .model.account import Balance
from .model.errors import (
    APIError,
    AuthenticationError,
    ImageFetchError,
    ImageUploadError,
    JournalError,
    MalformedResponseError,
    NotFoundError,
    PermissionDeniedError,
    QwenError,
    RateLimitError,
    RequestValidationError,
    ServerError,
    SpendingLimitError,
    SubmitOutcomeUnknownError,
    TaskFailedError,
    TaskTimeoutError,
    TransportError,
)
from .model.frame import to_frame
from .model.lineage import Reference
from .model.receipt import Receipt
from .model.request import MODELS, RESOLUTIONS, SIZES, ImageRequest
from .model.task import GeneratedImage, Task, TaskStatus, UploadedImage
from .store.images import disk_usage, prune

_WIDGETS = ("Panel", "Card", "show")

__all__ = [
    "__version__",
    # the front door
    "generate", "resume", "sweep", "history", "save", "export", "upload", "balance", "to_frame",
    "default_client", "set_default_client", "disk_usage", "prune",
    # the library: find, keep, reuse, trace
    "star", "unstar", "hide", "unhide", "delete", "lineage", "diff", "read_receipt", "rerun",
    # the views (ipywidgets loads on first use)
    *_WIDGETS,
    # clients and their options
    "QwenClient", "AsyncQwenClient", "PollSchedule", "RetryPolicy", "RequestBudget", "DemoModeWarning",
    # values
    "ImageRequest", "MODELS", "SIZES", "RESOLUTIONS", "Task", "TaskStatus", "GeneratedImage",
    "UploadedImage", "Balance", "Sweep", "Receipt", "Reference",
    # errors
    "QwenError", "RequestValidationError", "APIError", "AuthenticationError", "PermissionDeniedError",
    "NotFoundError", "RateLimitError", "ServerError", "MalformedResponseError", "TransportError",
    "SubmitOutcomeUnknownError", "TaskFailedError", "TaskTimeoutError", "ImageFetchError", "JournalError",
    "SpendingLimitError", "ImageUploadError",
    # %load_ext qwen_widgets
    "load_ipython_extension", "unload_ipython_extension",
]

# In IPython the package's errors show as their message, not the frames under it (_tracebacks)
QwenError._render_traceback_ = _render_traceback  # type: ignore[attr-defined]

# Public names report the package as their home, as httpx's do: `qwen_widgets.TaskFailedError`
for _name in __all__:
    _value = globals().get(_name)
    if isinstance(_value, type) or callable(_value):
        if getattr(_value, "__module__", "").startswith("qwen_widgets."):
            _value.__module__ = "qwen_widgets"
del _name, _value


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
