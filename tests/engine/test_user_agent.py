"""Every request the client sends names it: `qwen-widgets/<version> (+httpx/<version>; python/<version>)`,
on the API client and on the separate image client alike (seen on the wire, not in the code)."""

from __future__ import annotations

import io
import platform
import re

import httpx
import pytest
from PIL import Image

import qwen_widgets as qw

from ..conftest import TEST_KEY, fast_options

pytestmark = pytest.mark.anyio


class HeaderRecorder(httpx.AsyncBaseTransport):
    """The real transport, noting the method, path and User-Agent of each request as sent."""

    def __init__(self):
        self.inner = httpx.AsyncHTTPTransport()
        self.seen: list[tuple[str, str, str | None]] = []

    async def handle_async_request(self, request):
        self.seen.append((request.method, request.url.path, request.headers.get("user-agent")))
        return await self.inner.handle_async_request(request)

    async def aclose(self):
        await self.inner.aclose()


def png() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (64, 64), "orange").save(buffer, "PNG")
    return buffer.getvalue()


async def test_every_request_of_both_http_clients_carries_the_package_user_agent(server, tmp_path):
    api, images = HeaderRecorder(), HeaderRecorder()
    reference = tmp_path / "sketch.png"
    reference.write_bytes(png())
    async with qw.AsyncQwenClient(TEST_KEY, base_url=server.url, transport=api, image_transport=images,
                                  keep_images=True, **fast_options()) as client:
        task = await client.generate("a fox", n=2, image_urls=[reference])  # upload, submit, polls, 2 downloads
        await client.balance()
    assert task.status is qw.TaskStatus.COMPLETED
    paths = [path for _, path, _ in api.seen]
    assert "/v1/uploads/images" in paths and "/v1/images/generations" in paths and "/v1/balance" in paths
    assert any(path.startswith("/v1/tasks/") for path in paths)
    assert len(images.seen) >= 2
    expected = f"qwen-widgets/{qw.__version__} (+httpx/{httpx.__version__}; python/{platform.python_version()})"
    assert {agent for _, _, agent in api.seen + images.seen} == {expected}
    assert re.fullmatch(r"qwen-widgets/\d+\.\d+\.\d+\S* \(\+httpx/\S+; python/\d+\.\d+\.\d+\S*\)", expected)
