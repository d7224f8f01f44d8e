"""Each kind of invalid row and of schema drift, on real Parquet files: FeatureStore.validate
reports it without writing, and an ingestion with policy "fail" refuses it and writes nothing."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pytest

from featurestore import FeatureStore
from featurestore.errors import (
    DefinitionError,
    NotAppliedError,
    SourceError,
    ViewsFailedError,
)
from tests.support.repos import write_parquet
from tests.validation.support import (
    GE,
    GOOD,
    ISIN,
    NOT_NULL,
    RANGE,
    T0,
    UNIQUE,
    Row,
    file_digest,
    trips_store,
    trips_table,
)

# Each case: the invalid rows appended after GOOD in b.parquet, the column (None: the view's
# own check), the check, and the value the report must show for the first failing row.
CASES: dict[str, tuple[list[Row], str | None, str, object]] = {
    "range": ([(4, 0, 0, 1.5, "car", 1), (5, 0, 0, -0.25, "car", 1)], "rate", RANGE, 1.5),
    "isin": ([(4, 0, 0, 0.5, "truck", 1)], "kind", ISIN, "truck"),
    "ge": ([(4, 0, 0, 0.5, "car", -3)], "trips", GE, -3),
    "not nullable field": ([(4, 0, 0, 0.5, "car", None)], "trips", NOT_NULL, None),
    "null join key": ([(None, 0, 0, 0.5, "car", 1)], "driver_id", NOT_NULL, None),
    "null event time": ([(4, None, 0, 0.5, "car", 1)], "ts", NOT_NULL, None),
    "duplicate key and times": ([(4, 7, 7, 0.1, "car", 1), (4, 7, 7, 0.2, "bike", 2)], None, UNIQUE, None),
}


@pytest.fixture(scope="module")
def ingested(tmp_path_factory: pytest.TempPathFactory) -> FeatureStore:
    """One store per module with GOOD ingested (policy "fail"); a failed ingestion leaves it so."""
    fs = trips_store(tmp_path_factory.mktemp("validate") / "repo", trips={"a.parquet": GOOD})
    fs.ingest()
    return fs


@pytest.mark.parametrize("case", list(CASES))
def test_each_failure_is_reported_and_refused(ingested: FeatureStore, case: str) -> None:
    bad_rows, column, check, value = CASES[case]
    fs = ingested
    bad = write_parquet(fs.config.repo / "data" / "trips" / "b.parquet", trips_table([*GOOD, *bad_rows]))
    first_bad = len(GOOD)

    report = fs.validate()
    assert not report.passed
    views = {v.view: v for v in report.views}
    assert views["profile"].passed and not views["trips"].passed
    trips = views["trips"]
    assert trips.policy == "fail" and trips.rows == 2 * len(GOOD) + len(bad_rows)
    assert trips.invalid_rows == len(bad_rows)
    [(path, failure)] = trips.failures()
    assert Path(path).resolve() == bad.resolve()
    assert (failure.column, failure.check, failure.failing_rows) == (column, check, len(bad_rows))
    assert [e["row"] for e in failure.examples] == list(range(first_bad, first_bad + len(bad_rows)))
    example = failure.examples[0]
    assert example["driver_id"] == bad_rows[0][0] and example["trips"] == bad_rows[0][5]
    if column is not None:
        assert example[column] == value
    # The structured report is JSON as it stands.
    [as_json] = [v for v in json.loads(report.to_json())["views"] if v["view"] == "trips"]
    assert as_json["files"][1]["failures"][0] == {
        "column": column, "check": check, "failing_rows": len(bad_rows), "examples": failure.examples}

    db = fs.config.duckdb_path
    before = file_digest(db)
    with pytest.raises(ViewsFailedError) as raised:
        fs.ingest(["trips"])  # alone: the other view would record its (unchanged) ingestion
    message = str(raised.value)
    for part in ("'trips'", "b.parquet", check, "nothing was written"):
        assert part in message, (part, message)
    if column is not None:
        assert f"column {column!r}" in message
    assert raised.value.errors["trips"].report.invalid_rows == len(bad_rows)  # type: ignore[attr-defined]
    assert file_digest(db) == before


def test_every_failure_of_a_row_is_named_and_counted_once(tmp_path: Path) -> None:
    rows: list[Row] = [*GOOD, (None, None, 0, 2.0, "van", -1), (4, 1, 1, 0.5, "car", 1)]
    fs = trips_store(tmp_path / "repo", trips={"a.parquet": rows}, apply=False)
    [file] = {v.view: v for v in fs.validate(["trips"]).views}["trips"].files
    assert (file.rows, file.invalid_rows) == (6, 1)
    got = {(f.column, f.check): f.failing_rows for f in file.failures}
    assert got == {("driver_id", NOT_NULL): 1, ("ts", NOT_NULL): 1, ("rate", RANGE): 1,
                   ("kind", ISIN): 1, ("trips", GE): 1}
    assert all(f.examples[0]["row"] == 4 for f in file.failures)


def test_validate_writes_nothing_not_even_a_store(tmp_path: Path) -> None:
    # Quarantine policy, invalid rows, never applied: validate only reads.
    fs = trips_store(tmp_path / "repo", "quarantine", {"a.parquet": [*GOOD, (4, 0, 0, 9.0, "car", 1)]},
                     apply=False)
    report = fs.validate(["trips"])
    assert [v.view for v in report.views] == ["trips"] and report.views[0].invalid_rows == 1
    assert report.views[0].quarantined_to == []
    assert not fs.config.store_dir.exists()


def retyped(table: pa.Table, column: str, values: pa.Array) -> pa.Table:
    return table.set_column(table.schema.get_field_index(column), column, values)


DRIFT = {
    "column dropped": (
        lambda t: t.drop_columns(["rate"]),
        ["no column 'rate'", "declared Float64", "driver_id, ts, created, kind, trips"],
    ),
    "type changed": (
        lambda t: retyped(t, "rate", pa.array([str(v) for v in t.column("rate").to_pylist()])),
        ["column 'rate'", "is string", "declared Float64"],
    ),
    "key type changed": (
        lambda t: retyped(t, "driver_id", t.column("driver_id").cast(pa.int32())),
        ["column 'driver_id'", "is int32", "declared Int64"],
    ),
    "event time not a timestamp": (
        lambda t: retyped(t, "ts", pa.array([T0.isoformat()] * t.num_rows)),
        ["column 'ts'", "is string", "declared Timestamp"],
    ),
}


@pytest.fixture(scope="module")
def quarantining(tmp_path_factory: pytest.TempPathFactory) -> FeatureStore:
    fs = trips_store(tmp_path_factory.mktemp("drift") / "repo", "quarantine")
    fs.ingest()
    return fs


@pytest.mark.parametrize("case", list(DRIFT))
def test_schema_drift_is_caught_before_anything_is_written(quarantining: FeatureStore, case: str) -> None:
    change, parts = DRIFT[case]
    fs = quarantining  # even the quarantine policy cannot take a drifted file
    db = fs.config.duckdb_path
    before = file_digest(db)
    write_parquet(fs.config.repo / "data" / "trips" / "b.parquet", change(trips_table(GOOD)))
    with pytest.raises(ViewsFailedError) as raised:
        fs.ingest(["trips"])  # alone: the other view would record its (unchanged) ingestion
    assert isinstance(raised.value.errors["trips"], SourceError)
    message = str(raised.value)
    for part in ["feature view 'trips'", "b.parquet", *parts]:
        assert part in message, (part, message)
    assert file_digest(db) == before
    assert not (fs.config.store_dir / "quarantine").exists()


def test_custom_checks_come_from_the_code_and_must_match_the_applied_ones(tmp_path: Path) -> None:
    # The registry keeps a custom check by name only; ingestion takes its function from the code.
    dupes: list[Row] = [(4, 7, 7, 0.1, "car", 1), (4, 7, 7, 0.2, "bike", 2)]
    fs = trips_store(tmp_path / "repo", trips={"a.parquet": [*GOOD, *dupes]})
    with pytest.raises(ViewsFailedError, match=UNIQUE):
        fs.ingest()
    defs = fs.config.repo / "defs.py"
    defs.write_text(defs.read_text().replace('name="unique_key_ts_created"', 'name="renamed"'))
    with pytest.raises(NotAppliedError, match="run 'featurestore apply'"):
        FeatureStore(fs.config.repo).ingest()
    assert not (fs.config.store_dir / "quarantine").exists()


def test_validate_names_each_drifted_file_against_the_declaration(tmp_path: Path) -> None:
    # Never applied: validate compiles the repo's code, and must say per file what the
    # declaration expects and what that file has, as ingestion does.
    fs = trips_store(tmp_path / "repo", trips={"a.parquet": GOOD}, apply=False)
    data = fs.config.repo / "data" / "trips"
    good = trips_table(GOOD)
    write_parquet(data / "b.parquet", good.drop_columns(["rate"]))
    write_parquet(data / "c.parquet", retyped(good, "trips", good.column("trips").cast(pa.float64())))
    # An undeclared column more (or less) is no drift: ingestion never reads it.
    write_parquet(data / "d.parquet", good.append_column("note", pa.array(["x"] * good.num_rows)))
    with pytest.raises(DefinitionError) as raised:
        fs.validate(["trips"])
    assert [p.split(": ", 1)[1] for p in raised.value.problems] == [
        "feature view 'trips': field 'rate' is not a column of 'data/trips/b.parquet'",
        "feature view 'trips': field 'trips' is declared Int64 but 'data/trips/c.parquet' has double",
    ]
    (data / "b.parquet").unlink()
    (data / "c.parquet").unlink()
    [trips] = fs.validate(["trips"]).views
    assert trips.passed and [Path(f.path).name for f in trips.files] == ["a.parquet", "d.parquet"]
    fs.apply()
    [ingested] = fs.ingest(["trips"])
    assert ingested.rows_inserted == 2 * len(GOOD)
