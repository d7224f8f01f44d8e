"""Drivers and their hourly statistics."""

from datetime import timedelta

from pandera.pandas import Check

from featurestore import (
    Bool,
    Entity,
    FeatureView,
    Field,
    Float32,
    Float64,
    Int32,
    Int64,
    ParquetSource,
    String,
)

driver = Entity("driver", join_keys=["driver_id"], description="A driver on the platform")

driver_stats_source = ParquetSource(
    "driver_stats_source",
    path="data/driver_stats",
    timestamp_field="event_timestamp",
    created_timestamp_field="created",
)

driver_stats = FeatureView(
    "driver_stats",
    entities=[driver],
    source=driver_stats_source,
    ttl=timedelta(days=2),
    owner="marketplace-ml@example.com",
    tags={"team": "marketplace"},
    description="Hourly driver activity and quality statistics",
    schema=[
        Field("driver_id", Int64),
        Field("conv_rate", Float32, "Share of offers accepted", checks=[Check.in_range(0, 1)]),
        Field("acc_rate", Float32, "Share of trips completed", checks=[Check.in_range(0, 1)]),
        Field("avg_daily_trips", Int32, checks=[Check.ge(0)]),
        Field("rating", Float32, checks=[Check.in_range(1, 5)]),
        Field("trips_today", Int32, checks=[Check.ge(0)]),
        Field("earnings_today", Float64),
        Field("online_hours", Float32, checks=[Check.in_range(0, 24)]),
        Field("cancellations_7d", Int32, checks=[Check.ge(0)]),
        Field("completed_trips_total", Int64, checks=[Check.ge(0)]),
        Field("last_trip_km", Float64, checks=[Check.ge(0)]),
        Field("city", String),
        Field("vehicle_type", String, checks=[Check.isin(["bike", "car", "scooter", "van"])]),
        Field("is_active", Bool),
    ],
)
