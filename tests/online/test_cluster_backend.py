"""The Redis Cluster backend on a real cluster: commands stay within one slot, a materialization
equals one on a single Redis, a master that loses its data is noticed, and resharding or a
failover during a materialization loses no write.

The session's cluster (tests/conftest.py) serves the tests that only flush it; the topology
tests share one private cluster (``topology``), in file order: resharding, then a failover.
"""

from __future__ import annotations

import json
import struct
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyarrow as pa
import pytest
import redis
import redis.cluster
from redis.crc import key_slot

from featurestore import FeatureStore
from featurestore.errors import OnlineStoreUnavailable
from featurestore.online.keys import SLOTS, marker_key, slot_marker_keys
from featurestore.online.registry_holder import RegistryHolder
from featurestore.online.state import OnlineState
from featurestore.online.store import OnlineStore
from featurestore.serving.metrics import StateCollector
from featurestore.storage import connection
from tests.online.helpers import CLEAN_REDIS_URL, TZ, clean_run_dump
from tests.support.cli import run_cli
from tests.support.redis import RedisServer, redis_dump
from tests.support.redis_cluster import RedisCluster
from tests.support.repos import make_store, materialized_example_repo

ITEMS = """
from featurestore import Entity, FeatureView, Field, Int64, ParquetSource

item = Entity("item", join_keys=["id"])
items = FeatureView("items", entities=[item],
                    source=ParquetSource("items_src", path="data/items", timestamp_field="ts"),
                    schema=[Field("v", Int64)])
"""


def value(event: int, created: int, body: bytes = b"") -> bytes:
    """A stored value's shape as far as newer-wins reads it: event and created times first."""
    return struct.pack("<qq", event, created) + body


def cluster_client(cluster: RedisCluster) -> redis.cluster.RedisCluster:
    port = next(p for p in cluster.ports if cluster.alive(p))  # a killed node is no seed
    return redis.cluster.RedisCluster(host="127.0.0.1", port=port)


def items_store(repo: Path, ids: range, hours: int = 1, project: str = "online") -> FeatureStore:
    """Items ``ids``, a row per hour for ``hours`` hours ending an hour ago: v = id * 100 + hour."""
    start = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(hours=hours)
    rows = [(i, h) for h in range(hours) for i in ids]
    table = pa.table(
        {
            "id": pa.array([i for i, _ in rows], pa.int64()),
            "ts": pa.array([start + timedelta(hours=h) for _, h in rows], TZ),
            "v": pa.array([i * 100 + h for i, h in rows], pa.int64()),
        }
    )
    return make_store(repo, ITEMS, {"items/part-0.parquet": table}, project=project)


def served(fs: FeatureStore, ids: range) -> list[int | None]:
    return list(fs.get_online_features(["items:v"], {"id": list(ids)}).to_dict()["v"])


# -- the session's cluster ---------------------------------------------------------------


@pytest.fixture
def cluster(redis_cluster: RedisCluster, monkeypatch: pytest.MonkeyPatch) -> RedisCluster:
    redis_cluster.flush()
    monkeypatch.setenv("FEATURESTORE_REDIS_URL", redis_cluster.url)
    return redis_cluster


def test_newer_wins_writes_keys_of_many_slots_each_in_its_own_slot(cluster: RedisCluster) -> None:
    keys = [f"{{p:id={i}}}:v" for i in range(3000)]
    slots = {key_slot(k.encode()) for k in keys}
    assert len(slots) > 2000  # most calls hold one key: the cluster would refuse any other
    with OnlineStore.connect(cluster.url, "p") as store:
        assert store.write(keys, [value(10, 1, k.encode()) for k in keys], [0] * len(keys)) == len(keys)
        # A master that lacks the script (restarted, or a promoted replica) gets it again.
        with cluster.client(cluster.masters()[0].port) as node:
            node.script_flush()
        # Older values are refused key by key, newer ones win, in every slot.
        assert store.write(keys, [value(9, 9) for _ in keys], [0] * len(keys)) == 0
        newer = [value(11, 0, k.encode()) for k in keys]
        assert store.write(keys[::2], newer[::2], [0] * len(keys[::2])) == len(keys[::2])
        expected = [newer[i] if i % 2 == 0 else value(10, 1, k.encode()) for i, k in enumerate(keys)]
        assert store.read([*reversed(keys), "{p:id=none}:v"]) == [*reversed(expected), None]
        store.replace(keys[:5], [value(1, 1)] * 5, [0] * 5)
        assert store.read(keys[:5]) == [value(1, 1)] * 5
        assert store.missing(keys[:10] + ["{p:id=none}:v"]) == 1

    counted: dict[int, int] = {}
    for key in keys:
        counted[key_slot(key.encode())] = counted.get(key_slot(key.encode()), 0) + 1
    for slot in sorted(slots)[::50]:  # every key is in its own slot, on that slot's master
        with cluster.client(cluster.master_of(slot).port) as node:
            assert node.execute_command("CLUSTER COUNTKEYSINSLOT", slot) == counted[slot], slot
    with OnlineStore.connect(cluster.url, "p") as store:
        assert store.delete_view("v") == len(keys)  # found on every master
    assert cluster.dump() == {}


