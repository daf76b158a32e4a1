"""Fetching result and reference images with a client that never carries credentials.

Image URLs come from the server (or from the user) and may point anywhere, so this client
is separate from the API client: no Authorization header, only http(s), redirects followed
by hand so each hop is checked, a byte cap, a timeout, and a check that what arrived is
an image and not, say, an HTML error page. Every failure, whatever httpx raised, is an
ImageFetchError: one bad image must never cost the task it belongs to. At most
MAX_CONCURRENT downloads run at once per client, so an answer naming thousands of images
cannot start thousands of connections (and starve the loop every task is watched on).
"""

from __future__ import annotations

import asyncio

import httpx

from .agent import USER_AGENT
from .clock import SYSTEM_CLOCK, Clock, within
from ..model.errors import ImageFetchError
from ..model.images import image_format
from ..model.urls import is_http_url
from .call import in_plain_words
from .retry import RetryPolicy, Verdict, classify_exception, classify_status

__all__: list[str] = []

DEFAULT_MAX_IMAGE_BYTES = 40 * 1024 * 1024  # a 2K PNG is a few MB; 40 MB leaves room
_MAX_REDIRECTS = 5
_IMAGE_RETRY = RetryPolicy(max_attempts=3)
MAX_CONCURRENT = 6
"""Downloads at once per client: a task's six images side by side, as a browser fetches
from one host."""
_HTTPX_ERRORS = (httpx.HTTPError, httpx.InvalidURL, httpx.StreamError, httpx.CookieConflict)
"""Every exception type httpx raises; e.g. InvalidURL comes from a redirect to `data:`."""


def _check_scheme(url: httpx.URL | str) -> None:
    if not is_http_url(str(url)):
        shown = "a URL with credentials" if "@" in str(url) else str(url)  # never quote a password
        raise ImageFetchError(shown, "only public http(s) URLs (a host, no credentials, at most "
                                     "2048 characters) are fetched")


class ImageFetcher:
    """Downloads images over http(s) without credentials, within a size cap and a timeout."""

    def __init__(
        self,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        timeout: httpx.Timeout | float = 60.0,
        call_limit: float | None = 120.0,
        max_bytes: int = DEFAULT_MAX_IMAGE_BYTES,
        retry: RetryPolicy = _IMAGE_RETRY,
        clock: Clock = SYSTEM_CLOCK,
    ):
        self.max_bytes = max_bytes
        # httpx times out per read: a host that drips bytes needs an overall cap per attempt
        self._attempt_limit = call_limit
        self._retry = retry
        self._clock = clock
        self._slots = asyncio.Semaphore(MAX_CONCURRENT)
        # follow_redirects=False: every hop is checked in fetch() before it is taken
        self._http = httpx.AsyncClient(
            transport=transport, timeout=timeout, follow_redirects=False, headers={"User-Agent": USER_AGENT}
        )

    async def fetch(self, url: str) -> bytes:
        """The image's bytes; ImageFetchError when it cannot be had or is not an image."""
        _check_scheme(url)
        attempt = 0
        while True:
            attempt += 1
            try:
                async with self._slots:  # the time cap starts once a slot is had
                    return await within(self._fetch_once(url), self._attempt_limit)
            except asyncio.TimeoutError:
                failure = _Retryable(f"no complete image within {self._attempt_limit:g} s",
                                     "the image host did not send the image in time")
            except _Retryable as exc:
                failure = exc
            delay = self._retry.delay(attempt, None, self._clock.random())
            if delay is None:
                raise ImageFetchError(url, failure.reason, plain=failure.plain) from failure.__cause__
            await self._clock.sleep(delay)

    async def _fetch_once(self, url: str) -> bytes:
        current = httpx.URL(url)
        for _ in range(_MAX_REDIRECTS + 1):
            try:
                async with self._http.stream("GET", current) as response:
                    if response.is_redirect:
                        # httpx has already refused an unparseable Location (RemoteProtocolError)
                        target = current.join(response.headers.get("location", ""))
                        _check_scheme(target)
                        if current.scheme == "https" and target.scheme != "https":
                            raise ImageFetchError(url, "refused a redirect from https to http")
                        current = target
                        continue
                    if response.status_code != 200:
                        reason = f"HTTP {response.status_code}"
                        if classify_status(response.status_code, "GET") is Verdict.RETRY:
                            raise _Retryable(reason, f"the image host failed ({reason})")
                        if response.status_code in (403, 404, 410):
                            reason += " (the URL may have expired: result URLs live about 24 h)"
                        raise ImageFetchError(url, reason, status_code=response.status_code)
                    data = await self._read_capped(url, response)
            except _HTTPX_ERRORS as exc:  # transport failures, undecodable bodies, unusable redirects
                reason = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
                if isinstance(exc, httpx.InvalidURL):  # httpx reads every Location, followed or not
                    reason = f"redirected to a URL that is not a public http(s) URL ({reason})"
                plain = in_plain_words(exc).replace("the server", "the image host")
                if isinstance(exc, httpx.RequestError) and classify_exception(exc, "GET") is Verdict.RETRY:
                    raise _Retryable(reason, plain) from exc
                raise ImageFetchError(url, reason, plain=plain) from exc
            if image_format(data) is None:
                kind = response.headers.get("content-type", "unknown type")
                raise ImageFetchError(url, f"the response is not an image ({kind})")
            return data
        raise ImageFetchError(url, f"more than {_MAX_REDIRECTS} redirects")

    async def _read_capped(self, url: str, response: httpx.Response) -> bytes:
        declared = response.headers.get("content-length")
        if declared and declared.isdigit() and int(declared) > self.max_bytes:
            raise ImageFetchError(url, f"{declared} bytes is over the cap of {self.max_bytes}")
        chunks, total = [], 0
        async for chunk in response.aiter_bytes():
            total += len(chunk)
            if total > self.max_bytes:
                raise ImageFetchError(url, f"more than the cap of {self.max_bytes} bytes")
            chunks.append(chunk)
        return b"".join(chunks)

    async def aclose(self) -> None:
        await self._http.aclose()


class _Retryable(Exception):
    def __init__(self, reason: str, plain: str):
        self.reason = reason
        self.plain = plain
        super().__init__(reason)
