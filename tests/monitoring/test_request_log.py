"""The request log writes while serving (every flush interval, every batch), drops and counts when
its queue is full (requests or values; a server answers regardless), keeps its folder under
max_bytes by deleting the oldest files, and logs a request answered by the gRPC fast path as
the general path would (run ids included)."""

from __future__ import annotations

import json
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import redis

from featurestore.offline.request_log_format import dropped_before
from featurestore.online.lookup import LookupPlan
from featurestore.online.registry_holder import RegistryHolder
from featurestore.serving.fastpath import fast_encoder
from featurestore.serving.request_log import MAX_REQUEST_ID, RequestLog, request_id_from
from tests.serving.support import ServeProcess, open_store
from tests.support.metrics import sample, scrape
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


def test_max_bytes_deletes_the_oldest_files_and_counts_them(
    served_repo: Path, monitoring_redis: RedisServer, tmp_path: Path
) -> None:
    plan, n, columns, raw = _lookup(served_repo, monitoring_redis.url)
    result = plan.assemble(n, columns, raw)
    one = RequestLog(tmp_path / "one", 1.0)  # the size of one request's file
    one.offer("http", time.time(), columns, result, sampled=True)
    one.close()
    size = _files(tmp_path / "one")[0].stat().st_size
    folder = tmp_path / "bounded"
    log = RequestLog(folder, 1.0, batch_rows=n * N_FEATURES, flush_seconds=3600, max_bytes=int(2.5 * size))
    deleted: list[int] = []
    log.on_deleted = deleted.append
    try:
        for _ in range(6):  # one file each
            log.offer("http", time.time(), columns, result, sampled=True)
    finally:
        log.close()
    left = _files(folder)
    assert sum(f.stat().st_size for f in left) <= 2.5 * size
    assert [f.name[-14:] for f in left] == ["000005.parquet", "000006.parquet"]  # the newest kept
    assert sum(deleted) == 4


