"""The gRPC server under load while writers hold the DuckDB file: it starts while an
ingestion-like writer holds it, keeps answering every request while the file is held, an
apply and a materialization run, picks up the new registry version, then serves the new values."""

from __future__ import annotations

import random
import threading
from pathlib import Path

import grpc
import pandas as pd
import redis

import featurestore
from featurestore import FeatureStore
from featurestore.serving.client import Client
from featurestore.serving.v1 import serving_pb2 as pb
from featurestore.serving.v1 import serving_pb2_grpc as pb_grpc
from featurestore.storage import connect
from tests.reliability.support import DEFS, OpenWatch, finish, hours_ago, items_file, items_repo, start_cli
from tests.serving.support import ServeProcess
from tests.support.waiting import wait_for

ENTITIES = 5_000
CALLERS = 2


class Load:
    """Callers in threads, each on its own channel, asking for 50 random items in a loop;
    every failed call (no retries) is kept."""

    def __init__(self, target: str, ids: list[int]) -> None:
        self.target, self.ids = target, ids
        self.stop = threading.Event()
        self.ok = 0
        self.failures: list[str] = []
        self.values: dict[int, set[int]] = {}  # every v answered per item
        self.threads = [threading.Thread(target=self._run, args=(i,)) for i in range(CALLERS)]

    def _run(self, seed: int) -> None:
        rng = random.Random(seed)
        with grpc.insecure_channel(self.target) as channel:
            stub = pb_grpc.FeatureServingStub(channel)
            while not self.stop.is_set():
                ids = rng.sample(self.ids, 50)
                request = pb.GetOnlineFeaturesRequest(feature_service="item_model")
                request.entities["id"].int64_values.values.extend(ids)
                try:
                    answer = Client._decode(stub.GetOnlineFeatures(request, timeout=5), {"id": ids})
                except grpc.RpcError as e:
                    self.failures.append(f"{e.code()}: {e.details()}")
                    continue
                if answer.statuses["v"] != ["PRESENT"] * len(ids):
                    self.failures.append(f"not all present: {answer.statuses['v']}")
                for i, v in zip(ids, answer.columns["v"], strict=True):
                    self.values.setdefault(i, set()).add(v)
                self.ok += 1
                self.stop.wait(0.005)  # steady load that leaves the writers some CPU on 2 cores

    def __enter__(self) -> Load:
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for t in self.threads:
            t.join(30)


def newest_v(files: list[Path]) -> pd.Series:
    rows = pd.concat([pd.read_parquet(f) for f in files])
    return rows.sort_values(["ts", "v"]).drop_duplicates("id", keep="last").set_index("id")["v"]


def test_serving_under_load_while_writers_hold_the_store(tmp_path: Path, redis_client: redis.Redis) -> None:
    repo = items_repo(tmp_path / "repo")
    data = repo / "data" / "items"
    items_file(data / "part-0.parquet", 4 * ENTITIES, ENTITIES, 0, hours_ago(3), seed=0, span_hours=2)
    fs = FeatureStore(repo)
    fs.apply()
    fs.materialize()
    old = newest_v([data / "part-0.parquet"])
    url = fs.config.redis_url
    db = fs.config.duckdb_path

    # Starts while a writer holds the file: it waits for it (up to the lock timeout).
    holder = connect(db)
    watch = OpenWatch(db)
    server = ServeProcess(repo, url)
    starting = threading.Thread(target=server.start)
    starting.start()
    try:
        wait_for(watch.opens, 60, "the server trying the held file")
        assert server.process is not None and server.process.poll() is None  # waiting, not failed
        assert "serving gRPC on" not in server.stderr
    finally:
        holder.close()
        watch.close()
        starting.join(120)
    try:
        assert server.process is not None and "serving gRPC on" in server.stderr, server.stderr
        with Load(server.target, [int(i) for i in old.index]) as load:
            wait_for(lambda: load.ok > 20, 30, "lookups answered")
            # A writer holds the file across at least one registry refresh (every 5 s, 1 s wait).
            holder = connect(db)
            try:
                wait_for(lambda: "registry refresh skipped" in server.stderr, 60, "a refresh skipped")
            finally:
                holder.close()
            # New values and a new registry version, written by the CLI while the load goes on.
            items_file(
                data / "part-1.parquet", 4 * ENTITIES, ENTITIES, 10**6, hours_ago(0.5), seed=1, span_hours=1
            )
            (repo / "defs.py").write_text(
                DEFS + '\nv2 = FeatureService("item_model_v2", features=[items[["v"]]])\n'
            )
            for command in ("apply", "materialize"):
                code, _, err = finish(start_cli(command, "--repo", str(repo)))
                assert code == 0, err
            with featurestore.Client(server.target, timeout=5) as client:
                wait_for(lambda: client.list_features().registry_version == 2, 15, "version 2 served")
            seen = load.ok
            wait_for(lambda: load.ok > seen + 20, 30, "more lookups answered")
        assert load.failures == [], load.failures[:5]
        assert "registry refresh skipped" in server.stderr and "is busy" in server.stderr
        new = newest_v([data / "part-0.parquet", data / "part-1.parquet"])
        # Every answer during the writes was the old or the new newest value, never anything else.
        assert all(vs <= {int(old[i]), int(new[i])} for i, vs in load.values.items())
        with featurestore.Client(server.target, timeout=5) as client:
            for chunk in range(0, len(new), 1000):
                ids = [int(i) for i in new.index[chunk : chunk + 1000]]
                answer = client.get_online_features("item_model_v2", {"id": ids})
                assert answer.columns["v"] == [int(new[i]) for i in ids]
    finally:
        assert server.stop() == 0, server.stderr
