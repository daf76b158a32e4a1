"""JupyterHub mode: students are Hub users (no codes), teachers sign in through the Hub.

Run as a Hub service, the gateway reads what the Hub puts in its environment
(`JUPYTERHUB_API_TOKEN`, `JUPYTERHUB_API_URL`, `JUPYTERHUB_SERVICE_PREFIX`, and for OAuth
`JUPYTERHUB_CLIENT_ID`, `JUPYTERHUB_OAUTH_CALLBACK_URL`, `JUPYTERHUB_OAUTH_ACCESS_SCOPES`).

- A student's client sends the token of their own server (`JUPYTERHUB_API_TOKEN` inside it) as
  its API key; `HubAuth.user_for_token` asks the Hub's `/user` endpoint whose it is (every
  token may identify its owner) and the user becomes a student of the `--hub-class` class on
  first use. The Hub caches nothing for us beyond a minute, so a user the Hub removes stops
  working within a minute; the teacher can also revoke a user like a code.
- The teacher page accepts, besides the teacher token, a Hub user who has access to this
  service (`access:services!service=NAME`, granted with a role in jupyterhub_config.py):
  `HubOAuth` sends them through the Hub's login and back to `oauth_callback`.

`jupyterhub` is imported here only, and only when Hub mode is on: the gateway does not need it.
"""

from __future__ import annotations

import os
from typing import Any

from .proxy import HubUnavailable

__all__ = ["HubIdentity", "hub_environment_ready"]

IDENTITY_CACHE_SECONDS = 60


def hub_environment_ready() -> str | None:
    """None when the Hub's service environment is present, else the missing variable's name."""
    for name in ("JUPYTERHUB_API_TOKEN", "JUPYTERHUB_API_URL"):
        if not os.environ.get(name):
            return name
    return None


class HubIdentity:
    """Who a Hub token belongs to; and, when the Hub registered us as an OAuth client, the
    pieces that let a teacher sign in to the page through the Hub."""

    def __init__(self) -> None:
        from jupyterhub.services.auth import HubAuth, HubOAuth

        self.oauth_enabled = bool(os.environ.get("JUPYTERHUB_CLIENT_ID"))
        auth_class = HubOAuth if self.oauth_enabled else HubAuth
        self.auth = auth_class(cache_max_age=IDENTITY_CACHE_SECONDS)

    async def user_for(self, token: str) -> str | None:
        """The Hub user name owning `token`, or None (not a Hub token, or a service's)."""
        from tornado.web import HTTPError

        try:
            model = await self.auth.user_for_token(token, sync=False)
        except HTTPError as exc:
            raise HubUnavailable(f"HTTP {exc.status_code}") from None
        if not isinstance(model, dict) or model.get("kind", "user") != "user" or not isinstance(model.get("name"), str):
            return None
        return model["name"]

    def teacher_handler(self, handler_class: type) -> type:
        """`handler_class` with Hub sign-in mixed in (HubOAuthenticated first in the MRO)."""
        from jupyterhub.services.auth import HubOAuthenticated

        return type(handler_class.__name__, (HubOAuthenticated, handler_class), {"_hub_auth": self.auth})

    def callback_handler(self) -> type:
        """The handler for `PREFIX/oauth_callback`, where the Hub sends a signed-in teacher back."""
        from jupyterhub.services.auth import HubOAuthCallbackHandler

        return type("OAuthCallback", (HubOAuthCallbackHandler,), {"_hub_auth": self.auth})

    async def teacher(self, handler: Any) -> tuple[str | None, bool]:
        """(the Hub user signed in to the page, whether they have access to this service);
        (None, False) when nobody is signed in."""
        from jupyterhub.services.auth import UserNotAllowed

        model = await self.auth.get_user(handler, sync=False)
        if not model or not isinstance(model.get("name"), str):
            return None, False
        # without access scopes HubAuthenticated would let every Hub user in: never for this page
        if not handler.hub_scopes:
            return model["name"], False
        try:
            allowed = handler.check_hub_user(model)
        except UserNotAllowed:
            allowed = None
        return model["name"], bool(allowed)
