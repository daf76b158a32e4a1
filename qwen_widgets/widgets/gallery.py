"""Gallery: the panel's cards and comparison grids, newest first; and `show()`, finished
tasks as cards of their own (`qw.show(task)`).

Cards sit in an auto-filling grid (each at least 340 px wide), so a wide notebook shows
several generations side by side instead of one column of mostly empty rows. A comparison
grid takes the whole width: the gallery is a column of sections, each either one grid or a
run of cards made one after another. The newest finished card shows its first image large
above its thumbnails (the whole width); older ones shrink to one contact sheet each.
"""

from __future__ import annotations

import ipywidgets as widgets

from ..engine.default import default_client
from ..engine.sync import QwenClient
from ..model.task import Task
from .card import Card

__all__ = ["Gallery", "show"]

CARD_MIN_WIDTH = 340


class Gallery(widgets.VBox):
    """Holds the cards of a panel; `add()` puts a new card (or grid) first."""

    def __init__(self, **kwargs):
        super().__init__(layout={"width": "auto", "min_width": "0"}, **kwargs)
        self._featured: Card | None = None

    def add(self, item: widgets.Widget) -> widgets.Widget:
        first = self.children[0] if self.children else None
        if isinstance(item, Card) and isinstance(first, _Cards):
            first.children = (item, *first.children)
        elif isinstance(item, Card):
            self.children = (_Cards([item]), *self.children)
        else:
            self.children = (item, *self.children)
        return item

    def __repr__(self) -> str:
        return f"Gallery(cards={len(self.cards)})"

    def finished(self, card: Card) -> None:
        """`card` finished: the newest finished card is shown large (`Card.feature`), every
        other finished one as a contact sheet (`Card.compact`)."""
        newest = next((other for other in self.cards if other.task is not None and other.task.done
                       and other.task.images), None)
        if newest is None or newest is self._featured:
            return  # a large view the user closed stays closed
        self._featured = newest
        for other in self.cards:
            if other is newest:
                other.feature()
            elif other.mode != "compact" and other.task is not None and other.task.done:
                other.compact()

    def items(self) -> list[widgets.Widget]:
        """Cards and grids, newest first."""
        return [inner for child in self.children
                for inner in (child.children if isinstance(child, _Cards) else (child,))]

    @property
    def cards(self) -> list[Card]:
        """The cards, newest first."""
        return [item for item in self.items() if isinstance(item, Card)]


class _Cards(widgets.GridBox):
    """A run of cards, as many per row as fit."""

    def __init__(self, cards: list[Card]):
        super().__init__(cards, layout={
            "grid_template_columns": f"repeat(auto-fill, minmax(min({CARD_MIN_WIDTH}px, 100%), 1fr))",
            "grid_gap": "8px", "width": "auto", "align_items": "flex-start", "margin": "0 0 8px 0"})


def show(tasks: Task | list[Task], client: QwenClient | None = None) -> list[Card]:
    """Display finished tasks as cards, e.g. the result of `qw.generate(...)`; each card is
    saved with the notebook as well (see `_static`)."""
    from IPython.display import display

    cards = []
    for task in [tasks] if isinstance(tasks, Task) else tasks:
        card = Card(client or default_client(announce=False), request=task.request)
        card.show_task(task)
        display(card)
        cards.append(card)
    return cards
