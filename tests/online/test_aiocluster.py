"""The serving path's cluster client, checked against redis-py on a real local Redis Cluster."""

from __future__ import annotations

import asyncio
import random
import time

import pytest
import redis
from hypothesis import given, settings
from hypothesis import strategies as st
from redis.cluster import RedisCluster as RedisPyCluster
from redis.crc import key_slot

from featurestore.online.aiocluster import AsyncRedisCluster
from tests.support.redis_cluster import RedisCluster
from tests.support.waiting import wait_for

VIEWS = ("stats", "profile")
ENTITIES = 600  # over 16384 slots: every master serves some (counted in the test)


def key(prefix: str, entity: int, view: str) -> str:
    return f"{{{prefix}:id={entity}}}:{view}"


def slot_of(k: str) -> int:
    return key_slot(k.encode())


def reader(cluster: RedisCluster) -> RedisPyCluster:
    port = cluster.masters()[0].port
    return RedisPyCluster(host="127.0.0.1", port=port, socket_timeout=5)


def fill(cluster: RedisCluster, prefix: str, entities: range) -> dict[str, bytes | None]:
    """Two views per entity; about a third of the keys left absent. The reference: key -> value."""
    rng = random.Random(prefix)
    stored = {
        key(prefix, e, v): f"{e}:{v}:{rng.random()}".encode()
        for e in entities
        for v in VIEWS
        if rng.random() < 0.66
    }
    client = reader(cluster)
    client.mset_nonatomic(stored)  # type: ignore[arg-type]
    client.close()
    return {key(prefix, e, v): stored.get(key(prefix, e, v)) for e in entities for v in VIEWS}


def mget(
    url: str, keys: list[str], read_from_replicas: bool = False, client: AsyncRedisCluster | None = None
) -> list[bytes | None]:
    async def main() -> list[bytes | None]:
        c = client or AsyncRedisCluster(url, read_from_replicas=read_from_replicas)
        try:
            return await c.mget(keys, asyncio.get_running_loop().time() + 5)
        finally:
            if client is None:
                await c.aclose()

    return asyncio.run(main())


@pytest.fixture(scope="module")
def stored(redis_cluster: RedisCluster) -> dict[str, bytes | None]:
    return fill(redis_cluster, "aiocluster", range(ENTITIES))


def test_mget_in_request_order_over_every_master(
    redis_cluster: RedisCluster, stored: dict[str, bytes | None]
) -> None:
    keys = list(stored)
    random.Random(1).shuffle(keys)
    masters = redis_cluster.masters()
    owners = {m.port for k in keys for m in masters if any(lo <= slot_of(k) <= hi for lo, hi in m.slots)}
    assert len(owners) == len(masters) == 3
    assert len({slot_of(k) for k in keys}) > 500  # hundreds of MGETs in one read

    client = reader(redis_cluster)
    reference = [client.get(k) for k in keys]  # a plain GET per key
    client.close()
    assert reference == [stored[k] for k in keys]
    assert mget(redis_cluster.url, keys) == reference
    assert None in reference and any(reference)


@settings(max_examples=30, deadline=None)
@given(
    picks=st.lists(st.integers(0, ENTITIES + 50), min_size=1, max_size=40),
    views=st.lists(st.sampled_from(VIEWS), min_size=1, max_size=2, unique=True),
)
def test_any_request_equals_the_reference(
    redis_cluster: RedisCluster, stored: dict[str, bytes | None], picks: list[int], views: list[str]
) -> None:
    # Repeated entities, entities that do not exist, one key per slot or several: each answer
    # in its place.
    keys = [key("aiocluster", e, v) for v in views for e in picks]
    assert mget(redis_cluster.url, keys) == [stored.get(k) for k in keys]


def _commandstats(cluster: RedisCluster, port: int) -> int:
    """Reads the node served: MGETs, and calls of the script reading several slots at once."""
    with cluster.client(port) as c:
        stats = c.info("commandstats")
    return sum(int(stats.get(f"cmdstat_{name}", {}).get("calls", 0)) for name in ("mget", "eval_ro"))


def _reset_stats(cluster: RedisCluster) -> None:
    for node in cluster.nodes():
        with cluster.client(node.port) as c:
            c.config_resetstat()


@pytest.mark.parametrize("replicas", [True, False], ids=["read-from-replicas", "masters-only"])
def test_read_from_replicas_reads_replicas(
    redis_cluster: RedisCluster, stored: dict[str, bytes | None], replicas: bool
) -> None:
    keys = list(stored)
    # Replication is asynchronous: wait until every replica holds what was written, and is
    # listed by CLUSTER SLOTS (which leaves out a replica whose offset, gossiped, is still 0).
    for node in redis_cluster.nodes():
        if not node.master:
            _wait_synced(redis_cluster, node.port)
    with redis_cluster.client(redis_cluster.masters()[0].port) as c:
        wait_for(lambda: all(len(r) > 3 for r in c.execute_command("CLUSTER SLOTS")), 10, "replicas listed")
    _reset_stats(redis_cluster)

    async def main() -> list[list[bytes | None]]:
        client = AsyncRedisCluster(redis_cluster.url, read_from_replicas=replicas)
        try:
            loop = asyncio.get_running_loop()
            return [await client.mget(keys, loop.time() + 5) for _ in range(4)]
        finally:
            await client.aclose()

    answers = asyncio.run(main())
    assert all(a == [stored[k] for k in keys] for a in answers)
    by_role = {True: 0, False: 0}
    for node in redis_cluster.nodes():
        calls = _commandstats(redis_cluster, node.port)
        by_role[node.master] += calls
        if replicas:
            assert calls > 0, f"{'master' if node.master else 'replica'} {node.port} served no read"
    if not replicas:
        assert by_role[False] == 0 and by_role[True] > 0


