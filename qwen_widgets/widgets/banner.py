"""DemoBanner: one short line saying the images are simulated, and why; a key can be given.
The same line says so when the API refused the key, with the key field open: that is where
a key is set.

The key field stays out of sight behind "Use an API key…" (a field that invites pasting is
not what a classroom needs on every screen). Its value is moved into a new client and
cleared the moment it arrives, and is never echoed to other frontends, so a key never sits
in widget state or a saved notebook.
"""

from __future__ import annotations

import html
from collections.abc import Callable

import ipywidgets as widgets
from traitlets import Unicode

from ..engine.sync import QwenClient
from ..model.errors import RequestValidationError
from ..model.secret import Secret
from ._theme import MUTED_COLOR, NOTICE_BORDER

__all__: list[str] = []

_KEY_HELP = ("Paste an APIMart key and press Enter: it goes into this session's client only, "
             "and the field is cleared at once (never saved in the notebook). Real images are billed.")


class _KeyField(widgets.Password):
    """A password field whose value is never echoed back to the frontends.

    ipywidgets 8 echoes every incoming value to all connected frontends before observers
    run; the key must reach only this kernel, which clears the field at once.
    """

    value = Unicode(help="The pasted key, until the banner takes it").tag(sync=True, echo_update=False)


class DemoBanner(widgets.VBox):
    """Shown while a client runs against the simulator; `on_client` gets a client built from
    a pasted key."""

    def __init__(self, on_client: Callable[[QwenClient], None]):
        self._on_client = on_client
        self.message = widgets.HTML()
        self.key_toggle = widgets.Button(description="Use an API key…", icon="key",
                                         tooltip="Generate real (billed) images with your APIMart key",
                                         layout={"width": "auto"})
        self.key_toggle.on_click(lambda _: self._toggle_key_row())
        self.key_field = _KeyField(placeholder="APIMart key (kept in memory only)", continuous_update=False)
        self.key_help = widgets.HTML(f'<span style="color: {MUTED_COLOR}">{html.escape(_KEY_HELP)}</span>')
        self.key_field.observe(self._take_key, "value")
        self.key_row = widgets.VBox([self.key_field, self.key_help], layout={"display": "none"})
        self.line = widgets.HBox([self.message, self.key_toggle],
                                 layout={"align_items": "center", "flex_flow": "row wrap"})
        super().__init__([self.line, self.key_row], layout={
            "border_left": NOTICE_BORDER.replace("1px", "4px"), "padding": "0 0 0 8px", "margin": "0 0 6px 0"})

    def show_for(self, client: QwenClient) -> None:
        """Visible, with the right words, only while `client` is in demo mode."""
        if not client.demo:
            self.layout.display = self.key_row.layout.display = "none"
            return
        self.message.value = f"<b>Simulated images</b>: {html.escape(client.demo_reason or '')}."
        self.key_toggle.layout.display = "none" if client.demo_forced else None
        self.layout.display = None

    def show_refused(self, client: QwenClient, pasted: bool = False) -> None:
        """Say that the API refused `client`'s key, where that key was set, and open the key
        field for another (`pasted`: the key came from this field)."""
        source = getattr(client.aio, "key_source", None)
        where = ("pasted into this panel" if pasted else "given to the client as api_key=" if source == "api_key"
                 else f"set with {source}" if source else "")
        self.message.value = (
            f"<b>The API refused this key</b> (401{', ' + html.escape(where) if where else ''}): nothing was "
            "generated or billed. Paste a valid key below: it replaces the refused one for this session.")
        self.key_toggle.layout.display = "none"
        self.key_row.layout.display = None
        self.layout.display = None

    def _toggle_key_row(self) -> None:
        self.key_row.layout.display = None if self.key_row.layout.display == "none" else "none"

    def _take_key(self, change: dict) -> None:
        secret = Secret(change["new"] or "")  # boxed at once: no plain local
        if not secret:
            return
        self.key_field.value = ""  # at once: the key must not stay in widget state
        try:
            client = QwenClient(api_key=secret)
        except RequestValidationError as error:  # reported here, never as a traceback
            self.key_help.value = (f"<b>That key was not used</b> ({html.escape(str(error))}). "
                                   f"{html.escape(_KEY_HELP)}")
            return
        self._on_client(client)
