"""Bounds on what one request may cost the servers: the size of error messages.

Error messages echo the names a request used; ``shorten`` keeps that echo small, since a
gRPC status message travels in a trailer that clients drop (as RESOURCE_EXHAUSTED, losing
the real error) beyond 8-16 KiB.
"""

from __future__ import annotations

# Worst case a character is 4 UTF-8 bytes, each percent-encoded to 3 in the grpc-message
# trailer: 500 characters stay under the 8 KiB clients accept by default.
MAX_ERROR_CHARS = 500


def shorten(message: str, limit: int = MAX_ERROR_CHARS) -> str:
    """``message`` cut to ``limit`` characters, saying how much was cut."""
    if len(message) <= limit:
        return message
    return f"{message[:limit]}... ({len(message) - limit} more characters)"
