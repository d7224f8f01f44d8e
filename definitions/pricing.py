"""A trip request's fit for a driver: computed when asked, from the driver's statistics and
the trip the request describes (an on-demand view: the same function for training and serving)."""

import pandas as pd
from drivers import driver_stats

from featurestore import FeatureService, Field, Float64, RequestSource, on_demand_view

# What the dispatcher knows about the trip when it asks; training sets read it from the
# entity rows' column of the same name.
trip_request = RequestSource(
    "trip_request", schema=[Field("trip_km", Float64, "Length of the requested trip in km")]
)


@on_demand_view(
    sources=[driver_stats[["earnings_today", "trips_today", "last_trip_km"]], trip_request],
    schema=[
        Field("earnings_per_trip", Float64, "Earnings today per trip today (null before a first trip)"),
        Field("km_over_last_trip", Float64, "How much longer the requested trip is than the last one"),
    ],
    owner="marketplace-ml@example.com",
)
def trip_fit(df: pd.DataFrame) -> pd.DataFrame:
    """How a requested trip compares with the driver's day."""
    trips = df["trips_today"].where(df["trips_today"] > 0)  # no trip yet: null, not infinity
    return pd.DataFrame(
        {
            "earnings_per_trip": df["earnings_today"] / trips,
            "km_over_last_trip": df["trip_km"] - df["last_trip_km"],
        }
    )


pricing_model = FeatureService(
    "pricing_model",
    features=[trip_fit, driver_stats[["conv_rate", "acc_rate"]]],
    description="Features of the model that prices a trip request for a driver",
    owner="marketplace-ml@example.com",
)
