"""Gallery: the column of generation cards, newest first."""

from __future__ import annotations

import ipywidgets as widgets

from .card import Card

__all__ = ["Gallery"]


class Gallery(widgets.VBox):
    """Holds the cards of a panel; `add()` puts a new card on top."""

    def add(self, card: Card) -> Card:
        self.children = (card, *self.children)
        return card

    def __repr__(self) -> str:
        return f"Gallery(cards={len(self.children)})"

    @property
    def cards(self) -> list[Card]:
        """The cards, newest first."""
        return [child for child in self.children if isinstance(child, Card)]
