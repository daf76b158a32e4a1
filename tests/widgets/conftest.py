"""What the widget tests share."""

from __future__ import annotations

import pytest


@pytest.fixture
def published(monkeypatch) -> list[tuple[tuple, dict]]:
    """What is handed to IPython's display and update_display, in order, as (objects,
    keywords); an update's keywords hold update=True. Nothing reaches a real frontend."""
    shown: list[tuple[tuple, dict]] = []
    monkeypatch.setattr("IPython.display.display", lambda *objs, **kw: shown.append((objs, kw)))
    monkeypatch.setattr("IPython.display.update_display",
                        lambda obj, **kw: shown.append(((obj,), {**kw, "update": True})))
    return shown
