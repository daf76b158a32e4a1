"""The API key in a box that never shows it.

The key must never appear in a repr, a log line, an exception message, a DataFrame, the
journal or a saved notebook, so it lives in a `Secret` from the moment
it is read. Sending it, and masking it in what servers send back, is `engine.auth`.
"""

from __future__ import annotations

import re

__all__: list[str] = []  # nothing public: clients take the key as a plain string

_KEY_CHARS = re.compile(r"[\x21-\x7e]+")


class Secret:
    """The API key in a box that shows `***` in reprs, str() and verbose tracebacks (which
    print every local variable): the plain text never sits in a variable of its own."""

    __slots__ = ("_value",)

    def __init__(self, value: str):
        self._value = value.strip()

    def reveal(self) -> str:
        return self._value

    def usable(self) -> bool:
        """Printable ASCII without spaces: anything else h11 would refuse (quoting it)."""
        return bool(_KEY_CHARS.fullmatch(self._value))

    def __bool__(self) -> bool:
        return bool(self._value)

    def __repr__(self) -> str:
        return "***"

    __str__ = __repr__


def as_secret(value: str | Secret | None) -> Secret | None:
    """Box a plain key at once; a Secret or None passes through."""
    return Secret(value) if isinstance(value, str) else value
