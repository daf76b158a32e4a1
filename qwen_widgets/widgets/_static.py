"""The copy of a view's results that is saved with the notebook and outlives the kernel.

A widget's saved output is only a pointer to a model that lives in the kernel: reopened
without one, JupyterLab shows "Error displaying widget: model not found", and nbconvert (so
nbviewer and GitHub) shows the text fallback. Plotly, Bokeh and Altair solve the same
problem the same way: next to the live output, a plain static output (here HTML with small
base64 JPEG thumbnails, the prompt and the parameters) that any renderer can show.

`Mirror.display(widget)` shows the live widget, then the static copy under a display id;
`refresh()` replaces that copy with `update_display` whenever the results change (from the
private loop: JupyterLab routes updates by display id, not by cell). The copy carries CSS
rules, no script (`:has()`): "hide me while the live view with my id is on the page", so a
running notebook shows the results once (written for JupyterLab's page and for any page holding
every output in one document, VS Code's; see page_html); "hide the widget output before me
while it is not live", so a reopened notebook shows one notice (the copy's heading), not
JupyterLab's "Error displaying widget: model not found" above it; and "never fold me into a
scrolled box", which Notebook 7 does to long outputs. The widget's text fallback (what an HTML
export shows where no widget can run) is empty: the copy's heading is the one notice there too.
The copy is marked so that no math typesetter reads its dollar amounts as LaTeX.
"""

from __future__ import annotations

import asyncio
import base64
import concurrent.futures
import html
import threading
import uuid
from collections.abc import Callable, Coroutine, Iterable
from dataclasses import dataclass, field
from typing import Any
__all__: list[str] = []

_REFRESH_DELAY = 0.3
"""Seconds to gather changes into one update (a card's thumbnails arrive within moments)."""


@dataclass
class Entry:
    """One generation as the static copy shows it."""

    title: str
    details: str
    thumbnails: list[bytes] = field(default_factory=list)
    note: str = ""
    images: int = 0
    """When one picture stands for several images (a contact sheet), how many."""


def entry_html(entry: Entry) -> str:
    """One generation: prompt, parameters, thumbnails (base64 JPEG), and a note; all escaped."""
    count = len(entry.thumbnails)

    def alt(number: int) -> str:
        if entry.images > 1:
            return f"{entry.images} images of: {entry.title[:150]}"
        return f"Image {number} of {count}: {entry.title[:150]}"

    pictures = "".join(
        f'<img src="data:image/jpeg;base64,{base64.b64encode(data).decode()}" '
        f'alt="{html.escape(alt(number), quote=True)}" '
        f'style="max-width: {320 if entry.images > 1 else 256}px; max-height: 256px; margin: 0 6px 6px 0">'
        for number, data in enumerate(entry.thumbnails, 1))
    note = f'<div style="font-size: 0.9em">{html.escape(entry.note)}</div>' if entry.note else ""
    return ('<div style="border: 1px solid #9e9e9e; border-radius: 4px; padding: 6px 8px; '
            'margin: 0 0 6px 0">'
            f'<div style="white-space: pre-wrap; font-weight: 600">{html.escape(entry.title)}</div>'
            f'<div style="font-size: 0.9em">{html.escape(entry.details)}</div>'
            f'{note}<div>{pictures}</div></div>')


NO_MATH = "tex2jax_ignore mathjax_ignore"
"""Classes that keep math typesetters away from an element: JupyterLab typesets `$...$` in
every HTML output (MathJax 3, whose default `ignoreHtmlClass` is `tex2jax_ignore`; MathJax
3.2+ and other frontends also honour `mathjax_ignore`), which would turn "$0.021 ... $0.021"
into italic math."""


def page_html(mirror_id: str, heading: str, entries: Iterable[Entry]) -> str:
    """The whole static copy: its rules, a heading, and every entry (in the order given).

    The first rule hides the copy while its live view is on the same page. Its first selector
    fits JupyterLab, Notebook 7 and Voila, and hides the output's whole wrapper (no empty gap);
    the second fits any frontend that renders every output into one document, as VS Code's
    notebook webview does (it does not keep JupyterLab's classes); either way the live view
    carries `qw-live-<id>` and the copy `qw-static-<id>`, so one copy hides only for its own
    view. Where no live view is on the page (no kernel, nbconvert, nbviewer), the copy shows,
    and the widget output before it that cannot be shown is hidden; Notebook 7 does not fold it."""
    live, copy = f".qw-live-{mirror_id}", f".qw-static-{mirror_id}"
    rules = (f".jp-OutputArea:has({live}) .jp-OutputArea-child:has({copy}), :root:has({live}) {copy} {{display: none}}"
             f" .jp-OutputArea-child:not(:has({live})):has(+ .jp-OutputArea-child {copy}) {{display: none}}"
             f" .jp-OutputArea:has({copy}), .jp-Cell-outputArea:has({copy}) {{max-height: none !important;"
             " overflow-y: visible !important}")
    body = "".join(entry_html(entry) for entry in entries)
    return (f'<style>{rules}</style><div class="qw-static qw-static-{mirror_id} {NO_MATH}">'
            f'<div style="font-size: 0.9em; margin: 0 0 4px 0">{html.escape(heading)}</div>'
            f"{body}</div>")


class Mirror:
    """The static copy of one widget: shown beside it, kept current with update_display.

    `render()` (given by the widget) returns the current HTML; it is called on the private
    loop's thread or the caller's, never holding widget locks. `background` runs a coroutine
    on the client's loop (`client.background`): updates are sent from there.
    """

    def __init__(self, render: Callable[[str], str],
                 background: Callable[[Coroutine[Any, Any, None]], concurrent.futures.Future]):
        self.id = uuid.uuid4().hex[:16]
        self._render = render
        self._background = background
        self._shown = False
        self._pending = False
        self._lock = threading.Lock()
        self.updates = 0
        """How many times the copy was replaced (tests wait on it)."""

    @property
    def live_class(self) -> str:
        """The DOM class the live widget carries, which hides this copy while it is mounted."""
        return f"qw-live-{self.id}"

    def html(self) -> str:
        return self._render(self.id)

    def bundle(self) -> dict[str, str]:
        return {"text/html": self.html(), "text/plain": ""}

    def display(self, widget) -> None:
        """Show `widget` and, below it, the static copy. The widget's text fallback (what an
        export shows without widget state) is emptied: a repr taken at display time says
        nothing about later results, and the copy's heading is the one notice."""
        from IPython.display import display

        widget.add_class(self.live_class)
        bundle = widget._repr_mimebundle_()
        bundle["text/plain"] = ""
        display(bundle, raw=True)
        display(self.bundle(), raw=True, display_id=self.id)
        self._shown = True

    def refresh(self) -> None:
        """Replace the saved copy soon (changes within a moment are sent as one update)."""
        if not self._shown:
            return
        with self._lock:
            if self._pending:
                return
            self._pending = True
        self._background(self._flush_soon())

    async def _flush_soon(self) -> None:
        await asyncio.sleep(_REFRESH_DELAY)
        self.flush()

    def flush(self) -> None:
        """Send the current copy now."""
        from IPython.display import update_display

        with self._lock:
            self._pending = False
        update_display(self.bundle(), raw=True, display_id=self.id)
        self.updates += 1
