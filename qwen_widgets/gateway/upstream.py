"""Where the gateway sends what it lets through: APIMart with the real key, or the simulator.

The real key comes from `APIMART_API_KEY` in the gateway's own environment and goes only into
the `Authorization` header of requests to `APIMART_BASE_URL`. Whatever comes back is masked
before anyone sees it (a provider that echoes the key in an error message, raw, JSON-escaped
or URL-encoded, does not leak it), and only a short list of response headers is passed on.

With no key the gateway fronts the built-in simulator on a loopback port, so a whole class can
be rehearsed offline. The simulator's image and upload URLs then point at a host that does not
exist (`SIMULATOR_BASE_URL`); the gateway rewrites them to its own address as each request
reached it and serves those paths itself, so a student's browser or image fetcher on another
machine can load them. With APIMart, the provider's signed URLs are passed through unchanged:
they need no key, expire on their own, and the gateway never carries image bytes.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import httpx

__all__ = ["Upstream", "Answer", "UpstreamUnreachable", "DEFAULT_BASE_URL", "MASK"]

DEFAULT_BASE_URL = "https://api.apimart.ai"
MASK = "[gateway key hidden]"
PASSED_HEADERS = ("content-type", "retry-after", "idempotency-replayed", "x-request-id")
"""Response headers a student may see; nothing else of the provider's answer is passed on."""
PRICE_TTL = 600.0
MAX_ANSWER_BYTES = 64 * 2**20
"""Larger answers are cut off: nothing the client asks for comes near (a 2K PNG is a few MB)."""
SIMULATOR_KEY = "simulator"


class UpstreamUnreachable(Exception):
    """No usable answer came back: the connection failed or timed out."""

    def __init__(self, message: str, *, timed_out: bool):
        self.timed_out = timed_out
        super().__init__(message)


@dataclass(frozen=True)
class Answer:
    """The provider's answer, already masked."""

    status: int
    headers: Mapping[str, str]
    body: bytes

    def json(self) -> Any:
        """The body as JSON, or None when it is not JSON."""
        try:
            return json.loads(self.body)
        except (ValueError, RecursionError):
            return None


@dataclass
class _Price:
    value: float | None
    fetched: float = field(default_factory=time.monotonic)


