"""Sources named by URIs on the Spark engine: listed, read, validated, fingerprinted and
followed through changes by Spark alone, with the same rows and training sets as the same
files read locally by the DuckDB engine.

The remote file system is Hadoop's ``viewfs://``, mounted onto a local folder through the
session's Hadoop configuration, as a cluster configures s3a:// or hdfs:// (core-site.xml,
``spark.hadoop.*``): Python on the driver cannot open a ``viewfs://`` path, so anything
that read one without Spark would fail.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest
from pyspark.sql import SparkSession

from featurestore import FeatureStore
from featurestore.definitions import ParquetSource
from featurestore.errors import DefinitionError, SourceError
from featurestore.offline.spark.files import SparkFiles
from featurestore.source_files import SourceFiles
from tests.offline.spark.support import counts, offline_rows, reports
from tests.support.repos import write_parquet
from tests.support.spark import SETTINGS, use_spark
from tests.validation.support import GOOD, MIXED, PROJECT, trips_store, trips_table


@pytest.fixture
def lake(tmp_path: Path, spark: SparkSession) -> Iterator[tuple[str, Path]]:
    """``viewfs://<mount>/lake`` -> a local folder (each test its own mount, as the file
    systems Hadoop caches are keyed by it)."""
    mount, folder = f"fs{uuid.uuid4().hex[:12]}", tmp_path / "lake"
    folder.mkdir()
    key = f"fs.viewfs.mounttable.{mount}.link./lake"
    spark.conf.set(key, folder.as_uri())
    yield f"viewfs://{mount}/lake", folder
    spark.conf.unset(key)


def _on_uri(fs: FeatureStore, uri: str) -> FeatureStore:
    """``fs``'s repo with the trips source read from ``uri`` on the Spark engine."""
    defs = fs.config.repo / "defs.py"
    text = defs.read_text()
    assert 'path="data/trips"' in text
    defs.write_text(text.replace('path="data/trips"', f'path="{uri}"'))
    return FeatureStore(use_spark(fs.config.repo))


def _twins(
    tmp_path: Path, lake: tuple[str, Path], policy: str, files: dict
) -> tuple[FeatureStore, FeatureStore]:
    """The same trips files read locally by DuckDB and through viewfs:// by Spark, applied."""
    uri, folder = lake
    duck = trips_store(tmp_path / "duck", policy, files)
    sparky = trips_store(tmp_path / "spark", policy, files, apply=False)
    for name, rows in files.items():  # the Spark repo's trips live only in the lake
        write_parquet(folder / "trips" / name, trips_table(rows))
        (sparky.config.repo / "data" / "trips" / name).unlink()
    sparky = _on_uri(sparky, f"{uri}/trips")
    sparky.apply()
    return duck, sparky


def _files(fs: FeatureStore) -> list[tuple[str, int, int]]:
    """offline_files: (file name, size, rows) per view and path."""
    import duckdb

    with duckdb.connect(str(fs.config.duckdb_path), read_only=True) as con:
        rows = con.execute(
            f'SELECT view, path, size, rows FROM "{PROJECT}".offline_files ORDER BY view, path'
        ).fetchall()
    return [(v, p.rsplit("/", 1)[1], s, n) for v, p, s, n in rows]


def test_a_remote_source_ingests_and_follows_changes_like_the_same_local_files(
    tmp_path: Path, lake: tuple[str, Path]
) -> None:
    uri, folder = lake
    duck, sparky = _twins(tmp_path, lake, "quarantine", {"a.parquet": GOOD, "b.parquet": MIXED})
    for step in ("first", "changed and removed", "unchanged"):
        results = duck.ingest(), sparky.ingest()
        assert counts(results[1]) == counts(results[0]), step
        assert reports(results[1]) == reports(results[0]), step
        assert offline_rows(sparky, "trips").equals(offline_rows(duck, "trips")), step
        assert _files(sparky) == _files(duck), step
        [trips] = [r for r in results[1] if r.view == "trips"]
        if step == "first":  # the paths recorded are the URIs Spark listed
            remote = [p for v, p in _paths(sparky) if v == "trips"]
            assert remote == [f"{uri}/trips/a.parquet", f"{uri}/trips/b.parquet"]
            [kept] = trips.validation.quarantined_to  # type: ignore[union-attr]
            assert set(pq.read_table(kept).column("__source_file").to_pylist()) == {f"{uri}/trips/b.parquet"}
            _rewrite(duck, folder, "a.parquet", GOOD[:3])
            for f in (duck.config.repo / "data" / "trips" / "b.parquet", folder / "trips" / "b.parquet"):
                f.unlink()
        elif step == "changed and removed":
            assert (trips.files_changed, trips.files_removed, trips.rows_inserted) == (1, 1, 3)
        else:
            assert all(r.rows_inserted == r.rows_deleted == 0 for r in results[1])
    # A training set from remote sources equals DuckDB's from the same local files.
    entities = pd.DataFrame(
        {
            "driver_id": [1, 2, 3, 1],
            "event_timestamp": pd.to_datetime([0, 10**9, 3 * 10**9, 10**10], utc=True),
        }
    )
    features = ["trips:rate", "trips:kind", "trips:trips"]
    want = duck.get_training_set(entities, features).to_arrow()
    got = sparky.get_training_set(entities, features).to_arrow()
    assert got.equals(want) and got.schema == want.schema


