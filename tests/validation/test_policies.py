"""The two policies end to end through FeatureStore.materialize: "fail" leaves DuckDB and Redis
byte for byte as they were; "quarantine" serves exactly the valid rows and sets the rest aside."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import duckdb
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import redis

from featurestore import FeatureStore
from featurestore.errors import ValidationError, ViewsFailedError
from featurestore.offline.write import IngestResult
from tests.support.cli import run_cli
from tests.support.redis import redis_dump
from tests.support.repos import write_parquet
from tests.validation.support import (
    COLUMNS,
    GOOD,
    MIXED,
    PROJECT,
    RANGE,
    UNIQUE,
    at,
    expected_reasons,
    file_digest,
    newest_valid,
    profile_table,
    trips_store,
    trips_table,
)


def ingestion(result: list[IngestResult], view: str) -> IngestResult:
    [found] = [r for r in result if r.view == view]
    return found


def store_state(fs: FeatureStore, client: redis.Redis) -> tuple[object, ...]:
    """The DuckDB file's bytes (no connection is open), whether it has a WAL, and all of Redis."""
    db = fs.config.duckdb_path
    wal = db.with_name(db.name + ".wal").exists()
    return file_digest(db), db.stat().st_size, wal, redis_dump(client, keep_run_id=True)


def trips_keys(client: redis.Redis) -> dict[bytes, tuple[bytes | None, int]]:
    return {k: v for k, v in redis_dump(client).items() if k.endswith(b"}:trips")}


def test_fail_leaves_the_view_as_it_was_and_the_others_go_on(
    tmp_path: Path, redis_client: redis.Redis
) -> None:
    fs = trips_store(tmp_path / "repo")
    first = fs.materialize()  # the files were written just now: the racy-clean rule re-reads them
    assert first.written == 5 and ingestion(first.ingestion, "trips").rows_inserted == len(GOOD)
    # profile keys expire
    assert any(ttl > 0 for _, ttl in redis_dump(redis_client, keep_run_id=True).values())
    before = trips_keys(redis_client)

    # A bad trips file and a good new profile file: trips fails alone, profile goes on.
    data = fs.config.repo / "data"
    write_parquet(data / "trips" / "b.parquet", trips_table([*GOOD[:2], (4, 50, 50, 7.0, "car", 1)]))
    write_parquet(data / "profile" / "p2.parquet", profile_table([(10, 60, 99.0)]))
    with pytest.raises(ViewsFailedError) as raised:
        fs.materialize()
    assert list(raised.value.errors) == ["trips"]
    error = raised.value.errors["trips"]
    assert isinstance(error, ValidationError) and error.report.view == "trips"
    assert "b.parquet: column 'rate' failed in_range(0, 1) in 1 row(s)" in str(raised.value)
    assert trips_keys(redis_client) == before
    profile = fs.get_online_features(["profile:balance"], {"customer_id": [10]}).to_dict()
    assert profile["balance"] == [99.0]
    [kept] = (fs.config.store_dir / "validation").glob("trips-*-failed.json")
    saved = json.loads(kept.read_text())
    assert not saved["passed"] and saved["views"][0]["invalid_rows"] == 1

    # The same through the command line: exit 1, one line naming view, file, column, check.
    done = run_cli("materialize", "--repo", str(fs.config.repo))
    assert done.returncode == 1
    assert done.stderr.strip().count("\n") == 0 and "Traceback" not in done.stderr
    for part in ("'trips'", "b.parquet", "'rate'", RANGE, "nothing was written"):
        assert part in done.stderr, part
    assert trips_keys(redis_client) == before

    # Fixed at the source, the next run takes trips' file (profile's was taken already).
    write_parquet(data / "trips" / "b.parquet", trips_table([(4, 50, 50, 0.7, "car", 1)]))
    again = fs.materialize()
    assert ingestion(again.ingestion, "trips").rows_inserted == 1
    assert ingestion(again.ingestion, "profile").rows_inserted == 0
    keys = {"driver_id": [4], "customer_id": [10]}
    online = fs.get_online_features(["trips:rate", "profile:balance"], keys)
    assert online.to_dict() == {"driver_id": [4], "customer_id": [10], "rate": [0.7], "balance": [99.0]}