class Upstream:
    """The provider behind the gateway. `rewrite_from` is set when it is the simulator."""

    def __init__(self, base_url: str, key: str, *, rewrite_from: str | None = None, closer: Any = None):
        self.base_url = base_url.rstrip("/")
        self.rewrite_from = rewrite_from
        """The simulator's invented image host, rewritten to the gateway's address in answers."""
        self._key = key
        self._closer = closer
        self._secrets = self._variants(key) if key != SIMULATOR_KEY else []
        self._prices: dict[str, _Price] = {}
        self._client: httpx.AsyncClient | None = None

    @classmethod
    def simulated(cls, simulator: Any = None) -> Upstream:
        """The built-in simulator on a loopback port (demo mode: nothing leaves the machine)."""
        from qwen_widgets.simulator import SIMULATOR_BASE_URL, Simulator, serve

        simulator = simulator or Simulator.for_demo()
        if simulator.image_base_url is None:
            simulator.image_base_url = SIMULATOR_BASE_URL
        server = serve(simulator)
        return cls(server.url, SIMULATOR_KEY, rewrite_from=simulator.image_base_url, closer=server)

    @property
    def simulated_mode(self) -> bool:
        return self.rewrite_from is not None

    def describe(self) -> str:
        """Where requests go, for the start banner and the teacher page (never the key)."""
        if self.simulated_mode:
            return "the built-in simulator (demo mode: placeholder images, nothing is billed)"
        return self.base_url

    @staticmethod
    def _variants(key: str) -> list[bytes]:
        escaped = json.dumps(key)[1:-1]
        forms = {key, escaped, escaped.replace("/", "\\/"), quote(key, safe=""), quote(key)}
        # longest first, so a form that contains another is masked whole
        return sorted((form.encode() for form in forms if form), key=len, reverse=True)

    def mask(self, data: bytes) -> bytes:
        for secret in self._secrets:
            data = data.replace(secret, MASK.encode())
        return data

    def mask_text(self, text: str) -> str:
        return self.mask(text.encode("utf-8", "surrogateescape")).decode("utf-8", "surrogateescape")

    def _http(self) -> httpx.AsyncClient:
        # made on first use, inside the server's event loop that will use it
        if self._client is None:
            self._client = httpx.AsyncClient(
                base_url=self.base_url, follow_redirects=False,
                timeout=httpx.Timeout(60.0, connect=10.0, pool=30.0),
                limits=httpx.Limits(max_connections=64, max_keepalive_connections=32),
                headers={"User-Agent": "qwen_widgets-gateway"})
        return self._client

    async def send(self, method: str, target: str, *, headers: Mapping[str, str] | None = None,
                   body: bytes | None = None, with_key: bool = True) -> Answer:
        """One request to the provider; `target` is a path with its query string."""
        sent = dict(headers or {})
        if with_key:
            sent["Authorization"] = f"Bearer {self._key}"
        try:
            async with self._http().stream(method, target, headers=sent, content=body) as response:
                chunks, size = [], 0
                async for chunk in response.aiter_bytes():
                    size += len(chunk)
                    if size > MAX_ANSWER_BYTES:
                        raise UpstreamUnreachable("the provider's answer was too large", timed_out=False)
                    chunks.append(chunk)
                data = b"".join(chunks)
        except httpx.TimeoutException as exc:
            raise UpstreamUnreachable(f"the provider did not answer in time ({type(exc).__name__})",
                                      timed_out=True) from None
        except httpx.HTTPError as exc:
            raise UpstreamUnreachable(self.mask_text(f"the provider could not be reached ({type(exc).__name__})"),
                                      timed_out=False) from None
        passed = {name: self.mask_text(response.headers[name]) for name in PASSED_HEADERS if name in response.headers}
        return Answer(response.status_code, passed, self.mask(data))

    async def price(self, model: str) -> float | None:
        """The provider's price per image of `model`, or None when it does not say clearly.
        Asked at most every 10 minutes per model; the pricing endpoint needs no key."""
        known = self._prices.get(model)
        if known is not None and time.monotonic() - known.fetched < PRICE_TTL:
            return known.value
        try:
            answer = await self.send("GET", f"/api/pricing/model?model={quote(model, safe='')}", with_key=False)
        except UpstreamUnreachable:
            return known.value if known is not None else None
        value = parse_price(answer.json()) if answer.status == 200 else None
        self._prices[model] = _Price(value)
        return value

    def public(self, data: bytes, public_base: str) -> bytes:
        """The simulator's invented host in an answer, replaced by the gateway's own address."""
        if self.rewrite_from is None:
            return data
        return data.replace(self.rewrite_from.encode(), public_base.encode())

    def private(self, url: str, public_base: str) -> str:
        """A URL the gateway handed out, turned back into the provider's form."""
        if self.rewrite_from is not None and url.startswith(public_base + "/sim-"):
            return self.rewrite_from + url[len(public_base):]
        return url

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    def close(self) -> None:
        if self._closer is not None:
            self._closer.close()
            self._closer = None


def parse_price(body: Any) -> float | None:
    """The one positive price per image in a pricing answer's `data`, or None.

    APIMart's field is `model_price` (its unit depends on the account; the simulator answers the
    same shape); other price-like names are read too. More than one candidate means the answer
    is not understood.
    """
    data = body.get("data", body) if isinstance(body, dict) else None
    if not isinstance(data, dict):
        return None
    found = {float(data[key]) for key in ("price_per_image", "model_price", "unit_price", "price")
             if isinstance(data.get(key), (int, float)) and not isinstance(data.get(key), bool)
             and math.isfinite(data[key]) and data[key] > 0}
    return found.pop() if len(found) == 1 else None
