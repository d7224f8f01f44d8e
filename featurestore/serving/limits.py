"""Bounds on what requests may cost the servers: body and answer size, bytes in flight, error messages.

gRPC already refuses messages over its ``max_receive_message_length``; HTTP has no such
bound by itself (uvicorn buffers whatever body it is sent), so ``BodyLimit`` refuses a body
over ``MAX_BODY_BYTES`` with 413 before or while it is read. Error messages echo the names a
request used; ``shorten`` keeps that echo small, since a gRPC status message travels in a
trailer that clients drop (as RESOURCE_EXHAUSTED, losing the real error) beyond 8-16 KiB.

A request costs a few times its size in memory while it is answered (parsed, turned into
Python objects, looked up, encoded), so the bytes of requests and answers being worked on
at once are bounded per process (``ByteBudget``): over the budget a request is refused at
once. The least size of an answer is known before any work from what it asks
(``answer_bytes``), so one that must pass the message limit is refused before the lookup;
one that turns out over it once encoded is refused then, with the same status, rather than
failing in grpc's send. After a burst the memory it took is handed back to the system
(``release_memory``).

A request's ``request_data`` (on-demand features) is bounded as its entities are: it is part
of the message (its size and the budget count it), it holds only the fields the requested
views declare (``online/on_demand.py`` refuses others), and each holds one value per entity,
so ``--max-entities`` bounds its rows.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import gc
import json
from typing import TYPE_CHECKING, Any

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from featurestore.errors import AnswerTooLargeError, ResourceExhaustedError

if TYPE_CHECKING:
    from featurestore.online.lookup import LookupPlan

MAX_BODY_BYTES = 16 * 1024 * 1024  # as gRPC's max message size
MAX_ANSWER_BYTES = 16 * 1024 * 1024  # gRPC's max message size; HTTP holds answers to it too
TAKEN = "featurestore.budget_taken"  # ASGI scope key: the bytes the request's body holds
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


# Bytes one value takes in an answer, by dtype: (least, most). Varints take 1 to 10 bytes,
# floats their width even when absent; text, bytes and lists have no most, so their answer's
# exact size is checked once it is encoded. With each value go its status and event time.
_VALUE_BYTES = {
    "Int32": (1, 10), "Int64": (1, 10), "Float32": (4, 4), "Float64": (8, 8), "Bool": (1, 1),
    "Timestamp": (1, 10),
}
_VARIABLE = (2, 2)
_STATUS_AND_TIME = (1 + 1, 1 + 9)


def answer_bytes(plan: LookupPlan, n: int, with_run_ids: bool = False) -> tuple[int, int]:
    """The least and the most bytes of the protobuf answer to ``n`` entities (the most not
    counting what text, bytes and lists add, nor beyond the limit), known before any lookup."""
    heads = sum(len(o.name) + len(o.ref) + 16 for o in plan.output_features)
    least = most = heads
    for o in plan.output_features:
        low, high = _VALUE_BYTES.get(o.field.dtype.name, _VARIABLE)
        least += n * (low + _STATUS_AND_TIME[0])
        most += n * (high + _STATUS_AND_TIME[1])
    if with_run_ids:
        least += n * len(plan.views)
        most += n * 10 * len(plan.views)
    return least, min(most, MAX_ANSWER_BYTES)  # a larger one is refused, never held


def check_answer(size: int, at_least: bool = False) -> None:
    """AnswerTooLargeError if an answer of ``size`` bytes (``at_least``: or more) passes the limit."""
    if size > MAX_ANSWER_BYTES:
        raise AnswerTooLargeError(
            f"the answer would be {'at least ' if at_least else ''}{size} bytes, over the limit of "
            f"{MAX_ANSWER_BYTES}: ask for fewer entities or features per request"
        )


class ByteBudget:
    """Bytes of requests and answers being worked on in this process, at most ``limit``.

    Requests and answers take bytes and give them back when answered; every call runs on
    the server's event loop. One request larger than the whole budget is let in when nothing
    else is in flight, so that "retry" is always true. Once ``limit`` bytes have passed (taken
    or refused) and none are in flight, the memory they took is handed back to the system,
    at most every ``release_every`` seconds.
    """

    def __init__(self, limit: int, release_every: float = 5.0) -> None:
        self.limit = limit
        self.used = 0
        self.release_every = release_every
        self._passed = 0  # bytes given back since the last release
        self._released_at = -release_every
        self.releases = 0  # how many times memory was handed back
        self._release: asyncio.TimerHandle | None = None

    def take(self, nbytes: int, what: str = "a request", held: int = 0) -> None:
        """Count ``nbytes`` in, or raise ResourceExhaustedError if the budget cannot hold them
        (``held``: bytes the same request holds already, which do not count as others')."""
        if self.used > held and self.used + nbytes > self.limit:
            # Refused, but grpc has read the request into memory all the same: its bytes count
            # toward the next release, or a burst refused almost whole would never trigger one.
            self._passed += nbytes
            raise ResourceExhaustedError(
                f"server busy: {what} of {nbytes} bytes does not fit in its budget "
                f"({self.used} of max_bytes_in_flight {self.limit} bytes in use); retry shortly"
            )
        self.used += nbytes

    def give(self, nbytes: int) -> None:
        self.used -= nbytes
        self._passed += nbytes
        if not self.used and self._passed >= self.limit and self._release is None:
            loop = asyncio.get_running_loop()
            wait = max(0.0, self._released_at + self.release_every - loop.time())
            self._release = loop.call_later(wait, self._release_now, loop)

    def _release_now(self, loop: asyncio.AbstractEventLoop) -> None:
        self._release = None
        if self.used:  # busy again: the next time it drains tries again
            return
        self._passed = 0
        self._released_at = loop.time()
        self.releases += 1
        gc.collect()  # an error's traceback holds its request in a reference cycle
        loop.run_in_executor(None, release_memory)  # free() lets go of the GIL


def release_memory() -> None:
    """Hand memory that is free but held by the C allocator back to the system (glibc)."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)


class BodyLimit:
    """ASGI middleware: 413 for a body over ``max_bytes``, declared or streamed; 429 when
    the ``budget`` cannot hold it. The body's bytes stay taken until the answer is sent."""

    def __init__(
        self, app: ASGIApp, max_bytes: int = MAX_BODY_BYTES, budget: ByteBudget | None = None
    ) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.budget = budget

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            await _refuse(send, 413, too_large(self.max_bytes))  # refused before a byte of it is read
            return
        taken = 0
        if self.budget is not None and declared is not None and declared.isdigit():
            try:
                self.budget.take(int(declared))
            except ResourceExhaustedError as e:
                await _refuse(send, 429, e.message)
                return
            taken = int(declared)
        scope[TAKEN] = taken
        seen = 0

        async def counted() -> Message:
            # Chunked bodies announce no length: count, and stop reading once over.
            nonlocal seen, taken
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    raise HTTPException(413, too_large(self.max_bytes))
                if self.budget is not None and seen > taken:
                    try:
                        self.budget.take(seen - taken)
                    except ResourceExhaustedError as e:
                        raise HTTPException(429, e.message, headers={"retry-after": "1"}) from None
                    taken = scope[TAKEN] = seen
            return message

        try:
            await self.app(scope, counted, send)
        finally:
            if taken:
                assert self.budget is not None
                self.budget.give(taken)


async def _refuse(send: Send, status: int, message: str) -> None:
    body = json.dumps({"error": {"code": "RESOURCE_EXHAUSTED", "message": message}}).encode()
    headers: list[Any] = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        (b"connection", b"close"),  # the unread body makes the connection unusable
    ]
    if status == 429:
        headers.append((b"retry-after", b"1"))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
