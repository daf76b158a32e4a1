"""What the simulated server sends: answers, misbehaviours, and the API's envelopes."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ._contract import Refusal

__all__ = ["SimResponse", "Fault"]


@dataclass(frozen=True)
class SimResponse:
    """What the server does: answer (status, headers, body), or misbehave (`action`)."""

    status: int = 200
    headers: Mapping[str, str] = field(default_factory=dict)
    body: bytes = b""
    action: str | None = None
    """None, or 'drop' (close without answering), 'refuse' (as if nobody listened);
    'late' marks a fault that delays the real answer (see Simulator.inject); 'render' is
    internal: an image to draw once the simulator's lock is released."""
    delay: float = 0.0
    """Seconds to stall before answering."""


@dataclass
class Fault:
    """A scripted misbehaviour for the next `count` matching requests."""

    response: SimResponse
    method: str | None = None
    path_prefix: str = "/v1/"
    count: int = 1
    process: bool = False
    """True: handle the request for real first (a task gets created), then misbehave."""

    def matches(self, method: str, path: str) -> bool:
        return (self.method in (None, method)) and path.startswith(self.path_prefix)


def bearer(value: str) -> str | None:
    scheme, _, token = value.partition(" ")
    if scheme.lower() != "bearer":
        return None
    return token.strip() or None


def json_response(status: int, payload: Any, headers: Mapping[str, str] | None = None) -> SimResponse:
    body = json.dumps(payload).encode()
    return SimResponse(status, {"Content-Type": "application/json", **(headers or {})}, body)


def error_response(refusal: Refusal, style: str, headers: Mapping[str, str] | None = None) -> SimResponse:
    """The API's error envelope for a refusal, its `code` spelled in `style` (CODE_STYLES)."""
    return json_response(refusal.status, refusal.body(style), headers)
