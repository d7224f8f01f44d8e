"""Point-in-time correctness of training sets, against the plain-Python reference."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from featurestore import FeatureStore
from featurestore.errors import InvalidRequestError
from tests.offline.reference import SourceRow, point_in_time

T0 = datetime(2026, 3, 1, tzinfo=UTC)

DEFINITIONS = """
from datetime import timedelta
from featurestore import Entity, FeatureView, Field, Float64, Int64, ParquetSource

driver = Entity("driver", join_keys=["driver_id"])
customer = Entity("customer", join_keys=["customer_id"])
region = Entity("region", join_keys=["country", "city"])

drivers = ParquetSource("drivers", path="data/drivers", timestamp_field="ts",
                        created_timestamp_field="created")
schema = [Field("trips", Int64), Field("score", Float64)]
driver_all = FeatureView("driver_all", entities=[driver], source=drivers, schema=schema)
driver_ttl = FeatureView("driver_ttl", entities=[driver], source=drivers, schema=schema,
                         ttl=timedelta(minutes=30))
customer_v = FeatureView(
    "customer_v", entities=[customer],
    source=ParquetSource("customers", path="data/customers", timestamp_field="ts"),
    schema=[Field("balance", Int64)], ttl=timedelta(hours=1))
region_v = FeatureView(
    "region_v", entities=[region],
    source=ParquetSource("regions", path="data/regions", timestamp_field="ts"),
    schema=[Field("demand", Float64)])