def test_a_request_over_the_queued_values_bound_is_dropped_and_a_big_one_spans_files(
    served_repo: Path, monitoring_redis: RedisServer, tmp_path: Path
) -> None:
    plan, n, columns, raw = _lookup(served_repo, monitoring_redis.url)
    result = plan.assemble(n, columns, raw)
    values = n * N_FEATURES
    small = RequestLog(tmp_path / "small", 1.0, queue_values=values - 1)  # less than one request
    dropped: list[int] = []
    small.on_dropped = lambda: dropped.append(1)
    small.offer("grpc", time.time(), columns, result, sampled=True)
    small.offer_lookup("grpc", time.time_ns() // 1000, plan, n, columns, raw)
    small.close()
    assert len(dropped) == 2 and _files(tmp_path / "small") == []

    # Exactly at the bound it waits; with files of 10 rows it is written across several.
    fits = RequestLog(tmp_path / "fits", 1.0, queue_values=values, batch_rows=10, flush_seconds=3600)
    fits.on_dropped = lambda: dropped.append(1)
    fits.offer("grpc", time.time(), columns, result, sampled=True)
    fits.close()
    assert len(dropped) == 2
    files = _files(tmp_path / "fits")
    # Cut between feature columns: no file holds more than 10 rows plus one column's entities.
    assert len(files) > 1 and all(pq.read_metadata(f).num_rows < 10 + n for f in files)
    assert _rows(tmp_path / "fits").num_rows == values


def test_request_data_and_request_ids_are_logged_per_entity(
    served_repo: Path, monitoring_redis: RedisServer, tmp_path: Path
) -> None:
    plan, n, columns, raw = _lookup(served_repo, monitoring_redis.url)
    result = plan.assemble(n, columns, raw)
    data = {"trip_km": [3.5, 12.0, None], "hour": [8, 23, 0]}
    log = RequestLog(tmp_path, 1.0)
    log.offer("http", time.time(), columns, result, sampled=True, request_id="abc-1", request_data=data)
    log.offer_lookup("grpc", time.time_ns() // 1000, plan, n, columns, raw, None, data)
    log.close()
    rows = _rows(tmp_path).to_pylist()
    ids = {r["transport"]: r["request_id"] for r in rows}
    assert ids["http"] == "abc-1" and ids["grpc"] != "abc-1"  # generated where none was given
    for r in rows:
        i = r["entity_index"]
        assert json.loads(r["request_json"]) == {"trip_km": data["trip_km"][i], "hour": data["hour"][i]}
    meta = pq.read_schema(_files(tmp_path)[0]).metadata
    assert meta[b"featurestore.request_log.mode"] == b"complete"


@pytest.mark.parametrize(
    ("given", "kept"),
    [
        ("req-42", "req-42"),
        (b"trace/1:2@x", "trace/1:2@x"),
        ("x" * MAX_REQUEST_ID, "x" * MAX_REQUEST_ID),
        ("x" * (MAX_REQUEST_ID + 1), None),
        ("with space", None),
        ('quote"', None),
        ("line\nbreak", None),
        ("", None),
        (None, None),
    ],
)
def test_a_callers_request_id_is_kept_only_when_short_and_plain(
    given: str | bytes | None, kept: str | None
) -> None:
    assert request_id_from(given) == kept


def test_a_server_never_waits_for_its_log_and_counts_what_it_drops_and_deletes(
    served_repo: Path, monitoring_redis: RedisServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    body = {"features": ["driver_stats:conv_rate"], "entities": {"driver_id": [1001, 1002]}}

    def serve(log: Path, calls: int, **env: str) -> dict[str, float]:
        for key, value in env.items():
            monkeypatch.setenv(f"FEATURESTORE_REQUEST_LOG_{key.upper()}", value)
        server = ServeProcess(served_repo, monitoring_redis.url, "--request-log", str(log)).start()
        try:
            for _ in range(calls):
                r = httpx.post(f"{server.http_url}/v1/online-features", json=body, timeout=10)
                assert r.status_code == 200, r.text  # answered whatever the log does
            return {
                name: sample(scrape(server.http_url), f"featurestore_request_log_{name}_total")
                for name in ("dropped", "rows", "files_deleted")
            }
        finally:
            assert server.stop() == 0
            for key in env:
                monkeypatch.delenv(f"FEATURESTORE_REQUEST_LOG_{key.upper()}")

    # A queue too small for any request: every one dropped and counted, none waited for.
    counts = serve(tmp_path / "full", 5, mode="complete", queue_values="1")
    assert counts == {"dropped": 5, "rows": 0, "files_deleted": 0}
    assert _files(tmp_path / "full") == []
    # A folder bound smaller than any file: each file written is deleted, and counted.
    counts = serve(tmp_path / "tiny", 3, mode="complete", max_bytes="1", file_rows="1")
    assert counts["dropped"] == 0 and counts["rows"] == 3 * 2 and counts["files_deleted"] == 3
    assert _files(tmp_path / "tiny") == []


def test_rows_a_failed_write_loses_are_counted_and_the_log_goes_on(
    served_repo: Path, monitoring_redis: RedisServer, tmp_path: Path
) -> None:
    plan, n, columns, raw = _lookup(served_repo, monitoring_redis.url)
    result = plan.assemble(n, columns, raw)
    folder = tmp_path / "log"
    log = RequestLog(folder, 1.0, batch_rows=n * N_FEATURES, flush_seconds=3600)
    lost: list[int] = []
    written: list[int] = []
    log.on_lost = lost.append
    log.on_written = written.append
    folder.rmdir()
    folder.write_text("not a folder")  # every write fails (as root, a read-only mode would not)
    try:
        log.offer("grpc", time.time(), columns, result, sampled=True)
        wait_for(lambda: lost, 30, "the failed write")
        folder.unlink()
        folder.mkdir()  # the folder is back: the next request is written
        log.offer("grpc", time.time(), columns, result, sampled=True)
    finally:
        log.close()
    assert lost == [n * N_FEATURES] and written == [n * N_FEATURES]
    assert _rows(folder).num_rows == n * N_FEATURES
