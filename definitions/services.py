"""The trip-completion model trains and serves on this service."""

from customers import customer_profile
from drivers import driver_stats

from featurestore import FeatureService

trip_model = FeatureService(
    "trip_model",
    features=[driver_stats, customer_profile],
    description="Features of the model that predicts whether a trip completes",
    owner="marketplace-ml@example.com",
)
