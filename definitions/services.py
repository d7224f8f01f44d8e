"""The trip-completion model trains and serves on this service."""

from customers import customer_profile
from drivers import driver_stats
from trips import driver_trips

from featurestore import FeatureService

trip_model = FeatureService(
    "trip_model",
    features=[driver_stats, customer_profile],
    description="Features of the model that predicts whether a trip completes",
    owner="marketplace-ml@example.com",
)

# The dispatcher ranks drivers for a request by their recent activity.
dispatch_model = FeatureService(
    "dispatch_model",
    features=[driver_stats[["conv_rate", "online_hours"]], driver_trips],
    description="Features of the model that ranks nearby drivers for a trip request",
    owner="marketplace-ml@example.com",
)