def test_every_slot_has_its_marker_hash() -> None:
    keys = slot_marker_keys("rides")
    assert [key_slot(k.encode()) for k in keys] == list(range(SLOTS))
    assert all(k.startswith("{rides/") and k.endswith("}:online-epoch") for k in keys)
    assert marker_key("rides") == "{rides}:online-epoch"  # one Redis: as before


def test_a_materialization_on_the_cluster_equals_one_on_a_single_redis(
    cluster: RedisCluster, redis_server: RedisServer, tmp_path: Path, fresh_data: Path
) -> None:
    # fresh_data ends this hour: values are within their TTLs and carry absolute expiries.
    single_url = redis_server.url.replace("/0", "/3")
    single = redis.Redis.from_url(single_url)
    single.flushdb()
    repos = {}
    for name, url in (("single", single_url), ("cluster", cluster.url)):
        repos[name] = materialized_example_repo(tmp_path / name, fresh_data, url)
    expected = redis_dump(single)
    assert len(expected) > 100 and any(expiry > 0 for _, expiry in expected.values())
    with cluster_client(cluster) as client:
        assert redis_dump(client) == expected  # values (run ids masked) and absolute expiries

    ask = ("--entity", "driver_id=1001", "--features", "driver_stats:rating,driver_stats:city")
    got = {name: run_cli("get", "--repo", str(repo), *ask) for name, repo in repos.items()}
    assert got["cluster"].returncode == 0, got["cluster"].stderr
    assert got["cluster"].stdout == got["single"].stdout and "1001" in got["cluster"].stdout
    with OnlineStore.connect(cluster.url, "rides") as store:
        assert store.served_run_ids() == {1}  # lineage: the one run, read from every master
        assert len(store.sample("driver_stats", 10)) == 10


def test_a_master_that_lost_its_data_is_reported_lost_and_repaired(
    cluster: RedisCluster, tmp_path: Path
) -> None:
    ids = range(200)
    fs = items_store(tmp_path / "repo", ids)
    assert fs.materialize_incremental().written == len(ids)
    # A master restarted empty: flush one that does not hold the slot of the project's
    # single-Redis marker, so only per-slot markers can tell.
    single_marker_master = cluster.master_of(key_slot(marker_key("online").encode()))
    (lost,) = [m for m in cluster.masters() if m.id != single_marker_master.id][:1]
    with cluster.client(lost.port) as node:
        node.flushall()

    result = run_cli("freshness", "--repo", str(fs.config.repo), "--json", "--fail-on-stale")
    (report,) = json.loads(result.stdout)
    assert result.returncode == 1
    assert str(report["reason"]).startswith("online data lost: Redis has no marker"), report
    assert lost_metric(fs) == 1  # a serving process's metrics thread says so too

    again = fs.materialize_incremental()
    (view,) = again.views
    assert view.rewritten is not None and view.rewritten.startswith("online data lost: Redis has no marker")
    assert served(fs, ids) == [i * 100 for i in ids]
    with OnlineStore.connect(cluster.url, "online") as store:
        assert store.unmarked(["items"], fs_epoch(fs)) == {}
    assert lost_metric(fs) == 0


def lost_metric(fs: FeatureStore) -> float:
    """featurestore_online_lost of the items view, as a serving process's metrics read it."""
    collector = StateCollector(RegistryHolder(fs.config, 1000), fs.config)
    (family,) = [m for m in collector.collect() if m.name == "featurestore_online_lost"]
    (found,) = [s.value for s in family.samples if s.labels == {"view": "items"}]
    return float(found)


def fs_epoch(fs: FeatureStore) -> str:
    with connection(fs.config.duckdb_path, read_only=True) as con:
        epoch = OnlineState(con, fs.config.project).epoch()
    assert epoch is not None
    return epoch


