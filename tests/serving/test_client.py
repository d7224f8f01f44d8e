"""featurestore.Client against a server that is not there yet: a typed error, then recovery."""

from __future__ import annotations

from pathlib import Path

import grpc
import pytest

import featurestore
from featurestore.errors import FeatureStoreError, OnlineStoreUnavailable
from tests.serving.support import ServeProcess, open_store
from tests.support.redis import RedisServer
from tests.support.waiting import wait_for

CITY = ["driver_stats:city"]
DRIVERS = [1001, 1002, 5]


def test_a_server_not_started_yet_is_unavailable_then_the_same_client_recovers(
    served_repo: Path, serving_redis: RedisServer
) -> None:
    server = ServeProcess(served_repo, serving_redis.url)
    with featurestore.Client(server.target) as client:
        for deadline in (0.2, 1.5):
            with pytest.raises(OnlineStoreUnavailable) as error:
                client.get_online_features(CITY, {"driver_id": DRIVERS}, timeout=deadline)
            assert not isinstance(error.value, grpc.RpcError)
            assert error.value.message.split(":")[0] in ("UNAVAILABLE", "DEADLINE_EXCEEDED")
        with pytest.raises(OnlineStoreUnavailable):
            client.list_features(timeout=0.5)
        with pytest.raises(FeatureStoreError, match="values must be all integers or all strings"):
            client.get_online_features(CITY, {"driver_id": [1001, "1002"]})  # checked before sending

        try:
            server.start()
            answer = wait_for(
                lambda: client.get_online_features(CITY, {"driver_id": DRIVERS}, timeout=2),
                10, "the client reaches the server once it is up",
            )
        finally:
            server.stop()
    expected = open_store(served_repo).get_online_features(CITY, {"driver_id": DRIVERS})
    assert answer.to_dict() == expected.to_dict()
    assert answer.statuses == expected.statuses