def test_quarantine_serves_the_valid_rows_and_sets_the_rest_aside(
    tmp_path: Path, redis_client: redis.Redis
) -> None:
    fs = trips_store(tmp_path / "repo", "quarantine", {"a.parquet": GOOD, "b.parquet": MIXED})
    result = fs.materialize()
    bad = expected_reasons(MIXED)
    assert len(bad) == 8
    trips = ingestion(result.ingestion, "trips")
    assert (trips.rows_inserted, trips.rows_quarantined, trips.rows_skipped) == (
        len(GOOD) + len(MIXED) - len(bad), len(bad), 0)

    # The quarantine file: exactly the invalid rows, their values, why, where from.
    assert trips.validation is not None
    [where] = trips.validation.quarantined_to
    assert Path(where).parent == fs.config.store_dir / "quarantine" / "trips"
    rows = pq.read_table(where).to_pylist()
    assert [r["__row"] for r in rows] == sorted(bad)
    for r in rows:
        source = MIXED[r["__row"]]
        assert set(r["__reason"].split("; ")) == bad[r["__row"]]
        assert r["__source_file"] == str((fs.config.repo / "data" / "trips" / "b.parquet").resolve())
        assert tuple(r[c] for c in COLUMNS) == (source[0], at(source[1]), at(source[2]), *source[3:])

    # The valid rows landed: online and offline values equal a plain-Python filter of the source.
    newest = newest_valid([*GOOD, *MIXED])
    drivers = [1, 2, 3, 4, 5, 6, 7]
    expected = {
        "driver_id": drivers,
        **{c: [newest[d][i] if d in newest else None for d in drivers]
           for i, c in enumerate(COLUMNS) if c in ("rate", "kind", "trips")},
    }
    assert expected["trips"] == [5, 1, 2, None, 8, None, 0]
    features = ["trips:rate", "trips:kind", "trips:trips"]
    assert fs.get_online_features(features, {"driver_id": drivers}).to_dict() == expected
    entities = {"driver_id": drivers, "event_timestamp": [at(100)] * len(drivers)}
    with fs.get_training_set(pd.DataFrame(entities), features) as ts:
        offline = ts.to_arrow().select(["driver_id", "rate", "kind", "trips"]).to_pydict()
    assert offline == expected

    # Counts per check and pass/fail are kept with the ingestion in DuckDB.
    with duckdb.connect(str(fs.config.duckdb_path), read_only=True) as con:
        kept = con.execute(
            f"SELECT view, path, policy, rows, invalid_rows, failures FROM {PROJECT}.validation_results "
            "ORDER BY view, path"
        ).fetchall()
    assert [(v, Path(p).name, pol, n, bad_n) for v, p, pol, n, bad_n, _ in kept] == [
        ("profile", "p1.parquet", "fail", 2, 0),
        ("trips", "a.parquet", "quarantine", len(GOOD), 0),
        ("trips", "b.parquet", "quarantine", len(MIXED), len(bad)),
    ]
    counts = {(f["column"], f["check"]): f["failing_rows"] for f in json.loads(kept[2][5])}
    by_reason = Counter(reason for reasons in bad.values() for reason in reasons)
    assert {f"{c}: {k}" if c else k: n for (c, k), n in counts.items()} == by_reason
    assert counts[(None, UNIQUE)] == 2 and counts[("rate", RANGE)] == 1

    # Nothing changed, nothing read again: no new quarantine file, no new results.
    again = fs.materialize()
    assert ingestion(again.ingestion, "trips").rows_quarantined == 0
    assert list(Path(where).parent.iterdir()) == [Path(where)]


def test_validation_reads_batch_by_batch_and_keeps_row_numbers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Batches of 4 rows: the failures of later batches keep their row numbers in the file, in
    # the report and in quarantine, and exactly the valid rows are ingested. (A view-level
    # check sees one batch at a time: MIXED's duplicate pair, rows 9 and 10, shares a batch.)
    from featurestore.validation import validate

    monkeypatch.setattr(validate, "BATCH_ROWS", 4)
    batches: list[int] = []
    real = validate._batches

    def counted(path: Path, columns: list[str]) -> Iterator[tuple[int, pa.RecordBatch]]:
        for offset, batch in real(path, columns):
            batches.append(batch.num_rows)
            yield offset, batch

    monkeypatch.setattr(validate, "_batches", counted)
    fs = trips_store(tmp_path / "repo", "quarantine", {"a.parquet": MIXED}, numbered=True)
    [result] = fs.ingest(["trips"])
    assert batches == [4, 4, 4]
    bad = expected_reasons(MIXED)
    assert result.validation is not None
    examples = {(c.column, c.check): [e["row"] for e in c.examples] for _, c in result.validation.failures()}
    assert examples[(None, UNIQUE)] == [9, 10] and examples[("rate", RANGE)] == [1]
    [where] = result.validation.quarantined_to
    rows = pq.read_table(where).to_pylist()
    assert {r["__row"]: set(r["__reason"].split("; ")) for r in rows} == bad
    assert all(r["__row"] == r["n"] for r in rows)
    with duckdb.connect(str(fs.config.duckdb_path), read_only=True) as con:
        ingested = con.execute(f"SELECT n FROM {PROJECT}.offline_trips ORDER BY n").fetchall()
    assert [n for (n,) in ingested] == sorted(set(range(len(MIXED))) - set(bad))
