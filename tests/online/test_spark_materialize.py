"""Materialization on the Spark engine: Redis holds byte for byte what the DuckDB engine writes,
the runs count the same, and the executors (not the driver) write it.

Twin repos over the same files, one per engine, each with its own DuckDB file and Redis
database, go through the same steps; after each, their Redis contents and run records are
compared. Each twin ingests with its own engine (the Spark one into its warehouse).
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
import redis

from featurestore import FeatureStore
from featurestore.errors import OnlineStoreUnavailable
from featurestore.online.materialize import MaterializeResult
from featurestore.online.redis_backend import NEWER_WINS
from featurestore.secrets import mask_url
from tests.online.helpers import TZ, client_of, on_db, run_record, runs, single_redis
from tests.support.cli import spawn_cli
from tests.support.redis import RedisClient, RedisServer, free_port, redis_dump
from tests.support.repos import make_store, write_parquet
from tests.support.spark import QUICK_JVM, use_spark
from tests.support.spark_cluster import SparkCluster

pytestmark = pytest.mark.usefixtures("spark")

DEFS = """
from datetime import timedelta
from featurestore import (Bool, Entity, FeatureView, Field, Float64, Int64, List, ParquetSource, String,
                          Timestamp)

item = Entity("item", join_keys=["id", "zone"])
items = FeatureView(
    "items", entities=[item], ttl=timedelta(hours=2),
    source=ParquetSource("items_src", path="data/items", timestamp_field="ts",
                         created_timestamp_field="created"),
    schema=[Field("v", Int64), Field("score", Float64), Field("label", String), Field("ok", Bool),
            Field("at", Timestamp), Field("tags", List(String))])
forever = FeatureView(
    "forever", entities=[item],
    source=ParquetSource("forever_src", path="data/items", timestamp_field="ts",
                         created_timestamp_field="created"),
    schema=[Field("v", Int64), Field("label", String)])
"""
HOUR = timedelta(hours=1)
ZONES = ["a", "b:{x}"]
Row = tuple[int, str, datetime, datetime | None, int]  # id, zone, event time, created time, v


def table(rows: list[Row]) -> pa.Table:
    v = [r[4] for r in rows]
    return pa.table(
        {
            "id": pa.array([r[0] for r in rows], pa.int64()),
            "zone": pa.array([r[1] for r in rows], pa.string()),
            "ts": pa.array([r[2] for r in rows], TZ),
            "created": pa.array([r[3] for r in rows], TZ),
            "v": pa.array(v, pa.int64()),
            "score": pa.array([None if x % 5 == 0 else x / 3 for x in v], pa.float64()),
            "label": pa.array([f"l{x}" if x % 4 else None for x in v], pa.string()),
            "ok": pa.array([x % 2 == 0 for x in v], pa.bool_()),
            "at": pa.array([r[2] - timedelta(seconds=x) for r, x in zip(rows, v, strict=True)], TZ),
            "tags": pa.array([[f"t{x}", None][: x % 3] for x in v], pa.list_(pa.string())),
        }
    )


def first_files(now: datetime) -> dict[str, list[Row]]:
    """Each entity kind tests one rule of "the newest row": event time, then created time
    (nulls last), then ingestion order; rows past TTL are counted, not written; rows at or
    after the end are not read."""
    one, two = [], []
    for i in range(24):
        zone, kind = ZONES[i % 2], i % 6
        if kind == 0:  # one row
            one.append((i, zone, now - HOUR, now - HOUR, i))
        elif kind == 1:  # an event-time tie: the later created time wins
            one.append((i, zone, now - HOUR, now - 40 * timedelta(minutes=1), 1000 + i))
            two.append((i, zone, now - HOUR, now - 50 * timedelta(minutes=1), 2000 + i))
        elif kind == 2:  # a tie on both: the row ingested last wins
            one += [(i, zone, now - HOUR, now - HOUR, 3000 + i), (i, zone, now - HOUR, now - HOUR, 3100 + i)]
            two.append((i, zone, now - HOUR, now - HOUR, 3200 + i))
        elif kind == 3:  # a created time beats none
            one.append((i, zone, now - HOUR, None, 4000 + i))
            two.append((i, zone, now - HOUR, now - 2 * HOUR, 4100 + i))
        elif kind == 4:  # only rows past TTL (and grace): none written for "items"
            one += [(i, zone, now - 5 * HOUR, None, 5000 + i), (i, zone, now - 4 * HOUR, None, 5100 + i)]
        else:  # one past TTL, one within; and one after the end, never read
            one += [(i, zone, now - 5 * HOUR, None, 6000 + i), (i, zone, now - 2 * HOUR, None, 6100 + i)]
            two.append((i, zone, now + HOUR, None, 6200 + i))
    return {"part-1.parquet": one, "part-2.parquet": two}


@dataclass
class Twins:
    """The same repo on both engines: DuckDB writing to ``duck_url``, Spark to the test's Redis."""

    duck: FeatureStore
    spark: FeatureStore
    duck_client: RedisClient
    spark_client: RedisClient

    def add_files(self, files: dict[str, list[Row]]) -> None:
        for fs in (self.duck, self.spark):
            for name, rows in files.items():
                write_parquet(fs.config.repo / "data" / "items" / name, table(rows))
        self.spark.ingest()

    def materialize(self, incremental: bool = False) -> tuple[MaterializeResult, MaterializeResult]:
        return self.duck.materialize(incremental=incremental), self.spark.materialize(incremental=incremental)

    def assert_same(self, duck: MaterializeResult, spark: MaterializeResult) -> None:
        assert redis_dump(self.spark_client) == redis_dump(self.duck_client)
        assert [_counts(v) for v in spark.views] == [_counts(v) for v in duck.views]
        assert run_record(self.spark, spark.run_id) == run_record(self.duck, duck.run_id)


