"""Which failures to retry, and how long to wait: pure decisions, no I/O.

Polling (GET) is idempotent, so every transient failure is retried. For a POST the verdict
says what the server may have done: it provably never got it (no connection was made) or
refused it outright (408, 409, 429, 503): send again; any other 4xx is a clear refusal,
nothing was created; every other answer (a 3xx, a 500, a gateway's 502/504) and any failure
after the body left the machine: the outcome is unknown. What follows an unknown outcome is
`_call`'s business: a submission is sent again with its idempotency key, an upload is not.
"""

from __future__ import annotations

import email.utils
import math
from dataclasses import dataclass
from enum import Enum

import httpx

__all__ = ["RetryPolicy"]


class Verdict(Enum):
    RETRY = "retry"
    FAIL = "fail"
    OUTCOME_UNKNOWN = "outcome_unknown"


# Raised before a single byte of the request was written: safe to resend anything.
_NEVER_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)
# 409: a request with this idempotency key is still being processed; asking again is safe
_RETRY_STATUSES = frozenset({408, 409, 429, 503})
# The live service answers an unknown model with 503 and this code: asking again cannot help.
_FINAL_CODES = frozenset({"model_not_found"})


def classify_exception(exc: BaseException, method: str) -> Verdict:
    """Verdict for an exception raised while sending `method` or reading its answer."""
    if isinstance(exc, _NEVER_SENT):
        return Verdict.RETRY
    # never sent either, but retrying cannot fix a URL scheme httpx does not speak, nor a
    # request h11 refuses to write (LocalProtocolError: an illegal header value)
    if isinstance(exc, (httpx.UnsupportedProtocol, httpx.LocalProtocolError)):
        return Verdict.FAIL
    if not isinstance(exc, httpx.RequestError):
        return Verdict.FAIL
    # everything else (timeouts, resets, undecodable bodies) happened after the request left
    return Verdict.RETRY if method == "GET" else Verdict.OUTCOME_UNKNOWN


def classify_status(status: int, method: str, code: object = None) -> Verdict:
    """Verdict for a status other than 2xx answered to `method`, with the body's error code."""
    if isinstance(code, str) and code in _FINAL_CODES:
        return Verdict.FAIL
    if status in _RETRY_STATUSES or (method == "GET" and status >= 500):
        return Verdict.RETRY
    if method == "GET" or 400 <= status < 500:
        return Verdict.FAIL
    # a redirect means the server processed the POST; a 500 or a gateway's 502/504 may
    # come after the task was created
    return Verdict.OUTCOME_UNKNOWN


def parse_retry_after(value: str | None, now: float) -> float | None:
    """Seconds to wait from a Retry-After header (delta-seconds or HTTP-date), at least 0.

    `now` is unix seconds, for the date form. Returns None when the header is absent or
    unreadable; the caller bounds the result.
    """
    if value is None:
        return None
    text = value.strip()
    try:
        seconds = float(text)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(text)
        except (TypeError, ValueError, IndexError):
            return None
        if when is None:
            return None
        seconds = when.timestamp() - now
    if math.isnan(seconds):
        return None
    return max(0.0, seconds)


@dataclass(frozen=True)
class RetryPolicy:
    """How many times and how long to wait between attempts of one HTTP call."""

    max_attempts: int = 6
    """Attempts per call, the first included."""
    backoff_base: float = 0.5
    """Wait before the second attempt, doubling after each further failure."""
    backoff_cap: float = 20.0
    """Longest wait computed by backoff."""
    max_retry_after: float = 60.0
    """Longest wait accepted from a Retry-After header; longer ones give up instead."""

    def delay(
        self, attempt: int, retry_after: float | None, random: float, *, bounded: bool = True
    ) -> float | None:
        """Wait before attempt number `attempt + 1` (attempt counts from 1), or None to give up.

        Backoff uses "equal jitter" (half fixed, half random) so that many clients that failed
        together do not come back together; a server's Retry-After is honoured, plus up to 10%.
        `bounded=False` lifts max_attempts and max_retry_after for a caller that stops at a
        deadline of its own (watching a task keeps trying through an outage).
        """
        if bounded and attempt >= self.max_attempts:
            return None
        if retry_after is not None:
            if bounded and retry_after > self.max_retry_after:
                return None
            return retry_after * (1 + 0.1 * random)
        ceiling = min(self.backoff_cap, self.backoff_base * 2 ** (attempt - 1))
        return ceiling / 2 + ceiling / 2 * random
