"""The request log writes while serving (every flush interval, every batch), drops and counts when
its queue is full, and logs a request answered by the gRPC fast path as the general path would."""

from __future__ import annotations

import json
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import redis

from featurestore.offline.request_log_format import dropped_before
from featurestore.online.lookup import LookupPlan
from featurestore.online.registry_holder import RegistryHolder
from featurestore.serving.fastpath import fast_encoder
from featurestore.serving.request_log import RequestLog
from tests.serving.support import open_store
from tests.support.redis import RedisServer
from tests.support.waiting import wait_for

N_FEATURES = 16


def _lookup(repo: Path, redis_url: str) -> tuple[LookupPlan, int, dict[str, list[Any]], list[Any]]:
    """A trip_model lookup of three driver/customer pairs the fast path answers (every value
    present, fresh and not null), found among the first entities of the example data."""
    plan = RegistryHolder(open_store(repo).config, 1000).current.plan("trip_model")
    encoder = fast_encoder(plan)
    assert encoder is not None
    client = redis.Redis.from_url(redis_url)
    try:
        def fetch(entities: dict[str, list[int]]) -> tuple[int, dict[str, list[Any]], list[Any]]:
            n, columns = plan.entity_columns(entities)
            return n, columns, client.mget(plan.keys(n, columns))

        now_us = time.time_ns() // 1000
        good: dict[str, list[int]] = {"driver_id": [], "customer_id": []}
        for driver, customer in zip(range(1001, 1101), range(5001, 5101), strict=True):
            pair = {"driver_id": [driver], "customer_id": [customer]}
            if encoder.encode(*fetch(pair)[::2], 1, now_us) is not None:
                good["driver_id"].append(driver)
                good["customer_id"].append(customer)
            if len(good["driver_id"]) == 3:
                break
        assert len(good["driver_id"]) == 3, good
        n, columns, raw = fetch(good)
    finally:
        client.close()
    return plan, n, columns, raw


def _files(folder: Path) -> list[Path]:
    return sorted(folder.glob("*.parquet"))


def _rows(folder: Path) -> pa.Table:
    return pa.concat_tables([pq.read_table(f) for f in _files(folder)])


def test_a_fast_path_request_is_logged_as_the_general_path_logs_it(
    served_repo: Path, monitoring_redis: RedisServer, tmp_path: Path
) -> None:
    plan, n, columns, raw = _lookup(served_repo, monitoring_redis.url)
    now_us = time.time_ns() // 1000
    encoder = fast_encoder(plan)  # the scenario: a lookup the fast path answers
    assert encoder is not None and encoder.encode(n, raw, 1, now_us) is not None

    deferred = RequestLog(tmp_path / "deferred", 1.0, flush_seconds=0.2)
    decoded = RequestLog(tmp_path / "decoded", 1.0, flush_seconds=0.2)
    try:
        deferred.offer_lookup("grpc", now_us, plan, n, columns, raw)
        at = datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=now_us)
        answer = plan.assemble(n, columns, raw, now=at)  # as served: without run ids
        decoded.offer("grpc", now_us / 1e6, columns, answer, sampled=True, plan=plan, raw=raw)
        # Written while the log runs (flush interval), not only when it is closed.
        wait_for(lambda: _files(tmp_path / "deferred") and _files(tmp_path / "decoded"), 30, "flushed files")
    finally:
        deferred.close()
        decoded.close()
    a, b = _rows(tmp_path / "deferred"), _rows(tmp_path / "decoded")
    assert a.num_rows == n * N_FEATURES == b.num_rows
    assert a.drop(["request_id"]).equals(b.drop(["request_id"]))
    assert set(a.column("status").to_pylist()) == {"PRESENT"}
    assert a.column("run_id").null_count == 0  # each value names the run that wrote it
    # Independent reference: the in-process store's answer for the same entities.
    local = open_store(served_repo).get_online_features("trip_model", columns).to_dict()
    logged = {(r["entity_index"], r["feature"].split(":")[1]): r["value_json"] for r in a.to_pylist()}
    for name in ("conv_rate", "city", "lifetime_orders"):
        assert [logged[(i, name)] for i in range(n)] == [
            None if v is None else json.dumps(v, separators=(",", ":")) for v in local[name]
        ], name


def test_a_full_batch_is_written_at_once(
    served_repo: Path, monitoring_redis: RedisServer, tmp_path: Path
) -> None:
    plan, n, columns, raw = _lookup(served_repo, monitoring_redis.url)
    result = plan.assemble(n, columns, raw)
    log = RequestLog(tmp_path, 1.0, batch_rows=n * N_FEATURES, flush_seconds=3600)  # no timed flush
    try:
        for _ in range(4):
            log.offer("http", time.time(), columns, result, sampled=True)
        wait_for(lambda: len(_files(tmp_path)) == 4, 30, "one file per full batch")
    finally:
        log.close()
    assert len(_files(tmp_path)) == 4 and _rows(tmp_path).num_rows == 4 * n * N_FEATURES


def test_a_full_queue_drops_and_counts_and_close_writes_the_rest(
    served_repo: Path, monitoring_redis: RedisServer, tmp_path: Path
) -> None:
    plan, n, columns, raw = _lookup(served_repo, monitoring_redis.url)
    result = plan.assemble(n, columns, raw)
    release, busy = threading.Event(), threading.Event()

    def slow(rows: int) -> None:  # holds the writer thread after its first file, as a slow disk would
        busy.set()
        release.wait(30)

    log = RequestLog(tmp_path, 1.0, queue_size=1, batch_rows=1, flush_seconds=3600)
    dropped: list[int] = []
    log.on_dropped = lambda: dropped.append(1)
    log.on_written = slow
    try:
        log.offer("grpc", time.time(), columns, result, sampled=True)  # written, then the writer waits
        assert busy.wait(30)  # the writer holds it: the queue (1 place) is empty again
        log.offer("grpc", time.time(), columns, result, sampled=True)  # queued
        for _ in range(3):
            log.offer("grpc", time.time(), columns, result, sampled=True)  # full: dropped
        assert len(dropped) == 3
    finally:
        release.set()
        log.close()
    rows = _rows(tmp_path)
    assert rows.num_rows == 2 * n * N_FEATURES and len(set(rows.column("request_id").to_pylist())) == 2
    # The files say so too: the drops are counted in the metadata of the next file written.
    assert sum(dropped_before(f) for f in _files(tmp_path)) == 3


@pytest.mark.parametrize("share", [0.0, 0.25, 1.0])
def test_the_sample_is_the_share_asked_for(tmp_path: Path, share: float) -> None:
    log = RequestLog(tmp_path, share)
    try:
        hits = sum(log.sampled() for _ in range(4000))
    finally:
        log.close()
    # Binomial(4000, share): within 5 standard deviations (exact at 0 and 1).
    assert abs(hits - 4000 * share) <= 5 * (4000 * share * (1 - share)) ** 0.5
