"""The notebook views: Panel (form + gallery), Gallery and Card. Standard ipywidgets 8 only."""

from .card import Card
from .gallery import Gallery, show
from .panel import Panel

__all__ = ["Panel", "Gallery", "Card", "show"]
