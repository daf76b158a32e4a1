"""How the package's own errors show in IPython: their message, not the frames under it.

A QwenError's message says what is wrong and what to do ("n: must be from 1 to 6 (got 9)");
the dozens of frames between the user's cell and the line that raised it are the package's
own and only bury that message. IPython asks an exception for `_render_traceback_()` before
it formats one: the package's errors answer with their one-line message and a pointer to
the rest. In any exception mode but IPython's default ("Context"), the whole traceback is
shown as usual, so it stays one step away: `%tb Plain` (or `%xmode Plain` for every error).
Outside IPython nothing changes: Python prints its traceback.
"""

from __future__ import annotations

import sys

__all__: list[str] = []

HINT = "(a qwen_widgets error, shown without its frames: %tb Plain shows the full traceback)"


def render_traceback(error: BaseException) -> list[str]:
    """The lines IPython shows for `error`: short in the default mode, whole otherwise."""
    shell = _shell()
    if shell is None:  # not an IPython shell after all: the whole traceback, as Python gives it
        import traceback

        return traceback.format_exception(error)
    formatter = shell.InteractiveTB
    if formatter.mode != "Context":
        return formatter.structured_traceback(type(error), error, error.__traceback__)
    return [*formatter.get_exception_only(type(error), error), HINT]


def _shell():
    ipython = sys.modules.get("IPython")
    return ipython.get_ipython() if ipython is not None else None
