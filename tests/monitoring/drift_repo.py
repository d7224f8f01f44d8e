"""A repo with a known drift: the example definitions on tiny data, then two new driver_stats files.

1. ``apply`` + ``ingest``: the baseline runs; a training set of ``trip_model`` is written.
2. ``control.parquet``: fresh rows from the same generator, ingested as its own run:
   nothing drifted.
3. ``shifted.parquet``: fresh rows with conv_rate's and earnings_today's means shifted and
   city's mix changed (half Berlin), and 10% nulls in last_trip_km and vehicle_type (none in
   the baseline; the values they still have as before), ingested as its own run: exactly
   those five drifted, three by their values and two by their share of missing values.

The raw rows of each step are kept, for references computed with numpy and pandas. The
fixture ``drift_repo`` (monitoring/conftest.py) builds it once per test module.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from featurestore import FeatureStore, datagen
from featurestore.storage import connection
from tests.support.clock import DATA_END
from tests.support.repos import copy_example_repo

SHIFTED_VALUES = ["driver_stats:conv_rate", "driver_stats:earnings_today", "driver_stats:city"]
SHIFTED_NULLS = ["driver_stats:last_trip_km", "driver_stats:vehicle_type"]
# In the view's order, as reports list them. Against a training set only the values count
# (its nulls include entities without a value: see featurestore.monitoring.drift).
SHIFTED = [
    "driver_stats:conv_rate", "driver_stats:earnings_today", "driver_stats:last_trip_km",
    "driver_stats:city", "driver_stats:vehicle_type",
]


@dataclass(frozen=True)
class DriftRepo:
    store: FeatureStore
    baseline_run: str  # ingest-N of driver_stats, the tiny data
    control_run: str
    shifted_run: str
    training_set: str  # id of a trip_model training set over the tiny data
    training_file: Path
    baseline_rows: pd.DataFrame
    control_rows: pd.DataFrame
    shifted_rows: pd.DataFrame


def fresh_rows(seed: int) -> pa.Table:
    """A new file's worth of driver rows from the example generator (its own seed)."""
    return next(datagen.driver_batches(datagen.SCALES["tiny"], DATA_END, seed=seed))


def replace(table: pa.Table, name: str, values: pa.Array) -> pa.Table:
    return table.set_column(table.schema.get_field_index(name), name, values)


def control_file(path: Path) -> pa.Table:
    table = fresh_rows(seed=21)
    pq.write_table(table, path)
    return table


def shifted_file(path: Path) -> pa.Table:
    table = fresh_rows(seed=22)
    rng = np.random.default_rng(4)
    n = table.num_rows
    gone = rng.random(n) < 0.1
    for name in ("last_trip_km", "vehicle_type"):
        column = table.column(name).to_numpy(zero_copy_only=False)
        table = replace(table, name, pa.array(column, mask=gone, type=table.schema.field(name).type))
    table = replace(table, "conv_rate", pa.array(np.sqrt(rng.random(n)).astype(np.float32)))  # mean 2/3
    table = replace(table, "earnings_today", pa.array(np.round(rng.gamma(2.0, 100.0, n), 2)))  # 120 -> 200
    cities = np.array(datagen.CITIES)[rng.integers(0, len(datagen.CITIES), n)]
    table = replace(table, "city", pa.array(np.where(rng.random(n) < 0.5, "Berlin", cities)))
    pq.write_table(table, path)
    return table


def last_run(store: FeatureStore, view: str) -> str:
    with connection(store.config.duckdb_path, read_only=True) as con:
        row = con.execute(
            "SELECT max(run_id) FROM test.ingestion_runs WHERE view = ?", [view]
        ).fetchall()[0]
    return f"ingest-{row[0]}"


def build(folder: Path, tiny_data: Path) -> DriftRepo:
    repo = copy_example_repo(folder / "repo", tiny_data)
    (repo / "featurestore.toml").write_text('project = "test"\n')
    store = FeatureStore(repo)
    store.apply()
    store.ingest()
    baseline_run = last_run(store, "driver_stats")
    training_file = folder / "train.parquet"
    with store.get_training_set(repo / "data" / "entity_rows.parquet", "trip_model") as ts:
        ts.to_parquet(training_file)
        training_set = str(ts.manifest["id"])
    folder_of = repo / "data" / "driver_stats"
    baseline_rows = pd.concat([pq.read_table(p).to_pandas() for p in sorted(folder_of.glob("*.parquet"))])
    control = control_file(folder_of / "q-control.parquet")  # sorts after part-*: an incremental run
    store.ingest(["driver_stats"])
    control_run = last_run(store, "driver_stats")
    shifted = shifted_file(folder_of / "shifted.parquet")
    store.ingest(["driver_stats"])
    return DriftRepo(
        store,
        baseline_run,
        control_run,
        last_run(store, "driver_stats"),
        training_set,
        training_file,
        baseline_rows,
        control.to_pandas(),
        shifted.to_pandas(),
    )
