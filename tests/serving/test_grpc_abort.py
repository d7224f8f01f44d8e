"""Failing a call whose caller has already gone must not look like a server bug."""

from __future__ import annotations

import asyncio

import grpc
import pytest
from grpc._cython import cygrpc

from featurestore.errors import OnlineStoreUnavailable
from featurestore.serving.failures import Failures
from featurestore.serving.grpc_server import _abort


class _EndedCall:
    """The one part of a ServicerContext _abort uses, as grpc behaves when the call ended
    before the handler failed it: sending the status fails in grpc core."""

    def __init__(self) -> None:
        self.sent: list[tuple[grpc.StatusCode, str]] = []

    async def abort(self, code: grpc.StatusCode, details: str) -> None:
        self.sent.append((code, details))
        raise cygrpc.ExecuteBatchError('Failed "execute_batch": (SendStatusFromServerOperation,)')


def test_a_status_for_a_call_that_already_ended_ends_the_handler_as_cancelled() -> None:
    # grpc logs any other exception from a handler as "Unexpected ... raised by servicer
    # method" with a traceback; a cancelled handler it drops quietly.
    call = _EndedCall()
    with pytest.raises(asyncio.CancelledError):
        asyncio.run(_abort(call, OnlineStoreUnavailable("redis: timeout"), Failures()))  # type: ignore[arg-type]
    assert call.sent and call.sent[0][0] == grpc.StatusCode.UNAVAILABLE