"""

# Coarse times (multiples of 10 minutes against TTLs of 30 and 60) make the edge cases common:
# exact ties, rows exactly at the entity time and rows exactly one TTL old.
minutes = st.integers(0, 12).map(lambda m: m * 10)
maybe_int = st.one_of(st.none(), st.integers(-5, 5))


def ts(minute: int) -> datetime:
    return T0 + timedelta(minutes=minute)


@pytest.fixture(scope="module")
def pit_repo(tmp_path_factory: pytest.TempPathFactory) -> FeatureStore:
    """One repo for the whole module; each example rewrites its data and re-ingests."""
    repo = tmp_path_factory.mktemp("pit")
    (repo / "featurestore.toml").write_text('project = "pit"\n')
    (repo / "defs.py").write_text(DEFINITIONS)
    write_sources(repo, [[(1, 0, None, 1, 0.5)]], [(1, 0, 1)], [("pt", "porto", 0, 1.0)])
    store = FeatureStore(repo)
    store.apply()
    return store


def write_sources(
    repo: Path,
    driver_files: list[list[tuple[int, int, int | None, int | None, float | None]]],
    customers: list[tuple[int, int, int | None]],
    regions: list[tuple[str, str, int, float | None]],
) -> None:
    """Write the sources: drivers as several files (row = driver, minute, created minute, trips, score)."""
    for name in ("drivers", "customers", "regions"):
        folder = repo / "data" / name
        folder.mkdir(parents=True, exist_ok=True)
        for old in folder.glob("*.parquet"):
            old.unlink()
    tstype = pa.timestamp("us", tz="UTC")
    for i, rows in enumerate(driver_files):
        pq.write_table(
            pa.table(
                {
                    "driver_id": pa.array([r[0] for r in rows], pa.int64()),
                    "ts": pa.array([ts(r[1]) for r in rows], tstype),
                    "created": pa.array([None if r[2] is None else ts(r[2]) for r in rows], tstype),
                    "trips": pa.array([r[3] for r in rows], pa.int64()),
                    "score": pa.array([r[4] for r in rows], pa.float64()),
                }
            ),
            repo / "data" / "drivers" / f"part-{i}.parquet",
        )
    pq.write_table(
        pa.table(
            {
                "customer_id": pa.array([r[0] for r in customers], pa.int64()),
                "ts": pa.array([ts(r[1]) for r in customers], tstype),
                "balance": pa.array([r[2] for r in customers], pa.int64()),
            }
        ),
        repo / "data" / "customers" / "part-0.parquet",
    )
    pq.write_table(
        pa.table(
            {
                "country": pa.array([r[0] for r in regions], pa.string()),
                "city": pa.array([r[1] for r in regions], pa.string()),
                "ts": pa.array([ts(r[2]) for r in regions], tstype),
                "demand": pa.array([r[3] for r in regions], pa.float64()),
            }
        ),
        repo / "data" / "regions" / "part-0.parquet",
    )


driver_row = st.tuples(
    st.integers(1, 3),
    minutes,
    st.one_of(st.none(), minutes),
    maybe_int,
    st.one_of(st.none(), st.floats(-10, 10, allow_nan=False)),
)
# (driver, customer, country, city, minute): a few null keys and times, which match nothing.
entity_row = st.tuples(
    st.one_of(st.integers(0, 4), st.just(None)),
    st.integers(0, 3),
    st.sampled_from(["pt", "es"]),
    st.sampled_from(["porto", "lisbon"]),
    st.one_of(st.integers(-10, 150), st.just(None)),
)
FEATURES = [
    "driver_all:trips",
    "driver_all:score",
    "driver_ttl:trips",
    "driver_ttl:score",
    "customer_v:balance",
    "region_v:demand",
]
# Without full names, one feature per name: both driver views have trips and score.
SHORT_FEATURES = ["driver_all:trips", "driver_ttl:score", "customer_v:balance", "region_v:demand"]


def entity_input(
    entities: list[tuple[Any, ...]], zone: str, unit: str, form: str, ts_column: str, folder: Path
) -> Any:
    """The entity rows as the user may hold them: timestamps naive (UTC) or in a zone, any unit."""
    instants = [None if e[4] is None else ts(e[4]) for e in entities]
    if zone == "naive":
        walls = [None if t is None else t.replace(tzinfo=None) for t in instants]
        times = pa.array(walls, pa.timestamp(unit))
    else:  # the same instants, labelled with another zone: DuckDB must convert them
        times = pa.array(instants, pa.timestamp(unit, tz="UTC")).cast(pa.timestamp(unit, tz=zone))
    table = pa.table(
        {
            "driver_id": pa.array([e[0] for e in entities], pa.int64()),
            "customer_id": pa.array([e[1] for e in entities], pa.int64()),
            "country": [e[2] for e in entities],
            "city": [e[3] for e in entities],
            ts_column: times,
            "label": list(range(len(entities))),
        }
    )
    if form == "arrow":
        return table
    if form == "pandas":  # nullable integers stay integers (NumPy would make them floats)
        return table.to_pandas(types_mapper={pa.int64(): pd.Int64Dtype()}.get)
    if form == "sql":  # a query over a table of the store, as labels kept beside the features
        with duckdb.connect(str(folder / ".featurestore" / "store.duckdb")) as con:
            con.register("entity_input", table)
            con.execute("CREATE OR REPLACE TABLE entity_rows AS SELECT * FROM entity_input")
        return "SELECT * FROM entity_rows ORDER BY label"
    path = folder / "entities.parquet"
    pq.write_table(table, path)
    return path


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    driver_files=st.lists(st.lists(driver_row, min_size=1, max_size=12), min_size=1, max_size=3),
    customers=st.lists(st.tuples(st.integers(1, 3), minutes, maybe_int), min_size=1, max_size=8),
    regions=st.lists(
        st.tuples(
            st.sampled_from(["pt", "es"]),
            st.sampled_from(["porto", "lisbon"]),
            minutes,
            st.one_of(st.none(), st.floats(0, 1)),
        ),
        min_size=1,
        max_size=8,
    ),
    entities=st.lists(entity_row, min_size=1, max_size=15),
    zone=st.sampled_from(["UTC", "naive", "Asia/Kolkata", "America/New_York"]),
    unit=st.sampled_from(["s", "ms", "us", "ns"]),
    form=st.sampled_from(["arrow", "pandas", "parquet", "sql"]),
    ts_column=st.sampled_from(["event_timestamp", "labelled_at"]),
    full_names=st.booleans(),
)
def test_matches_reference(
    pit_repo: FeatureStore,
    driver_files: list[list[tuple[Any, ...]]],
    customers: list[tuple[Any, ...]],
    regions: list[tuple[Any, ...]],
    entities: list[tuple[Any, ...]],
    zone: str,
    unit: str,
    form: str,
    ts_column: str,
    full_names: bool,
) -> None:
    repo = pit_repo.config.repo
    write_sources(repo, driver_files, customers, regions)
    pit_repo.ingest()
    entity_df = entity_input(entities, zone, unit, form, ts_column, repo)
    column = None if ts_column == "event_timestamp" else ts_column  # the default, or named
    features = FEATURES if full_names else SHORT_FEATURES
    if not full_names:  # the full list collides without view prefixes: refused, naming the way out
        with pytest.raises(InvalidRequestError, match="full_feature_names"):
            pit_repo.get_training_set(entity_df, FEATURES, event_timestamp_column=column)
    with pit_repo.get_training_set(entity_df, features, full_names, column) as result:
        got = result.to_arrow()

    entity_columns = ["driver_id", "customer_id", "country", "city", ts_column, "label"]
    assert got.column_names == entity_columns + [
        ref.replace(":", "__") if full_names else ref.split(":")[1] for ref in features
    ]
    # Every entity row once, in input order (duplicates kept), with its own values.
    assert got.column("label").to_pylist() == list(range(len(entities)))
    assert got.column("driver_id").to_pylist() == [e[0] for e in entities]
    assert got.column("city").to_pylist() == [e[3] for e in entities]
    times = [None if e[4] is None else ts(e[4]) for e in entities]
    got_times = got.column(ts_column).to_pylist()
    if zone == "naive":  # naive stays naive; read as UTC
        got_times = [None if t is None else t.replace(tzinfo=UTC) for t in got_times]
    assert got_times == times
    driver_rows = [
        SourceRow(
            (r[0],), ts(r[1]), None if r[2] is None else ts(r[2]), (i, j), {"trips": r[3], "score": r[4]}
        )
        for i, rows in enumerate(driver_files)
        for j, r in enumerate(rows)
    ]
    customer_rows = [
        SourceRow((r[0],), ts(r[1]), None, (0, j), {"balance": r[2]}) for j, r in enumerate(customers)
    ]
    region_rows = [
        SourceRow((r[0], r[1]), ts(r[2]), None, (0, j), {"demand": r[3]}) for j, r in enumerate(regions)
    ]
    expected = {
        "driver_all": point_in_time(
            [(e[0],) for e in entities], times, driver_rows, ["trips", "score"], None
        ),
        "driver_ttl": point_in_time(
            [(e[0],) for e in entities], times, driver_rows, ["trips", "score"], timedelta(minutes=30)
        ),
        "customer_v": point_in_time(
            [(e[1],) for e in entities], times, customer_rows, ["balance"], timedelta(hours=1)
        ),
        "region_v": point_in_time([(e[2], e[3]) for e in entities], times, region_rows, ["demand"], None),
    }
    for ref in features:
        view, feature = ref.split(":")
        name = f"{view}__{feature}" if full_names else feature
        assert got.column(name).to_pylist() == [row[feature] for row in expected[view]], ref
        if feature in ("trips", "balance"):  # nulls keep the integer type
            assert got.schema.field(name).type == pa.int64(), ref
