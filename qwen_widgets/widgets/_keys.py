"""The keyboard, focus, the clipboard and one-click downloads: what the views need JavaScript for.

ipywidgets sends no key events to the kernel, cannot move focus, write to the clipboard or
hand the browser a file, and no HTML or CSS can. So one small anywidget (an ES module, below)
sits hidden in each live view (a panel, a card or a comparison grid shown on its own) and does
exactly these things inside that view's element (class `qw-root`):

- Ctrl+Enter (Cmd+Enter) in the prompt (`qw-prompt`) presses Generate;
- in a large view (`qw-viewer-<id>`) the arrow keys go to the previous and next image and
  Escape closes it; opening one moves focus into it, closing it returns focus to what had it
  (the thumbnail that was clicked);
- "Load into the form" scrolls the prompt into view and focuses it;
- copy buttons write text to the clipboard;
- downloads: the file travels once as a message buffer (never as widget state, so nothing of
  it is kept in the notebook) and the browser saves it at once: one click; a zip written on the
  server ("Download all") is fetched through the link the page shows, clicked for you;
- every control without an accessible name gets one from its visible label or tooltip, and
  button icons (a private-use glyph of the icon font) are hidden from screen readers.

It is optional: without the `anywidget` package (`Keys.available` is False) the views work the
same, with a download link to click, a read-only box to copy from, and no key handling.
Nothing else in the package runs custom JavaScript.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable

import ipywidgets as widgets

__all__: list[str] = []

_ESM = """
export default {
  render({ model, el }) {
    el.style.display = "none";
    let root = null, tries = 0, returnTo = null, observer = null;
    const find = (selector, then, left = 120) => {
      const found = root && root.querySelector(selector);
      if (found) then(found);
      else if (left > 0) requestAnimationFrame(() => find(selector, then, left - 1));
    };
    const focusable = (node) => {
      if (!node.hasAttribute("tabindex")) node.setAttribute("tabindex", "-1");
      return node;
    };
    const name = () => {
      // controls named only by a placeholder, a label beside them or a tooltip get that name;
      // icons inside buttons are decoration, not part of the button's name
      root.querySelectorAll("button i.fa, button .fa").forEach((icon) => icon.setAttribute("aria-hidden", "true"));
      root.querySelectorAll(".widget-inline-hbox, .widget-inline-vbox, .widget-box").forEach((box) => {
        const label = box.querySelector(":scope > label.widget-label");
        if (!label || !label.textContent.trim()) return;
        box.querySelectorAll(":scope > input, :scope > textarea, :scope > select, :scope [role=slider]," +
                             " :scope > .widget-readout").forEach((control) => {
          if (!control.getAttribute("aria-label")) control.setAttribute("aria-label", label.textContent.trim());
        });
      });
      root.querySelectorAll("textarea, input[type=text], select").forEach((field) => {
        const box = field.closest("[title]");
        if (!field.getAttribute("aria-label") && box && box.title) field.setAttribute("aria-label", box.title);
      });
      // a picture's alternative text travels beside it, in a hidden span of its caption
      root.querySelectorAll("img").forEach((img) => {
        let node = img.parentElement, source = null;
        for (let level = 0; level < 4 && node && !source; level++, node = node.parentElement)
          source = node.querySelector(".qw-alt");
        const text = source ? source.textContent : "";
        if (img.getAttribute("alt") !== text) img.setAttribute("alt", text);
      });
      root.querySelectorAll("button").forEach((button) => {
        if (!button.getAttribute("aria-label") && !button.textContent.trim() && button.title)
          button.setAttribute("aria-label", button.title);
      });
    };
    const onKey = (event) => {
      const target = event.target;
      if (!target.closest) return;
      if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) {
        const box = target.closest(".qw-prompt");
        if (!box) return;
        event.preventDefault();
        event.stopPropagation();
        // the text as shown: the Textarea's own sync of the last keys may still be queued
        const field = box.querySelector("textarea") || target;
        model.send({ event: "submit", prompt: field.value });
        return;
      }
      const viewer = target.closest("[class*='qw-viewer-']");
      const keys = { ArrowLeft: "previous", ArrowRight: "next", Escape: "close" };
      if (!viewer || !(event.key in keys)) return;
      if (event.key !== "Escape" && /^(INPUT|TEXTAREA|SELECT)$/.test(target.tagName)) return;
      const id = Array.from(viewer.classList).find((c) => c.startsWith("qw-viewer-"));
      event.preventDefault();
      event.stopPropagation();
      model.send({ event: "viewer", viewer: id, key: keys[event.key] });
    };
    const save = (filename, mime, buffer) => {
      const url = URL.createObjectURL(new Blob([buffer], { type: mime }));
      const link = document.createElement("a");
      link.href = url;
      link.download = filename;
      link.style.display = "none";
      document.body.appendChild(link);
      link.click();
      link.remove();
      setTimeout(() => URL.revokeObjectURL(url), 30000);
    };
    const onMessage = (message, buffers) => {
      if (!message || !root) return;
      const { cmd, selector, token } = message;
      if (cmd === "focus") {
        const active = document.activeElement;
        if (active && root.contains(active) && !active.closest(selector)) returnTo = active;
        find(selector, (node) => focusable(node).focus({ preventScroll: false }));
      } else if (cmd === "restore") {
        if (returnTo && returnTo.isConnected) returnTo.focus();
        else if (selector) find(selector, (node) => focusable(node).focus());
        returnTo = null;
      } else if (cmd === "scroll") {
        find(selector, (node) => {
          node.scrollIntoView({ block: "center", behavior: "smooth" });
          const field = node.querySelector("textarea, input") || node;
          focusable(field).focus({ preventScroll: true });
        });
      } else if (cmd === "click") {
        find(selector, (node) => node.click());
      } else if (cmd === "copy") {
        const done = (ok) => model.send({ event: "copied", token, ok });
        if (navigator.clipboard && window.isSecureContext)
          navigator.clipboard.writeText(message.text).then(() => done(true), () => done(false));
        else done(false);
      } else if (cmd === "download") {
        try {
          save(message.filename, message.mime, buffers[0]);
          model.send({ event: "downloaded", token, ok: true });
        } catch (error) {
          model.send({ event: "downloaded", token, ok: false });
        }
      }
    };
    const attach = () => {
      root = el.closest(".qw-root");
      if (!root) {
        if (tries++ < 600) requestAnimationFrame(attach);
        return;
      }
      root.addEventListener("keydown", onKey, true);
      name();
      let pending = false;  // one pass per frame, however many changes came in it
      observer = new MutationObserver(() => {
        if (pending) return;
        pending = true;
        requestAnimationFrame(() => { pending = false; name(); });
      });
      observer.observe(root, { childList: true, subtree: true });
    };
    model.on("msg:custom", onMessage);
    attach();
    return () => {
      if (root) root.removeEventListener("keydown", onKey, true);
      if (observer) observer.disconnect();
      model.off("msg:custom", onMessage);
    };
  }
};
"""

_tokens = itertools.count(1)


class Keys:
    """The JavaScript helper of one live view. `widget` is the hidden anywidget to put among
    the view's children (None without the anywidget package: then `available` is False and
    every method returns False, so the caller offers its plain fallback)."""

    def __init__(self, on_submit: Callable[[str | None], None] | None = None):
        self.on_submit = on_submit
        self._viewers: dict[str, Callable[[str], None]] = {}
        self._replies: dict[int, Callable[[bool], None]] = {}
        self.widget = _make_widget(self._handle)

    @property
    def available(self) -> bool:
        return self.widget is not None

    def watch_viewer(self, dom_class: str, handler: Callable[[str], None]) -> None:
        """Key presses in the large view with class `dom_class`: handler('previous' | 'next' | 'close')."""
        self._viewers[dom_class] = handler

    def unwatch_viewer(self, dom_class: str) -> None:
        """The large view is gone for good: forget it (its handler holds it)."""
        self._viewers.pop(dom_class, None)

    def focus(self, selector: str) -> bool:
        """Move focus into the first element of the view matching `selector` (remembering what
        had it, for `restore`)."""
        return self._send({"cmd": "focus", "selector": selector})

    def restore(self, fallback: str | None = None) -> bool:
        """Give focus back to what had it before `focus` (or to `fallback`)."""
        return self._send({"cmd": "restore", "selector": fallback})

    def scroll_to(self, selector: str) -> bool:
        """Scroll the element matching `selector` into view and focus its text field."""
        return self._send({"cmd": "scroll", "selector": selector})

    def click(self, selector: str) -> bool:
        """Click the element matching `selector` once it is on the page (a download link the
        page itself resolves: one click on the button that made it is enough)."""
        return self._send({"cmd": "click", "selector": selector})

    def copy(self, text: str, on_done: Callable[[bool], None]) -> bool:
        """Write `text` to the clipboard; on_done(ok) once the browser answered."""
        return self._send({"cmd": "copy", "text": text}, on_done)

    def download(self, filename: str, mime: str, data: bytes, on_done: Callable[[bool], None]) -> bool:
        """Have the browser save `data` as `filename` now (sent once, as a message buffer)."""
        return self._send({"cmd": "download", "filename": filename, "mime": mime}, on_done, [data])

    def _send(self, content: dict, on_done: Callable[[bool], None] | None = None,
              buffers: list[bytes] | None = None) -> bool:
        if self.widget is None:
            return False
        if on_done is not None:
            content["token"] = token = next(_tokens)
            self._replies[token] = on_done
        self.widget.send(content, buffers)
        return True

    def _handle(self, content: object) -> None:
        if not isinstance(content, dict):
            return
        event = content.get("event")
        if event == "submit" and self.on_submit is not None:
            text = content.get("prompt")
            self.on_submit(text if isinstance(text, str) else None)
        elif event == "viewer" and content.get("viewer") in self._viewers:
            key = content.get("key")
            if key in ("previous", "next", "close"):
                self._viewers[content["viewer"]](key)
        elif event in ("copied", "downloaded"):
            reply = self._replies.pop(content.get("token"), None)
            if reply is not None:
                reply(content.get("ok") is True)


def _make_widget(handle: Callable[[object], None]) -> widgets.Widget | None:
    try:
        import anywidget
    except ImportError:
        return None

    class KeyBridge(anywidget.AnyWidget):
        _esm = _ESM

    bridge = KeyBridge(layout=widgets.Layout(display="none"))
    bridge.on_msg(lambda _widget, content, _buffers: handle(content))
    return bridge
