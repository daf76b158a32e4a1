"""The auth that sends the key (a `model.secret.Secret`) only to the API's own origin, and
masks it in anything the server sends back."""

from __future__ import annotations

import httpx

from ..model.secret import Secret

__all__: list[str] = []

class BearerAuth(httpx.Auth):
    """Adds the key only to requests for the API's own origin; never shows it in a repr."""

    def __init__(self, secret: Secret, origin: httpx.URL):
        self._secret = secret
        self._origin = (origin.scheme, origin.host, origin.port)

    def auth_flow(self, request: httpx.Request):
        if (request.url.scheme, request.url.host, request.url.port) == self._origin:
            request.headers["Authorization"] = f"Bearer {self._secret.reveal()}"
        yield request

    def redact(self, text: str) -> str:
        """`text` with the key masked, for anything a server sends back."""
        # a key of a few characters would mangle every message; real keys are long
        if len(self._secret.reveal()) < 8:
            return text
        return text.replace(self._secret.reveal(), "***")

    def __repr__(self) -> str:
        return "BearerAuth(***)"
