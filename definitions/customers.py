"""Customers and their order history."""

from datetime import timedelta

from featurestore import Entity, FeatureView, Field, Float32, Float64, Int64, ParquetSource

customer = Entity("customer", join_keys=["customer_id"], description="A rider who orders trips")

customer_profile = FeatureView(
    "customer_profile",
    entities=[customer],
    source=ParquetSource(
        "customer_profile_source",
        path="data/customer_profile/*.parquet",
        timestamp_field="event_timestamp",
        created_timestamp_field="created",
    ),
    ttl=timedelta(days=30),
    owner="growth-ml@example.com",
    description="Balance and order statistics per customer",
    schema=[
        Field("current_balance", Float64),
        Field("lifetime_orders", Int64),
        Field("avg_order_value", Float32),
    ],
)
