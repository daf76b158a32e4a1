"""The auth that sends the key (a `model.secret.Secret`) only to the API's own origin, and
masks it in anything the server sends back.

A server may echo the key JSON-escaped (PHP writes `/` as `\\/` by default; any character
may come as `\\uXXXX`), and decoding turns that back into the key. So the raw text is masked
with a pattern that matches every way JSON can spell the key, and what was decoded from it
is masked again.
"""

from __future__ import annotations

import re
from typing import Any

import httpx

from ..model.secret import Secret

__all__: list[str] = []

_MASK = "***"
_MIN_KEY = 8  # a key of a few characters would mangle every message; real keys are long


def _spellings(key: str) -> re.Pattern[str]:
    """Every JSON spelling of `key`: each character literal, `\\uXXXX` (either case), and
    the two-character escapes JSON has for it (`\\/`, `\\"`, `\\\\`)."""
    parts = []
    for char in key:
        escaped = "".join(f"[{d}{d.upper()}]" if d.isalpha() else d for d in f"{ord(char):04x}")
        options = [re.escape(char), "\\\\u" + escaped]
        if char in '/"\\':
            options.append(re.escape("\\" + char))
        parts.append(f"(?:{'|'.join(options)})")
    return re.compile("".join(parts))


class BearerAuth(httpx.Auth):
    """Adds the key only to requests for the API's own origin; never shows it in a repr."""

    def __init__(self, secret: Secret, origin: httpx.URL):
        self._secret = secret
        self._origin = (origin.scheme, origin.host, origin.port)
        key = secret.reveal()
        self._pattern = _spellings(key) if len(key) >= _MIN_KEY else None

    def auth_flow(self, request: httpx.Request):
        if (request.url.scheme, request.url.host, request.url.port) == self._origin:
            request.headers["Authorization"] = f"Bearer {self._secret.reveal()}"
        yield request

    def redact(self, text: str) -> str:
        """`text` with the key masked, however JSON spelled it, for anything a server sends back."""
        if self._pattern is None:
            return text
        return self._pattern.sub(_MASK, text)

    def redact_decoded(self, value: Any) -> Any:
        """A decoded JSON value with the key masked in every string, keys of objects included."""
        if isinstance(value, str):
            return self.redact(value)
        if isinstance(value, list):
            return [self.redact_decoded(item) for item in value]
        if isinstance(value, dict):
            return {self.redact(str(k)): self.redact_decoded(v) for k, v in value.items()}
        return value

    def __repr__(self) -> str:
        return "BearerAuth(***)"
