"""One request for N entities over V views costs Redis exactly one command: an MGET of N*V keys.

Redis itself is the witness: with ``slowlog-log-slower-than 0`` it logs every command it
runs with its argument count, so the test sees what reached Redis, whichever path sent it.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
import redis

import featurestore
from tests.serving.support import ServeProcess, open_store
from tests.support.redis import RedisServer

DRIVERS = list(range(1001, 1041))
CUSTOMERS = list(range(5001, 5041))
# Two views (driver_stats and customer_profile), every feature of each.
SERVICE = "trip_model"
# The server's health watch pings Redis on its own schedule; that is not the request.
BACKGROUND = {"ping"}


@pytest.fixture
def commands(serving_redis: RedisServer) -> Iterator[Callable[[], list[tuple[str, int]]]]:
    """A function returning the (command, argument count) Redis ran since its last call."""
    client = redis.Redis.from_url(serving_redis.url)
    old = client.config_get("slowlog-log-slower-than")["slowlog-log-slower-than"]
    client.config_set("slowlog-max-len", 10_000)
    client.config_set("slowlog-log-slower-than", 0)
    client.slowlog_reset()

    def ran() -> list[tuple[str, int]]:
        out = []
        for entry in reversed(client.slowlog_get(10_000)):  # oldest first
            line = entry["command"].decode()
            name = line.split()[0].lower()
            if name in BACKGROUND or name in ("slowlog", "config"):
                continue
            # Redis logs the command and 30 arguments, then "... (N more arguments)".
            more = re.search(r" \.\.\. \((\d+) more arguments\)$", line)
            count = 30 + int(more.group(1)) if more else len(line.split()) - 1
            out.append((name, count))
        client.slowlog_reset()
        return out

    try:
        yield ran
    finally:
        client.config_set("slowlog-log-slower-than", old)
        client.close()


def _one_mget(ran: list[tuple[str, int]], keys: int) -> None:
    assert ran == [("mget", keys)]


def test_one_mget_per_request_over_grpc_http_and_in_process(
    server: ServeProcess, served_repo: Path, commands: Callable[[], list[tuple[str, int]]]
) -> None:
    entities = {"driver_id": DRIVERS, "customer_id": CUSTOMERS}
    keys = len(DRIVERS) * 2
    with featurestore.Client(server.target, timeout=10) as client:
        answer = client.get_online_features(SERVICE, entities)
    assert answer.statuses["conv_rate"].count("PRESENT") > 0  # the keys exist: this is a real read
    _one_mget(commands(), keys)

    body = {"feature_service": SERVICE, "entities": entities}
    reply = httpx.post(f"{server.http_url}/v1/online-features", json=body, timeout=10)
    assert reply.status_code == 200, reply.text
    _one_mget(commands(), keys)

    store = open_store(served_repo)
    store.get_online_features(SERVICE, entities)
    commands()  # the first lookup also opens the connection (HELLO); count a warm one
    local = store.get_online_features(SERVICE, entities)
    assert local.to_dict() == answer.to_dict()
    _one_mget(commands(), keys)
