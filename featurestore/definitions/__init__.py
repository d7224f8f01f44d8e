"""Definitions: the Python objects data engineers declare features with."""

from featurestore.definitions.aggregation import Aggregation
from featurestore.definitions.entity import Entity
from featurestore.definitions.feature_service import FeatureService, parse_ref
from featurestore.definitions.feature_view import FeatureView, FeatureViewProjection
from featurestore.definitions.field import Field
from featurestore.definitions.on_demand import OnDemandFeatureView, RequestSource, on_demand_view
from featurestore.definitions.source import ParquetSource
from featurestore.definitions.types import (
    Bool,
    Bytes,
    DType,
    Float32,
    Float64,
    Int32,
    Int64,
    List,
    String,
    Timestamp,
)

__all__ = [
    "Aggregation",
    "Bool",
    "Bytes",
    "DType",
    "Entity",
    "FeatureService",
    "FeatureView",
    "FeatureViewProjection",
    "Field",
    "Float32",
    "Float64",
    "Int32",
    "Int64",
    "List",
    "OnDemandFeatureView",
    "ParquetSource",
    "RequestSource",
    "String",
    "Timestamp",
    "on_demand_view",
    "parse_ref",
]
