"""The point-in-time join's generated cases: source rows, entity rows in every form, the edges
they must reach, and the check of one example against the plain-Python reference. Shared by
the DuckDB engine's tests (test_pit.py) and the Spark engine's (spark/test_pit.py)."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import strategies as st

from featurestore import FeatureStore
from featurestore.errors import InvalidRequestError
from tests.offline.reference import SourceRow, point_in_time
from tests.support.clock import minutes_after

INT64 = pa.int64()  # entity key columns unless an example says otherwise
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


ts = minutes_after(T0)


def when(offset: timedelta | None) -> datetime | None:
    """An entity row's time (an offset from T0), or None."""
    return None if offset is None else T0 + offset


def make_pit_repo(repo: Path) -> FeatureStore:
    """A repo of the four views over a first tiny data set, applied; examples rewrite the data."""
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


# Entity ids and source ids lean towards 1, so most entity rows have source rows to match.
few_ids = st.one_of(st.just(1), st.integers(1, 3))
driver_row = st.tuples(
    few_ids,
    minutes,
    st.one_of(st.none(), minutes),
    maybe_int,
    st.one_of(st.none(), st.floats(-10, 10, allow_nan=False)),
)
# Entity times as offsets from T0: mostly on the sources' 10-minute grid (rows exactly at the
# entity time, exactly one TTL old), else a second either side of it (just inside or past
# a TTL) or anywhere between. Whole seconds: every timestamp unit holds them exactly.
on_grid = st.integers(-1, 15).map(lambda m: timedelta(minutes=10 * m))
second = st.sampled_from([timedelta(seconds=-1), timedelta(seconds=1)])
near_grid = st.tuples(on_grid, second).map(lambda t: t[0] + t[1])
off_grid = st.tuples(on_grid, st.integers(2, 598)).map(lambda t: t[0] + timedelta(seconds=t[1]))
entity_time = st.one_of(on_grid, on_grid, near_grid, near_grid, off_grid, st.just(None))
# (driver, customer, country, city, offset): a few null keys and times, which match nothing.
entity_row = st.tuples(
    st.one_of(few_ids, few_ids, st.integers(0, 4), st.just(None)),
    st.one_of(st.just(1), st.integers(0, 3)),
    st.sampled_from(["pt", "es"]),
    st.sampled_from(["porto", "lisbon"]),
    entity_time,
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
    entities: list[tuple[Any, ...]],
    zone: str,
    unit: str,
    form: str,
    ts_column: str,
    folder: Path,
    key_type: pa.DataType = INT64,
) -> Any:
    """The entity rows as the user may hold them: timestamps naive (UTC) or in a zone, any unit."""
    instants = [when(e[4]) for e in entities]
    if zone == "naive":
        walls = [None if t is None else t.replace(tzinfo=None) for t in instants]
        times = pa.array(walls, pa.timestamp(unit))
    else:  # the same instants, labelled with another zone: DuckDB must convert them
        times = pa.array(instants, pa.timestamp(unit, tz="UTC")).cast(pa.timestamp(unit, tz=zone))
    table = pa.table(
        {
            "driver_id": pa.array([e[0] for e in entities], key_type),
            "customer_id": pa.array([e[1] for e in entities], key_type),
            "country": [e[2] for e in entities],
            "city": [e[3] for e in entities],
            ts_column: times,
            "label": list(range(len(entities))),
        }
    )
    if form == "arrow":
        return table
    if form == "pandas":  # nullable integers stay integers (NumPy would make them floats)
        return table.to_pandas(types_mapper={pa.int64(): pd.Int64Dtype(), pa.int32(): pd.Int32Dtype()}.get)
    if form == "sql":  # a query over a table of the store, as labels kept beside the features
        with duckdb.connect(str(folder / ".featurestore" / "store.duckdb")) as con:
            con.register("entity_input", table)
            con.execute("CREATE OR REPLACE TABLE entity_rows AS SELECT * FROM entity_input")
        return "SELECT * FROM entity_rows ORDER BY label"
    path = folder / "entities.parquet"
    pq.write_table(table, path)
    return path


