"""DemoBanner: says the images are simulated, and takes a key without ever keeping it.

The key field's value is moved into a new client and cleared the moment it arrives, and is
never echoed to other frontends, so a key never sits in widget state or a saved notebook.
"""

from __future__ import annotations

import html
from collections.abc import Callable

import ipywidgets as widgets
from traitlets import Unicode

from .. import _config
from .._auth import Secret
from .._errors import RequestValidationError
from .._sync import QwenClient

__all__: list[str] = []

_DEMO = (
    "<b>Simulated images: no API key set.</b> Everything runs against the built-in simulator. "
    "For real images set <code>APIMART_API_KEY</code> before starting Jupyter, or paste a key "
    "below: it is moved into this session's client and the field is cleared at once, so it is "
    "never saved in the notebook."
)
_FORCED = "<b>Simulated images: QWEN_WIDGETS_DEMO=1 is set</b>, so the simulator is used even with a key."


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
        self.key_field = _KeyField(placeholder="APIMart key (kept in memory only)", continuous_update=False)
        self.key_button = widgets.Button(description="Use key", icon="key")
        self.key_field.observe(self._take_key, "value")
        self.key_button.on_click(lambda _: None)  # clicking blurs the field, which submits it
        super().__init__([self.message, widgets.HBox([self.key_field, self.key_button])],
                         layout={"border": "1px solid #e0a800", "padding": "4px 8px", "margin": "0 0 6px 0"})

    def show_for(self, client: QwenClient) -> None:
        """Visible, with the right words, only while `client` is in demo mode."""
        if not client.demo:
            self.layout.display = "none"
            return
        self.message.value = _FORCED if _config.demo_forced() else _DEMO
        self.layout.display = None

    def _take_key(self, change: dict) -> None:
        secret = Secret(change["new"] or "")  # boxed at once: no plain local
        if not secret:
            return
        self.key_field.value = ""  # at once: the key must not stay in widget state
        try:
            client = QwenClient(api_key=secret)
        except RequestValidationError as error:  # reported here, never as a traceback
            self.message.value = f"{_DEMO}<br><b>That key was not used:</b> {html.escape(str(error))}."
            return
        self._on_client(client)
