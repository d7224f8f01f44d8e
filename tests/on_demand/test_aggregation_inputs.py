"""An on-demand view over an aggregation view's features (tiles online, windows offline) and a
plain view's: the example repo's trips, served and in a training set at the same time."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyarrow as pa
import pytest

from featurestore import FeatureStore
from tests.on_demand.support import same
from tests.support.redis import RedisServer
from tests.support.repos import copy_example_repo

FARES = """
import pyarrow as pa
import pyarrow.compute as pc
from drivers import driver_stats
from pricing import trip_request
from trips import driver_trips

from featurestore import Field, Float64, on_demand_view


@on_demand_view(
    sources=[driver_trips[["trips_24h", "fare_sum_1d"]], driver_stats[["rating"]], trip_request],
    schema=[Field("fare_per_trip_1d", Float64), Field("quote", Float64)],
    mode="arrow",
)
def fares(t: pa.Table) -> pa.Table:
    trips = pc.if_else(pc.greater(t["trips_24h"], 0), pc.cast(t["trips_24h"], pa.float64()), None)
    per_trip = pc.divide(t["fare_sum_1d"], trips)
    quote = pc.multiply(per_trip, pc.divide(t["trip_km"], 10.0))
    return pa.table({"fare_per_trip_1d": per_trip, "quote": quote})
"""


@pytest.mark.parametrize("full_feature_names", [False, True])
def test_inputs_from_an_aggregation_view_give_the_same_values_online_and_offline(
    tmp_path: Path, fresh_data: Path, od_redis: RedisServer, full_feature_names: bool
) -> None:
    repo = copy_example_repo(tmp_path / "repo", fresh_data, od_redis.url)
    (repo / "fares.py").write_text(FARES)
    fs = FeatureStore(repo)
    fs.apply()
    fs.materialize()
    drivers = list(range(1001, 1041)) + [999_999]  # and one with nothing
    km = [float(i % 7) if i % 5 else None for i in range(len(drivers))]
    features = ["fares:fare_per_trip_1d", "fares:quote", "driver_trips:trips_24h"]
    online = fs.get_online_features(
        features, {"driver_id": drivers}, full_feature_names, request_data={"trip_km": km}
    ).to_dict()
    # A lookup at now serves the windows ending at the next hop boundary (1 h for 1-day windows):
    # the training set's value at that time (README, "Aggregations over time windows").
    now = datetime.now(UTC)
    at = now.replace(minute=0, second=0, microsecond=0) + (
        timedelta(hours=1) if now.minute or now.second else timedelta()
    )
    frame = pa.table(
        {
            "driver_id": pa.array(drivers, pa.int64()),
            "event_timestamp": pa.array([at] * len(drivers), pa.timestamp("us", tz="UTC")),
            "trip_km": pa.array(km, pa.float64()),
        }
    )
    with fs.get_training_set(frame, features, full_feature_names) as ts:
        trained = ts.to_arrow().to_pydict()
    names = [n for n in online if n != "driver_id"]
    assert names == [n for n in trained if n not in frame.column_names]
    for name in names:
        for i, (a, b) in enumerate(zip(online[name], trained[name], strict=True)):
            assert same(a, b), (name, drivers[i], a, b)
    prefix = "fares__" if full_feature_names else ""
    values = online[f"{prefix}fare_per_trip_1d"]
    assert (
        sum(v is not None for v in values) >= 10 and values[-1] is None
    )  # real values, and the unknown driver
    fs.close()
