"""In-process adapter: an httpx transport that answers from a Simulator, for demo mode."""

from __future__ import annotations

import asyncio
from urllib.parse import urlsplit

import httpx

from ._core import SIMULATOR_BASE_URL, Simulator

__all__ = ["SimulatorTransport"]


class SimulatorTransport(httpx.AsyncBaseTransport):
    """Routes requests for the simulator's hosts to it without any socket.

    With `passthrough=True` (the image fetcher's case) other hosts go to the real network,
    so a reference image the user pastes can still be previewed in demo mode.
    """

    def __init__(self, simulator: Simulator, *, passthrough: bool = False):
        self.simulator = simulator
        self._network = httpx.AsyncHTTPTransport() if passthrough else None

    def _serves(self, url: httpx.URL) -> bool:
        bases = (SIMULATOR_BASE_URL, self.simulator.image_base_url or SIMULATOR_BASE_URL)
        return any(url.host == urlsplit(base).hostname for base in bases)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if not self._serves(request.url):
            if self._network is not None:
                return await self._network.handle_async_request(request)
            raise httpx.ConnectError(f"the simulator does not serve {request.url.host}", request=request)
        body = await request.aread()
        # a thread, because rendering a 2K placeholder takes a noticeable fraction of a second
        answer = await asyncio.to_thread(
            self.simulator.handle,
            request.method,
            request.url.raw_path.decode("ascii"),
            dict(request.headers),
            body,
        )
        if answer.delay:
            await asyncio.sleep(answer.delay)
        if answer.action == "refuse":
            raise httpx.ConnectError("connection refused (simulated)", request=request)
        if answer.action == "drop":
            raise httpx.RemoteProtocolError(
                "server disconnected without sending a response (simulated)", request=request
            )
        return httpx.Response(answer.status, headers=answer.headers, content=answer.body, request=request)

    async def aclose(self) -> None:
        if self._network is not None:
            await self._network.aclose()
