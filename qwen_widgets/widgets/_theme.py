"""What every view shares: the theme's colours, text as escaped HTML, shared layouts, and the
one way a thumbnail reaches the screen (made by the client, shown here).

Colours are JupyterLab's CSS variables, with a fallback for other frontends. Error text is
`--jp-error-color1`, which each theme sets for its own background: #d32f2f on white (5.0:1)
and #f44336 on the dark notebook's #111 (5.1:1), both above WCAG AA's 4.5:1; the browser test
measures the rendered contrast in both themes. (A fixed #b71c1c reads 6.6:1 on white but only
2.9:1 on dark.)

Text from users and servers goes into `HTML` widgets escaped: Labels cut long text short and
typeset `$...$` as LaTeX ("$0.12 at $0.03" would read "0.12at0.03"); escaped HTML wraps and
shows every character as typed.

Layouts and styles are widgets too (about 5 KiB each): views that never change them share one
instance (`layout()`, `style()`), which keeps a finished card small. Shared ones are never
mutated; a view that hides or shows something changes its children instead.
"""

from __future__ import annotations

import html
from functools import cache
from typing import TYPE_CHECKING, Any

import ipywidgets as widgets

from ..model.errors import QwenError
from ._format import error_message

if TYPE_CHECKING:
    from ..engine.sync import QwenClient
    from ..model.task import GeneratedImage

__all__: list[str] = []

ERROR_COLOR = "var(--jp-error-color1, #c62828)"
MUTED_COLOR = "var(--jp-ui-font-color2, #616161)"
BORDER = "1px solid var(--jp-border-color2, #e0e0e0)"
NOTICE_BORDER = "1px solid var(--jp-warn-color2, #ffb74d)"
THUMBNAIL_EDGE = 256
"""Thumbnails (in the live view and in the copy saved with the notebook) are JPEGs of at most
this many pixels a side: sharp in 128-200 px tiles on high-density screens, ~10 KB each."""


# One stylesheet per live view (a `<style>` in an HTML widget: CSS, no script), scoped to the
# view's element (`qw-root`): wrapped secondary text at its own line height rather than a
# control's (ipywidgets gives every line of an HTML widget 28 px), broken inside a long token (a
# task id) rather than cut off in a narrow card, placeholders at 4.5:1 or
# better in both themes (JupyterLab's own reach 3.5:1 on the dark theme), a visible focus ring
# on the large view the keyboard moves into, controls that shrink with a narrow notebook rather
# than being cut off, and the tabs on the notebook's own background (the error colour reaches
# 4.5:1 on it in both themes, not on the lighter panel colour of the dark theme).
STYLESHEET = """<style>
.qw-root .widget-html-content, .qw-root .widget-label { line-height: 1.35; overflow-wrap: anywhere; }
.qw-root .widget-html, .qw-root .widget-label { min-height: var(--jp-widgets-inline-height, 28px); height: auto; }
.qw-root .widget-html-content { align-self: center; }
.qw-root .widget-html:has(> .widget-html-content:empty) { min-height: 0; height: 0; margin-top: 0; margin-bottom: 0; }
.qw-root textarea::placeholder, .qw-root input::placeholder { color: var(--jp-ui-font-color2, #616161); opacity: 1; }
.qw-root .qw-viewer:focus-within, .qw-root [class*='qw-viewer-']:focus {
  outline: 2px solid var(--jp-brand-color1, #1976d2); outline-offset: 2px; }
.qw-root .widget-dropdown, .qw-root .widget-upload, .qw-root .widget-button { max-width: 100%; }
.qw-root .widget-dropdown > select { width: 0; min-width: 4em; flex: 1 1 auto; }
.qw-root .widget-textarea > textarea, .qw-root .widget-text > input { width: 0; min-width: 0; flex: 1 1 auto; }
.qw-root .jupyter-widget-TabPanel, .qw-root .jupyter-widget-TabPanel-tabBar { min-width: 0; }
.qw-root .jupyter-widgets.jupyter-widget-TabPanel > .jupyter-widget-TabPanel-tabContents {
  background: var(--jp-layout-color0, white); }
.qw-root .qw-copy-box { width: 100%; box-sizing: border-box; }
</style>"""


