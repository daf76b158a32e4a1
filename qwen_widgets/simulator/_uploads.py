"""The simulated upload endpoint: images kept in memory and served back at the simulator's URL."""

from __future__ import annotations

import secrets
from email.parser import BytesParser
from email.policy import HTTP
from typing import Any

from ._contract import Refusal, check_upload

__all__: list[str] = []

UPLOAD_ROUTE = "/sim-uploads/"


class Uploads:
    """`POST /v1/uploads/images` (multipart, one field `file`) and the bytes behind its URLs."""

    def __init__(self):
        self.files: dict[str, tuple[bytes, str]] = {}
        """Upload id -> (bytes, content type)."""

    def accept(self, body: bytes, content_type: str, base: str, now: float) -> dict[str, Any]:
        """The answer to an upload request; Refusal when there is no file or the contract
        refuses it (413 too large, 400 not an accepted image format)."""
        part = _file_part(body, content_type)
        if part is None:
            raise Refusal(400, "file: is required: send multipart/form-data with one field 'file'", param="file")
        name, data = part
        media_type = check_upload(data)
        upload_id = secrets.token_hex(8)
        self.files[upload_id] = (data, media_type)
        safe = "".join(ch for ch in name if ch.isalnum() or ch in "._-")[:64] or "image"
        return {"url": f"{base}{UPLOAD_ROUTE}{upload_id}/{safe}", "filename": name[:128],
                "content_type": media_type, "bytes": len(data), "created_at": int(now)}

    def serve(self, path: str) -> tuple[bytes, str] | None:
        upload_id = path[len(UPLOAD_ROUTE):].split("/", 1)[0]
        return self.files.get(upload_id)

    def bytes_of(self, url: str) -> bytes | None:
        """The bytes behind one of this simulator's upload URLs (for drawing references)."""
        marker = url.find(UPLOAD_ROUTE)
        if marker < 0:
            return None
        found = self.serve(url[marker:])
        return found[0] if found else None


def _file_part(body: bytes, content_type: str) -> tuple[str, bytes] | None:
    if not content_type.lower().startswith("multipart/form-data"):
        return None
    message = BytesParser(policy=HTTP).parsebytes(b"Content-Type: " + content_type.encode() + b"\r\n\r\n" + body)
    for part in message.iter_parts():
        if part.get_param("name", header="content-disposition") == "file":
            return part.get_filename() or "image", part.get_payload(decode=True) or b""
    return None

