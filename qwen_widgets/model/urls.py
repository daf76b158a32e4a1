"""The one rule for URLs that are fetched, linked or sent, whoever wrote them.

A URL the server returns is checked by the same rule as one the user pastes and one the
image fetcher is about to request, so a URL that would make the HTTP client raise (a port
that is not a number, a control character, a hostname IDNA refuses) is caught as data,
next to the image it belongs to, instead of escaping from a download mid-task.
"""

from __future__ import annotations

from urllib.parse import urlsplit

import httpx

__all__: list[str] = []

# Not an API rule: a guard so a pasted blob is refused with a message rather than sent.
MAX_URL_CHARS = 2048


def is_http_url(url: str) -> bool:
    """True for a public http(s) URL: a host, a valid port, no credentials, no whitespace,
    not over-long, and one the HTTP client can parse. The only kind of URL that is fetched,
    linked or sent."""
    if not isinstance(url, str) or len(url) > MAX_URL_CHARS:
        return False
    if any(ch.isspace() for ch in url) or has_credentials(url):
        return False
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 (reading it validates it: a number from 0 to 65535)
        # httpx's own parser: it also refuses control characters and invalid IDNA hosts
        httpx.URL(url)
    except (ValueError, httpx.InvalidURL):
        return False
    return parts.scheme.lower() in ("http", "https") and bool(parts.hostname)


def has_credentials(url: str) -> bool:
    """True when the URL carries user:password@ (never fetched, linked, sent or quoted)."""
    try:
        parts = urlsplit(url)
        return parts.username is not None or parts.password is not None
    except ValueError:
        return False
