"""Completed trips, aggregated per driver over sliding windows."""

from datetime import timedelta

from drivers import driver
from pandera.pandas import Check

from featurestore import Aggregation, FeatureView, Field, Float64, Int64, ParquetSource, String

trips_source = ParquetSource("trips_source", path="data/trips", timestamp_field="event_timestamp")

driver_trips = FeatureView(
    "driver_trips",
    entities=[driver],
    source=trips_source,
    owner="marketplace-ml@example.com",
    tags={"team": "marketplace"},
    description="A driver's trips over the last hour, day, week and month",
    # The events' columns, validated at ingestion; the view's features are the aggregations.
    schema=[
        Field("customer_id", Int64),
        Field("fare", Float64, checks=[Check.ge(0)]),
        Field("distance_km", Float64, checks=[Check.ge(0)]),
        Field("payment", String, checks=[Check.isin(["card", "cash", "wallet"])]),
        Field("tip", Float64, checks=[Check.ge(0)]),
    ],
    aggregations=[
        Aggregation("fare", "count", window=timedelta(hours=1), name="trips_1h"),
        Aggregation("fare", "count", window=timedelta(days=1), name="trips_24h"),
        Aggregation("fare", "sum", window=timedelta(days=1)),
        Aggregation("fare", "mean", window=timedelta(days=7)),
        Aggregation("distance_km", "max", window=timedelta(days=7)),
        Aggregation("tip", "stddev", window=timedelta(days=7)),
        Aggregation("payment", "last_n", window=timedelta(days=1), n=3),
        Aggregation("customer_id", "count_distinct", window=timedelta(days=30)),
        Aggregation("fare", "count", name="trips_lifetime"),
    ],
)