def _counts(view: Any) -> tuple[Any, ...]:
    return (view.view, view.rows_read, view.entities, view.written, view.kept_newer, view.expired)


@pytest.fixture
def now() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


@pytest.fixture
def twins(tmp_path: Path, any_redis: RedisClient, now: datetime) -> Iterator[Twins]:
    tables = {f"items/{name}": table(rows) for name, rows in first_files(now).items()}
    duck = on_db(make_store(tmp_path / "duck", DEFS, tables, project="online"), 1)
    spark_repo = make_store(tmp_path / "spark", DEFS, tables, project="online").config.repo
    spark = FeatureStore(use_spark(spark_repo))
    spark.ingest()
    duck_client = client_of(duck)
    duck_client.flushdb()
    yield Twins(duck, spark, duck_client, any_redis)
    duck_client.close()
    duck.close()
    spark.close()


def test_both_engines_write_the_same_values_and_count_the_same(twins: Twins, now: datetime) -> None:
    duck, spark = twins.materialize()
    twins.assert_same(duck, spark)
    items = {v.view: v for v in spark.views}["items"]
    # 24 entities, 4 of them past TTL; 48 rows before the end, 12 of them past TTL.
    assert (items.entities, items.rows_read, items.expired) == (20, 36, 12)

    # New rows since the watermark, and a late file whose old rows still count for their keys.
    later = datetime.now(UTC)
    twins.add_files(
        {
            "part-3.parquet": [(1, "b:{x}", later, None, 7001), (99, "a", later, later, 7099)],
            # older than what entity 0 holds (rewritten as it was); entity 4 had only expired rows
            "part-4-late.parquet": [(0, "a", now - 2 * HOUR, now, 80), (4, "a", now - HOUR / 2, None, 84)],
        }
    )
    duck, spark = twins.materialize(incremental=True)
    twins.assert_same(duck, spark)
    assert [v.corrected for v in spark.views] == [0, 0]  # no rows taken away: the data step did it all
    entities = {"id": [0, 1, 4, 99], "zone": ["a", "b:{x}", "a", "a"]}
    served = twins.spark.get_online_features(["items:v"], entities)
    assert served.to_dict()["v"] == [0, 7001, 84, 7099]  # 0 keeps its newer row; 4's late row is served


@single_redis
def test_redis_down_during_the_spark_write_is_one_error_and_a_failed_run(
    twins: Twins, tmp_path: Path
) -> None:
    """Redis answers the run's bookkeeping, then stops just as the Spark job starts: the tasks'
    connections fail, and the run fails with the DuckDB engine's error, the password masked."""
    server = RedisServer(free_port(), tmp_path, "--requirepass", "secret")
    url = f"redis://:secret@127.0.0.1:{server.port}/0"
    fs = FeatureStore(twins.spark.config.repo, config=replace(twins.spark.config, redis_url=url))

    def stop_redis(view: str, done: int, total: int) -> None:
        if done == 0:  # the Spark path reports (view, 0, 0) right before its job
            server.stop()

    with server, pytest.raises(OnlineStoreUnavailable) as raised:
        fs.materialize(progress=stop_redis)
    message = raised.value.message
    assert message.startswith(f"online store {mask_url(url)} does not answer: "), message
    assert "\n" not in message and "secret" not in message
    assert runs(fs)[-1][1:] == ("failed", message)


