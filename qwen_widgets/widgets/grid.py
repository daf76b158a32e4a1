"""SweepGrid: a sweep's cells in a table labelled by axis values, filling in as tasks end."""

from __future__ import annotations

import itertools

from .. import _runner

import ipywidgets as widgets

from .._task import TaskStatus
from .._sweep import Sweep, SweepCancelled
from ._format import error_message, isolate
from ._theme import BORDER, load_thumbnail, show_error

__all__ = ["SweepGrid"]

_EDGE = 200


class SweepGrid(widgets.VBox):
    """Rows and columns are labelled by the axis values (the last axis across); each cell
    shows its first image, or why it failed. One progress bar covers the whole sweep."""

    def __init__(self, sweep: Sweep):
        self.sweep = sweep
        axes = sweep.axes
        across = axes[-1:] if axes else []
        down = axes[:-1]
        self._columns = [value for _, values in across for value in values] or [None]
        self._rows = list(itertools.product(*(values for _, values in down))) or [()]
        self.summary = widgets.Label(f"Sweep: {sweep.summary}")
        self.progress = widgets.IntProgress(value=0, min=0, max=len(sweep.cells),
                                            layout={"width": "100%"})
        self.status = widgets.Label(f"0/{len(sweep.cells)} done")
        self.cancel_button = widgets.Button(description="Cancel", icon="stop",
                                            tooltip="Stop submitting and watching")
        self.cancel_button.on_click(lambda _: self._cancel())
        self.tiles = [self._tile() for _ in sweep.cells]
        header = [widgets.Label(_axis_title(down))] + [
            widgets.Label("" if value is None else isolate(_short(value)), tooltip=str(value))
            for value in self._columns]
        body = []
        for r, row in enumerate(self._rows):
            body.append(widgets.Label(" · ".join(isolate(_short(v)) for v in row),
                                      tooltip=" · ".join(map(str, row))))
            body.extend(self.tiles[r * len(self._columns):(r + 1) * len(self._columns)])
        self.grid = widgets.GridBox(header + body, layout={
            "grid_template_columns": f"minmax(80px, max-content) repeat({len(self._columns)}, {_EDGE + 12}px)",
            "grid_gap": "6px"})
        super().__init__([self.summary, widgets.HBox([self.cancel_button, self.status]),
                          self.progress, self.grid],
                         layout={"border": BORDER, "padding": "6px"})
        sweep.on_change(self._update)
        for index in range(len(sweep.cells)):  # a sweep already under way: catch up
            if sweep.submitted[index] or sweep.results[index] or sweep.errors[index]:
                self._update(index)

    def __repr__(self) -> str:
        return f"SweepGrid({self.sweep!r})"

    @staticmethod
    def _tile() -> widgets.VBox:
        return widgets.VBox([widgets.Image(format="jpeg", layout={"max_width": f"{_EDGE}px"}),
                             widgets.Label("queued", layout={"max_width": f"{_EDGE}px"})])

    def _update(self, index: int) -> None:
        """Runs on the private loop whenever a cell changes."""
        sweep, (picture, label) = self.sweep, self.tiles[index].children
        result, error, submitted = sweep.results[index], sweep.errors[index], sweep.submitted[index]
        if isinstance(error, SweepCancelled):
            label.value = "cancelled"
        elif error is not None:
            show_error(label, error_message(error))
        elif result is not None and result.status is not TaskStatus.COMPLETED:
            show_error(label, f"{result.status.value}: {result.error or 'no reason given'}")
        elif result is not None:
            count = len(result.images)
            label.value = f"{count} image{'s' * (count != 1)} · {result.actual_time or 0:.1f} s"
            if result.images:  # _runner.submit: safe from the loop's thread and from others
                _runner.submit(load_thumbnail(sweep.client, result.images[0], picture, label, _EDGE))
        elif submitted is not None:
            label.value = f"running · {submitted.task_id}"
        self.progress.value = sweep.done_count
        self.status.value = f"{sweep.done_count}/{len(sweep.cells)} done, {sweep.failed_count} failed"
        if sweep.done_count == len(sweep.cells):
            self.cancel_button.layout.display = "none"
            self.progress.bar_style = "success" if not sweep.failed_count else "warning"


    def _cancel(self) -> None:
        self.cancel_button.disabled = True
        self.sweep.cancel(wait=False)
        self.status.value = "cancelling: submissions in flight are answered first…"
        if self.sweep.future is not None:
            self.sweep.future.add_done_callback(lambda _: setattr(self.status, "value", self.sweep.cancel_report()))


def _short(value: object, limit: int = 40) -> str:
    text = str(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _axis_title(axes: list) -> str:
    return " · ".join(name for name, _ in axes)
