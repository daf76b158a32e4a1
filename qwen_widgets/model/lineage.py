"""Where an image came from, and how two requests differ. Pure values and functions.

An image made from another (image to image) names it among its reference URLs; the journal
knows which of those URLs are our own results (a result URL, or an upload of a kept copy or of
a file that carries our receipt) and records that as a `Reference` with its parent. Walking the
parents gives the chain an image grew from; `request_diff` says what changed at each step, in
the words a person would use: "size 1:1 -> 16:9, prompt + 'at dusk'".
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass
from typing import Any

from .request import ImageRequest

__all__ = ["Reference", "request_diff"]


@dataclass(frozen=True)
class Reference:
    """One reference image of a request, and what is known of where it came from."""

    url: str
    """The URL the request sent."""
    sha256: str | None = None
    """The sha256 of the image's bytes, when known (an upload, or a kept result)."""
    local_path: str | None = None
    """The file on this machine it was uploaded from, or the kept copy of the result it is."""
    parent_task_id: str | None = None
    """The task that made it, when it is one of our results (None for an outside image)."""
    parent_index: int | None = None
    """Which image of that task (from 0)."""
    parent_local_id: str | None = None
    """The journal row of that task, when this journal has it."""

    @property
    def label(self) -> str:
        """'task_01J… image 2' for one of our results, else the file or the URL's last part."""
        if self.parent_task_id is not None:
            index = f" image {self.parent_index + 1}" if self.parent_index is not None else ""
            return f"{self.parent_task_id}{index}"
        if self.local_path:
            return self.local_path.replace("\\", "/").rsplit("/", 1)[-1]
        return self.url.rsplit("/", 1)[-1][:60] or self.url[:60]

    def to_json(self) -> dict[str, Any]:
        return {"url": self.url, "sha256": self.sha256, "local_path": self.local_path,
                "task_id": self.parent_task_id, "image_index": self.parent_index,
                "local_id": self.parent_local_id}

    @classmethod
    def from_json(cls, data: Any) -> Reference | None:
        """A Reference from to_json()'s dict (or a receipt's); None when it is not one."""
        if not isinstance(data, dict) or not isinstance(data.get("url"), str):
            return None
        index = data.get("image_index")
        text = lambda key: data[key] if isinstance(data.get(key), str) else None  # noqa: E731
        return cls(data["url"], text("sha256"), text("local_path"), text("task_id"),
                   index if isinstance(index, int) and not isinstance(index, bool) else None,
                   text("local_id"))


_FIELD_NAMES = (("model", "model"), ("size", "size"), ("resolution", "resolution"), ("n", "n"))


def request_diff(before: ImageRequest, after: ImageRequest) -> list[str]:
    """What changed from `before` to `after`, one phrase per field, in field order:
    ['size 1:1 -> 16:9', "prompt + 'at dusk'"]; empty when they are the same request."""
    changes = [f"{name} {getattr(before, field)} -> {getattr(after, field)}"
               for field, name in _FIELD_NAMES if getattr(before, field) != getattr(after, field)]
    if before.prompt != after.prompt:
        changes.append(_text_change("prompt", before.prompt, after.prompt))
    if (before.negative_prompt or "") != (after.negative_prompt or ""):
        changes.append(_text_change("negative prompt", before.negative_prompt or "", after.negative_prompt or ""))
    if before.image_urls != after.image_urls:
        added = len(set(after.image_urls) - set(before.image_urls))
        removed = len(set(before.image_urls) - set(after.image_urls))
        parts = [f"+{added}" if added else "", f"-{removed}" if removed else ""]
        changes.append(f"references {' '.join(filter(None, parts)) or 'reordered'}")
    return changes


def describe_diff(before: ImageRequest, after: ImageRequest) -> str:
    """request_diff as one line: 'size 1:1 -> 16:9, prompt + 'at dusk''; 'the same request'."""
    return ", ".join(request_diff(before, after)) or "the same request"


def _text_change(name: str, before: str, after: str) -> str:
    """A change by words (punctuation counts as a word), in reading order: "prompt + 'at
    dusk'", "prompt - 'blurry'", "prompt 'dawn' -> 'dusk'"; a rewrite of more than half is said
    as the new text."""
    if not before:
        return f"{name} '{_short(after)}'"
    if not after:
        return f"{name} removed"
    old, new = list(_WORD.finditer(before)), list(_WORD.finditer(after))
    matcher = difflib.SequenceMatcher(a=[w.group() for w in old], b=[w.group() for w in new], autojunk=False)
    parts, changed = [], 0
    for op, i1, i2, j1, j2 in matcher.get_opcodes():
        if op == "equal":
            continue
        gone = before[old[i1].start():old[i2 - 1].end()] if i2 > i1 else ""
        came = after[new[j1].start():new[j2 - 1].end()] if j2 > j1 else ""
        changed += len(gone) + len(came)
        if op == "replace":
            parts.append(f"'{_short(gone)}' -> '{_short(came)}'")
        elif op == "delete":
            parts.append(f"- '{_short(gone)}'")
        elif op == "insert":
            parts.append(f"+ '{_short(came)}'")
    if changed > max(40, len(after) // 2):
        return f"{name} -> '{_short(after)}'"
    return f"{name} {' '.join(parts)}" if parts else f"{name} (spacing)"


_WORD = re.compile(r"\w+|[^\w\s]")


def _short(text: str, limit: int = 60) -> str:
    return text if len(text) <= limit else text[:limit - 1] + "…"