# -- a standalone cluster, through the CLI ----------------------------------------------------

# The CLI's driver (quick by CONF) and its executor: small quick JVMs; one core, so one
# shuffle partition.
CLUSTER_CONF = {
    "spark.executor.memory": "512m",
    "spark.cores.max": "1",
    "spark.sql.shuffle.partitions": "1",
    "spark.executor.extraJavaOptions": QUICK_JVM,
}
WRITER = re.compile(r"featurestore-materialize-run\d+-pid(\d+)")


def ancestors(pid: int) -> list[int]:
    """``pid``'s parent, its parent, ... up to init (empty if ``pid`` is gone)."""
    chain = []
    try:
        while pid > 1:
            stat = Path(f"/proc/{pid}/stat").read_text()
            pid = int(stat.rsplit(")", 1)[1].split()[1])
            chain.append(pid)
    except (OSError, ValueError, IndexError):
        pass
    return chain


class Monitor(threading.Thread):
    """Redis's MONITOR stream while a command runs: which connection (address) sent each
    NEWER_WINS write, and which writer process named each connection (CLIENT SETNAME)."""

    STOP = "featurestore-test-monitor-stop"

    def __init__(self, url: str) -> None:
        super().__init__(daemon=True)
        self.url = url
        self.sha = hashlib.sha1(NEWER_WINS.encode()).hexdigest()
        self.writes: dict[str, int] = {}  # address -> NEWER_WINS calls
        self.names: dict[str, int] = {}  # address -> the pid its name gives
        self.parents: dict[int, list[int]] = {}  # writer pid -> its ancestors, read while it runs
        self.ready = threading.Event()

    def run(self) -> None:
        client = redis.Redis.from_url(self.url, socket_timeout=600)  # quiet while Spark starts
        with client.monitor() as monitor:
            self.ready.set()
            for line in monitor.listen():
                command, address = str(line["command"]), f"{line['client_address']}:{line['client_port']}"
                if self.STOP in command:
                    break
                named = WRITER.search(command)
                if named:
                    pid = int(named.group(1))
                    self.names[address] = pid
                    self.parents.setdefault(pid, ancestors(pid))
                elif command.startswith(f"EVALSHA {self.sha}"):
                    self.writes[address] = self.writes.get(address, 0) + 1
        client.close()

    def stop(self) -> None:
        with redis.Redis.from_url(self.url) as client:
            client.echo(self.STOP)
        self.join(30)


@single_redis
def test_on_a_standalone_cluster_the_executors_write(
    spark_cluster: SparkCluster, tmp_path: Path, any_redis: RedisClient, now: datetime
) -> None:
    tables = {f"items/{name}": table(rows) for name, rows in first_files(now).items()}
    fs = make_store(tmp_path / "repo", DEFS, tables, project="online")
    url = fs.config.redis_url
    fs.close()
    # The CLI ingests on the cluster too (validation in its tasks), then materializes.
    repo = use_spark(fs.config.repo, master=spark_cluster.url, conf=CLUSTER_CONF)
    spark = FeatureStore(repo)

    monitor = Monitor(url)
    monitor.start()
    assert monitor.ready.wait(10)
    cli = spawn_cli("materialize", "--repo", str(repo), "--json")
    out, err = cli.communicate(timeout=240)
    monitor.stop()
    assert cli.returncode == 0, err
    counted = {v["view"]: v for v in json.loads(out)["views"]}

    # Every value was written by a process the worker started, none by the CLI (the driver).
    assert monitor.writes and set(monitor.writes) <= set(monitor.names), (monitor.writes, monitor.names)
    writers = {monitor.names[address] for address in monitor.writes}
    assert cli.pid not in writers
    for pid in writers:
        assert spark_cluster.worker_pid in monitor.parents[pid], (pid, monitor.parents[pid])
        assert cli.pid not in monitor.parents[pid]

    # ... and they are what the DuckDB engine writes.
    spark_dump = redis_dump(any_redis)
    duck = on_db(FeatureStore(repo, config=replace(spark.config, offline_engine="duckdb")), 1)
    duck_client = client_of(duck)
    duck_client.flushdb()
    reference = duck.materialize()
    assert spark_dump == redis_dump(duck_client)
    assert {v.view: (v.rows_read, v.entities, v.written, v.expired) for v in reference.views} == {
        name: (v["rows_read"], v["entities"], v["written"], v["expired"]) for name, v in counted.items()
    }
    duck_client.close()
    duck.close()
    spark.close()