def _wait_synced(cluster: RedisCluster, port: int, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    with cluster.client(port) as c:
        while True:
            info = c.info("replication")
            master = redis.Redis(host=info["master_host"], port=info["master_port"], socket_timeout=5)
            offset = master.info("replication")["master_repl_offset"]
            master.close()
            if info["master_link_status"] == "up" and info["slave_repl_offset"] >= offset:
                return
            if time.monotonic() > deadline:
                raise AssertionError(f"replica {port} did not catch up")
            time.sleep(0.05)


# -- topology changes (the module's own cluster) ----------------------------------------------


def _errors(cluster: RedisCluster, port: int, code: str) -> int:
    """How many ``code`` error replies (MOVED, ASK, TRYAGAIN) the node has sent."""
    with cluster.client(port) as c:
        return int(c.info("errorstats").get(f"errorstat_{code}", {}).get("count", 0))


def _entities_in(prefix: str, slots: range, n: int) -> list[int]:
    return [e for e in range(200_000) if slot_of(key(prefix, e, VIEWS[0])) in slots][:n]


def test_reads_follow_a_reshard(own_cluster: RedisCluster) -> None:
    source, target = own_cluster.masters()[:2]
    lo = source.slots[0][0]
    moving = _entities_in("moved", range(lo, lo + 20), 30)  # redis-cli moves the lowest slots
    stored = fill_entities(own_cluster, "moved", moving + list(range(300)))
    keys = list(stored)
    random.Random(2).shuffle(keys)

    async def main() -> tuple[list[bytes | None], list[bytes | None]]:
        client = AsyncRedisCluster(own_cluster.url)
        try:
            loop = asyncio.get_running_loop()
            before = await client.mget(keys, loop.time() + 5)  # the map is read now
            await asyncio.to_thread(own_cluster.reshard, source, target, 20)
            return before, await client.mget(keys, loop.time() + 5)
        finally:
            await client.aclose()

    moved_before = _errors(own_cluster, source.port, "MOVED")
    before, after = asyncio.run(main())
    assert own_cluster.master_of(slot_of(key("moved", moving[0], VIEWS[0]))).port == target.port
    assert _errors(own_cluster, source.port, "MOVED") > moved_before  # the stale map was corrected
    assert before == after == [stored[k] for k in keys]


def test_reads_during_a_migration_follow_ask(own_cluster: RedisCluster) -> None:
    # One slot set MIGRATING/IMPORTING by hand, one key of an entity moved with MIGRATE: the
    # entity's keys are split between two nodes, as in the middle of a reshard.
    source, target = own_cluster.masters()[1:3]
    slot = source.slots[-1][1]
    split, whole, absent, single = _entities_in("ask", range(slot, slot + 1), 4)
    stored = fill_entities(own_cluster, "ask", [split, whole], every=True)
    stored[key("ask", single, VIEWS[0])] = b"single"
    stored.update({key("ask", absent, v): None for v in VIEWS})
    src, dst = own_cluster.client(source.port), own_cluster.client(target.port)
    src.set(key("ask", single, VIEWS[0]), b"single")
    dst.execute_command("CLUSTER SETSLOT", slot, "IMPORTING", source.id)
    src.execute_command("CLUSTER SETSLOT", slot, "MIGRATING", target.id)
    for moved in (key("ask", split, VIEWS[0]), key("ask", single, VIEWS[0])):
        src.execute_command("MIGRATE", "127.0.0.1", target.port, "", 0, 5000, "KEYS", moved)
    asks = _errors(own_cluster, source.port, "ASK")
    try:
        requests = [
            [key("ask", split, v) for v in VIEWS],  # one key here, one there: TRYAGAIN, then key by key
            [key("ask", single, VIEWS[0])],  # moved: ASK
            [key("ask", absent, v) for v in VIEWS],  # on neither node
            list(stored) + [key("ask", e, v) for e in range(50) for v in VIEWS],  # and other slots
        ]
        client = reader(own_cluster)
        for keys in requests:
            reference = [stored[k] if k in stored else client.get(k) for k in keys]
            assert mget(own_cluster.url, keys) == reference, keys
        client.close()
        assert _errors(own_cluster, source.port, "ASK") > asks
        assert own_cluster.master_of(slot).port == source.port  # the slot stayed: no MOVED was taken
    finally:  # finish the migration: every key of the slot to the target, which then owns it
        while keys_left := src.execute_command("CLUSTER GETKEYSINSLOT", slot, 100):
            src.execute_command("MIGRATE", "127.0.0.1", target.port, "", 0, 5000, "KEYS", *keys_left)
        for node in own_cluster.masters():
            with own_cluster.client(node.port) as c:
                c.execute_command("CLUSTER SETSLOT", slot, "NODE", target.id)
        src.close()
        dst.close()
    # And the next read of the slot through a client that knew the old owner follows MOVED.
    assert mget(own_cluster.url, list(stored)) == list(stored.values())


def fill_entities(
    cluster: RedisCluster, prefix: str, entities: list[int], every: bool = False
) -> dict[str, bytes | None]:
    """Two views per entity, about 70% of the keys stored (``every``: all); key -> value."""
    rng = random.Random(prefix)
    out: dict[str, bytes | None] = {}
    client = reader(cluster)
    for e in entities:
        for v in VIEWS:
            k = key(prefix, e, v)
            value = f"{e}:{v}".encode() if every or rng.random() < 0.7 else None
            out[k] = value
            if value is not None:
                client.set(k, value)
    client.close()
    return out
