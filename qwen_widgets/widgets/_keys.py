"""Ctrl+Enter in the prompt generates: the one thing in the views that needs JavaScript.

ipywidgets' Textarea sends its value to the kernel but no key events, and no HTML or CSS can
turn a key press into a message; so a tiny anywidget (a dozen lines of ES module, below)
listens for Ctrl+Enter (Cmd+Enter on a Mac) inside its panel's prompt and tells the kernel.
It is optional: without the `anywidget` package the panel works the same, minus the shortcut.
Nothing else in the package runs custom JavaScript.
"""

from __future__ import annotations

from collections.abc import Callable

import ipywidgets as widgets

__all__: list[str] = []

_ESM = """
export default {
  render({ model, el }) {
    el.style.display = "none";
    let panel = null, tries = 0;
    const onKey = (event) => {
      if (event.key !== "Enter" || !(event.ctrlKey || event.metaKey)) return;
      const box = event.target.closest && event.target.closest(".qw-prompt");
      if (!box) return;
      event.preventDefault();
      event.stopPropagation();
      // the text as shown: the Textarea's own sync of the last keys may still be queued
      const field = box.querySelector("textarea") || event.target;
      model.send({ event: "submit", prompt: field.value });
    };
    const attach = () => {
      panel = el.closest(".qw-panel");
      if (panel) panel.addEventListener("keydown", onKey, true);
      else if (tries++ < 600) requestAnimationFrame(attach);
    };
    attach();
    return () => panel && panel.removeEventListener("keydown", onKey, true);
  }
};
"""


def submit_shortcut(on_submit: Callable[[str], None]) -> widgets.Widget | None:
    """A hidden widget that calls `on_submit(prompt text)` on Ctrl+Enter in the prompt of the
    panel it sits in (the prompt has the class `qw-prompt`, the panel `qw-panel`); None
    without anywidget."""
    try:
        import anywidget
    except ImportError:
        return None

    class SubmitShortcut(anywidget.AnyWidget):
        _esm = _ESM

    shortcut = SubmitShortcut(layout=widgets.Layout(display="none"))
    def handle(_widget, content, _buffers) -> None:
        if isinstance(content, dict) and content.get("event") == "submit":
            text = content.get("prompt")
            on_submit(text if isinstance(text, str) else None)

    shortcut.on_msg(handle)
    return shortcut