# Explicit cases for the edges the join was built for: rows exactly at the entity time,
# exactly one TTL old and a second past it; equal event times decided by the created time
# (a missing one losing), and full ties decided by the later file, then the later row.
EDGES = {
    "driver_files": [
        [(1, 0, None, 1, 0.1), (1, 0, 10, 2, 0.2), (2, 30, 30, 3, None), (2, 30, 30, 4, 0.4)],
        [(1, 0, 5, 5, 0.5), (2, 30, 30, 6, 0.6), (3, 60, None, 7, 0.7), (3, 60, None, 8, 0.8)],
    ],
    "customers": [(1, 0, 10), (1, 0, 11), (2, 60, None)],
    "regions": [("pt", "porto", 0, 0.5), ("pt", "porto", 0, 0.25)],
    "entities": [
        (1, 1, "pt", "porto", timedelta(0)),  # rows at the entity time; created decides
        (1, 1, "pt", "porto", timedelta(minutes=30)),  # one TTL old for driver_ttl
        (1, 1, "pt", "porto", timedelta(minutes=30, seconds=1)),  # a second past it
        (1, 1, "pt", "porto", timedelta(minutes=60)),  # one TTL old for customer_v
        (1, 1, "pt", "porto", timedelta(minutes=60, seconds=1)),
        (2, 2, "es", "porto", timedelta(minutes=30)),  # full tie over files: later file
        (3, 2, "es", "lisbon", timedelta(minutes=90)),  # full tie in a file, exactly TTL old
        (3, 3, "pt", "lisbon", timedelta(minutes=90, seconds=-1)),
    ],
}
# Entity rows (over the two TTL views, all examples) that must meet each case: the strategies
# above reach each several times more often; before them, no example had a row one TTL old.
EDGE_CASES = {"at entity time": 30, "equal event times": 30, "one TTL old": 15, "just past TTL": 10}


def edges_hit(
    entity_keys: list[tuple[Any, ...]],
    times: list[datetime | None],
    rows: list[SourceRow],
    ttl: timedelta | None,
) -> Counter[str]:
    """How many entity rows meet each edge case of one view (coverage, not correctness)."""
    hit: Counter[str] = Counter()
    for keys, at in zip(entity_keys, times, strict=True):
        mine = [r.event_ts for r in rows if at is not None and r.keys == keys]
        usable = [t for t in mine if t <= at and (ttl is None or t >= at - ttl)]
        hit["matched"] += bool(usable)
        hit["at entity time"] += at in mine
        if ttl is not None and at is not None:
            hit["one TTL old"] += at - ttl in mine
            hit["just past TTL"] += at - ttl - timedelta(seconds=1) in mine
        hit["equal event times"] += bool(usable) and mine.count(max(usable)) > 1
    return hit

# What one example is made of (the keyword arguments of check_example).
EXAMPLE = dict(
    driver_files=st.lists(st.lists(driver_row, min_size=2, max_size=12), min_size=1, max_size=3),
    customers=st.lists(st.tuples(few_ids, minutes, maybe_int), min_size=2, max_size=8),
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
    entities=st.lists(entity_row, min_size=8, max_size=20),
    zone=st.sampled_from(["UTC", "naive", "Asia/Kolkata", "America/New_York"]),
    unit=st.sampled_from(["s", "ms", "us", "ns"]),
    form=st.sampled_from(["arrow", "pandas", "parquet", "sql"]),
    ts_column=st.sampled_from(["event_timestamp", "labelled_at"]),
    full_names=st.booleans(),
)


def check_example(
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
    key_type: pa.DataType = INT64,
) -> list[tuple[str, list[tuple[Any, ...]], list[datetime | None], list[SourceRow], timedelta | None]]:
    """Assert one example's training set matches the reference; each view's inputs to it.

    ``key_type``: the entity frame's integer key columns (the views' keys are Int64).
    """
    repo = pit_repo.config.repo
    write_sources(repo, driver_files, customers, regions)
    pit_repo.ingest()
    entity_df = entity_input(entities, zone, unit, form, ts_column, repo, key_type)
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
    times = [when(e[4]) for e in entities]
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
    views = [
        ("driver_all", [(e[0],) for e in entities], times, driver_rows, None),
        ("driver_ttl", [(e[0],) for e in entities], times, driver_rows, timedelta(minutes=30)),
        ("customer_v", [(e[1],) for e in entities], times, customer_rows, timedelta(hours=1)),
        ("region_v", [(e[2], e[3]) for e in entities], times, region_rows, None),
    ]
    values = {"driver_all": ["trips", "score"], "driver_ttl": ["trips", "score"], "customer_v": ["balance"],
              "region_v": ["demand"]}
    expected = {
        view: point_in_time(keys, at, rows, values[view], ttl) for view, keys, at, rows, ttl in views
    }
    for ref in features:
        view, feature = ref.split(":")
        name = f"{view}__{feature}" if full_names else feature
        assert got.column(name).to_pylist() == [row[feature] for row in expected[view]], ref
        if feature in ("trips", "balance"):  # nulls keep the integer type
            assert got.schema.field(name).type == pa.int64(), ref
    return views
