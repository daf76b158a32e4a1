"""SweepGrid: a sweep's cells in a table labelled by axis values, filling in as tasks end.

Each cell is a box of one height (so mixed aspect ratios keep the rows even) with a
placeholder until its thumbnail arrives, its own progress bar, and its own actions: View (the
same large view as a card's, above the table, stepping through every image of every cell),
Save, Use as reference. Both axes are named; what the comparison held constant is said once
above it; headers show the whole value, escaped, wrapping; a missing value reads "(none)".
Columns share the card's width; the table scrolls sideways inside its own box when even the
narrowest columns do not fit, and says so above it.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import html
import itertools
import time
from collections.abc import Callable
from pathlib import Path

import ipywidgets as widgets

from ..engine.sweep import Sweep, SweepCancelled
from ..model.errors import QwenError
from ..model.task import GeneratedImage, TaskStatus
from . import _static
from ._actions import save_and_offer
from ._format import cost_words, error_message, held_constant, isolate, made_words, params_line
from ._keys import Keys
from ._theme import (BORDER, ERROR_COLOR, MUTED_COLOR, alt_html, layout, load_thumbnail, plain_text, style,
                     stylesheet)
from .viewer import Viewer, alt_text

__all__ = ["SweepGrid"]

_EDGE = 256
"""The cells' thumbnails: as sharp as a card's."""
_HEIGHT = "clamp(140px, 16vw, 240px)"
"""Cells are at least 120 px wide and share the rest of the width (three fit a notebook in an
800 px window; four fill a 1400 px one), and one height per window width: every row is even
whatever the aspect ratios."""
_PICTURE = {"grid_area": "pic", "width": "100%", "height": _HEIGHT, "object_fit": "contain", "margin": "0"}
_PLACEHOLDER = {"grid_area": "pic", "width": "auto", "height": _HEIGHT, "margin": "0",
                "border": "1px dashed var(--jp-border-color1, #bdbdbd)"}


class SweepGrid(widgets.VBox):
    """Rows and columns are labelled by the axis values (the last axis across). One progress
    bar covers the whole sweep, and each cell has its own."""

    def __init__(self, sweep: Sweep, *, on_use_reference: Callable[[GeneratedImage], str] | None = None,
                 save_dir: str | Path = "qwen_images", bridge: Keys | None = None,
                 on_changed: Callable[[], None] | None = None):
        self.sweep = sweep
        self.save_dir = Path(save_dir)
        self.bridge = bridge
        self._on_use_reference = on_use_reference
        self._on_changed = on_changed
        self._own: list[widgets.Widget] = []
        axes = sweep.axes
        across, down = axes[-1:], axes[:-1]
        self._columns = [value for _, values in across for value in values] or [None]
        self._rows = list(itertools.product(*(values for _, values in down))) or [()]
        self._started: dict[int, float] = {}
        self._mirror: _static.Mirror | None = None
        self._viewing = False
        self.viewer: Viewer | None = None
        self.summary = _html(f"Sweep: {sweep.summary}")
        varied = {name for name, _ in axes}
        if "prompt" in varied or any(name not in ("model", "size", "resolution", "negative_prompt", "n")
                                     for name in varied):
            varied.add("prompt")
        self.constant = _html(held_constant([cell.request for cell in sweep.cells], varied), color=MUTED_COLOR)
        self.progress = widgets.IntProgress(value=0, min=0, max=len(sweep.cells), layout={"width": "auto"})
        self.status = _html(f"0/{len(sweep.cells)} done")
        self.cancel_button = widgets.Button(description="Cancel", icon="stop",
                                            tooltip="Stop submitting and watching")
        self.cancel_button.on_click(lambda _: self._cancel())
        self.tiles = [self._tile(index) for index in range(len(sweep.cells))]
        self._header = self._headers(across, down)
        self.grid = widgets.GridBox(self._header + self._body(), layout={
            "grid_template_columns": f"minmax(100px, 220px) repeat({len(self._columns)}, minmax(120px, 1fr))",
            "grid_gap": "8px", "align_items": "flex-start", "width": "100%", "min_width": "min-content",
            "margin": "0", "overflow": "visible"})  # too narrow: the box around it scrolls, not it
        self.table = widgets.Box([self.grid], layout={"overflow": "auto", "width": "auto"})
        self.table.add_class("qw-grid-scroll")
        self._top = [self.summary, self.constant, widgets.HBox([self.cancel_button, self.status],
                                                               layout={"align_items": "center"}),
                     self.progress, self._scroll_note(across)]
        super().__init__([*self._top, self.table],
                         layout={"border": BORDER, "padding": "6px 8px", "min_width": "0",
                                 "margin": "0 0 8px 0"})
        self.add_class("qw-grid")
        sweep.on_change(self._update)
        for index in range(len(sweep.cells)):  # a sweep already under way: catch up
            if sweep.submitted[index] or sweep.results[index] or sweep.errors[index]:
                self._update(index)
        sweep.client.background(self._tick())

    def __repr__(self) -> str:
        return f"SweepGrid({self.sweep!r})"

    def _ipython_display_(self) -> None:
        if self.bridge is None:  # shown on its own (qw.sweep): the keyboard needs a helper
            self.bridge = Keys()
            self._own = [w for w in (self.bridge.widget, stylesheet()) if w is not None]
            self.add_class("qw-root")
            self._arrange()
        if self._mirror is None:
            self._mirror = _static.Mirror(lambda mirror_id: _static.page_html(
                mirror_id, f"Saved with the notebook: a comparison, {self.sweep.summary}. "
                           f"{plain_text(self.constant.value)}.", self.static_entries()), self.sweep.client.background)
        self._mirror.display(self)

    def static_entries(self) -> list[_static.Entry]:
        """One entry per cell: its axis values, its outcome, when, and its thumbnail."""
        entries = []
        for index, cell in enumerate(self.sweep.cells):
            labels = " · ".join(f"{name}: {_value(value)}" for name, value in cell.labels)
            picture, label = self.tiles[index].children[:2]
            thumbs = [picture.value] if picture.value else []
            details = f"{cell.request.prompt} · {params_line(cell.request)}"
            result = self.sweep.results[index]
            if result is not None and made_words(result.created_at):
                details += f" · {made_words(result.created_at)}"
            entries.append(_static.Entry(labels or cell.request.prompt, details, thumbs,
                                         plain_text(label.value)))
        return entries

    def _arrange(self) -> None:
        shown = [*self._top]
        if self.viewer is not None and self._viewing:
            shown.append(self.viewer)
        shown += [self.table, *self._own]
        if tuple(shown) != tuple(self.children):
            self.set_trait("children", shown)

    # -- building ----------------------------------------------------------------------------

    def _headers(self, across: list, down: list) -> list[widgets.Widget]:
        corner = _html(" · ".join(name for name, _ in down) + (" ↓" if down else ""), bold=True)
        return [corner] + [_html(_value(value), bold=True, title=str(value)) for value in self._columns]

    def _body(self) -> list[widgets.Widget]:
        body, width = [], len(self._columns)
        for r, row in enumerate(self._rows):
            body.append(_html(" · ".join(_value(v) for v in row), bold=True,
                              title=" · ".join(map(str, row))))
            body.extend(self.tiles[r * width:(r + 1) * width])
        return body

    def _scroll_note(self, across: list) -> widgets.HTML:
        name = across[0][0] if across else "value"
        note = f"Columns: {name} →"
        if len(self._columns) > 3:  # three fit an 800 px window; more may not
            note += f" ({len(self._columns)} columns: the table scrolls sideways when they do not all fit)"
        return _html(note, color=MUTED_COLOR)

    def _tile(self, index: int) -> widgets.GridBox:
        picture = widgets.Image(format="jpeg", layout=layout(display="none", **_PICTURE))
        label = _html("queued", layout=layout(grid_area="cap", width="auto"))
        placeholder = widgets.HTML(layout=layout(**_PLACEHOLDER), style=style("html"))
        bar = widgets.FloatProgress(value=0, min=0, max=100, style=style("progress"),
                                    layout=layout(grid_area="bar", width="auto", height="10px"))
        actions = widgets.HBox(layout=layout(grid_area="act", flex_flow="row wrap"))
        return widgets.GridBox([picture, label, placeholder, bar, actions], layout=layout(
            grid_template_areas='"pic" "cap" "bar" "act"', grid_template_columns="100%", min_width="0"))

    def _cell_actions(self, index: int) -> list[widgets.Button]:
        def button(label: str, tooltip: str, action: Callable[[], object]) -> widgets.Button:
            made = widgets.Button(description=label, tooltip=tooltip,
                                  layout=layout(width="auto", padding="0 6px"), style=style("button"))
            made.on_click(lambda _: action())
            return made

        view = button("View", "Open large (every image of this cell, then the next cells)",
                      lambda: self.open_viewer(index))
        view.add_class(f"qw-open-{id(self)}-{index}")
        made = [view, button("Save", "Save on the server (PNG with its receipt inside)", lambda: self.save_cell(index))]
        if self._on_use_reference is not None:
            made.append(button("Use", "Use as reference image in the form", lambda: self.use_as_reference(index)))
        return made

    # -- per-cell actions ----------------------------------------------------------------------

    def open_viewer(self, index: int, *, focus: bool = True) -> concurrent.futures.Future | None:
        """The large view above the table, on the cell's first image; previous/next reach
        every image of every finished cell."""
        items, start = [], None
        for cell_index, (cell, task) in enumerate(zip(self.sweep.cells, self.sweep.results)):
            if task is None or task.status is not TaskStatus.COMPLETED:
                continue
            if cell_index == index:
                start = len(items)
            name = " · ".join(f"{field}: {_value(value)}" for field, value in cell.labels)
            name = f"{name} — {cell.request.prompt}" if "prompt" not in dict(cell.labels) else name
            items += [(task, image, name) for image in task.images]
        if start is None or start >= len(items):
            return None
        if self.viewer is None:
            self.viewer = Viewer(self.sweep.client, save_dir=self.save_dir, on_hide=self._viewer_closed,
                                 on_use_reference=self._on_use_reference, bridge=self.bridge)
        self.viewer.opener = f"qw-open-{id(self)}-{index}"
        self._viewing = True
        self._arrange()
        return self.viewer.show(items, start, focus=focus)

    def _viewer_closed(self) -> None:
        self._viewing = False
        self._arrange()

    def save_cell(self, index: int) -> concurrent.futures.Future | None:
        task = self.sweep.results[index]
        if task is None or not task.images:
            return None
        feedback = self.tiles[index].children[1]
        feedback.value = "saving…"

        async def run() -> None:
            try:
                parts = [await save_and_offer(self.sweep.client, task, image, self.save_dir)
                         for image in task.images]
            except (QwenError, OSError, ValueError) as error:
                feedback.value = html.escape(f"could not save: {error_message(error)}")
                return
            feedback.value = "".join(parts)

        return self.sweep.client.background(run())

    def use_as_reference(self, index: int) -> None:
        task = self.sweep.results[index]
        if task is not None and task.images and self._on_use_reference is not None:
            self.tiles[index].children[1].value = html.escape(self._on_use_reference(task.images[0]))

    # -- keeping up with the sweep (runs on the private loop) ------------------------------------

    def _update(self, index: int) -> None:
        """Runs on the private loop whenever a cell changes."""
        sweep = self.sweep
        picture, label, placeholder, bar, actions = self.tiles[index].children
        result, error, submitted = sweep.results[index], sweep.errors[index], sweep.submitted[index]
        if isinstance(error, SweepCancelled):
            _say(label, "cancelled")
        elif error is not None:
            _say(label, error_message(error), error=True)
        elif result is not None and result.status is not TaskStatus.COMPLETED:
            _say(label, f"{result.status.value}: {result.error or 'no reason given'}", error=True)
        elif result is not None:
            count = len(result.images)
            cost = f" · {cost_words(result)}" if result.cost is not None or result.credits_cost else ""
            shown = f"1 of {count} (View for all) · " if count > 1 else ""
            _say(label, f"{shown}{result.actual_time or 0:.1f} s on the server{cost}")
            actions.children = self._cell_actions(index) if result.images else ()
            if result.images:  # background(): safe from the loop's thread and from others
                self.sweep.client.background(self._load(index, result.images[0]))
        elif submitted is not None:
            self._started.setdefault(index, time.monotonic())
            _say(label, "running")
        if result is not None or error is not None:
            bar.value = 100
            bar.bar_style = "success" if result is not None and result.status is TaskStatus.COMPLETED else "danger"
        self.progress.value = sweep.done_count
        self.status.value = f"{sweep.done_count}/{len(sweep.cells)} done, {sweep.failed_count} failed"
        if sweep.done_count == len(sweep.cells):
            self.cancel_button.layout.display = "none"
            self.progress.bar_style = "success" if not sweep.failed_count else "warning"
            self._changed()

    async def _load(self, index: int, image) -> None:
        picture, label, placeholder = self.tiles[index].children[:3]
        cell = self.sweep.cells[index]
        name = " · ".join(f"{field}: {value}" for field, value in cell.labels) or cell.request.prompt
        result = self.sweep.results[index]
        placeholder.value = alt_html(alt_text(f"{name} — {cell.request.prompt}" if "prompt" not in dict(cell.labels)
                                              else name, 1, len(result.images) if result is not None else 1))
        if await load_thumbnail(self.sweep.client, image, picture, label, _EDGE) is not None:
            picture.layout = layout(**_PICTURE)
            placeholder.layout = layout(display="none", **_PLACEHOLDER)
            self._changed()

    async def _tick(self) -> None:
        """Each running cell's bar moves with its time against the server's estimate."""
        while self.sweep.done_count < len(self.sweep.cells):
            await asyncio.sleep(1.0)
            for index, started in list(self._started.items()):
                submitted, done = self.sweep.submitted[index], self.sweep.results[index]
                if done is not None or self.sweep.errors[index] is not None or submitted is None:
                    continue
                elapsed = time.monotonic() - started
                estimate = submitted.estimated_time or 20.0
                label, bar = self.tiles[index].children[1], self.tiles[index].children[3]
                bar.value = min(95.0, 100.0 * elapsed / estimate)
                label.value = f"running · {elapsed:.0f} s"

    def _changed(self) -> None:
        if self._mirror is not None:
            self._mirror.refresh()
        if self._on_changed is not None:  # the panel's saved copy holds this grid too
            self._on_changed()

    def _cancel(self) -> None:
        self.cancel_button.disabled = True
        self.sweep.cancel(wait=False)
        self.status.value = "cancelling: submissions in flight are answered first…"
        if self.sweep.future is not None:
            self.sweep.future.add_done_callback(
                lambda _: setattr(self.status, "value", html.escape(self.sweep.cancel_report())))


def _value(value: object) -> str:
    """An axis value as a header shows it: whole, "(none)" for a missing one, and in a bidi
    isolate, so a right-to-left override inside it cannot reorder what follows."""
    return "(none)" if value is None or value == "" else isolate(str(value))


def _html(text: str, *, bold: bool = False, color: str | None = None, title: str | None = None,
          layout: widgets.Layout | None = None) -> widgets.HTML:
    """An HTML widget whose value is `text` escaped (so `==` tests see the text itself)."""
    made = widgets.HTML(html.escape(text, quote=False),
                        style=style("html", text_color=color) if color else style("html"),
                        **({"layout": layout} if layout is not None else {}))
    if bold:
        made.value = f"<b>{made.value}</b>"
    if title:
        made.tooltip = title
    return made


def _say(label: widgets.HTML, text: str, *, error: bool = False) -> None:
    label.value = html.escape(text, quote=False)
    label.style = style("html", text_color=ERROR_COLOR) if error else style("html")
