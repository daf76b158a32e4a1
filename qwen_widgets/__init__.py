"""qwen_widgets: generate images with Qwen-Image 2.0 (APIMart) from Jupyter and Python.

    import qwen_widgets as qw
    task = qw.generate("a red fox in snow", size="16:9", n=2)

With no APIMART_API_KEY set, everything runs against a built-in offline simulator.
Importing this package is cheap: pandas, Pillow and ipywidgets load only when used.
"""

# Each private module's __all__ lists exactly its public names.
from ._account import *  # noqa: F403
from ._api import *  # noqa: F403
from ._budget import *  # noqa: F403
from ._client import *  # noqa: F403
from ._config import *  # noqa: F403
from ._errors import *  # noqa: F403
from ._frame import *  # noqa: F403
from ._journal import *  # noqa: F403
from ._polling import *  # noqa: F403
from ._request import *  # noqa: F403
from ._retry import *  # noqa: F403
from ._store import *  # noqa: F403
from ._sweep import *  # noqa: F403
from ._sync import *  # noqa: F403
from ._task import *  # noqa: F403
from . import _account, _api, _budget, _client, _config, _errors, _frame, _journal, _polling, _request, _retry, _store, _sweep, _sync, _task

__version__ = "0.1.0"

_WIDGETS = ("Panel", "Gallery", "Card", "show")

__all__ = [
    "__version__",
    *_account.__all__, *_api.__all__, *_budget.__all__, *_client.__all__, *_config.__all__, *_errors.__all__,
    *_frame.__all__, *_journal.__all__, *_polling.__all__, *_request.__all__, *_retry.__all__,
    *_store.__all__, *_sweep.__all__, *_sync.__all__, *_task.__all__,
    *_WIDGETS,
    "load_ipython_extension", "unload_ipython_extension",
]

# Public names report the package as their home, as httpx's do: `qwen_widgets.TaskFailedError`
for _name in __all__:
    _value = globals().get(_name)
    if isinstance(_value, type) or callable(_value):
        if getattr(_value, "__module__", "").startswith("qwen_widgets._"):
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