def stylesheet() -> widgets.HTML:
    """The views' stylesheet as a widget to put among a root view's children."""
    return widgets.HTML(STYLESHEET, layout=layout(display="none"))


def layout(**settings: str) -> widgets.Layout:
    """A Layout shared by every view that asks for the same settings; never mutate it."""
    return _layout(tuple(sorted(settings.items())))


@cache
def _layout(settings: tuple[tuple[str, str], ...]) -> widgets.Layout:
    return widgets.Layout(**dict(settings))


def style(kind: str, **settings: Any) -> widgets.Widget:
    """A shared style of `kind` ("html", "button", "progress"); never mutate it."""
    return _style(kind, tuple(sorted(settings.items())))


@cache
def _style(kind: str, settings: tuple[tuple[str, Any], ...]) -> widgets.Widget:
    from ipywidgets.widgets.widget_float import ProgressStyle
    from ipywidgets.widgets.widget_string import HTMLStyle

    factory = {"html": HTMLStyle, "button": widgets.ButtonStyle,
               "progress": ProgressStyle}[kind]
    return factory(**dict(settings))


def text_html(text: str, *, color: str | None = None, small: bool = False, bold: bool = False) -> str:
    """`text` escaped, in a block that wraps (line breaks kept) with a compact line height."""
    css = ["white-space: pre-wrap", "overflow-wrap: anywhere", "line-height: 1.35"]
    if color:
        css.append(f"color: {color}")
    if small:
        css.append("font-size: 0.9em")
    if bold:
        css.append("font-weight: 600")
    return f'<div style="{"; ".join(css)}"><bdi>{html.escape(text)}</bdi></div>' if text else ""


def text_widget(text: str = "", **kwargs: Any) -> widgets.HTML:
    """An HTML widget showing `text` as text_html does (shared layout and style)."""
    return widgets.HTML(text_html(text, **kwargs), layout=layout(width="auto"), style=style("html"))


def plain_text(markup: str) -> str:
    """The text an HTML value of ours shows (tags dropped, entities decoded)."""
    import re

    return html.unescape(re.sub(r"<[^>]+>", "", markup)).strip()


def show_error(widget: widgets.HTML, text: str) -> None:
    """Show `text` in `widget` in the error colour (plain escaped text, so it stays searchable)."""
    widget.value = text_html(text, color=ERROR_COLOR)


def show_note(widget: widgets.HTML, text: str) -> None:
    """Show `text` in `widget` in the muted colour: information, not a problem."""
    widget.value = text_html(text, color=MUTED_COLOR, small=True)


async def load_thumbnail(client: QwenClient, image: GeneratedImage | str, picture: widgets.Image,
                         note: widgets.HTML, edge: int = THUMBNAIL_EDGE, *,
                         note_prefix: str = "") -> bytes | None:
    """Show `image` in `picture` as a JPEG of at most `edge` pixels a side (the client fetches
    and shrinks it).

    Runs on the private loop. Returns the thumbnail's bytes (the full-size ones are not kept:
    the local copy or the URL gives them again); on failure says why in `note`, returns None.
    """
    try:
        small = await client.aio.thumbnail(image, edge)
    except (QwenError, ValueError) as error:
        show_error(note, f"{note_prefix}{error_message(error)}")
        return None
    picture.value = small
    return small


def alt_html(text: str) -> str:
    """A picture's alternative text, carried beside it (ipywidgets' Image takes no `alt`, and a
    tooltip breaks its view): a hidden span the browser helper copies into the picture's `alt`."""
    return f'<span class="qw-alt" hidden>{html.escape(text)}</span>'


def close_tree(done: list[widgets.Widget]) -> None:
    """Close widgets no longer shown, and everything inside them (their models leave the
    kernel and the page); the shared layouts and styles are not children, so they stay."""
    def walk(widget: widgets.Widget):
        yield widget
        for child in getattr(widget, "children", ()):
            yield from walk(child)

    for widget in done:
        for inner in reversed(list(walk(widget))):
            inner.close()
