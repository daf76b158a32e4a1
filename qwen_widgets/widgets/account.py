"""The panel's account line: the balance, today's usage against the spending limits, and what
the next generation will cost.

None of it may hold up the kernel: the balance and the price per image are network calls (run
on the private loop, never waited for by the kernel's thread), usage is a journal read (in a
worker thread after each generation). Results land in traits, and `on_change` lets the form
check Generate again.

The network calls start once the panel is shown (or `refresh()` is called): a panel built
and never displayed, in a script or a test, sends no request of its own. Usage needs no
network, so the limits hold from the first moment.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import html
import threading
import time
from collections.abc import Callable

import ipywidgets as widgets

from ..engine.sync import QwenClient
from ..model.errors import AuthenticationError, QwenError, SpendingLimitError
from ..model.limits import Usage
from ._format import balance_words, error_message, limit_message, plan_cost, usage_words
from ._theme import MUTED_COLOR, layout, style

__all__: list[str] = []

Price = tuple["float | None", str]


class Account:
    """What the account allows and costs, as one muted line (`line`) under Generate.

    `on_change()` is called (on the private loop's thread) when a price, the usage or the
    balance arrived, so the form can say the cost and disable Generate over a limit;
    `on_refused()` when the API refused the key, so the panel can offer its key field.
    """

    def __init__(self, client: QwenClient, on_change: Callable[[], None],
                 on_refused: Callable[[], None] | None = None):
        self.client = client
        self._on_change = on_change
        self._on_refused = on_refused
        self.key_refused = False
        """True once the API refused this client's key (401): Generate waits for another."""
        self.line = widgets.HTML(layout=layout(width="auto"),
                                 style=style("html", text_color=MUTED_COLOR, font_size="0.9em"))
        self.live = False
        """True once the panel was shown: from then on the balance and prices are asked for."""
        self.balance = ""
        """The balance in words ('Balance $9.87 ($0.13 used)'), or why it is not known."""
        self.usage: Usage | None = client.usage()
        """The last 24 hours' images and spend, when limits are set."""
        self.prices: dict[str, Price] = {}
        """(price, source) per model, as `client.price_per_image` answered."""
        self.future: concurrent.futures.Future | None = None
        """The refresh under way (or the last one): tests and scripts wait on it."""
        self._asked: set[str] = set()
        self._lock = threading.Lock()
        self._busy = self._again = False
        self._render()

    def __repr__(self) -> str:
        return f"Account({html.unescape(self.line.value)!r})"

    # -- refreshing, in the background -------------------------------------------------------

    def start(self) -> concurrent.futures.Future:
        """The panel is on screen: ask for the balance (and prices) from now on."""
        self.live = True
        return self.refresh()

    def refresh(self) -> concurrent.futures.Future:
        """Read usage and, once live, the balance again, in the background. Calls that come
        while one runs are folded into one more run (a sweep ends many tasks at once)."""
        with self._lock:
            if self._busy:
                self._again = True
                return self.future
            self._busy, self._again = True, False
            self.future = self.client.background(self._run())
            return self.future

    async def _run(self) -> None:
        try:
            while True:
                await self._update()
                with self._lock:
                    if not self._again:
                        self._busy = False
                        return
                    self._again = False
        except BaseException:
            with self._lock:
                self._busy = False
            raise

    async def _update(self) -> None:
        client = self.client
        usage = await asyncio.to_thread(client.usage)
        balance = self.balance
        if self.live:
            try:
                key = await client.aio.balance()
                try:  # the account's too, where the service keeps one apart from the key's
                    whole = await client.aio.balance(account=True)
                except QwenError:
                    whole = None
                balance = balance_words(key, client.demo, whole)
            except AuthenticationError:
                balance = "Balance not available: the API refused the key (401)"
                self.refuse(client)
            except QwenError as error:
                balance = f"Balance not available: {error_message(error)}"
        if client is self.client:  # a key entered meanwhile: its own refresh is coming
            self.usage, self.balance = usage, balance
            self._render()
            self._on_change()

    def refuse(self, client: QwenClient) -> None:
        """The API refused `client`'s key (a balance, or a card, heard 401): Generate is
        disabled until another key comes (use_client), and the panel is told."""
        if client is not self.client or self.key_refused:
            return
        self.key_refused = True
        self._on_change()
        if self._on_refused is not None:
            self._on_refused()

    def use_client(self, client: QwenClient) -> concurrent.futures.Future:
        """A key was entered: forget what the old client's account said."""
        self.client, self.prices, self._asked = client, {}, set()
        self.balance, self.usage, self.key_refused = "", None, False
        self._render()
        return self.refresh()

    # -- what the form asks ------------------------------------------------------------------

    def price(self, model: str) -> Price | None:
        """(price, source) for `model`, or None while it is being asked for."""
        if model in self.prices:
            return self.prices[model]
        if self.client.limits.price_per_image is not None:  # the user's price: no request
            return self.client.limits.price_per_image, "user"
        if self.live and model not in self._asked:
            self._asked.add(model)
            self.client.background(self._ask_price(self.client, model))
        return None

    async def _ask_price(self, client: QwenClient, model: str) -> None:
        answer = await client.aio.price_per_image(model)  # "unknown" when it cannot tell
        if client is self.client:
            self.prices[model] = answer
            self._on_change()

    def plan_cost(self, images: dict[str, int]) -> str:
        """What `images` per model will cost in words, or '' while a price is on its way."""
        prices = {model: self.price(model) for model in images}
        if not images or any(price is None for price in prices.values()):
            return ""
        return plan_cost(images, prices, self.client.demo)  # type: ignore[arg-type]

    def limit_problem(self, images: int) -> str:
        """Why `images` more cannot be generated now: a daily limit they would pass (from the
        last usage read), or a key the API refused; '' if nothing stands in the way."""
        if self.key_refused:
            return "The API refused the key: paste a valid one into the key field at the top."
        limits = self.client.limits
        if self.usage is None or not limits.active:
            return ""
        try:
            limits.check(self.usage, images, time.time())
        except SpendingLimitError as error:
            return limit_message(error)
        return ""

    def _render(self) -> None:
        parts = [self.balance, usage_words(self.usage, self.client.limits)]
        self.line.value = html.escape(" · ".join(part for part in parts if part), quote=False)