def test_an_unreachable_cluster_is_one_clear_error(tmp_path: Path) -> None:
    url = "redis+cluster://:secret@127.0.0.1:1,127.0.0.1:2/"
    with pytest.raises(OnlineStoreUnavailable) as raised:
        OnlineStore.connect(url, "p")
    assert "secret" not in raised.value.message and "127.0.0.1:1" in raised.value.message
    store = OnlineStore.connect(url, "p", check=False)  # the metrics thread: fails on first use
    with pytest.raises(OnlineStoreUnavailable):
        store.unmarked(["v"], "e")
    store.close()


# -- a private cluster, resharded then failed over ---------------------------------------


@pytest.fixture(scope="module")
def topology(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisCluster]:
    with RedisCluster(tmp_path_factory.mktemp("topology")) as cluster:
        yield cluster


def test_markers_are_kept_while_a_slot_migrates(topology: RedisCluster) -> None:
    """The marker hashes are handled with one script per master; a slot in the middle of a
    move makes its master refuse the script, and those hashes are handled one by one (ASK)."""
    source, target = topology.masters()[:2]
    slot = source.slots[0][0]
    marker = slot_marker_keys("mig")[slot]
    with topology.client(source.port) as src, topology.client(target.port) as dst:
        dst.execute_command("CLUSTER SETSLOT", slot, "IMPORTING", source.id)
        src.execute_command("CLUSTER SETSLOT", slot, "MIGRATING", target.id)
        try:
            with OnlineStore.connect(topology.url, "mig") as store:
                store.begin_writes(5)  # the slot's hash is new: made on the target (ASK)
                assert dst.execute_command("ASKING") and dst.hexists(marker, "run:5")
                assert store.mark_written(5, "epoch-1", ["v"])
                assert store.unmarked(["v", "w"], "epoch-1") == {"w": store.unmarked(["w"], "epoch-1")["w"]}
                store.begin_writes(6)
                store.end_writes(6)
                assert store.unmarked(["v"], "epoch-1") == {}
        finally:  # finish the move: the slot and its hash on the target
            for node in topology.masters():
                with topology.client(node.port) as c:
                    c.execute_command("CLUSTER SETSLOT", slot, "NODE", target.id)
    with OnlineStore.connect(topology.url, "mig") as store:
        assert store.unmarked(["v"], "epoch-1") == {}
        store.backend.delete_field(slot_marker_keys("mig"), "v")  # one hash per slot, all of them
        assert set(store.unmarked(["v"], "epoch-1")) == {"v"}


def test_a_resharding_during_materialization_loses_no_write(
    topology: RedisCluster, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FEATURESTORE_REDIS_URL", topology.url)
    ids, hours = range(3000), 6
    fs = items_store(tmp_path / "repo", ids, hours)
    first = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(hours=hours)
    source, target = topology.masters()[:2]
    held = sum(hi - lo + 1 for lo, hi in source.slots)
    moved: list[object] = []
    mover = threading.Thread(target=lambda: moved.append(topology.reshard(source, target, 2000)))
    mover.start()
    runs_during = 0
    for hour in range(hours):  # each run writes every item's next value: none may be missed
        during = mover.is_alive()
        fs.materialize(first + timedelta(hours=hour), first + timedelta(hours=hour + 1))
        runs_during += during
        assert served(fs, ids) == [i * 100 + hour for i in ids], f"run {hour} lost a write"
    mover.join()
    assert moved and runs_during >= 1, "the resharding ended before the first run"
    (now,) = [m for m in topology.masters() if m.id == source.id]
    assert sum(hi - lo + 1 for lo, hi in now.slots) == held - 2000


def test_a_materialization_across_a_master_kill_fails_cleanly_and_the_next_run_repairs(
    topology: RedisCluster, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, redis_server: RedisServer
) -> None:
    monkeypatch.setenv("FEATURESTORE_REDIS_URL", topology.url)
    topology.wait_ok()
    ids = range(3000)
    fs = items_store(tmp_path / "repo", ids, hours=2)
    fs.materialize()
    victim = topology.masters()[0]
    outcome: list[BaseException | None] = []

    def run() -> None:
        try:
            fs.materialize()
            outcome.append(None)
        except BaseException as e:  # judged below
            outcome.append(e)

    writer = threading.Thread(target=run)
    writer.start()
    time.sleep(0.3)
    topology.kill(victim.port)
    writer.join()
    (error,) = outcome
    assert error is None or isinstance(error, OnlineStoreUnavailable), repr(error)
    failover = topology.wait_ok()
    assert failover < 30

    fs.materialize()  # the promoted replica lacks the newer-wins script: reloaded
    monkeypatch.setenv(CLEAN_REDIS_URL, redis_server.url)
    with cluster_client(topology) as client:
        assert redis_dump(client) == clean_run_dump(fs)
    assert served(fs, ids) == [i * 100 + 1 for i in ids]