def _paths(fs: FeatureStore) -> list[tuple[str, str]]:
    import duckdb

    with duckdb.connect(str(fs.config.duckdb_path), read_only=True) as con:
        return con.execute(f'SELECT view, path FROM "{PROJECT}".offline_files ORDER BY view, path').fetchall()


def _rewrite(duck: FeatureStore, folder: Path, name: str, rows: list) -> None:
    """Both copies rewritten, their mtime a minute back: a file changed within two seconds of
    being read is read again on the next run (by content on DuckDB, whole when remote)."""
    for target in (duck.config.repo / "data" / "trips" / name, folder / "trips" / name):
        write_parquet(target, trips_table(rows))
        os.utime(target, (time.time() - 60, time.time() - 60))


def test_spark_lists_a_uri_as_the_local_path_is_listed(tmp_path: Path, lake: tuple[str, Path]) -> None:
    """A folder (recursively, its .parquet files), a glob, one file (any suffix); hidden files
    and others skipped; a path that names nothing lists nothing."""
    uri, folder = lake
    for name in ("a.parquet", "sub/b.parquet", "sub/deeper/c.parquet", "d.pq"):
        write_parquet(folder / "t" / name, trips_table(GOOD[:2]))
    (folder / "t" / "notes.txt").write_text("not data")
    remote, local = SourceFiles(SparkFiles(SETTINGS)), SourceFiles()
    cases = ["t", "t/*.parquet", "t/sub/*.parquet", "t/d.pq", "t/a.parquet", "t/missing", "t/*.csv"]
    listed = {}
    for case in cases:
        at_uri = remote.list(ParquetSource("s", f"{uri}/{case}", "ts"), tmp_path)
        here = local.list(ParquetSource("s", str(folder / case), "ts"), tmp_path)
        assert [f.path.removeprefix(uri) for f in at_uri] == [
            f.path.removeprefix(str(folder)) for f in here
        ], case
        assert [f.size for f in at_uri] == [f.size for f in here], case
        # Hadoop reports mtimes in whole milliseconds.
        assert [_ms(f.mtime) for f in at_uri] == [_ms(f.mtime) for f in here], case
        listed[case] = len(at_uri)
    assert listed == {
        "t": 3,
        "t/*.parquet": 1,
        "t/sub/*.parquet": 1,
        "t/d.pq": 1,
        "t/a.parquet": 1,
        "t/missing": 0,
        "t/*.csv": 0,
    }
    # A file:// URI is a local path on either engine.
    as_file_uri = local.list(ParquetSource("s", (folder / "t").as_uri(), "ts"), tmp_path)
    assert [f.path for f in as_file_uri] == [
        f.path for f in local.list(ParquetSource("s", str(folder / "t"), "ts"), tmp_path)
    ]


def _ms(mtime: float) -> int:
    return round(mtime * 1e6) // 1000


def test_a_uri_spark_cannot_read_is_named_with_its_error(tmp_path: Path, spark: SparkSession) -> None:
    fs = trips_store(tmp_path / "repo", "fail", {"a.parquet": GOOD}, apply=False)
    fs = _on_uri(fs, "s3a://no-such-bucket/trips")
    with pytest.raises(DefinitionError) as raised:
        fs.apply()
    [line] = [p for p in raised.value.problems if "s3a://" in p]
    assert "Spark cannot list 's3a://no-such-bucket/trips'" in line
    assert "S3AFileSystem not found" in line and "\n" not in line


