"""Gallery: the panel's cards, newest first, in as many columns as the width allows.

Cards sit in an auto-filling grid (each at least 340 px wide), so a wide notebook shows
several generations side by side instead of one column of mostly empty rows. A comparison
grid, or a card whose large view is open, spans the whole row.
"""

from __future__ import annotations

import ipywidgets as widgets

from .card import Card

__all__ = ["Gallery"]

CARD_MIN_WIDTH = 340


class Gallery(widgets.GridBox):
    """Holds the cards of a panel; `add()` puts a new card (or grid) first."""

    def __init__(self, **kwargs):
        super().__init__(layout={
            "grid_template_columns": f"repeat(auto-fill, minmax(min({CARD_MIN_WIDTH}px, 100%), 1fr))",
            "grid_gap": "8px", "width": "100%", "align_items": "flex-start"}, **kwargs)

    def add(self, card: widgets.Widget) -> widgets.Widget:
        if not isinstance(card, Card):
            card.layout.grid_column = "1 / -1"
        self.children = (card, *self.children)
        return card

    def __repr__(self) -> str:
        return f"Gallery(cards={len(self.children)})"

    @property
    def cards(self) -> list[Card]:
        """The cards, newest first."""
        return [child for child in self.children if isinstance(child, Card)]
