"""A look at the history: what it asks for (HistoryQuery) and what one page of it holds
(HistoryPage). Pure values; the journal runs the query (store.journal), the front door and the
history view build it from what a person typed.

Every filter is checked here, before the journal is touched, with the same clear errors as a
request: `since="7 days"` says which forms are understood.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from typing import Any

from .errors import RequestValidationError
from .submission import STATUSES, Entry

__all__ = ["HistoryQuery", "HistoryPage"]

PAGE_SIZE = 24
"""Generations per page in the history view: four rows of six at 1400 px, and little memory."""
_SPAN = re.compile(r"\s*(\d+(?:\.\d+)?)\s*(m|min|h|d|w)\s*", re.I)
_SECONDS = {"m": 60, "min": 60, "h": 3600, "d": 86_400, "w": 7 * 86_400}
_TERM = re.compile(r'"([^"]*)"|(\S+)')
_RUNNING = dict.fromkeys(("submitting", "submitted", "pending", "processing"), "running")
"""A task's or a submission's words for not ended yet: the history calls them all running."""


@dataclass(frozen=True)
class HistoryQuery:
    """Which generations to show: words of the prompt or negative prompt, and filters.
    Every field left at its default lets everything through (hidden ones stay hidden)."""

    search: str = ""
    """Words that must all occur in the prompt or the negative prompt (any case, any part of
    a word: "light" finds "lighthouse"); "a quoted phrase" counts as one word."""
    starred: bool | None = None
    """True: starred only; False: not starred only; None: either."""
    hidden: bool | None = False
    """False (the default): what was not hidden; True: hidden only; None: both."""
    since: datetime | None = None
    """Made at or after this moment (aware, UTC)."""
    until: datetime | None = None
    """Made before this moment."""
    model: tuple[str, ...] = ()
    size: tuple[str, ...] = ()
    resolution: tuple[str, ...] = ()
    status: tuple[str, ...] = ()
    """Any of STATUSES (completed, failed, cancelled, running, unknown, refused, expired);
    submitting, submitted, pending and processing are taken as running."""

    @classmethod
    def of(cls, *, search: str | None = None, starred: bool | None = None, hidden: bool | None = False,
           since: Any = None, until: Any = None, model: Any = None, size: Any = None,
           resolution: Any = None, status: Any = None, now: datetime | None = None) -> HistoryQuery:
        """A query from what a person passes to `qw.history(...)`: `since`/`until` as a
        datetime, a date, an ISO date ("2026-01-30"), or a span back from now ("30m", "24h",
        "7d", "2w"); `model`, `size`, `resolution` and `status` as one value or several."""
        if search is not None and (not isinstance(search, str) or "\0" in search):
            raise RequestValidationError("search", "must be text (words of the prompt), without NUL", search)
        for name, value in (("starred", starred), ("hidden", hidden)):
            if value is not None and not isinstance(value, bool):
                raise RequestValidationError(name, "must be True, False or None", value)
        now = now or datetime.now(timezone.utc)
        statuses = tuple(dict.fromkeys(_RUNNING.get(word, word) for word in _choices("status", status)))
        for word in statuses:
            if word not in STATUSES:
                raise RequestValidationError("status", f"must be one of {', '.join(STATUSES)}", word)
        return cls(search=(search or "").strip(), starred=starred, hidden=hidden,
                   since=when("since", since, now), until=when("until", until, now),
                   model=_choices("model", model), size=_choices("size", size),
                   resolution=_choices("resolution", resolution), status=statuses)

    def terms(self) -> list[str]:
        """The search's words (a quoted phrase is one), lower-cased, in order, without repeats."""
        found = [(quoted or bare).strip().lower() for quoted, bare in _TERM.findall(self.search)]
        return list(dict.fromkeys(term for term in found if term))

    @property
    def filtered(self) -> bool:
        """True when anything narrows the history (the view says "no match" rather than "empty")."""
        return self != HistoryQuery()


EVERYTHING = HistoryQuery()
"""The query that lets everything through (hidden generations stay hidden)."""


@dataclass(frozen=True)
class HistoryPage:
    """One page of the history, newest first."""

    entries: list[Entry]
    """The page's generations, newest first."""
    total: int
    """How many generations match the query in all."""
    offset: int
    """How many come before this page."""
    limit: int
    """The page size asked for."""
    query: HistoryQuery = field(default_factory=HistoryQuery)
    search_mode: str = ""
    """How the words were searched ("full-text index (SQLite FTS5)", or why not)."""

    @property
    def pages(self) -> int:
        return max(1, -(-self.total // self.limit)) if self.limit else 1

    @property
    def number(self) -> int:
        """This page's number, from 1."""
        return self.offset // self.limit + 1 if self.limit else 1


def when(name: str, value: Any, now: datetime) -> datetime | None:
    """A moment from a datetime (a naive one is local time, as `datetime.now()` gives it), a
    date (its midnight, UTC), an ISO date or datetime string (UTC unless it names an offset),
    or a span back from `now` ("7d")."""
    if value is None or value == "":
        return None
    try:
        if isinstance(value, datetime):
            return value if value.tzinfo is not None else value.astimezone()
        if isinstance(value, date):
            return datetime(value.year, value.month, value.day, tzinfo=timezone.utc)
        if isinstance(value, timedelta):
            return now - value
        if isinstance(value, str):
            span = _SPAN.fullmatch(value)
            if span:
                return now - timedelta(seconds=float(span.group(1)) * _SECONDS[span.group(2).lower()])
            moment = datetime.fromisoformat(value.strip())
            return moment if moment.tzinfo is not None else moment.replace(tzinfo=timezone.utc)
    except (ValueError, OverflowError):  # not a moment, or one before year 1
        pass
    raise RequestValidationError(
        name, "must be a datetime, a date, an ISO date such as '2026-01-30', or a span back "
        "from now such as '30m', '24h', '7d' or '2w'", value)


def _choices(name: str, value: Any) -> tuple[str, ...]:
    if value is None:
        return ()
    values = (value,) if isinstance(value, str) else value
    if not isinstance(values, (list, tuple, set, frozenset)) or not all(isinstance(v, str) for v in values):
        raise RequestValidationError(name, "must be a string or a list of strings", value)
    return tuple(dict.fromkeys(values))
