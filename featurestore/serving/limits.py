"""Bounds on what one request may cost the servers: body size, and the size of error messages.

gRPC already refuses messages over its ``max_receive_message_length``; HTTP has no such
bound by itself (uvicorn buffers whatever body it is sent), so ``BodyLimit`` refuses a body
over ``MAX_BODY_BYTES`` with 413 before or while it is read. Error messages echo the names a
request used; ``shorten`` keeps that echo small, since a gRPC status message travels in a
trailer that clients drop (as RESOURCE_EXHAUSTED, losing the real error) beyond 8-16 KiB.
"""

from __future__ import annotations

import json
from typing import Any

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

MAX_BODY_BYTES = 16 * 1024 * 1024  # as gRPC's max message size
# Worst case a character is 4 UTF-8 bytes, each percent-encoded to 3 in the grpc-message
# trailer: 500 characters stay under the 8 KiB clients accept by default.
MAX_ERROR_CHARS = 500


def shorten(message: str, limit: int = MAX_ERROR_CHARS) -> str:
    """``message`` cut to ``limit`` characters, saying how much was cut."""
    if len(message) <= limit:
        return message
    return f"{message[:limit]}... ({len(message) - limit} more characters)"


def too_large(limit: int) -> str:
    return f"request body larger than the limit of {limit} bytes"


class BodyLimit:
    """ASGI middleware: 413 for a body over ``max_bytes``, declared or streamed."""

    def __init__(self, app: ASGIApp, max_bytes: int = MAX_BODY_BYTES) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            await _send_413(send, self.max_bytes)  # refused before a byte of it is read
            return
        seen = 0

        async def counted() -> Message:
            # Chunked bodies announce no length: count, and stop reading once over.
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    raise HTTPException(413, too_large(self.max_bytes))
            return message

        await self.app(scope, counted, send)


async def _send_413(send: Send, limit: int) -> None:
    body = json.dumps({"error": {"code": "RESOURCE_EXHAUSTED", "message": too_large(limit)}}).encode()
    headers: list[Any] = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        (b"connection", b"close"),  # the unread body makes the connection unusable
    ]
    await send({"type": "http.response.start", "status": 413, "headers": headers})
    await send({"type": "http.response.body", "body": body})
