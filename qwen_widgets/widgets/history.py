"""HistoryView: every generation in the journal, across sessions and kernels, as a library to
search, keep and reuse: the panel's History tab.

Newest first, one page at a time (`model.history.PAGE_SIZE`): the journal answers the search
(SQLite's full-text index of prompts and negative prompts) and the filters (model, size,
resolution, status, date, starred, hidden), and only the page is read and drawn, so a journal
of 100,000 generations costs what a page does; the widgets of a page are closed when another
is shown. Thumbnails come from the kept copies (made once and kept beside them), or from the
image's URL while it lives; otherwise a placeholder says why there is none.

Each item says when it was made and where it came from (image to image: the task it was made
from, and what changed), and offers: star, Load into the form, More like this, and under
"More…" copy the prompt, the chain it grew from, hide, delete (asked first). Its picture opens
the same large view as a card, with previous/next across the page.

In demo mode the journal lives in memory (the simulator dies with the process): the history
is this session's work, and says so.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import html
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path

import ipywidgets as widgets

from ..engine.sync import QwenClient
from ..model.errors import QwenError
from ..model.history import PAGE_SIZE, HistoryPage, HistoryQuery
from ..model.lineage import describe_diff
from ..model.request import MODELS, RESOLUTIONS, SIZES
from ..model.submission import STATUSES, Entry
from ..model.task import GeneratedImage
from ._actions import copy_text
from ._format import cost_words, error_message, made_words, origin_words, params_line, size_words
from ._keys import Keys
from ._theme import (BORDER, MUTED_COLOR, THUMBNAIL_EDGE, alt_html, close_tree, layout, show_error, style,
                     text_html)
from .viewer import Item, Viewer, alt_text

__all__ = ["HistoryView"]

SEARCH_PAUSE = 0.1
"""Seconds of no typing before a search runs (each key press does not need its own query)."""
_SPANS = (("Any time", ""), ("Last hour", "1h"), ("Last 24 hours", "24h"), ("Last 7 days", "7d"),
          ("Last 30 days", "30d"))
_PICTURE = dict(grid_area="pic", width="100%", height="180px", object_fit="contain", margin="0")
_EMPTY = dict(grid_area="pic", width="auto", height="180px", margin="0",
              border="1px dashed var(--jp-border-color1, #bdbdbd)")


class HistoryView(widgets.VBox):
    """The journal's generations, newest first, searchable and filtered, a page at a time.

    `refresh()` reads the page again (in the background; the returned future ends when it is
    shown); `items` are the page's HistoryItems. `on_reuse(request)` and `on_more(request)`
    (the panel's) load a request into the form or send it again, and return what they did.
    """

    def __init__(self, client: QwenClient, *, save_dir: str | Path = "qwen_images",
                 on_reuse: Callable[..., str] | None = None, on_more: Callable[..., str] | None = None,
                 on_use_reference: Callable[[GeneratedImage], str] | None = None, bridge: Keys | None = None,
                 page_size: int = PAGE_SIZE):
        self.client = client
        self.save_dir = Path(save_dir)
        self.bridge = bridge
        self.page_size = page_size
        self.page: HistoryPage | None = None
        self.items: list[HistoryItem] = []
        self.viewer: Viewer | None = None
        self._on_reuse, self._on_more, self._on_use_reference = on_reuse, on_more, on_use_reference
        self._offset = 0
        self._asked = 0  # the newest query asked: an older answer arriving late is not shown
        self._pause: asyncio.TimerHandle | None = None
        self.search = widgets.Text(description="Search", placeholder="Words of the prompt or negative prompt",
                                   continuous_update=True, layout=layout(width="auto"),
                                   tooltip="Words that must all occur in the prompt or the negative prompt")
        self.model = _choice("Model", [("Any model", ""), *((m, m) for m in MODELS)], "230px")
        self.size = _choice("Size", [("Any size", ""), *((s, s) for s in SIZES)], "190px")
        self.resolution = _choice("Resolution", [("Any", ""), *((r, r) for r in RESOLUTIONS)], "170px")
        self.status = _choice("Status", [("Any status", ""), *((s, s) for s in STATUSES)], "200px")
        self.since = _choice("Made", list(_SPANS), "200px")
        self.starred = widgets.Checkbox(description="Starred only", indent=False, layout=layout(width="auto"))
        self.hidden = widgets.Checkbox(description="Hidden ones", indent=False, layout=layout(width="auto"),
                                       tooltip="Show the generations you hid (and only those)")
        self.summary = widgets.HTML(layout=layout(width="auto"), style=style("html"))
        self.newer_button = _button("Newer", lambda: self.turn(-1), "The previous page (newer generations)")
        self.older_button = _button("Older", lambda: self.turn(1), "The next page (older generations)")
        self.grid = widgets.GridBox(layout=layout(
            grid_template_columns="repeat(auto-fill, minmax(min(240px, 100%), 1fr))", grid_gap="8px",
            width="auto", align_items="flex-start"))
        self.note = widgets.HTML(style=style("html", text_color=MUTED_COLOR, font_size="0.9em"),
                                 layout=layout(width="auto"))
        if client.demo:
            self.note.value = html.escape(
                "Demo mode: this history is this session's work. The simulator and its journal live in "
                "memory and end with the kernel; with an API key, every generation is kept in the journal "
                "across sessions and kernels.")
        self.filters = widgets.HBox([self.model, self.size, self.resolution, self.status, self.since, self.starred,
                                     self.hidden], layout=layout(flex_flow="row wrap", align_items="center"))
        self.bar = widgets.HBox([self.newer_button, self.older_button, self.summary],
                                layout=layout(flex_flow="row wrap", align_items="center"))
        super().__init__([self.note, self.search, self.filters, self.bar, self.grid], layout=layout(width="auto"))
        self.add_class("qw-history")
        self.search.observe(lambda _: self._soon(), "value")
        for control in (self.model, self.size, self.resolution, self.status, self.since, self.starred, self.hidden):
            control.observe(lambda _: self.refresh(0), "value")

    def __repr__(self) -> str:
        shown = f"{len(self.items)} of {self.page.total}" if self.page else "not read"
        return f"HistoryView({shown})"

    # -- the query ------------------------------------------------------------------------------

    def query(self) -> HistoryQuery:
        """What the controls ask for (RequestValidationError for a filter that makes no sense)."""
        return HistoryQuery.of(search=self.search.value, starred=True if self.starred.value else None,
                               hidden=True if self.hidden.value else False, since=self.since.value or None,
                               model=self.model.value or None, size=self.size.value or None,
                               resolution=self.resolution.value or None, status=self.status.value or None)

    def refresh(self, offset: int | None = None) -> concurrent.futures.Future:
        """Read the page at `offset` (by default the one shown) and show it, in the background."""
        if offset is not None:
            self._offset = offset
        self._asked += 1
        asked, query, offset = self._asked, self.query(), self._offset

        async def read() -> None:
            try:
                page = await self.client.aio.history(query, offset, self.page_size)
            except QwenError as error:
                show_error(self.summary, f"The history cannot be read: {error_message(error)}")
                return
            if asked == self._asked:  # the newest question's answer only
                await self._show(page)

        return self.client.background(read())

    def turn(self, pages: int) -> concurrent.futures.Future | None:
        """Go `pages` pages older (or newer with a negative number)."""
        if self.page is None:
            return None
        last = max(0, (self.page.pages - 1) * self.page_size)
        return self.refresh(min(max(0, self._offset + pages * self.page_size), last))

    def _soon(self) -> None:
        """A search after the typing pauses (on the private loop, where the timer lives)."""
        async def schedule() -> None:
            if self._pause is not None:
                self._pause.cancel()
            self._pause = asyncio.get_running_loop().call_later(SEARCH_PAUSE, lambda: self.refresh(0))

        self.client.background(schedule())

    # -- the page ------------------------------------------------------------------------------

    async def _show(self, page: HistoryPage) -> None:
        old, self.page = self.items, page
        self.items = [HistoryItem(self, entry) for entry in page.entries]
        self.grid.children = self.items
        self._say_summary(page)
        if self.viewer is not None:
            self._close_viewer()
        for item in old:
            item.close_all()
        await asyncio.gather(*(item.load() for item in self.items))

    def _say_summary(self, page: HistoryPage) -> None:
        self.newer_button.disabled = page.offset == 0
        self.older_button.disabled = page.offset + len(page.entries) >= page.total
        if page.total == 0:
            said = ("Nothing matches: change the words or the filters." if page.query.filtered
                    else "No generations yet: they appear here as they are made.")
        else:
            first, last = page.offset + 1, page.offset + len(page.entries)
            said = (f"{first}–{last} of {page.total:,} generation{'s' * (page.total != 1)}, newest first"
                    f" · page {page.number} of {page.pages}")
            if page.query.terms():
                said += f" · searched with {page.search_mode.split(' (')[0]}"
        self.summary.value = text_html(said, color=MUTED_COLOR)

    # -- the large view, across the page -------------------------------------------------------

    def open_viewer(self, item: HistoryItem, *, focus: bool = True) -> concurrent.futures.Future | None:
        """The large view above the page, on `item`'s first image; previous/next reach every
        image of the page that can be shown."""
        items: list[Item] = []
        start = None
        for other in self.items:
            task = other.entry.task
            if task is None:
                continue
            if other is item:
                start = len(items)
            items += [(task, image, other.prompt) for image in task.images if other.can_show(image)]
        if start is None or start >= len(items):
            return None
        if self.viewer is None:
            self.viewer = Viewer(self.client, save_dir=self.save_dir, on_hide=self._close_viewer,
                                 on_use_reference=self._on_use_reference, bridge=self.bridge)
            self.children = [self.note, self.search, self.filters, self.bar, self.viewer, self.grid]
        self.viewer.opener = f"qw-open-history-{item.entry.local_id}"
        return self.viewer.show(items, start, focus=focus)

    def _close_viewer(self) -> None:
        viewer, self.viewer = self.viewer, None
        if viewer is not None:
            self.children = [self.note, self.search, self.filters, self.bar, self.grid]
            viewer.discard()


class HistoryItem(widgets.VBox):
    """One generation of the history: its picture, prompt, when and how it was made, where it
    came from, and what can be done with it."""

    def __init__(self, view: HistoryView, entry: Entry):
        self.view, self.entry = view, entry
        self.prompt = entry.request.prompt if entry.request else f"Task {entry.task.task_id if entry.task else ''}"
        task = entry.task
        self.picture = widgets.Image(format="jpeg", layout=layout(display="none", **_PICTURE))
        self.placeholder = widgets.HTML(layout=layout(**_EMPTY), style=style("html"))
        count = len(task.images) if task is not None else 0
        caption = f"{count} images" if count > 1 else ("1 image" if count else entry.status)
        self.caption = widgets.HTML(html.escape(caption), layout=layout(grid_area="cap", width="auto"),
                                    style=style("html"))
        self.opener = widgets.Button(tooltip=f"{self.prompt[:80]}: open it large", layout=layout(
            grid_area="pic", width="auto", height="auto", margin="0"),
            style=style("button", button_color="transparent"))
        self.opener.add_class(f"qw-open-history-{entry.local_id}")
        self.opener.on_click(lambda _: view.open_viewer(self))
        tile = widgets.GridBox([self.placeholder, self.picture, self.caption, self.opener], layout=layout(
            grid_template_areas='"pic" "cap"', grid_template_rows="auto auto", min_width="0"))
        self.title = widgets.HTML(text_html(self.prompt, bold=True), layout=layout(width="auto"), style=style("html"))
        self.details = widgets.HTML(text_html(self._details(), color=MUTED_COLOR, small=True),
                                    layout=layout(width="auto"), style=style("html"))
        self.feedback = widgets.HTML(layout=layout(width="auto"), style=style("html"))
        self.actions = widgets.HBox(layout=layout(flex_flow="row wrap", align_items="center"))
        self.more: widgets.HBox | None = None
        self.confirm: widgets.HBox | None = None
        self._tile = tile
        self._offer()
        super().__init__([tile, self.title, self.details, self.actions, self.feedback],
                         layout=layout(border=BORDER, padding="6px 8px", min_width="0"))
        self.add_class("qw-history-item")

    def __repr__(self) -> str:
        return f"HistoryItem({self.entry.local_id}, {self.entry.status})"

    def _details(self) -> str:
        entry, task = self.entry, self.entry.task
        parts = [params_line(entry.request), entry.status, made_words(entry.created_at)]
        if task is not None:
            parts += [task.task_id, cost_words(task)]
        if entry.error and entry.status != "completed":
            parts.append(entry.error if len(entry.error) < 160 else entry.error[:159] + "…")
        origin = origin_words(entry.references)
        return " · ".join(filter(None, parts)) + (f"\n{origin}" if origin else "")

    def can_show(self, image: GeneratedImage) -> bool:
        """A kept copy, or a URL that still lives (and no error)."""
        if image.error is not None:
            return False
        if image.local_path is not None and image.local_path.exists():
            return True
        return image.expires_at is None or image.expires_at > datetime.now(timezone.utc)

    async def load(self) -> None:
        """The first image's thumbnail, or a placeholder saying why there is none."""
        task = self.entry.task
        shown = [image for image in task.images if self.can_show(image)] if task is not None else []
        if not shown:
            why = ("no image" if task is None or not task.images else
                   "no copy kept, and its link has expired")
            self.placeholder.value = text_html(why, color=MUTED_COLOR, small=True)
            self.opener.disabled = True
            return
        try:
            data = await self.view.client.aio.thumbnail(shown[0], THUMBNAIL_EDGE)
        except (QwenError, ValueError) as error:
            self.placeholder.value = text_html(f"cannot be shown: {error_message(error)}", color=MUTED_COLOR,
                                               small=True)
            return
        self.picture.value = data
        self.caption.value += alt_html(alt_text(self.prompt, shown[0].index + 1, len(task.images) if task else 1))
        self.picture.layout = layout(**_PICTURE)
        self.placeholder.layout = layout(display="none", **_EMPTY)

    # -- what an item does ---------------------------------------------------------------------

    def _offer(self) -> None:
        old = list(self.actions.children)
        entry, view = self.entry, self.view
        buttons = [_button("Starred" if entry.starred else "Star", self.toggle_star,
                           "Take the star away" if entry.starred else "Star it (Starred only finds it)")]
        if entry.request is not None and view._on_reuse is not None:
            buttons.append(_button("Load into the form", self.load_into_form,
                                   "Put this prompt and these settings in the form on the Generate tab"))
        if entry.request is not None and view._on_more is not None:
            buttons.append(_button("More like this", self.more_like_this,
                                   "Send the same request again (new images: the API has no seed)"))
        buttons.append(_button("More…", self.toggle_more, "Copy the prompt, the chain, hide or delete"))
        self.actions.children = buttons
        close_tree(old)

    def _say(self, text: str, *, error: bool = False) -> None:
        if error:
            show_error(self.feedback, text)
        else:
            self.feedback.value = text_html(text)

    def toggle_star(self) -> concurrent.futures.Future:
        starred = not self.entry.starred

        async def run() -> None:
            try:
                self.entry = await self.view.client.aio.star(self.entry, starred)
            except QwenError as error:
                self._say(error_message(error), error=True)
                return
            self._offer()

        return self.view.client.background(run())

    def load_into_form(self) -> None:
        if self.entry.request is not None and self.view._on_reuse is not None:
            self._say(self.view._on_reuse(self.entry.request, source=self.entry))

    def more_like_this(self) -> None:
        if self.entry.request is not None and self.view._on_more is not None:
            self._say(self.view._on_more(self.entry.request))

    def toggle_more(self) -> None:
        if self.more is not None:
            more, self.more = self.more, None
            self._arrange()
            close_tree([more])
            return
        buttons = []
        if self.entry.request is not None:
            buttons.append(_button("Copy prompt", self.copy_prompt, "Copy the prompt to the clipboard"))
        if any(ref.parent_task_id for ref in self.entry.references):
            buttons.append(_button("Chain", self.show_chain, "The generations this one grew from, and what changed"))
        buttons.append(_button("Show again" if self.entry.hidden else "Hide", self.toggle_hidden,
                               "Hide it from the history (nothing is removed)" if not self.entry.hidden
                               else "Show it in the history again"))
        buttons.append(_button("Delete…", self.ask_delete, "Delete it and its kept images from this machine"))
        self.more = widgets.HBox(buttons, layout=layout(flex_flow="row wrap", align_items="center"))
        self._arrange()

    def _arrange(self) -> None:
        self.children = [child for child in (self._tile, self.title, self.details, self.actions, self.more,
                                             self.confirm, self.feedback) if child is not None]

    def copy_prompt(self) -> None:
        copy_text(self.view.bridge, self.feedback, "prompt", self.prompt)

    def show_chain(self) -> concurrent.futures.Future:
        """'← task_b 'a lighthouse at dusk' (size 1:1 -> 16:9) ← task_a 'a sketch'': what this
        grew from, nearest first, each step with what changed."""
        async def run() -> None:
            try:
                chain = await self.view.client.aio.chain(self.entry)
            except QwenError as error:
                self._say(error_message(error), error=True)
                return
            steps, later = [], self.entry.request
            for parent in chain:
                name = parent.task.task_id if parent.task is not None else parent.local_id[:8]
                prompt = parent.request.prompt if parent.request else "?"
                changed = (f" (then {describe_diff(parent.request, later)})"
                           if parent.request is not None and later is not None else "")
                steps.append(f"← {name} ‘{prompt[:60]}’{changed}")
                later = parent.request
            self._say("Made from:\n" + "\n".join(steps) if steps else "Its sources are not in this journal.")

        return self.view.client.background(run())

    def toggle_hidden(self) -> concurrent.futures.Future:
        hidden = not self.entry.hidden

        async def run() -> None:
            try:
                await self.view.client.aio.hide(self.entry, hidden)
            except QwenError as error:
                self._say(error_message(error), error=True)
                return
            self.view.refresh()  # it leaves this list (hidden ones show with "Hidden ones")

        return self.view.client.background(run())

    def ask_delete(self) -> None:
        task = self.entry.task
        kept = [image.local_path for image in task.images if image.local_path is not None] if task else []
        size = sum(path.stat().st_size for path in kept if path.exists())
        words = (f"Delete it? Its {len(kept)} kept image(s) ({size_words(size)}) are deleted from this machine "
                 "and it leaves the history; this cannot be undone." if kept else
                 "Delete it? It leaves the history; this cannot be undone.")
        if self.confirm is not None:
            return
        self.confirm = widgets.HBox([widgets.HTML(text_html(words), layout=layout(width="auto"), style=style("html")),
                                     _button("Delete", self.delete, "Delete it now"),
                                     _button("Keep", self._unask, "Do not delete it")],
                                    layout=layout(flex_flow="row wrap", align_items="center"))
        self._arrange()

    def _unask(self) -> None:
        confirm, self.confirm = self.confirm, None
        self._arrange()
        close_tree([confirm] if confirm is not None else [])

    def delete(self) -> concurrent.futures.Future:
        async def run() -> None:
            try:
                freed = await self.view.client.aio.delete(self.entry)
            except QwenError as error:
                self._say(error_message(error), error=True)
                return
            await asyncio.wrap_future(self.view.refresh())
            self.view.summary.value += text_html(
                f"Deleted ‘{self.prompt[:60]}’: {freed['images']} kept image(s), {size_words(freed['bytes_freed'])} "
                "freed on this machine.", color=MUTED_COLOR)

        return self.view.client.background(run())

    def close_all(self) -> None:
        """Close this item and every widget inside it (shared layouts and styles stay)."""
        close_tree([self])


def _choice(description: str, options: list[tuple[str, str]], width: str) -> widgets.Dropdown:
    return widgets.Dropdown(options=options, value="", description=description,
                            layout=layout(width=f"min({width}, 100%)"))


def _button(label: str, action: Callable[[], object], tooltip: str) -> widgets.Button:
    made = widgets.Button(description=label, tooltip=tooltip, layout=layout(width="auto"), style=style("button"))
    made.on_click(lambda _: action())
    return made