def test_the_duckdb_engine_refuses_a_remote_uri_in_one_line(tmp_path: Path) -> None:
    fs = trips_store(tmp_path / "repo", "fail", {"a.parquet": GOOD}, apply=False)
    defs = fs.config.repo / "defs.py"
    defs.write_text(defs.read_text().replace('path="data/trips"', 'path="hdfs://namenode/trips"'))
    with pytest.raises(DefinitionError) as raised:
        FeatureStore(fs.config.repo).apply()
    [line] = [p for p in raised.value.problems if "hdfs://" in p]
    assert "only the Spark engine reads" in line and 'engine = "spark"' in line


def test_a_file_uri_reads_the_local_files_on_duckdb(tmp_path: Path) -> None:
    plain = trips_store(tmp_path / "plain", "fail", {"a.parquet": GOOD})
    uri = trips_store(tmp_path / "uri", "fail", {"a.parquet": GOOD}, apply=False)
    defs = uri.config.repo / "defs.py"
    folder = (uri.config.repo / "data" / "trips").as_uri()
    defs.write_text(defs.read_text().replace('path="data/trips"', f'path="{folder}"'))
    uri = FeatureStore(uri.config.repo)
    uri.apply()
    assert counts(uri.ingest()) == counts(plain.ingest())
    assert offline_rows(uri, "trips").equals(offline_rows(plain, "trips"))
    with pytest.raises(DefinitionError, match="names a local path, not a host"):
        ParquetSource("s", "file://server/share/trips", "ts")


def test_validate_reproduce_and_lineage_on_remote_sources(tmp_path: Path, lake: tuple[str, Path]) -> None:
    uri, folder = lake
    _, sparky = _twins(tmp_path, lake, "quarantine", {"a.parquet": GOOD, "b.parquet": MIXED})
    # validate reads the remote files through Spark's tasks, writing nothing.
    report = sparky.validate(["trips"])
    [view] = report.views
    assert [(Path(f.path).name, f.rows, f.invalid_rows) for f in view.files] == [
        ("a.parquet", len(GOOD), 0),
        ("b.parquet", len(MIXED), sum(1 for _ in _bad(MIXED))),
    ]
    sparky.ingest()
    entities = pd.DataFrame({"driver_id": [1, 2], "event_timestamp": [datetime(2030, 1, 1, tzinfo=UTC)] * 2})
    with sparky.get_training_set(entities, ["trips:rate"]) as ts:
        ts.to_parquet(tmp_path / "ts")
        training_set = ts.manifest["id"]
    graph = sparky.lineage("trips")
    statuses = {n["id"]: n.get("status") for n in graph["nodes"] if n["kind"] == "source_file"}
    assert statuses == {
        f"file:{uri}/trips/a.parquet": "remote (not checked)",
        f"file:{uri}/trips/b.parquet": "remote (not checked)",
    }
    assert sparky.reproduce_training_set(training_set, tmp_path / "again").identical
    _rewrite_remote(folder, "a.parquet", GOOD[:2])
    with pytest.raises(SourceError, match=f"source file {uri}/trips/a.parquet changed"):
        sparky.reproduce_training_set(training_set, tmp_path / "third")
    # A remote file has no content fingerprint: one rewritten in place within two seconds of
    # being read, keeping its size and mtime, is read again rather than trusted.
    sparky.ingest()
    target = folder / "trips" / "a.parquet"
    before = target.stat()
    write_parquet(target, trips_table([(1, 0, 0, 0.5, "car", 4), *GOOD[1:2]]))
    os.utime(target, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert target.stat().st_size == before.st_size  # same stat, new content
    [trips] = [r for r in sparky.ingest() if r.view == "trips"]
    assert (trips.files_changed, trips.rows_inserted) == (1, 2)
    assert 4 in offline_rows(sparky, "trips").column("trips").to_pylist()


def _bad(rows: list) -> list:
    from tests.validation.support import expected_reasons

    return list(expected_reasons(rows))


def _rewrite_remote(folder: Path, name: str, rows: list) -> None:
    write_parquet(folder / "trips" / name, trips_table(rows))
