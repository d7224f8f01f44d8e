"""Helpers for online-store tests: other Redis databases, clean-run dumps, run bookkeeping, and
the plain-Python reference for "the newest source row per entity"."""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import redis
import redis.cluster

from featurestore import FeatureStore
from featurestore.redis_urls import is_cluster, parse_cluster_url
from featurestore.storage import connection, quote
from tests.support.redis import RedisClient, redis_dump

TZ = pa.timestamp("us", tz="UTC")
_NO_CREATED = datetime.min.replace(tzinfo=UTC)
# For a test whose module runs on both (the any_redis fixture) that adds nothing on a cluster:
# only one Redis. (The cluster costs ~1 s per materialization: 16384 marker hashes.)
single_redis = pytest.mark.parametrize("any_redis", ["redis"], indirect=True)
# A cluster has one database: where a test on it runs its clean runs instead (a redis-server).
CLEAN_REDIS_URL = "FEATURESTORE_TEST_CLEAN_REDIS_URL"


def on_db(fs: FeatureStore, db: int) -> FeatureStore:
    """The same repo and DuckDB file, writing to another database of the same Redis server
    (of the redis-server named by ``CLEAN_REDIS_URL`` if ``fs`` is on a cluster)."""
    url = fs.config.redis_url
    base, _, _ = (os.environ[CLEAN_REDIS_URL] if is_cluster(url) else url).rpartition("/")
    return FeatureStore(fs.config.repo, config=replace(fs.config, redis_url=f"{base}/{db}"))


def client_of(fs: FeatureStore) -> RedisClient:
    url = fs.config.redis_url
    if is_cluster(url):
        host, port = parse_cluster_url(url).seeds[0]
        return redis.cluster.RedisCluster(host=host, port=port)
    return redis.Redis.from_url(url)


def clean_run_dump(fs: FeatureStore, db: int = 1) -> dict[bytes, tuple[bytes, int]]:
    """What one uninterrupted full materialization writes into an empty database."""
    other = on_db(fs, db)
    client = client_of(other)
    try:
        client.flushdb()
        other.materialize()
        return redis_dump(client)
    finally:
        client.close()
        other.close()


def runs(fs: FeatureStore) -> list[tuple[int, str, str | None]]:
    """(run_id, status, error) of every materialization run, oldest first."""
    with connection(fs.config.duckdb_path, read_only=True) as con:
        rows = con.execute(
            f"SELECT run_id, status, error FROM {quote(fs.config.project)}.materialization_runs "
            "ORDER BY run_id"
        ).fetchall()
    return [(int(r[0]), str(r[1]), r[2]) for r in rows]


def watermarks(fs: FeatureStore) -> dict[str, tuple[datetime, int]]:
    """view -> (watermark, run_id that set it)."""
    with connection(fs.config.duckdb_path, read_only=True) as con:
        rows = con.execute(
            f"SELECT view, watermark, run_id FROM {quote(fs.config.project)}.online_watermarks"
        ).fetchall()
    return {str(v): (w, int(r)) for v, w, r in rows}


def lookup(
    fs: FeatureStore, features: Sequence[str] | str, entities: Mapping[str, Sequence[Any]], **kw: Any
) -> tuple[dict[str, list[Any]], dict[str, list[str]]]:
    """(values by column, statuses by feature column) of one get_online_features call."""
    result = fs.get_online_features(features, entities, **kw)
    return result.to_dict(), result.statuses


# -- the reference: newest row per entity, from the Parquet files in plain Python ----------


def source_rows(files: Sequence[Path]) -> Iterator[tuple[tuple[int, int], dict[str, Any]]]:
    """Rows in ingestion order: files in path order, rows in file order; with that position."""
    for file_index, path in enumerate(sorted(str(Path(p).resolve()) for p in files)):
        for row_index, row in enumerate(pq.read_table(path).to_pylist()):
            yield (file_index, row_index), row


def newest_rows(
    files: Sequence[Path], keys: Sequence[str], ts: str, created: str | None, since: datetime | None = None
) -> dict[tuple[Any, ...], dict[str, Any]]:
    """Per entity, the row with the newest event time; ties go to the larger created time
    (a missing one is smallest), then to the later file in path order, then the later row.
    Rows with a null key or event time never count; with ``since``, nor do older rows."""
    best: dict[tuple[Any, ...], tuple[tuple[Any, ...], dict[str, Any]]] = {}
    for position, row in source_rows(files):
        entity = tuple(row[k] for k in keys)
        if None in entity or row[ts] is None or (since is not None and row[ts] < since):
            continue
        rank = (row[ts], (row[created] if created else None) or _NO_CREATED, position)
        if entity not in best or rank > best[entity][0]:
            best[entity] = (rank, row)
    return {entity: row for entity, (_, row) in best.items()}


def expected_lookup(
    newest: Mapping[tuple[Any, ...], Mapping[str, Any]],
    keys: Sequence[str],
    entities: Sequence[tuple[Any, ...]],
    features: Sequence[str],
) -> tuple[dict[str, list[Any]], dict[str, list[str]]]:
    """What get_online_features should answer for ``entities``, in ``lookup``'s shape."""
    values: dict[str, list[Any]] = {k: [e[i] for e in entities] for i, k in enumerate(keys)}
    statuses: dict[str, list[str]] = {}
    for f in features:
        rows = [newest.get(e) for e in entities]
        values[f] = [None if r is None else r[f] for r in rows]
        statuses[f] = [
            "NOT_FOUND" if r is None else "NULL_VALUE" if r[f] is None else "PRESENT" for r in rows
        ]
    return values, statuses


def columns(entities: Sequence[tuple[Any, ...]], keys: Sequence[str]) -> dict[str, list[Any]]:
    """Entity tuples as the join key -> values mapping get_online_features takes."""
    return {k: [e[i] for e in entities] for i, k in enumerate(keys)}


def run_record(fs: FeatureStore, run_id: int) -> tuple[Any, ...]:
    """What a run's row records of its work (not its ids or times)."""
    with connection(fs.config.duckdb_path, read_only=True) as con:
        row = con.execute(
            "SELECT status, views, incremental, rows_read, entities_written, entities_kept_newer, error "
            f"FROM {quote(fs.config.project)}.materialization_runs WHERE run_id = ?",
            [run_id],
        ).fetchone()
    assert row is not None
    return tuple(row)
